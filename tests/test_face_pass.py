"""Face choice, caches, pair subsets and the worker layer: one face pass, serial vs two processes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.pairs_file import people_in_pairs
from verify.engines.cache import VectorCache
from verify.face.faces import choose
from verify.face.lfw import Pair, PairSet
from verify.face.recognition import pair_subset, protocol_folds


def face_row(x1: float, y1: float, x2: float, y2: float, score: float) -> np.ndarray:
    points = np.tile([(x1 + x2) / 2, (y1 + y2) / 2], 5)
    return np.array([x1, y1, x2, y2, score, *points], dtype=np.float32)


def test_face_choice_central_largest_score() -> None:
    # a 250x250 photo: a big face in the corner, a smaller one centred, a confident tiny one
    rows = np.stack([face_row(0, 0, 120, 120, 0.90), face_row(90, 90, 160, 160, 0.95),
                     face_row(200, 200, 220, 220, 0.99)])
    assert choose(rows, "central", (250, 250))[0].tolist() == [125, 125]
    assert choose(rows, "largest", (250, 250))[0].tolist() == [60, 60]
    assert choose(rows, "score", (250, 250))[0].tolist() == [210, 210]
    assert choose(rows[:0], "central", (250, 250)) is None


def test_cache_round_trip_of_ragged_entries(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "c.npz")
    cache.put("a", np.ones((2, 15), np.float32))
    cache.put("none", np.zeros((0, 15), np.float32))
    cache.put("b", np.full((1, 15), 7, np.float32))
    cache.save()
    again = VectorCache(tmp_path / "c.npz")
    assert again.get("a").shape == (2, 15) and again.get("none").shape == (0, 15)
    assert again.get("b")[0, 0] == 7 and again.missing(["a", "x"]) == ["x"]


def test_people_in_pairs_and_unpaired_calibration(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 1\nAnn 1 2\nBob 1 Cy 3\n")
    assert people_in_pairs(pairs) == {"Ann", "Bob", "Cy"}


def test_subset_is_seeded_and_lone_fold_gets_subfolds() -> None:
    pairs = PairSet([Pair(Path(f"{i}a"), Path(f"{i}b"), i % 2 == 0, 0) for i in range(600)], 10, [0], "pairs.txt")
    subset = pair_subset(pairs, 100)
    assert len(subset.pairs) == 100 and subset.pairs == pair_subset(pairs, 100).pairs
    folds = protocol_folds(pairs)
    assert len(np.unique(folds)) == 10 and np.bincount(folds).tolist() == [60] * 10


def test_face_pass_serial_two_workers_and_ray_agree(tmp_path: Path) -> None:
    """Real detector + recognizer on 40 LFW pairs: in-process (live builds), two spawned workers and
    two Ray tasks on a local Ray instance (each rebuilding the quantized model) give the same
    embeddings, so figures never depend on where the shards ran."""
    import ray

    import rkverify
    from convert.pipeline import release
    from tests.conftest import CI_VERIFICATION
    from verify.engines.run_models import recognizer_models, rknn_runner
    from verify.engines.runners import OnnxRuntimeRunner, active
    from verify.face.recognition import FacePass, choose_pairs, verification_metrics

    loaded, artifacts, finder = rkverify.convert_all("arcface-mobilefacenet", CI_VERIFICATION)
    recipe = loaded.recipe
    log = tmp_path / "toolkit.log"
    try:
        float_runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
        quant_runner = rknn_runner(artifacts.rknn, recipe, log)
        assert finder is not None
        aligner = finder.detector(log)
        subset = pair_subset(choose_pairs(recipe.evaluate.verification, loaded.path)[0], 40)
        figures = {}
        with active(float_runner, quant_runner, aligner.float.live):
            for name, workers, ray_address in ((1, 1, None), (2, 2, None), ("ray", 2, "local")):
                face_pass = FacePass(loaded, recognizer_models(loaded, artifacts, float_runner, quant_runner),
                                     aligner, tmp_path / f"cache{name}", log, workers, ray_address)
                figures[name], _ = verification_metrics(loaded, face_pass, tmp_path / f"run{name}", subset)
    finally:
        ray.shutdown()
        release(artifacts)
        if finder is not None:
            finder.release()
    assert figures[1]["pass"]["workers"] == 1 and figures[2]["pass"]["workers"] == 2 and figures["ray"]["pass"]["ray"]
    assert figures[2]["pass"]["computed_images"] == figures[1]["pass"]["computed_images"] > 40
    for other in (figures[2], figures["ray"]):
        for key in ("float", "quantized"):
            assert other[key]["accuracy"] == figures[1][key]["accuracy"]
        drift1, drift = figures[1]["embedding_drift"], other["embedding_drift"]
        assert drift["cosine_mean"] == drift1["cosine_mean"] and drift["cosine_worst"] == drift1["cosine_worst"]
