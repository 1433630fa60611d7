"""The error a dataset check raises: one problem of one case, naming the case, the file and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CaseValidationError", "skip_hint"]


def skip_hint(root: str | Path) -> str:
    """How to leave an invalid case out, as the command a user runs (not a Python keyword)."""
    return f"or leave the case out: rewrite the datalist, `robustseg datalist --root {root} --skip-invalid --overwrite`"


class CaseValidationError(ValueError):
    """One problem of one case: the case id, the file concerned and what is wrong with it (and the fix).

    Args:
        case_id: id of the case (the datalist's ``case_id``).
        path: the file concerned (or the case, for a record that names no file).
        reason: what is wrong and how to fix it.
        problems: for an error that gathers all problems of a case, the single problems.
    """

    def __init__(
        self, case_id: str, path: str | Path, reason: str, problems: Sequence[CaseValidationError] = ()
    ) -> None:
        self.case_id = case_id
        self.path = str(path)
        self.reason = reason
        self.problems = list(problems)
        super().__init__(f"case {case_id!r}: {self.path}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.case_id, self.path, self.reason, self.problems)
