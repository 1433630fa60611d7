"""An append-only results table that survives a killed run.

Every row is written to disk (CSV, flushed and fsynced) the moment it is computed, keyed by the columns that identify
it (for an attack sweep: case, attack, eps, region). A rerun of the same sweep reads the file first and skips the keys
that are already there, so nothing finished is computed twice. A partly written last line (the process was killed
mid-write) is dropped on reading, with a warning.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ResultsStore"]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


class ResultsStore:
    """Rows with fixed columns in one CSV file, appended as they come.

    Args:
        path: the CSV file; created with a header when missing.
        columns: every column, in order.
        key: the columns that identify a row; a row whose key is already stored is not written again.
        also: other files of the same columns (another rank's rows) whose keys count as stored, read-only.

    Raises:
        ValueError: an existing file whose header differs from ``columns`` (results of another sweep definition):
            the message names the file and says to choose another output folder or remove it.
    """

    def __init__(
        self, path: str | Path, columns: Sequence[str], key: Sequence[str], also: Sequence[str | Path] = ()
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.key = list(key)
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise ValueError(f"key columns {missing} are not among the columns {self.columns}.")
        self._done: set[tuple[str, ...]] = set()
        self._rows: list[dict[str, str]] = []
        if self.path.is_file() and self.path.stat().st_size > 0:
            self._rows = self._load(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        self._done = {tuple(row[k] for k in self.key) for row in self._rows}
        for other in also:
            self._done.update(tuple(row[k] for k in self.key) for row in self._load(Path(other), repair=False))

    def _load(self, path: Path, repair: bool = True) -> list[dict[str, str]]:
        raw = path.read_text()
        lines = raw.splitlines(keepends=True)
        header = next(csv.reader([lines[0]])) if lines else []
        if header != self.columns:
            raise ValueError(
                f"results file {path} has columns {header}, not {self.columns}: it belongs to another sweep. "
                "Choose another output folder, or remove the file to start afresh."
            )
        if lines and not lines[-1].endswith("\n"):  # killed mid-write: drop the torn line (and rewrite our file)
            warnings.warn(f"dropping a partly written last row of {path} (the run was interrupted).", stacklevel=3)
            lines = lines[:-1]
            if repair:
                path.write_text("".join(lines))
        return list(csv.DictReader(lines))

    def _key_of(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(_text(row[k]) for k in self.key)

    def has(self, row_key: Mapping[str, Any]) -> bool:
        """Whether a row with these key values is stored."""
        return self._key_of(row_key) in self._done

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write the rows whose key is new, durably; returns how many were written."""
        fresh = []
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise ValueError(f"row has columns {sorted(unknown)} that {self.path} does not have.")
            key = self._key_of(row)
            if key in self._done:
                continue
            self._done.add(key)
            fresh.append({c: _text(row.get(c, "")) for c in self.columns})
        if fresh:
            with self.path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns)
                writer.writerows(fresh)
                f.flush()
                os.fsync(f.fileno())
            self._rows.extend(fresh)
        return len(fresh)

    def rows(self) -> list[dict[str, str]]:
        """Every stored row, as strings, in the order written."""
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
