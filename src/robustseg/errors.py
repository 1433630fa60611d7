"""How a robustseg error reaches the user: one line naming the file or option and the fix, exit status 2.

robustseg checks its inputs and raises ``ValueError`` (or ``FileNotFoundError``, or an error class of its own) with a
message that says what is wrong, where, and how to fix it. In a bundle run MONAI wraps that error in a
``RuntimeError: Failed to evaluate ConfigExpression`` under a long chained traceback; the user's message is buried.

:func:`user_error` finds robustseg's error in such a chain. The ``robustseg`` command and, through
:func:`install`, ``python -m monai.bundle run`` (and ``torchrun -m monai.bundle run``) end with that one message and
exit status 2 instead; ``ROBUSTSEG_DEBUG=1`` (or ``robustseg --debug``) shows the whole traceback. Files and folders a
run created before it failed (announced with :func:`creating`) are removed first, so a failed run leaves nothing
behind that was not there before. Any other error (a bug, a MONAI or torch error) keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "about",
    "creating",
    "debug_requested",
    "discard_created",
    "install",
    "is_bundle_run",
    "keep_created",
    "one_line",
    "report",
    "user_error",
]

PACKAGE_DIR = str(Path(__file__).resolve().parent)

#: Errors that robustseg raises about its inputs (from robustseg's own code; the same types raised elsewhere are bugs
#: or library errors and keep their traceback).
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
)

_created: list[Path] = []


def debug_requested() -> bool:
    """Whether ``ROBUSTSEG_DEBUG`` asks for tracebacks."""
    return os.environ.get("ROBUSTSEG_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _raised_by_robustseg(error: BaseException) -> bool:
    if type(error).__module__.split(".")[0] == "robustseg":
        return True
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(PACKAGE_DIR + os.sep)


def user_error(error: BaseException) -> BaseException | None:
    """The error robustseg raised about its input, found in ``error``'s chain of causes; ``None`` if there is none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        ours = isinstance(current, INPUT_ERRORS) or type(current).__module__.split(".")[0] == "robustseg"
        if ours and isinstance(current, Exception) and _raised_by_robustseg(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace runs, newlines included, become one space)."""
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text} ({error.filename})"
    return text or type(error).__name__


@contextmanager
def about(option: str) -> Iterator[None]:
    """Prefix a ``ValueError`` raised in the block with the option it is about (the flag a user sets).

    Example::

        with about("--attack_eps (robustseg audit: --eps)"):
            check_budgets(eps)
    """
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{option}: {one_line(error)}") from error


def report(error: BaseException, prog: str = "robustseg") -> str:
    """The line printed for ``error``."""
    return f"{prog}: error: {one_line(error)}"


def creating(path: str | Path) -> Path:
    """Announce that this process is about to create ``path``: it is removed again if the run fails on bad input.

    Call it before the file or folder exists; a path that already exists is left alone (it was there before).
    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if not path.exists():
        # the first missing ancestor is what the run creates: remove it whole, parents included
        top = path
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        _created.append(top.resolve())
    return path


def keep_created() -> None:
    """Forget the announced paths: the run has produced results that a later failure must not remove."""
    _created.clear()


def discard_created() -> list[Path]:
    """Remove the paths announced with :func:`creating` (newest first); returns those removed."""
    removed = []
    for path in reversed(_created):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    _created.clear()
    return removed


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # a closed stream: nothing to flush
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.flush()


def _excepthook(previous: Any) -> Any:
    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        found = user_error(error)
        if found is None or debug_requested():
            previous(kind, error, tb)
            return
        discard_created()
        _flush_logs()
        print(report(found), file=sys.stderr, flush=True)
        raise SystemExit(2)

    hook.robustseg = True  # type: ignore[attr-defined]
    return hook


def is_bundle_run() -> bool:
    """Whether this process is ``python -m monai.bundle`` (also under ``torchrun``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "monai.bundle.__main__"


def install() -> None:
    """Make uncaught robustseg errors end the process with their one line and exit status 2 (once per process)."""
    if getattr(sys.excepthook, "robustseg", False):
        return
    sys.excepthook = _excepthook(sys.excepthook)
