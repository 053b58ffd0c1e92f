"""1:N identification: the metrics on hand-made embeddings whose answers are known, Faiss against a
numpy scan, the gates, and the three galleries on LFW fold 1 through a real recognizer run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.recipe import Gates
from verify.face.identification.galleries import Embedded, compare, gallery_size_curve
from verify.face.identification.index import IndexSettings, build_index, search
from verify.face.identification.metrics import (
    NOT_FOUND,
    cmc,
    dir_at_far,
    match_ranks,
    rank_k,
    recall_at_1,
    threshold_at_far,
)
from verify.face.identification.protocol import build_split, choose_distractors
from verify.face.verification_metrics import l2_normalise
from verify.gates import evaluate_gates

FARS = [0.01, 0.001]
# arcface-mobilefacenet on LFW fold 1 measured float rank-1 0.952, DIR@FAR 1% 0.790; quantized and
# cross-enrolled within 0.003 of it. The floors leave room for a changed toolkit, not for a broken search.
RANK1_FLOOR, DIR_FLOOR, MAX_RANK1_GAP = 0.93, 0.72, 0.02
# mxnet-mobilefacenet on LFW fold 1, its w8a8 run's gallery searched by the hybrid build's probes:
# measured rank-1 0.9839, DIR@FAR 1% 0.9543, 12 answers changed against float/float (w8a8/w8a8 0.9758,
# hybrid/hybrid 0.9892); the tolerance is one probe of rank-1 (1/372) and a few answers
CROSS_BUILD = {"rank1": 0.9839, "dir": 0.9543, "answer_changed": 12}


def unit(rows: np.ndarray) -> np.ndarray:
    return l2_normalise(np.asarray(rows, dtype=np.float32))


def test_ranks_and_cmc_on_known_answers() -> None:
    top = np.array([[3, 1, 2], [1, 3, 2], [2, 1, 3], [1, 2, 4]])  # labels of the 3 nearest entries
    ranks = match_ranks(top, np.array([3, 3, 3, 3]))
    assert ranks.tolist() == [1, 2, 3, NOT_FOUND]
    assert rank_k(ranks, 1) == 0.25 and rank_k(ranks, 2) == 0.5 and rank_k(ranks, 3) == 0.75
    assert cmc(ranks, 4).tolist() == [0.25, 0.5, 0.75, 0.75]


def test_threshold_and_dir_at_far_known_values() -> None:
    impostors = np.linspace(0.0, 0.99, 100)  # 100 unknown probes: FAR 1% lets exactly one above
    threshold = threshold_at_far(impostors, 0.01)
    assert threshold == pytest.approx(0.98)
    assert np.mean(impostors > threshold) == pytest.approx(0.01)
    genuine = np.array([0.999, 0.985, 0.97, 0.995])  # third is below the threshold
    ranks = np.array([1, 1, 1, 2])  # fourth's top answer is someone else
    result = dir_at_far(genuine, ranks, impostors, 0.01)
    assert result["dir"] == pytest.approx(0.5) and result["far_resolution"]
    # 0.1% of 100 impostors is below one false alarm: the threshold is the top impostor, flagged
    strict = dir_at_far(genuine, ranks, impostors, 0.001)
    assert strict["threshold"] == pytest.approx(0.99) and strict["achieved_far"] == 0.0
    assert not strict["far_resolution"]


def hand_made(separable: bool) -> Embedded:
    """4 enrolled people on orthogonal axes; known probes near their person's axis (or, when not
    separable, on another person's axis); 2 unknown probes on axes of their own."""
    eye = np.eye(8, dtype=np.float32)
    gallery = eye[:4]
    targets = [0, 1, 2, 3] if separable else [1, 2, 3, 0]
    known = unit(eye[targets] + 0.1 * eye[4])
    unknown = unit(eye[[5, 6]] + 0.2 * eye[0])
    vectors = np.concatenate([gallery, known, unknown])
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 10, 11])
    data = {"float": vectors, "quantized": vectors}
    return Embedded(data, labels, np.arange(4), np.arange(4, 8), np.arange(8, 10))


@pytest.mark.parametrize("separable, rank1", [(True, 1.0), (False, 0.0)])
def test_rank1_one_and_zero(separable: bool, rank1: float) -> None:
    table, _ = compare(hand_made(separable), [("float", "float"), ("quantized", "quantized")], IndexSettings(), FARS, 5)
    assert table["float/float"]["rank1"] == rank1
    assert table["quantized/quantized"]["top1_changed"] == 0
    if separable:
        assert table["float/float"]["dir_at_far"][0]["dir"] == 1.0  # genuine cosine 0.995 > impostor 0.196


def test_cross_enrolment_flips_and_threshold_shift() -> None:
    data = hand_made(True)
    noisy = data.vectors["float"].copy()
    noisy[4] = unit(np.eye(8)[1:2] + 0.1 * np.eye(8)[4:5])[0]  # the quantized model sees probe 0 as person 1
    data = Embedded({"float": data.vectors["float"], "quantized": noisy}, data.labels, data.gallery, data.known,
                    data.unknown)
    table, _ = compare(data, [("float", "float"), ("float", "quantized")], IndexSettings(), FARS, 5)
    cross = table["float/quantized"]
    assert cross["rank1"] == 0.75 and cross["top1_changed"] == 1 and cross["answer_changed"] == 1
    assert cross["threshold_shift"][0] == pytest.approx(0.0)  # impostors unchanged


def random_gallery(count: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((count, dim)))


def test_faiss_exact_search_matches_numpy_scan() -> None:
    gallery, probes = random_gallery(3000), random_gallery(200, seed=1)
    scores, ids = search(build_index(gallery), probes, 10)
    scan = probes @ gallery.T
    expected = np.argsort(-scan, axis=1, kind="stable")[:, :10]
    assert (ids == expected).mean() > 0.999  # ties in float32 aside
    assert np.allclose(scores, np.take_along_axis(scan, expected, axis=1), atol=1e-5)


@pytest.mark.parametrize("kind, codes", [("ivf", "Flat"), ("ivf", "SQ8"), ("hnsw", "Flat"), ("hnsw", "SQfp16"),
                                         ("hnsw", "SQ8")])
def test_approximate_index_recall(kind: str, codes: str) -> None:
    gallery, probes = random_gallery(5000), unit(random_gallery(5000)[:300] + 0.05 * random_gallery(300, seed=2))
    exact = search(build_index(gallery), probes, 1)[1]
    settings = IndexSettings(kind, nprobe=16, ef_search=128, codes=codes)
    approximate = search(build_index(gallery, settings), probes, 1)[1]
    assert recall_at_1(approximate, exact) >= 0.95


@pytest.mark.parametrize("codes, tolerance", [("Flat", 1e-5), ("SQfp16", 1e-3), ("SQ8", 1e-5)])
def test_hnsw_scores_are_cosines(codes: str, tolerance: float) -> None:
    """Thresholds are set on the scores: SQ8's candidates are re-ranked with the float32 vectors (exact),
    float16 codes stay within 1e-3."""
    gallery, probes = random_gallery(2000), random_gallery(100, seed=4)
    scores, ids = search(build_index(gallery, IndexSettings("hnsw", codes=codes)), probes, 5)
    assert np.abs(scores - np.take_along_axis(probes @ gallery.T, ids, axis=1)).max() < tolerance


def test_gallery_size_curve_grows_and_rank1_can_only_fall() -> None:
    rng = np.random.default_rng(3)
    people = unit(rng.standard_normal((50, 32)))
    probes = unit(people + 1.2 * unit(rng.standard_normal((50, 32))))
    distractors = unit(rng.standard_normal((400, 32)))
    unknown = unit(rng.standard_normal((100, 32)))
    vectors = np.concatenate([people, distractors, probes, unknown])
    labels = np.concatenate([np.arange(50), 1000 + np.arange(400), np.arange(50), 5000 + np.arange(100)])
    data = Embedded({"float": vectors}, labels, np.arange(450), np.arange(450, 500), np.arange(500, 600))
    curve = gallery_size_curve(data, [("float", "float")], 50, IndexSettings(), FARS, 5)
    assert [p["gallery"] for p in curve] == [50, 150, 250, 350, 450]
    rank1 = [p["float/float"]["rank1"] for p in curve]
    assert all(a >= b for a, b in zip(rank1, rank1[1:])) and rank1[0] > rank1[-1]


def test_split_is_seeded_and_excludes_people(tmp_path) -> None:
    files = [tmp_path / n / f"{n}_{i:04d}.jpg" for n, k in (("A", 3), ("B", 2), ("C", 1), ("D", 2)) for i in range(k)]
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x")
    split = build_split(files, seed=1, excluded=frozenset({"D"}))
    assert [p.parent.name for p in split.gallery] == ["A", "B"]
    assert len(split.known_probes) == 3 and [p.parent.name for p in split.unknown_probes] == ["C"]
    assert split.excluded_people == ["D"] and build_split(files, seed=1).gallery[:2] == split.gallery
    # C is not among the evaluated images given here, D calibrated: only C may be a distractor
    assert [p.name for p in choose_distractors(tmp_path, files[:5], {"D"}, 10, 0)] == ["C_0000.jpg"]


def test_identification_gates_fail_on_a_drop() -> None:
    metrics = {"identification": {"rank1_drop": 0.04, "cross_enrolment_drop": 0.01,
                                  "settings": {"quantized/quantized": {"rank1": 0.9,
                                                                       "dir_at_far": [{"dir": 0.7}]}}}}
    results = {r.gate: r for r in evaluate_gates(Gates(min_rank1=0.95, max_rank1_drop=0.02,
                                                        max_cross_enrolment_drop=0.02, min_dir_at_far=0.5), metrics)}
    assert not results["min_rank1"].passed and not results["max_rank1_drop"].passed
    assert results["max_cross_enrolment_drop"].passed and results["min_dir_at_far"].passed


@pytest.fixture(scope="module")
def lfw_identification(fresh_run) -> tuple[dict, object]:
    run_dir = fresh_run("arcface-mobilefacenet")  # LFW fold 1 (CI's max_folds=1)
    return json.loads((run_dir / "metrics.json").read_text()), run_dir


def test_three_galleries_on_lfw_fold_1(lfw_identification) -> None:
    metrics, run_dir = lfw_identification
    idf = metrics["identification"]
    protocol, table = idf["protocol"], idf["settings"]
    assert protocol["folds_used"] == [0] and protocol["enrolled_people"] >= 150
    assert protocol["known_probes"] >= 300 and protocol["unknown_probes"] >= 250
    assert idf["leakage"]["overlap"] == 0 and protocol["excluded_people"] == 0
    assert list(table) == ["float/float", "quantized/quantized", "float/quantized"]
    assert table["float/float"]["rank1"] >= RANK1_FLOOR
    for name in ("quantized/quantized", "float/quantized"):
        assert abs(table["float/float"]["rank1"] - table[name]["rank1"]) <= MAX_RANK1_GAP
        assert len(idf["flipped_probes"][name]) == min(12, table[name]["answer_changed"])
    assert table["float/float"]["dir_at_far"][0]["dir"] >= DIR_FLOOR
    sizes = [p["gallery"] for p in idf["gallery_size_curve"]]
    assert sizes[0] == protocol["enrolled_people"] and sizes[-1] == protocol["gallery_size"] > sizes[0]
    html = (run_dir / "report.html").read_text()
    assert "Face identification (1:N search)" in html and 'alt="CMC curves"' in html
    assert html.count('alt="probe face"') == sum(len(rows) for rows in idf["flipped_probes"].values())


def test_an_identification_gate_fails_on_a_real_run(lfw_identification) -> None:
    metrics, _ = lfw_identification
    rank1 = metrics["identification"]["settings"]["quantized/quantized"]["rank1"]
    (result,) = evaluate_gates(Gates(min_rank1=rank1 + 0.001), metrics)
    assert not result.passed and result.value == rank1


@pytest.mark.parametrize("unknown", [True, False])
def test_report_section_renders_with_and_without_unknown_probes(unknown: bool) -> None:
    """The section from metrics alone; a folder where everyone has 2+ images has no open set."""
    from verify.report.identification_plots import identification_plots
    from verify.report.run_report import TEMPLATES, format_number

    data = hand_made(True)
    if not unknown:
        data = Embedded(data.vectors, data.labels, data.gallery, data.known, data.unknown[:0])
    pairs = [("float", "float"), ("quantized", "quantized"), ("float", "quantized")]
    table, _ = compare(data, pairs, IndexSettings(), FARS, 5)
    idf = {"protocol": {"description": "hand-made", "seed": 0, "enrolled_people": 4, "distractors": 0,
                        "gallery_size": 4, "known_probes": 4, "unknown_probes": len(data.unknown),
                        "excluded_people": 0, "fars": FARS},
           "index": {"kind": "flat", "metric": "cosine"}, "settings": table, "leakage": None, "rank1_drop": 0.0,
           "cross_enrolment_drop": 0.0, "flipped_probes": {},
           "gallery_size_curve": gallery_size_curve(data, pairs, 4, IndexSettings(), FARS, 5)}
    plots = identification_plots({"identification": idf})
    html = TEMPLATES.get_template("identification.html").render(
        m={"identification": idf}, id_plots={k: "data:," for k in plots}, thumbs={}, fmt=format_number)
    assert set(plots) == {"cmc", "dir_far", "gallery_size"} and all(png[:4] == b"\x89PNG" for png in plots.values())
    assert ("DIR @ FAR 0.01" in html) == unknown and ("open-set figures (DIR@FAR) are not measured" in html) != unknown
    assert (evaluate_gates(Gates(min_dir_at_far=0.5), {"identification": idf})[0].passed) == unknown


def test_identification_settings_and_gates_are_checked_before_any_work() -> None:
    from core.errors import RkverifyError
    from core.recipe import load_recipe

    loaded = load_recipe("arcface-mobilefacenet")  # shipped recipes get the defaults without a block
    assert loaded.recipe.evaluate.identification.index == "flat" and loaded.recipe.evaluate.identification.enabled
    with pytest.raises(RkverifyError, match="'flat', 'ivf' or 'hnsw'"):
        load_recipe("arcface-mobilefacenet", {"evaluate.identification.index": "annoy"})
    from verify.recipes import load  # the recipe as a run reads it: its task's checks too

    with pytest.raises(RkverifyError, match="task: recognition"):
        load("retinaface", {"gates.min_rank1": 0.9})


def saved_from(data: Embedded, folder, keys: list[str], order: list[int], model: str = "quantized") -> None:
    """A gallery as an earlier run saves it: rows in `order` (a run's own order need not be this one's)."""
    from verify.face.identification.enrolled import GALLERY_FILE, save_gallery

    folder.mkdir(parents=True, exist_ok=True)
    rows = data.vectors[model][data.gallery][order]
    save_gallery(folder / GALLERY_FILE, [keys[i] for i in order], {"float": rows, "quantized": rows},
                 {"run_id": folder.name, "protocol": {"dataset": "hand-made", "seed": 0}})


def test_an_earlier_gallery_is_read_back_in_this_runs_order(tmp_path) -> None:
    """Saved shuffled, read back by content hash: searched by the same model, it is quantized/quantized."""
    from verify.face.identification.enrolled import load_gallery
    from verify.face.identification.step import with_enrolled

    data, keys = hand_made(True), [f"sha-{i}" for i in range(4)]
    saved_from(data, tmp_path / "reports" / "rec" / "run-1", keys, [2, 0, 3, 1])
    earlier = load_gallery("run-1", tmp_path / "reports", "rec")  # a run id of reports/<recipe>/
    table, _ = compare(with_enrolled(data, earlier, keys), [("float", "float"), ("quantized", "quantized"),
                                                             ("enrolled", "quantized")], IndexSettings(), FARS, 5)
    same = {k: table["enrolled/quantized"][k] for k in ("rank1", "cmc", "dir_at_far", "top1_changed")}
    assert same == {k: table["quantized/quantized"][k] for k in same}


def test_an_earlier_gallery_that_cannot_serve_is_refused(tmp_path) -> None:
    """Missing run, a run that saved no gallery, another gallery's images, another embedding size:
    one line each, naming the file, the field and the fix."""
    from core.errors import RkverifyError
    from verify.face.identification.enrolled import load_gallery
    from verify.face.identification.step import with_enrolled

    reports, data, keys = tmp_path / "reports", hand_made(True), [f"sha-{i}" for i in range(4)]
    with pytest.raises(RkverifyError, match=r"enrolled_with\]: no run folder or gallery file .* Fix: give a run"):
        load_gallery("20250101T000000Z-gone", reports, "rec")
    (reports / "rec" / "old").mkdir(parents=True)
    with pytest.raises(RkverifyError, match=r"old/gallery.npz \[evaluate.identification.enrolled_with\]: that run "
                       "saved no gallery"):
        load_gallery(str(reports / "rec" / "old"), reports, "rec")
    saved_from(data, reports / "rec" / "other", ["sha-0", "sha-1", "sha-2", "sha-9"], [0, 1, 2, 3])
    with pytest.raises(RkverifyError, match=r"another gallery: it enrolled 4 images, this run 4, 1 of them not in it"):
        with_enrolled(data, load_gallery("rec/other", reports, "rec"), keys)
    wider = Embedded({"quantized": np.pad(data.vectors["quantized"], ((0, 0), (0, 8)))}, data.labels, data.gallery,
                     data.known, data.unknown)
    saved_from(wider, reports / "rec" / "wide", keys, [0, 1, 2, 3])
    with pytest.raises(RkverifyError, match="its embeddings are 16-d, this model's 8-d"):
        with_enrolled(data, load_gallery("wide", reports, "rec"), keys)


def cross_run(fresh_run, reports: Path, recipe: str, earlier: Path, **more: object) -> Path:
    from tests.conftest import CI_VERIFICATION
    from verify.run import run

    fresh_run(recipe)  # its caches filled: this second run embeds nothing new
    overrides = CI_VERIFICATION | {"evaluate.identification.enrolled_with": str(earlier)} | more
    return run(recipe, overrides, reports_dir=reports)


@pytest.fixture(scope="module")
def cross_build_run(fresh_run, tmp_path_factory) -> tuple[Path, Path, Path]:
    """mxnet-mobilefacenet's w8a8 run saves its gallery; a run of the hybrid build (its 3 head layers
    in float16) searches it: a database enrolled by the old build, searched by the new one."""
    plain = fresh_run("mxnet-mobilefacenet")
    run_dir = cross_run(fresh_run, tmp_path_factory.mktemp("reports-cross"), "mxnet-mobilefacenet-hybrid", plain)
    return run_dir, plain, fresh_run("mxnet-mobilefacenet-hybrid")


def test_a_gallery_enrolled_by_an_older_build(cross_build_run) -> None:
    from verify.face.identification.enrolled import GALLERY_FILE

    run_dir, plain, hybrid = cross_build_run
    metrics, before, own = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, plain, hybrid))
    idf = metrics["identification"]
    with np.load(plain / GALLERY_FILE) as old, np.load(run_dir / GALLERY_FILE) as new:
        provenance = json.loads(str(old["provenance"]))
        assert old["keys"].tolist() == new["keys"].tolist() and len(old["keys"]) == idf["protocol"]["gallery_size"]
        # one float model (the same mxnet source) enrolled both: only the quantized galleries differ
        assert np.allclose(old["float"], new["float"], atol=1e-6)
        assert np.sum(old["quantized"] * new["quantized"], axis=1).mean() < 0.999
    assert provenance["run_id"] == plain.name and provenance["dtype"] == "w8a8" and provenance["float_layers"] == []
    assert provenance["recipe_sha256"] == before["recipe_sha256"] and provenance["rknn_toolkit2"] == "2.5.0"
    assert idf["enrolled_with"]["run_id"] == plain.name
    assert idf["enrolled_with"]["source_sha256"] == metrics["provenance"]["source_sha256"]
    table, mine = idf["settings"], own["identification"]["settings"]
    assert list(table) == ["float/float", "quantized/quantized", "float/quantized", "enrolled/quantized"]
    for name in mine:  # reading an earlier gallery changes none of this run's own figures
        assert (table[name]["rank1"], table[name]["answer_changed"]) == (mine[name]["rank1"], mine[name]["answer_changed"])
    cross, w8a8 = table["enrolled/quantized"], before["identification"]["settings"]["quantized/quantized"]
    assert cross["rank1"] == pytest.approx(CROSS_BUILD["rank1"], abs=0.003)
    assert cross["dir_at_far"][0]["dir"] == pytest.approx(CROSS_BUILD["dir"], abs=0.01)
    assert abs(cross["answer_changed"] - CROSS_BUILD["answer_changed"]) <= 3
    assert w8a8["rank1"] <= cross["rank1"] <= table["quantized/quantized"]["rank1"]
    assert "enrolled/quantized" in idf["gallery_size_curve"][-1] and "enrolled/quantized" in idf["flipped_probes"]
    assert f"{before['recipe']}/{plain.name}" in (run_dir / "report.html").read_text()


def test_an_earlier_run_with_another_gallery_is_refused(fresh_run, tmp_path) -> None:
    """Another seed enrols other images: refused in one line, before any figure is written."""
    from core.errors import RkverifyError

    plain = fresh_run("mxnet-mobilefacenet")
    with pytest.raises(RkverifyError, match=rf"{plain.name}/gallery.npz \[evaluate.identification.enrolled_with\]: "
                       r"another gallery: .* Fix: run both with the same dataset"):
        cross_run(fresh_run, tmp_path, "mxnet-mobilefacenet-hybrid", plain, **{"evaluate.identification.seed": 1})
    assert not any(tmp_path.rglob("metrics.json"))
