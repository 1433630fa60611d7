"""Constants and helpers for the bundle tests (imported by the test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "brats_unet3d"

TINY: dict[str, Any] = {
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
    "roi_size": [32, 32, 32],
    "sw_batch_size": 2,
    "num_samples": 1,
    "max_epochs": 2,
    "val_interval": 1,
    "num_workers": 0,
    "device": "$torch.device('cpu')",
    "amp": False,
}


def copy_bundle(dest: Path) -> Path:
    """A private copy of the bundle's configs, so runs write models/ and eval/ under ``dest``."""
    shutil.copytree(BUNDLE / "configs", dest / "configs")
    return dest


def config_files(bundle: Path, *overlays: str) -> list[str]:
    return [str(bundle / "configs" / "train.json"), *(str(bundle / "configs" / o) for o in overlays)]


def run_bundle(
    bundle: Path,
    data: Path,
    files: list[str],
    workflow_type: str = "train",
    settings: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """Run a bundle workflow through MONAI's ``ConfigWorkflow`` with tiny ``settings`` (default: the 3-D bundle's
    :data:`TINY`); returns the workflow."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(bundle),
        dataset_dir=str(data),
        **{**(TINY if settings is None else settings), **overrides},
    )
    workflow.initialize()
    assert not workflow.check_properties(), "the bundle lacks required workflow properties"
    workflow.run()
    workflow.finalize()
    return workflow


def bundle_command(
    bundle: Path, data: Path, files: list[str], settings: dict[str, Any] | None = None, **overrides: Any
) -> list[str]:
    """``python -m monai.bundle run`` of ``files`` with tiny ``settings`` (default :data:`TINY`), as a subprocess
    argument list."""
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(files)]
    command += [
        "--bundle_root",
        str(bundle),
        "--dataset_dir",
        str(data),
        "--meta_file",
        str(bundle / "configs" / "metadata.json"),
    ]
    for key, value in {**(TINY if settings is None else settings), **overrides}.items():
        command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return command
