"""Where a result came from: when, by which robustseg (version and commit), from which data and checkpoint, and
which MLflow run holds it. Every report and MLflow run states it."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import robustseg
from robustseg.tracking import bundle_value

__all__ = ["git_commit", "provenance"]


def git_commit() -> str:
    """The commit of robustseg's source (``<sha>`` or ``<sha>-dirty``), or ``unknown`` outside a git checkout."""
    source = Path(robustseg.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{sha}-dirty" if dirty else sha


def _absolute(value: Any) -> Any:
    return str(Path(value).expanduser().resolve()) if isinstance(value, str | Path) and str(value) else value


def provenance(
    checkpoint: str | Path | None = None,
    checkpoint_sha256: str | None = None,
    mlflow_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """The provenance of a result; in a bundle run the datalist (or dataset folder) is read from its config."""
    datalist = bundle_value("datalist")
    data = {"datalist": _absolute(datalist)} if isinstance(datalist, str | Path) else {}
    if not data:
        dataset_dir = bundle_value("dataset_dir")
        if isinstance(dataset_dir, str | Path):
            data = {"dataset_dir": _absolute(dataset_dir)}
    bundle_root = bundle_value("bundle_root")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "robustseg": robustseg.__version__,
        "commit": git_commit(),
        **({"bundle": _absolute(bundle_root)} if isinstance(bundle_root, str | Path) else {}),
        **data,
        **({"checkpoint": _absolute(checkpoint)} if checkpoint is not None else {}),
        **({"checkpoint_sha256": checkpoint_sha256} if checkpoint_sha256 else {}),
        **({"mlflow_run_id": mlflow_run_id} if mlflow_run_id else {}),
        **({"tracking_uri": tracking_uri} if tracking_uri else {}),
    }
