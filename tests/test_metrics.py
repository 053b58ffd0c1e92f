"""Comparators and detection decoding on arrays with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.compare import cosine, input_sensitivity, output_agreement
from core.recipe import DetectionEval
from verify.analyses.layers import aggregate, parse_error_analysis
from verify.face.align import ARCFACE_112, align
from verify.face.detection import Detections, agreement, decode, insightface_anchors, nms, priors, summarise


def test_output_agreement_known_values() -> None:
    ref = np.array([3.0, 4.0, 0.0])
    noisy = ref + np.array([0.3, -0.4, 0.0])  # noise norm 0.5, signal norm 5
    result = output_agreement(ref, noisy)
    assert math.isclose(result["sqnr_db"], 20.0, abs_tol=1e-6)
    assert math.isclose(result["relative_l2"], 0.1, abs_tol=1e-9)
    assert math.isclose(result["max_abs_error"], 0.4, abs_tol=1e-9)
    assert result["nonfinite"] == 0
    assert math.isclose(output_agreement(ref, 2 * ref)["norm_ratio"], 2.0)
    assert math.isclose(output_agreement(ref, 2 * ref)["cosine"], 1.0)  # cosine blind to scale; norm is not


def test_nonfinite_outputs_are_counted() -> None:
    result = output_agreement(np.ones(4), np.array([1.0, np.nan, np.inf, 1.0]))
    assert result["nonfinite"] == 2 and result["cosine"] < 0.8


def test_input_sensitivity_separates_inputs() -> None:
    a, b = {"y": np.array([1.0, 0.0])}, {"y": np.array([0.0, 1.0])}
    assert input_sensitivity([a, b])["y"] == 0.0
    assert math.isclose(cosine(a["y"], a["y"]), 1.0)


def test_priors_match_retinaface_640() -> None:
    anchors = priors(DetectionEval(), 640, 640)
    assert anchors.shape == (16800, 4)
    np.testing.assert_allclose(anchors[0], [4 / 640, 4 / 640, 16 / 640, 16 / 640])
    np.testing.assert_allclose(anchors[1], [4 / 640, 4 / 640, 32 / 640, 32 / 640])


def test_decode_finds_the_one_confident_anchor() -> None:
    cfg = DetectionEval()
    n = 16800
    conf = np.tile([1.0, 0.0], (n, 1))
    conf[12000] = [0.05, 0.95]
    outputs = {"loc": np.zeros((1, n, 4)), "conf": conf[None], "landmarks": np.zeros((1, n, 10))}
    faces = decode(outputs, ["loc", "conf", "landmarks"], cfg, (640, 640), scale=0.5)
    assert len(faces.boxes) == 1 and math.isclose(faces.scores[0], 0.95)
    anchor = priors(cfg, 640, 640)[12000] * 640
    centre = (faces.boxes[0, :2] + faces.boxes[0, 2:]) / 2
    np.testing.assert_allclose(centre, anchor[:2] / 0.5)  # zero offsets: box centred on its anchor
    np.testing.assert_allclose(faces.landmarks[0], np.tile(anchor[:2] / 0.5, (5, 1)))


INSIGHTFACE = DetectionEval(decoder="insightface", steps=[32, 16, 8], anchor_scales=[[32, 16], [8, 4], [2, 1]])
NAMES = [f"{kind}{s}" for s in (32, 16, 8) for kind in ("cls", "box", "ldm")]


def test_insightface_anchors_match_generate_anchors_fpn() -> None:
    """InsightFace's own values: generate_anchors(16, [1], [2, 1]) for stride 8 is
    [[-8, -8, 23, 23], [0, 0, 15, 15]], shifted by the stride along x first."""
    anchors = insightface_anchors(INSIGHTFACE, [(20, 20), (40, 40), (80, 80)])
    assert anchors.shape == ((400 + 1600 + 6400) * 2, 4)
    np.testing.assert_allclose(anchors[:2], [[-248, -248, 263, 263], [-120, -120, 135, 135]])  # stride 32: 512, 256
    stride8 = anchors[2 * (400 + 1600):]
    np.testing.assert_allclose(stride8[:4], [[-8, -8, 23, 23], [0, 0, 15, 15], [0, -8, 31, 23], [8, 0, 23, 15]])


def test_insightface_decode_reads_the_face_channels_anchor_major() -> None:
    """Class maps hold (background a0, a1, face a0, a1); a face on anchor 1 of cell (y=3, x=5) at
    stride 16 with zero deltas is that anchor's own box, landmarks at its centre."""
    shapes = {32: 20, 16: 40, 8: 80}
    outputs = {}
    for stride, side in shapes.items():
        cls = np.zeros((1, 4, side, side))
        cls[:, :2] = 1.0
        outputs[f"cls{stride}"] = cls
        outputs[f"box{stride}"] = np.zeros((1, 8, side, side))
        outputs[f"ldm{stride}"] = np.zeros((1, 20, side, side))
    outputs["cls16"][0, 3, 3, 5] = 0.9  # face score of anchor 1 (scale 4 -> 64 px) at y=3, x=5
    faces = decode(outputs, NAMES, INSIGHTFACE, (640, 640), scale=1.0)
    assert len(faces.boxes) == 1 and math.isclose(faces.scores[0], 0.9)
    # anchor 1 of stride 16: scale 4 x base 16 = 64 px around (7.5, 7.5), shifted by (5 * 16, 3 * 16)
    np.testing.assert_allclose(faces.boxes[0], [80 - 24, 48 - 24, 80 + 39, 48 + 39])
    np.testing.assert_allclose(faces.landmarks[0], np.tile([87.5, 55.5], (5, 1)))


def test_alignment_fitted_to_the_height_is_the_centre_of_the_square_one() -> None:
    """template_fit 'height': a 112x96 face is the 112x112 ArcFace face without 8 columns each side."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)
    landmarks = ARCFACE_112 * 1.4 + 50  # a face 1.4x the template's size, somewhere in the photo
    square = align(photo, landmarks, (112, 112))
    narrow = align(photo, landmarks, (112, 96), fit="height")
    np.testing.assert_array_equal(narrow, square[:, 8:104])


def test_nms_keeps_the_best_of_overlapping() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=float)
    assert list(nms(boxes, np.array([0.9, 0.95, 0.5]), 0.4)) == [1, 2]


def faces(*boxes: list[float], score: float = 0.9) -> Detections:
    arr = np.array(boxes, dtype=float).reshape(-1, 4)
    points = np.repeat(arr[:, None, :2], 5, axis=1)
    return Detections(arr, np.full(len(arr), score), points)


def test_agreement_matches_one_to_one() -> None:
    ref = faces([0, 0, 10, 10], [100, 100, 120, 120])
    test = faces([0, 0, 10, 11], [300, 300, 310, 310], score=0.8)
    result = agreement(ref, test, 0.5)
    assert result["matched"] == 1 and result["reference_faces"] == 2 and result["test_faces"] == 2
    assert math.isclose(result["ious"][0], 100 / 110)
    summary = summarise([result])
    assert summary["match_rate"] == 0.5 and summary["unmatched_quantized"] == 1
    assert math.isclose(summary["mean_score_drift"], 0.1)


SAMPLE = """
layer_name                      simulator_error
                               entire              single
                             cos      euc        cos      euc
-------------------------------------------------------------
[Input] input                1.00000 | 0.00000   1.00000 | 0.00000
[Conv] /a/Conv_output_0      \x1b[1;33m0.90000\x1b[0m | 12.5000   0.99000 | 1.50000
[PRelu] /a/PRelu_output_0    0.80000 | \x1b[1;33m150.000\x1b[0m   0.95000 | 3.00000
"""


def test_parse_and_aggregate_error_analysis() -> None:
    table = parse_error_analysis(SAMPLE)
    assert list(table["op"]) == ["Input", "Conv", "PRelu"]
    assert table.loc[2, "entire_euc"] == 150.0 and table.loc[1, "entire_cos"] == 0.9
    other = table.copy()
    other["single_cos"] = other["single_cos"] - 0.1
    agg = aggregate([table, other])
    row = agg[agg["layer"] == "/a/PRelu_output_0"].iloc[0]
    assert math.isclose(row["single_cos_worst"], 0.85) and math.isclose(row["single_cos_mean"], 0.9)
    assert list(agg["order"]) == [0, 1, 2] and isinstance(agg, pd.DataFrame)


BOARD_SAMPLE = """
layer_name                simulator_error                      runtime_error
                        entire              single             entire              single_sim
                      cos      euc        cos      euc        cos      euc        cos      euc
---------------------------------------------------------------------------------------------
[Input] data          1.00000 | 0.0       1.00000 | 0.0       1.00000 | 0.0       1.00000 | 0.0
[Conv] 526            0.99717 | 11.871    0.99725 | 11.776    0.99100 | 14.200    0.99300 | 2.5000
"""


def test_board_columns_are_read_when_present() -> None:
    table = parse_error_analysis(BOARD_SAMPLE)
    assert table.loc[1, "single_sim_cos"] == 0.993 and table.loc[1, "board_entire_euc"] == 14.2
    agg = aggregate([table])
    assert agg.loc[1, "single_sim_cos_worst"] == 0.993 and agg.loc[1, "single_cos_worst"] == 0.99725
    assert "single_sim_cos" not in parse_error_analysis(SAMPLE)


def test_a_gate_on_an_unmeasured_figure_fails() -> None:
    from core.recipe import Gates
    from verify.gates import evaluate_gates

    metrics = {"outputs": {"y": {"cosine": {"mean": 0.995}, "sqnr_db": {"mean": 30.0}}}}
    results = {r.gate: r for r in evaluate_gates(Gates(min_output_cosine=0.99, min_worst_layer_cosine=0.9,
                                                       max_accuracy_drop=0.01), metrics)}
    assert results["min_output_cosine"].passed
    assert not results["min_worst_layer_cosine"].passed and math.isnan(results["min_worst_layer_cosine"].value)
    assert not results["max_accuracy_drop"].passed


def test_stage_attribution_names_the_stage_that_loses_most() -> None:
    """native -> ONNX -> fp16 -> int8 -> board: the board stage here loses the most and is named."""
    from core.recipe import load_recipe
    from verify.analyses.stages import stage_attribution

    rng = np.random.default_rng(0)
    recipe = load_recipe("arcface-mobilefacenet").recipe
    base = [{"output0": rng.normal(size=128)} for _ in range(3)]
    noisy = lambda scale: [{"output0": o["output0"] + rng.normal(scale=scale, size=128)} for o in base]  # noqa: E731
    chain = [("native", base), ("ONNX", noisy(1e-6)), ("fp16", noisy(1e-3)), ("int8", noisy(0.05)),
             ("board rk3588 (runtime)", noisy(0.5))]
    result = stage_attribution(recipe, chain)
    assert [s["to"] for s in result["stages"]] == ["ONNX", "fp16", "int8", "board rk3588 (runtime)"]
    assert result["drift_starts_at"] == "board rk3588 (runtime)"
