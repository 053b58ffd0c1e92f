"""`rkverify.py clean`: what the suite keeps growing, listed with its size, removed only when asked.

- old runs: every run folder of a recipe but its newest `keep` (reports/<recipe>/<run-id>/), and
  likewise its sweeps (reports/<recipe>/sweeps/<sweep-id>/); reports/index.html is rendered again;
- hybrid variants: models/<name>/hybrid/ (the toolkit's step-1 graphs of each hybrid candidate and fix);
- caches: the cache folder (models/cache/, or RKVERIFY_CACHE: detections, embeddings and stored runs,
  keyed by content: they are rebuilt when needed);
- leftovers of runs that were killed (SIGKILL, a power cut): `*.partial`, `.<name>.*.tmp` temp files,
  `.<folder>.before-run-<pid>` / `.failed-run-<pid>` folders of a process that is gone.

A dry run (the default) prints every path and its size; `--apply` removes them. A models/<name>/ a run
is writing (its lock is held) is left alone.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from convert.run_guard import lock_file

CATEGORIES = ("runs", "hybrid", "caches", "leftovers")
RUN_GUARD_FOLDER = re.compile(r"^\..+\.(before|failed)-run-(\d+)$")


@dataclass(frozen=True)
class Item:
    category: str
    path: Path
    bytes: int


def size_of(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def old_runs(reports: Path, keep: int) -> list[Path]:
    """Run and sweep folders of each recipe beyond its newest `keep` (ids sort by their UTC start)."""
    found: list[Path] = []
    if not reports.is_dir():
        return found
    for recipe in sorted(p for p in reports.iterdir() if p.is_dir() and not p.name.startswith(".")):
        runs = sorted(p for p in recipe.iterdir() if (p / "metrics.json").is_file())
        sweeps = sorted(p for p in (recipe / "sweeps").iterdir() if (p / "sweep.json").is_file()) \
            if (recipe / "sweeps").is_dir() else []
        found += runs[:max(0, len(runs) - keep)] + sweeps[:max(0, len(sweeps) - keep)]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in (r for r in roots if r.is_dir()):
        for path in root.rglob("*"):
            guard = RUN_GUARD_FOLDER.match(path.name)
            if guard and path.is_dir() and not _alive(int(guard.group(2))):
                found.append(path)
            elif path.is_file() and (path.name.endswith(".partial") or
                                     (path.name.startswith(".") and path.name.endswith(".tmp"))):
                found.append(path)
    return found


def _in_use(model_dir: Path) -> bool:
    """A run holds this folder's lock (convert.run_guard)."""
    path = lock_file(model_dir)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def plan(reports: Path, models: Path, calib: Path, caches: Path, keep: int,
         categories: tuple[str, ...] = CATEGORIES) -> list[Item]:
    """Everything `clean` would remove, with its size."""
    paths: list[tuple[str, Path]] = []
    if "runs" in categories:
        paths += [("runs", p) for p in old_runs(reports, keep)]
    model_dirs = sorted(p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if models.is_dir() else []
    if "hybrid" in categories:
        paths += [("hybrid", d / "hybrid") for d in model_dirs if (d / "hybrid").is_dir() and not _in_use(d)]
    if "caches" in categories and caches.is_dir():
        paths.append(("caches", caches))
    if "leftovers" in categories:
        paths += [("leftovers", p) for p in leftovers([reports, models, calib])
                  if not any(_in_use(d) for d in model_dirs if d in p.parents)]
    return [Item(category, path, size_of(path)) for category, path in paths]


def remove(items: list[Item]) -> None:
    for item in items:
        if item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def clean(reports: Path, models: Path, calib: Path, caches: Path, keep: int, categories: tuple[str, ...],
          apply: bool) -> list[str]:
    """The console lines of `rkverify.py clean`; removes only with `apply`."""
    items = plan(reports, models, calib, caches, keep, categories)
    verb = "removed" if apply else "would remove"
    lines = [f"{verb} [{item.category}] {item.path} ({megabytes(item.bytes)})" for item in items]
    total = megabytes(sum(item.bytes for item in items))
    if apply:
        remove(items)
        if any(item.category == "runs" for item in items):
            from verify.report.run_report import render_index  # jinja2 and pandas: only when runs went

            render_index(reports)
        lines.append(f"clean: removed {len(items)} paths, {total}")
    else:
        lines.append(f"clean: dry run, {len(items)} paths, {total}; run again with --apply to remove them")
    return lines
