"""One error type a user can act on: it names the file, the field and the fix."""
from __future__ import annotations

from pathlib import Path


class RkverifyError(Exception):
    """A problem with the user's input, reported as one line: where, what, how to fix."""

    def __init__(self, where: str | Path, field: str, problem: str, fix: str) -> None:
        self.where = str(where)
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(str(self))

    def __reduce__(self) -> tuple:  # picklable, so a worker process can hand it back whole
        return (type(self), (self.where, self.field, self.problem, self.fix))

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.where}{field}: {self.problem}. Fix: {self.fix}"
