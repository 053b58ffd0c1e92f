"""InsightFace's MobileFaceNet (recognition/symbol/fmobilefacenet.py, GDC head, PReLU) as an
MXNet symbol + params with random weights: `<prefix>-symbol.json` and `<prefix>-0000.params`.
"""
from __future__ import annotations

from pathlib import Path

from convert.frameworks import import_mxnet


def _conv(mx, data, filters, kernel=(1, 1), stride=(1, 1), pad=(0, 0), groups=1, name="", act=True):
    conv = mx.sym.Convolution(data=data, num_filter=filters, kernel=kernel, num_group=groups, stride=stride,
                              pad=pad, no_bias=True, name=f"{name}_conv2d")
    bn = mx.sym.BatchNorm(data=conv, fix_gamma=False, momentum=0.9, name=f"{name}_batchnorm")
    return mx.sym.LeakyReLU(data=bn, act_type="prelu", name=f"{name}_relu") if act else bn


def _depthwise_residual(mx, data, out, groups, stride, name):
    """conv 1x1 -> depthwise 3x3 -> linear 1x1 projection (insightface DResidual)."""
    sep = _conv(mx, data, groups, name=f"{name}_conv_sep")
    dw = _conv(mx, sep, groups, kernel=(3, 3), stride=stride, pad=(1, 1), groups=groups, name=f"{name}_conv_dw")
    return _conv(mx, dw, out, name=f"{name}_conv_proj", act=False)


def _residual(mx, data, blocks, out, groups, name):
    for index in range(blocks):
        block = _depthwise_residual(mx, data, out, groups, (1, 1), f"{name}_block{index}")
        data = mx.sym.elemwise_add(block, data, name=f"{name}_block{index}_add")  # named: '+' numbers globally
    return data


def symbol(mx, embedding_size: int = 128):
    data = mx.sym.Variable("data")
    x = _conv(mx, data, 64, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv_1")
    x = _conv(mx, x, 64, kernel=(3, 3), pad=(1, 1), groups=64, name="conv_2_dw")
    x = _depthwise_residual(mx, x, 64, 128, (2, 2), "dconv_23")
    x = _residual(mx, x, 4, 64, 128, "res_3")
    x = _depthwise_residual(mx, x, 128, 256, (2, 2), "dconv_34")
    x = _residual(mx, x, 6, 128, 256, "res_4")
    x = _depthwise_residual(mx, x, 128, 512, (2, 2), "dconv_45")
    x = _residual(mx, x, 2, 128, 256, "res_5")
    x = _conv(mx, x, 512, name="conv_6sep")
    # GDC head: global depthwise 7x7 (linear), fully connected to the embedding, BatchNorm
    x = _conv(mx, x, 512, kernel=(7, 7), groups=512, name="conv_6dw7_7", act=False)
    x = mx.sym.FullyConnected(data=x, num_hidden=embedding_size, name="pre_fc1")
    return mx.sym.BatchNorm(data=x, fix_gamma=True, eps=2e-5, momentum=0.9, name="fc1")


def make(symbol_path: Path, params_path: Path) -> None:
    mx = import_mxnet()
    mx.random.seed(0)
    sym = symbol(mx)
    module = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3, 112, 112))], for_training=False)
    module.init_params(initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    arg_params, aux_params = module.get_params()
    symbol_path.parent.mkdir(parents=True, exist_ok=True)
    symbol_path.write_text(sym.tojson())
    params = {f"arg:{k}": v for k, v in sorted(arg_params.items())} | {f"aux:{k}": v for k, v in sorted(aux_params.items())}
    mx.nd.save(str(params_path), params)
