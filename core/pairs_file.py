"""LFW View 2 `pairs.txt`, read once for everyone: the verification protocol (its folds) and the
calibration sets that must leave its people out."""
from __future__ import annotations

from pathlib import Path

from core.errors import RkverifyError


def pair_lines(pairs_file: Path, field: str) -> tuple[int, int, list[list[str]]]:
    """(folds, pairs per half-fold, the pair lines split): 'folds n', then per fold n same-person
    lines (name i j) and n different-person lines (name1 i name2 j)."""
    lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    try:
        folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise RkverifyError(pairs_file, field, "first line must be '<folds> <pairs per half-fold>' (LFW View 2: "
                            "'10 300')", "use LFW's pairs.txt") from None
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise RkverifyError(pairs_file, field, f"expected {folds * 2 * per_fold} pair lines, found {len(body)}",
                            "use an unmodified pairs.txt")
    return folds, per_fold, body


def people_in_pairs(pairs_file: Path, field: str = "not_in_pairs") -> set[str]:
    """Every person the pairs file names."""
    named: set[str] = set()
    for fields in pair_lines(pairs_file, field)[2]:
        named.update(fields[0::2] if len(fields) == 4 else fields[:1])
    return named
