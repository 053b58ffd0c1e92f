"""Face verification pairs in LFW layout: read View 2 pairs.txt, or build pairs from a folder."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import RkverifyError
from core.pairs_file import pair_lines


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    same: bool
    fold: int


@dataclass(frozen=True)
class PairSet:
    pairs: list[Pair]  # only pairs of complete folds
    folds_total: int
    folds_used: list[int]
    source: str  # "pairs.txt" or "built from folder"
    folds_incomplete: list[int] = field(default_factory=list)  # left out: images missing
    folds_skipped: list[int] = field(default_factory=list)  # complete, left out by max_folds

    def first_folds(self, count: int | None) -> PairSet:
        """Only the first `count` used folds (None: all)."""
        if count is None or count >= len(self.folds_used):
            return self
        keep = self.folds_used[:count]
        return PairSet([p for p in self.pairs if p.fold in keep], self.folds_total, keep, self.source,
                       self.folds_incomplete, self.folds_used[count:])


def image_path(root: Path, name: str, number: int) -> Path:
    return root / name / f"{name}_{number:04d}.jpg"


def has_images(root: Path) -> bool:
    return root.is_dir() and any(root.glob("*/*.jpg"))


def read_pairs(root: Path, pairs_file: Path) -> PairSet:
    """View 2 format: 'folds n', then per fold n same lines (name i j), n different (n1 i n2 j).

    Folds with any missing image are left out whole, so each used fold stays balanced.
    """
    folds, per_fold, body = pair_lines(pairs_file, "evaluate.verification.dataset.pairs")
    pairs, used, incomplete = [], [], []
    for fold in range(folds):
        chunk = body[fold * 2 * per_fold:(fold + 1) * 2 * per_fold]
        fold_pairs = []
        for fields in chunk:
            if len(fields) == 3:
                fold_pairs.append(Pair(image_path(root, fields[0], int(fields[1])),
                                       image_path(root, fields[0], int(fields[2])), True, fold))
            else:
                fold_pairs.append(Pair(image_path(root, fields[0], int(fields[1])),
                                       image_path(root, fields[2], int(fields[3])), False, fold))
        if all(p.first.is_file() and p.second.is_file() for p in fold_pairs):
            pairs.extend(fold_pairs)
            used.append(fold)
        else:
            incomplete.append(fold)
    return PairSet(pairs, folds, used, "pairs.txt", incomplete)


def build_pairs(root: Path, folds: int) -> PairSet:
    """Every same-person pair, and as many different-person pairs, dealt round-robin into folds."""
    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}
    same = [(a, b) for files in people.values() for a, b in itertools.combinations(files, 2)]
    firsts = [files[0] for files in people.values() if files]
    different = list(itertools.combinations(firsts, 2))[: len(same)]
    folds = max(2, min(folds, len(same)))
    pairs = [Pair(a, b, True, i % folds) for i, (a, b) in enumerate(same)]
    pairs += [Pair(a, b, False, i % folds) for i, (a, b) in enumerate(different)]
    if not same or not different:
        raise RkverifyError(root, "evaluate.verification.dataset.root",
                            "need at least one person with 2 photos and 2 people to build pairs",
                            "use an LFW-layout folder <Name>/<Name>_0001.jpg with several people")
    return PairSet(sorted(pairs, key=lambda p: p.fold), folds, list(range(folds)), "built from folder")
