"""Comparators: two result dicts in, per-output agreement figures out. No engine knowledge."""
from __future__ import annotations

from typing import Any

import numpy as np

# guards against 0/0 only: a fixed 1e-12 swamped the norms of tiny outputs (an untrained
# MobileFaceNet's embeddings are ~1e-6) and reported cosine 0.99 for identical arrays
EPS = 1e-300


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the flattened arrays; two all-zero (or empty) arrays agree (1.0)."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denominator = np.linalg.norm(a64) * np.linalg.norm(b64)
    if denominator == 0:
        return float(np.array_equal(a64, b64))
    return float(a64 @ b64 / denominator)


# |norm ratio - 1| above this while the cosine is >= COSINE_HIGH: "cos 1.0 but euc 69", a tensor
# whose direction survives quantization but whose scale does not (PRelu slopes, clipped ranges)
NORM_OFF = 0.10
COSINE_HIGH = 0.99


def disagree(cosine_value: float, norm_ratio: float) -> bool:
    """Cosine says fine, the norm says otherwise: a cosine-only check would miss it."""
    return bool(cosine_value >= COSINE_HIGH and abs(norm_ratio - 1) > NORM_OFF)


# float16's smallest normal number. A float output whose RMS is below it (random weights, a dead branch)
# is not carried at full precision by the NPU's float16 path: its cosine and SQNR measure rounding at
# the bottom of the number range, not the conversion (seen: SQNR -2672 dB, relative L2 4e283)
MIN_COMPARABLE_RMS = 6.1e-5


def too_small(reference_rms: float) -> bool:
    return reference_rms < MIN_COMPARABLE_RMS


def output_agreement(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Cosine, SQNR (dB), max abs error, relative L2, norm ratio and non-finite count of `test`, and the
    reference's RMS (to tell outputs too small to compare)."""
    ref = reference.astype(np.float64).ravel()
    out = test.astype(np.float64).ravel()
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs test {test.shape}")
    nonfinite = int((~np.isfinite(out)).sum())
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    noise = ref - out
    signal_power, noise_power = float(ref @ ref), float(noise @ noise)
    return {
        "cosine": cosine(ref, out),
        "sqnr_db": float(10 * np.log10((signal_power + EPS) / (noise_power + EPS))),
        "max_abs_error": float(np.abs(noise).max(initial=0.0)),
        "relative_l2": float(np.sqrt(noise_power) / (np.sqrt(signal_power) + EPS)),
        "norm_ratio": float(np.linalg.norm(out) / (np.linalg.norm(ref) + EPS)),
        "nonfinite": nonfinite,
        "reference_rms": float(np.sqrt(signal_power / max(1, ref.size))),
    }


def agreement_per_input(names: list[str], reference: list[dict[str, np.ndarray]],
                        test: list[dict[str, np.ndarray]]) -> list[dict[str, dict[str, float]]]:
    """output_agreement of every named output, input by input."""
    return [{n: output_agreement(r[n], t[n]) for n in names} for r, t in zip(reference, test)]


def input_sensitivity(float_outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Mean cosine between float outputs of *different* images, per output.

    A drift cosine only means something next to this: if two different faces already give
    a cosine of 0.99, a float-vs-quantized cosine of 0.99 proves nothing.
    """
    names = list(float_outputs[0]) if float_outputs else []
    result = {}
    for name in names:
        pairs = [cosine(float_outputs[i][name], float_outputs[i + 1][name]) for i in range(len(float_outputs) - 1)]
        result[name] = float(np.mean(pairs)) if pairs else float("nan")
    return result


def summarise_outputs(per_image: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in per_image[0]:
        values = {k: np.array([img[name][k] for img in per_image]) for k in per_image[0][name]}
        summary[name] = {k: {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
                         for k, v in values.items() if k != "nonfinite"}
        summary[name]["nonfinite"] = int(values["nonfinite"].sum())
        summary[name]["cos_norm_disagree"] = disagree(summary[name]["cosine"]["mean"], summary[name]["norm_ratio"]["mean"])
        summary[name]["too_small"] = too_small(summary[name]["reference_rms"]["mean"])
    return summary
