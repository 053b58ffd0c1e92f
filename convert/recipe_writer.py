"""A first recipe for a model file, from its graph's facts (convert.model_facts): what the graph says is
written as known; everything else is a guess with a comment saying so and how to check it.

`draft` recognises the task (RetinaFace's outputs -> detection with the decoder that fits, one 128/512-d
output -> recognition, MTCNN's nets, otherwise drift) and fills input, outputs and source; `render`
writes the commented YAML. The measured preprocessing (verify's preprocessing check on real photos)
is added by rkverify.py's `init`, which may import verify/; this module may not.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from convert.model_facts import ModelFacts, TensorFacts
from core.recipe import NHWC_FRAMEWORKS, PROJECT_ROOT, DetectionEval

DETECTOR_SIDE = 640  # a free detector input: the shipped RetinaFace recipes' size
OTHER_SIDE = 112  # a free input of anything else: the face recognizers' size
EMBEDDING_SIZES = (128, 512)
MTCNN_NETS = {12: "PNet", 24: "RNet", 48: "ONet"}

PACKAGE_PHOTOS = [
    '{dir: calib_data/images, glob: "*.jpg", optional: true}   # your own photos, as the camera sees them',
    '{package: insightface, glob: "insightface/data/images/*.jpg"}',
    '{package: insightface, glob: "insightface/data/images/*.png"}',
    '{package: matplotlib, glob: "matplotlib/mpl-data/sample_data/grace_hopper.jpg"}',
    '{dir: ../shared/faces/scenes, glob: "*.jpg", optional: true}',
]
FACE_PHOTOS = [
    '{dir: calib_data/faces, glob: "*.jpg", optional: true}   # your own face photos',
    '{dir: ../shared/lfw/lfw-deepfunneled, glob: "*/*.jpg", not_in_pairs: ../shared/lfw/pairs.txt, optional: true}',
    '{package: insightface, glob: "insightface/data/images/Tom_Hanks_54745.png"}',
    '{package: insightface, glob: "insightface/data/images/t1.jpg"}',
    '{dir: ../shared/faces/identities, glob: "*/*.jpg", optional: true}',
]


@dataclass
class Draft:
    """A recipe's values with a comment per field; `guessed` lists the fields no fact backs."""

    name: str
    facts: ModelFacts
    platform: str
    task: str = "drift"
    task_why: str = ""
    input: TensorFacts | None = None
    shape: list[int] = field(default_factory=list)
    layout: str = "NCHW"
    outputs: list[str] = field(default_factory=list)
    decoder: dict[str, object] = field(default_factory=dict)
    channel_order: str = "RGB"
    mean: list[float] = field(default_factory=lambda: [127.5] * 3)
    std: list[float] = field(default_factory=lambda: [128.0] * 3)
    comments: dict[str, str] = field(default_factory=dict)
    guessed: dict[str, str] = field(default_factory=dict)  # field -> how to check it

    def guess(self, key: str, comment: str) -> None:
        self.guessed[key] = comment
        self.comments[key] = f"GUESSED: {comment}"

    def know(self, key: str, comment: str) -> None:
        self.guessed.pop(key, None)
        self.comments[key] = comment

    @property
    def preprocess_known(self) -> bool:
        return self.facts.graph_preprocess is not None


def recipe_name(model: Path) -> str:
    stem = model.name.lower()
    for suffix in (".onnx", ".tflite", ".pb", "-symbol.json", ".json"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-_") or "my-model"


def draft(facts: ModelFacts, name: str, platform: str = "rk3588") -> Draft:
    d = Draft(name=name, facts=facts, platform=platform)
    images = [t for t in facts.inputs if len(t.shape) == 4]
    d.input = images[0] if images else facts.inputs[0]
    if len(facts.inputs) > 1:
        left = ", ".join(t.name for t in facts.inputs if t is not d.input)
        d.comments["inputs"] = (f"the graph has {len(facts.inputs)} inputs; the image-shaped one is used. Left out: "
                                f"{left} (must not be needed by the outputs: the conversion stops if it is)")
    d.layout = facts.layout(d.input)
    d.outputs = [t.name for t in facts.outputs]
    _recognise(d)
    _fix_shape(d)
    _preprocess(d)
    height, width = d.shape[1:3] if d.layout == "NHWC" else d.shape[2:4]
    if d.task == "recognition" and height != width:
        d.guess("evaluate.verification.template_fit", "a non-square face input is taken to be cut from the 112x112 "
                "ArcFace alignment (height kept, width cut centred): use shorter_side if it was trained on faces "
                "scaled to the shorter side")
    return d


def _spatial(d: Draft, tensor: TensorFacts) -> tuple[int | None, int | None]:
    shape = tensor.shape
    if len(shape) != 4:
        return None, None
    return (shape[1], shape[2]) if d.layout == "NHWC" and d.facts.framework in NHWC_FRAMEWORKS else (shape[2], shape[3])


def _recognise(d: Draft) -> None:
    outs = d.facts.outputs
    last = [t.shape[-1] if t.shape else None for t in outs]
    height, width = _spatial(d, d.input) if d.input else (None, None)
    if len(outs) == 3 and all(len(t.shape) == 3 for t in outs) and sorted(x or 0 for x in last) == [2, 4, 10]:
        order = {4: 0, 2: 1, 10: 2}
        d.outputs = [t.name for t in sorted(outs, key=lambda t: order[t.shape[-1] or 0])]
        side_h, side_w = height or DETECTOR_SIDE, width or DETECTOR_SIDE
        anchors = DetectionEval().anchor_count(side_h, side_w)
        count = outs[0].shape[1]
        if count is not None and count != anchors:
            d.task, d.task_why = "drift", (f"three outputs shaped like RetinaFace's (4, 2, 10 per anchor) but {count} "
                                           f"anchors where its layout gives {anchors} at {side_h}x{side_w}: drift only")
            return
        d.task, d.decoder = "detection", {"decoder": "pytorch"}
        d.task_why = ("three outputs (box 4, class 2, landmarks 10 per anchor) over "
                      f"{count or 'a dynamic number of'} anchors: RetinaFace (biubug6 layout); "
                      "outputs ordered loc, conf, landmarks as the decoder reads them")
        d.guess("evaluate.detection", "anchors assumed to be biubug6's cfg_mnet (min_sizes 16/32, 64/128, 256/512; "
                "steps 8/16/32; variance 0.1/0.2): check your training config; the detection match rate in the "
                "report falls to ~0 when they are wrong")
        return
    if len(outs) >= 3 and len(outs) % 3 == 0 and all(len(t.shape) == 4 for t in outs):
        groups = [outs[i:i + 3] for i in range(0, len(outs), 3)]
        per_anchor = all(g[0].shape[1] and g[1].shape[1] and g[2].shape[1]
                         and g[1].shape[1] == 2 * g[0].shape[1] and g[2].shape[1] == 5 * g[0].shape[1] for g in groups)
        side = d.input.shape[2] if d.input and d.input.shape[2] else DETECTOR_SIDE
        if per_anchor and all(g[0].shape[2] for g in groups):
            steps = [round(side / (g[0].shape[2] or 1)) for g in groups]
            d.task = "detection"
            d.decoder = {"decoder": "insightface", "steps": steps}
            d.task_why = (f"{len(outs)} outputs, per stride {steps} a class map (2 per anchor), box map (4 per "
                          "anchor) and landmark map (10 per anchor): InsightFace RetinaFace")
            if sorted(steps) == [8, 16, 32]:
                scales = {32: [32, 16], 16: [8, 4], 8: [2, 1]}
                d.decoder["anchor_scales"] = [scales[s] for s in steps]
            d.guess("evaluate.detection", "anchor scales assumed to be RetinaFace's (32,16 / 8,4 / 2,1 at strides "
                    "32/16/8, base size 16): check your training config; a wrong one moves every box")
            return
    sizes = [t.size for t in outs]
    if len(outs) == 1 and sizes[0] in EMBEDDING_SIZES:
        d.task = "recognition"
        d.task_why = f"one output of {sizes[0]} values: a face embedding"
        d.guess("evaluate.task", f"a {sizes[0]}-d output is read as a face embedding (face verification on LFW); "
                "if it is not one, use evaluate.task: drift")
        return
    if height and height == width and height in MTCNN_NETS and 2 in [t.shape[1] if len(t.shape) > 1 else None
                                                                      for t in outs]:
        d.task_why = (f"{height}x{width} input with a 2-class output: looks like MTCNN's {MTCNN_NETS[height]}; "
                      "the suite has no MTCNN task, so drift (per-output and per-layer) only")
        return
    d.task_why = "no face task recognised in the outputs: per-output and per-layer drift only"


def _fix_shape(d: Draft) -> None:
    assert d.input is not None
    shape = list(d.input.shape)
    notes = []
    if len(shape) != 4:
        notes.append(f"the graph states no 4-d shape for it ({shape}): [1, 3, H, W] assumed")
        shape = [1, 3, None, None] if d.layout == "NCHW" else [1, None, None, 3]
    if shape[0] is None:
        shape[0] = 1
        notes.append("batch was dynamic: fixed to 1 (the NPU runs one image at a time)")
    spatial = [1, 2] if d.layout == "NHWC" else [2, 3]
    free = [i for i in spatial if shape[i] is None]
    if free:
        side = DETECTOR_SIDE if d.task == "detection" else OTHER_SIDE
        for i in free:
            shape[i] = side
        d.guess("inputs.0.shape", f"height/width are dynamic in the graph: {side} chosen; use the size the model was "
                "trained or is deployed at")
    d.shape = [int(x or 3) for x in shape]
    if notes and "inputs.0.shape" not in d.guessed:
        d.know("inputs.0.shape", "; ".join(notes))
    elif notes:
        d.comments["inputs.0.shape"] += "; " + "; ".join(notes)


def _preprocess(d: Draft) -> None:
    pre = d.facts.graph_preprocess
    if pre is not None:
        d.mean, d.std = [0.0] * 3, [1.0] * 3
        d.know("preprocess.mean", f"the graph normalises its input itself: (x - {_fmt(pre.mean)}) / {_fmt(pre.std)} "
               f"(read from {', '.join(pre.ops)}), so it takes raw pixels: mean 0, std 1")
    else:
        d.guess("preprocess.mean", "nothing in the graph tells: (x-127.5)/128 assumed; `rkverify init` measures it "
                "on photos for detection and recognition models, check the training code otherwise")
    d.guess("preprocess.channel_order", "RGB assumed (the graph cannot tell): check the training code; "
            "the report's preprocessing check flags a better order")


def _fmt(values: list[float]) -> str:
    return str(values[0]) if len(set(values)) == 1 else json.dumps(values)


def source_path(model: Path) -> str:
    """The model's path as a recipe gives it: relative to the project root when it can be."""
    try:
        return os.path.relpath(model.resolve(), PROJECT_ROOT)
    except ValueError:  # another drive (Windows)
        return str(model.resolve())


def render(d: Draft, measured: list[str] | None = None) -> str:
    """The recipe as commented YAML; `measured`: comment lines of the preprocessing measurement."""
    facts = d.facts
    c = d.comments

    def note(key: str, indent: str = "") -> str:
        return "".join(f"{indent}# {line}\n" for line in _wrap(c[key])) if key in c else ""

    lines = [f"# Written by `rkverify init {source_path(facts.path)}` from the model's graph. Lines marked GUESSED",
             "# are not in the graph: check each one. Run it: tox -e convert-" + d.name +
             f" (or python rkverify.py run {d.name}).",
             f"name: {d.name}",
             f"description: {d.name} ({facts.framework}), {d.task}, recipe written by rkverify init",
             "", "source:", f"  framework: {facts.framework}", f"  path: {source_path(facts.path)}"]
    if facts.params is not None:
        lines += [f"  params: {source_path(facts.params)}", f"  params_sha256: {facts.params_sha256}"]
    lines += [f"  sha256: {facts.sha256}",
              "  # GUESSED: trained weights assumed; set trained: false for random weights (drift figures only)",
              "  trained: true", ""]
    text = "\n".join(lines) + "\n"
    text += note("inputs")
    assert d.input is not None
    text += "inputs:\n" + note("inputs.0.shape", "  ")
    text += f"  - name: {_q(d.input.name)}\n    shape: {json.dumps(d.shape)}\n    layout: {d.layout}\n"
    text += f"# read from the graph, in its order{'' if d.task != 'detection' else ' (as the decoder reads them)'}\n"
    text += f"outputs: [{', '.join(_q(o) for o in d.outputs)}]\n\n"
    text += "preprocess:\n" + note("preprocess.channel_order", "  ")
    text += "".join(f"  # {part}\n" for line in (measured or []) for part in _wrap(line))
    text += f"  channel_order: {d.channel_order}\n" + note("preprocess.mean", "  ")
    text += f"  mean: {json.dumps(d.mean)}\n  std: {json.dumps(d.std)}\n"
    text += f"  resize: {'letterbox' if d.task == 'detection' else 'stretch'}\n\n"
    text += _quantization(d) + f"target:\n  platform: {d.platform}\n  runtime: simulator\n\n" + _evaluate(d)
    text += ("\n# No gates yet: run it once, read the report's figures, then set gates a little under them\n"
             "# (min_output_cosine, min_worst_layer_cosine; task gates for detection/recognition).\n")
    return text


def _quantization(d: Draft) -> str:
    face = d.task == "recognition"
    size = "x".join(str(v) for v in (d.shape[1:3] if d.layout == "NHWC" else d.shape[2:4]))
    images = FACE_PHOTOS if face else PACKAGE_PHOTOS
    text = ("quantization:\n  dtype: w8a8\n  algorithm: normal\n  method: channel\n  calibration:\n"
            f"    name: {d.name}-{size}\n    size: 32\n")
    if face:
        text += "    align_with: retinaface     # recognizers are calibrated on aligned faces\n"
    return text + "    images:\n" + "".join(f"      - {line}\n" for line in images) + "\n"


def _evaluate(d: Draft) -> str:
    text = "evaluate:\n" + "".join(f"  # {line}\n" for line in _wrap(d.task_why))
    text += note_line(d, "evaluate.task") + f"  task: {d.task}\n"
    if d.task == "recognition":
        return text + ("  count: 8\n  layer_analysis_images: 2\n  verification:\n"
                       "    dataset: {name: lfw, root: ../shared/lfw/lfw-deepfunneled, pairs: ../shared/lfw/pairs.txt}\n"
                       "    fallback: {name: shared-identities, root: ../shared/faces/identities}\n"
                       "    faces: align\n    detector: retinaface\n    flip: true\n    max_folds: 1\n"
                       + _template_fit(d))
    text += "  images:\n" + "".join(f"    - {line}\n" for line in PACKAGE_PHOTOS[1:]) + "  count: 8\n"
    text += "  layer_analysis_images: 2\n"
    if d.task == "detection":
        text += "  detection:\n" + note_line(d, "evaluate.detection", "    ")
        text += "".join(f"    {key}: {json.dumps(value) if not isinstance(value, str) else value}\n"
                        for key, value in d.decoder.items())
    return text


def _template_fit(d: Draft) -> str:
    key = "evaluate.verification.template_fit"
    return note_line(d, key, "    ") + "    template_fit: height\n" if key in d.guessed else ""


def note_line(d: Draft, key: str, indent: str = "  ") -> str:
    return "".join(f"{indent}# {line}\n" for line in _wrap(d.comments[key])) if key in d.comments else ""


def _q(name: str) -> str:
    return json.dumps(name) if re.search(r"[:#{}\[\],&*?|<>=!%@`'\"]|^\s|\s$", name) else name


def _wrap(text: str, width: int = 100) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines
