"""Progress that reads well on a terminal and in a log file.

On a terminal, :func:`progress` is a tqdm bar. Written to a file (a log, a CI job, ``nohup``), a bar would be saved as
thousands of ``\\r``-joined redraws; there it prints one line now and then instead::

    sweep: 5/12 cases (42 %), 0.31 cases/s, elapsed 0:00:16, ETA 0:00:22

at the first and the last step and at most every ``ROBUSTSEG_PROGRESS_SECONDS`` (default 30) in between.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

__all__ = ["LineProgress", "format_duration", "interval_seconds", "on_terminal", "progress"]

T = TypeVar("T")

DEFAULT_SECONDS = 30.0


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def interval_seconds() -> float:
    """Seconds between two progress lines in a log file (``ROBUSTSEG_PROGRESS_SECONDS``, default 30)."""
    text = os.environ.get("ROBUSTSEG_PROGRESS_SECONDS", "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LineProgress:
    """Periodic one-line progress for streams that are not terminals; the subset of tqdm's API robustseg uses."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        disable: bool = False,
        stream: TextIO | None = None,
        every: float | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.disable = disable
        self.stream = stream
        self.every = interval_seconds() if every is None else every
        self.start = time.monotonic()
        self.last: float | None = None
        self.postfix = ""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress was built without an iterable; call update() instead.")
        for item in self.iterable:
            yield item
            self.update()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        finished = self.total is not None and self.n >= self.total
        if self.last is None or finished or now - self.last >= self.every:
            self.write_line(now)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        units = self.unit if self.unit.endswith("s") else self.unit + "s"
        parts = [f"{self.n}/{self.total} {units}" if self.total is not None else f"{self.n} {units}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        parts.append(f"{rate:.3g} {units}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.3g} s/{self.unit}")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.total is not None and rate > 0 and self.n < self.total:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        text = ", ".join(parts)
        if self.postfix:
            text += f", {self.postfix}"
        return f"{self.desc}: {text}" if self.desc else text

    def write_line(self, now: float | None = None) -> None:
        if self.disable:
            return
        self.last = time.monotonic() if now is None else now
        stream = self.stream if self.stream is not None else sys.stderr
        print(self.line(now), file=stream, flush=True)

    def close(self) -> None:
        pass


def progress(
    iterable: Iterable[T] | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
) -> Any:
    """A tqdm bar on a terminal, else a :class:`LineProgress`; iterate over it, or ``update()`` it (and close it)."""
    if on_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable)
