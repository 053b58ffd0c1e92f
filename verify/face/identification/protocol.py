"""The seeded 1:N identification split of LFW, built from the images the face pass embeds.

Over the images of the evaluated View 2 pairs (so no image is embedded twice): each person with
two or more of those images enrols one (chosen with the seed), their other images are known
probes (closed set: rank-k, CMC); people with one image are unknown probes, never enrolled (open
set: DIR@FAR). Distractors, enrolled people who are never searched for, are LFW images of people
outside the evaluated folds. People whose photos calibrated the model are in none of these.

The reference is BLUFR's open-set identification on LFW (10 trials of 1,000 enrolled people and
4,350 known / 4,357 unknown probes over all of LFW); its list files need all 13,233 images and
cannot be rebuilt from folds 1-8, so this split follows its shape (one enrolled image, genuine and
impostor probes, DIR at FAR 1% and 0.1%) on the folds at hand, with one seeded trial.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

DESCRIPTION = ("one seeded trial over the images of the evaluated View 2 pairs ({folds}): people with 2+ images "
               "enrol one, their other images are known probes; people with one image are unknown probes; "
               "distractors are LFW images of people outside the evaluated folds; calibration people excluded. "
               "Shaped on BLUFR's open-set identification, whose lists need all of LFW (not here).")


def person(path: Path) -> str:
    """LFW layout: <root>/<Name>/<Name>_<NNNN>.jpg."""
    return path.parent.name


@dataclass(frozen=True)
class Split:
    gallery: list[Path]  # one enrolled image per known person
    known_probes: list[Path]
    unknown_probes: list[Path]
    excluded_people: list[str]  # in the evaluated images but calibrated the model
    seed: int

    def counts(self) -> dict[str, int]:
        return {"enrolled_people": len(self.gallery), "known_probes": len(self.known_probes),
                "unknown_probes": len(self.unknown_probes), "excluded_people": len(self.excluded_people)}


def build_split(images: list[Path], seed: int, excluded: frozenset[str] = frozenset()) -> Split:
    """Gallery / known probes / unknown probes from `images`, leaving out people in `excluded`."""
    by_person: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(set(images)):
        by_person[person(path)].append(path)
    rng = random.Random(seed)
    gallery: list[Path] = []
    known: list[Path] = []
    unknown: list[Path] = []
    for name in sorted(by_person):
        if name in excluded:
            continue
        paths = by_person[name]
        if len(paths) == 1:
            unknown.append(paths[0])
            continue
        enrolled = rng.choice(paths)
        gallery.append(enrolled)
        known.extend(p for p in paths if p != enrolled)
    return Split(gallery, known, unknown, sorted(excluded & set(by_person)), seed)


def choose_distractors(root: Path, evaluated: list[Path], excluded: set[str], count: int, seed: int) -> list[Path]:
    """Up to `count` LFW images of people neither evaluated nor excluded, in a seeded order (a
    gallery of n distractors takes the first n, so larger galleries contain the smaller ones)."""
    if count <= 0:
        return []
    used = {person(p) for p in evaluated} | excluded
    pool = sorted(p.resolve() for p in root.glob("*/*.jpg") if p.parent.name not in used)
    random.Random(seed).shuffle(pool)
    return pool[:count]
