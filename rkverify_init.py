"""`rkverify init <model>` and `rkverify inspect <model>`: a user's own model, from its file to a recipe.

inspect prints what the graph says (convert.model_facts); init writes a recipe from it
(convert.recipe_writer) and, for a detector or recognizer whose graph does not say how its input is
normalised, measures it: verify's preprocessing check runs the float model on the photos at hand with
each channel order and mean/std and keeps the one that does the task best, writing the figures as a
comment. It lives here, beside rkverify.py, because it uses both convert/ and verify/.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from convert.model_facts import ModelFacts, read_model
from convert.recipe_writer import Draft, draft, recipe_name, render
from core.artifacts import atomic_path
from core.errors import RkverifyError
from core.recipe import PROJECT_ROOT, RECIPES_DIR, LoadedRecipe, Preprocess
from verify.recipes import load
from verify.tasks import TASKS

MEASURE_PHOTOS = 24  # photos the preprocessing is measured on (a few seconds on ONNX Runtime)


def inspect_lines(facts: ModelFacts) -> list[str]:
    """What `rkverify inspect` prints: one fact per line, `key: value`."""
    lines = [f"model: {facts.path}", f"framework: {facts.framework}", f"sha256: {facts.sha256}"]
    if facts.params is not None:
        lines += [f"params: {facts.params}", f"params_sha256: {facts.params_sha256}"]
    for i, t in enumerate(facts.inputs):
        lines.append(f"input {i}: {t.name} shape {_dims(t.shape)} {t.dtype} layout {facts.layout(t)}"
                     + (f" quantization scale {t.quantization[0]:g} zero_point {t.quantization[1]}" if t.quantization
                        else ""))
    for i, t in enumerate(facts.outputs):
        lines.append(f"output {i}: {t.name} shape {_dims(t.shape)}")
    pre = facts.graph_preprocess
    lines.append(f"preprocessing in the graph: (x - {pre.mean}) / {pre.std} from {', '.join(pre.ops)}" if pre
                 else "preprocessing in the graph: none found")
    counts = sorted(facts.op_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append(f"ops ({sum(facts.op_counts.values())}): " + ", ".join(f"{op} {n}" for op, n in counts))
    lines += [f"note: {note}" for note in facts.notes]
    return lines


def _dims(shape: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]" if shape else "unknown"


def init(model: Path, name: str | None, platform: str, out: Path | None, measure: bool = True) -> tuple[Path, Draft]:
    """Write the recipe for `model` (default convert/recipes/<name>.yaml) and return its path and draft."""
    facts = read_model(model)
    name = name or recipe_name(model)
    path = out or RECIPES_DIR / f"{name}.yaml"
    if path.exists():
        raise RkverifyError(path, "", "a recipe of that name exists already",
                            "give another name with --name, or --out for another file")
    d = draft(facts, name, platform)
    measured: list[str] = []
    if measure and d.task in ("detection", "recognition"):
        measured = measure_preprocessing(d, path)
    with atomic_path(path) as tmp:
        tmp.write_text(render(d, measured))
    load(str(path))  # what was written must load: fail here, not at the user's first run
    return path, d


def measure_preprocessing(d: Draft, path: Path) -> list[str]:
    """Pick channel order (and mean/std unless the graph tells) on real photos; comment lines."""
    from convert.pipeline import convert_recipe
    from verify.analyses.preprocess_check import check_preprocessing

    with tempfile.TemporaryDirectory(prefix="rkverify-init-") as folder:
        draft_path = Path(folder) / path.name
        draft_path.write_text(render(d))
        loaded = load(str(draft_path))
        artifacts = convert_recipe(loaded, Path(folder) / "models", float_only=True)
        images, described = _photos(loaded)
        if len(images) < 4:
            return [f"not measured: {len(images)} usable photos ({described}); add photos and re-run init"]
        first = check_preprocessing(loaded, artifacts.onnx, images)
        best = _choice(d, loaded.recipe.preprocess, first)
        rounds = [first]
        if best.channel_order == loaded.recipe.preprocess.channel_order and best != loaded.recipe.preprocess:
            # a new mean/std: ask again which channel order suits it
            loaded = load(str(draft_path), {"preprocess.mean": best.mean, "preprocess.std": best.std})
            second = check_preprocessing(loaded, artifacts.onnx, images)
            rounds.append(second)
            best = _choice(d, loaded.recipe.preprocess, second)
    d.channel_order, d.mean, d.std = best.channel_order, list(best.mean), list(best.std)
    metric = first["metric"]
    lines = [f"MEASURED, not read from the graph: the float model on {len(images)} photos ({described}), {metric} "
             "per preprocessing (higher is better):"]
    for number, result in enumerate(rounds, 1):
        figures = ", ".join(f"{label} {_value(r, metric)}" for label, r in result["results"].items())
        lines.append(f"  round {number}: {figures}")
    lines.append(f"chosen: {best.channel_order}, mean {best.mean[0]:g}, std {best.std[0]:g} (an alternative must beat "
                 f"the first by {TASKS[d.task].preprocess_margin:.0%} to be chosen); a measurement on few photos, not a fact: the "
                 "training code has the last word")
    last = rounds[-1]
    if last["cannot_tell"]:  # the photos cannot separate the alternatives: the choice stays a guess
        lines.append(last["cannot_tell"])
        d.guess("preprocess.channel_order", "the photos could not tell the channel orders apart (below); check "
                "the training code")
        return lines
    d.know("preprocess.channel_order", "channel order measured (below)")
    if not d.preprocess_known:
        d.know("preprocess.mean", "mean/std measured (above)")
    return lines


def _value(result: dict[str, float], metric: str) -> str:
    return f"{result[metric]:.3g}"


def _choice(d: Draft, own: Preprocess, result: dict[str, Any]) -> Preprocess:
    """The best variant; when the graph normalises itself only the channel order may change."""
    from verify.analyses.preprocess_check import variants

    labels, key = result["results"], result["metric"]
    if d.preprocess_known:
        swap = next(label for label in labels if label.startswith("channels swapped"))
        better = labels[swap][key] > labels["recipe"][key] * (1 + TASKS[d.task].preprocess_margin)
        return own.model_copy(update={"channel_order": _other(own.channel_order)}) if better else own
    best = result["best"]
    if not result["warning"]:  # nothing beats the draft's by the check's own margin: keep it
        return own
    if best.startswith("channels swapped"):
        return own.model_copy(update={"channel_order": _other(own.channel_order)})
    return variants(own)[best][0]


def _other(order: str) -> str:
    return "BGR" if order == "RGB" else "RGB"


def _photos(loaded: LoadedRecipe) -> tuple[list[Any], str]:
    """Prepared inputs to score the task on: eval scenes for a detector, faces of several people
    (LFW layout, aligned by the retinaface recipe's float detector) for a recognizer."""
    from core.pixels import prepare, prepare_array, read_bgr, resolve_images

    recipe = loaded.recipe
    if recipe.evaluate.task == "detection":
        found = resolve_images(recipe.evaluate.images, loaded.path, "evaluate.images")[:MEASURE_PHOTOS]
        return [prepare(p, recipe.model_input, recipe.preprocess) for p in found], "the recipe's evaluate.images"
    verification = recipe.evaluate.verification
    assert verification is not None
    roots = [verification.dataset.root] + ([verification.fallback.root] if verification.fallback else [])
    for root in roots:
        folder = PROJECT_ROOT / root
        people = [p for p in sorted(folder.glob("*")) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2]
        photos = [photo for person in people[:8] for photo in sorted(person.glob("*.jpg"))[:3]][:MEASURE_PHOTOS]
        if len(photos) >= 4:
            break
    else:
        return [], "no folder of faces in LFW layout with 2+ photos per person"
    from convert.pipeline import convert_recipe
    from verify.engines.runners import OnnxRuntimeRunner
    from verify.face.faces import detect_rows, face_crop

    detector = load(verification.detector)
    with tempfile.TemporaryDirectory(prefix="rkverify-init-detector-") as folder_name:
        onnx_path = convert_recipe(detector, Path(folder_name), float_only=True).onnx
        runner = OnnxRuntimeRunner(onnx_path, detector.recipe.model_input, detector.recipe.preprocess)
        runner.activate()
        images = []
        for photo in photos:
            bgr = read_bgr(photo)
            crop, _ = face_crop(bgr, detect_rows(bgr, detector.recipe, runner), "largest",
                                recipe.model_input.height_width, verification.center_crop_fraction,
                                verification.template_fit)
            images.append(prepare_array(crop, recipe.model_input, recipe.preprocess, photo))
        runner.deactivate()
    return images, f"{root}, faces aligned by the {verification.detector} recipe"


def toolkit_lines(model: Path, platform: str) -> list[str]:
    """Build the model in float16 for `platform` (rknn-toolkit2) and say where its ops run, as the
    toolkit's own build log says; an op it refuses is reported with the fix (the outputs to cut at)."""
    from convert.build import live_build
    from convert.pipeline import convert_recipe
    from convert.toolkit_ops import op_targets

    d = draft(read_model(model), recipe_name(model), platform)
    with tempfile.TemporaryDirectory(prefix="rkverify-inspect-") as folder:
        recipe_path = Path(folder) / f"{d.name}.yaml"
        recipe_path.write_text(render(d))
        loaded = load(str(recipe_path))
        onnx_path = convert_recipe(loaded, Path(folder) / "models", float_only=True).onnx
        log_file = Path(folder) / "build.log"
        try:
            live_build(loaded, onnx_path, None, log_file).rknn.release()
        except RkverifyError as exc:
            return [f"toolkit ({platform}, float16 build): refused: {exc.problem}", f"toolkit fix: {exc.fix}"]
        targets = op_targets(log_file)
    npu, cpu = (", ".join(f"{op} {n}" for op, n in sorted(targets[t].items())) or "none" for t in ("NPU", "CPU"))
    return [f"toolkit ({platform}, float16 build): NPU ops: {npu}", f"toolkit ({platform}): CPU ops: {cpu}"]
