"""Step announcements with elapsed time, so a user sees what a long run is doing."""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from convert.faults import STEP_NOTE


@contextlib.contextmanager
def step(title: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    print(f"[rkverify] {title} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        yield
    except Exception as exc:
        # the innermost step names where a run failed, in the one line the user gets
        if not any(note.startswith(STEP_NOTE) for note in getattr(exc, "__notes__", [])):
            exc.add_note(f"{STEP_NOTE}{title}")
        raise
    elapsed = time.perf_counter() - start
    if timings is not None:
        timings[title] = round(elapsed, 3)
    print(f"[rkverify] {title}: done in {elapsed:.1f}s", file=sys.stderr, flush=True)
