"""The cascade of a set of MTCNN nets (verify.face.mtcnn_nets.Nets): each net from the float or the
quantized side, optionally recording the inputs each is handed; and the fixed frame a photo is
letterboxed into first (the NPU's fixed shapes)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.recipe import InputSpec, Preprocess
from verify.face.mtcnn_cascade import Cascade, CascadeConfig, NetFn

NETS = ("pnet", "rnet", "onet")


def frame_of(bgr: np.ndarray, frame: list[int]) -> tuple[np.ndarray, float]:
    """The photo letterboxed (top-left, grey) into the fixed frame, RGB; and frame pixels per photo pixel."""
    from core.pixels import fit_to_input

    spec = InputSpec(name="frame", shape=[1, 3, *frame], layout="NCHW")
    pre = Preprocess(channel_order="RGB", mean=[127.5] * 3, std=[128.0] * 3, resize="letterbox")
    return fit_to_input(bgr, spec, pre)


class Recorder:
    """Wraps a net function and keeps the inputs it was handed (the float cascade's real inputs)."""

    def __init__(self, fn: NetFn) -> None:
        self.fn, self.inputs = fn, list[np.ndarray]()

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        self.inputs.append(pixels)
        return self.fn(pixels)


def cascade_of(nets: Any, config: CascadeConfig, quantized: set[str], record: dict[str, Recorder] | None = None
               ) -> Cascade:
    """A cascade whose nets named in `quantized` run on the simulator, the others in float."""
    side = {net: nets.quantized if net in quantized else nets.float for net in NETS}
    pnet: Callable[[tuple[int, int]], NetFn] = side["pnet"].pnet_at
    rnet, onet = side["rnet"].rnet, side["onet"].onet
    if record is not None:
        pnet_recorders: dict[tuple[int, int], Recorder] = {}

        def pnet(shape: tuple[int, int], base: Callable[[tuple[int, int]], NetFn] = pnet) -> NetFn:
            recorder = pnet_recorders.setdefault(shape, Recorder(base(shape)))
            record.setdefault(f"pnet@{shape[0]}x{shape[1]}", recorder)
            return recorder

        rnet = record.setdefault("rnet", Recorder(rnet))
        onet = record.setdefault("onet", Recorder(onet))
    return Cascade(pnet, rnet, onet, config)
