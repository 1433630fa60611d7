"""Tiny phantom data for running the bundle's workflows end to end on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import config_files, copy_bundle, run_bundle

from robustseg.data.phantom import PhantomConfig, make_phantom_dataset


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight phantom cases at 4 mm: 4 training, 2 validation (one per rank of the gloo test), 2 test."""
    root = tmp_path_factory.mktemp("phantoms")
    make_phantom_dataset(
        root, num_cases=8, seed=0, config=PhantomConfig(spacing=4.0), fractions=(0.5, 0.25, 0.25), progress=False
    )
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path) -> Path:
    """A private copy of the bundle trained for 2 tiny epochs on the phantoms (``models/model.pt``)."""
    bundle = copy_bundle(tmp_path_factory.mktemp("bundle"))
    run_bundle(bundle, phantom_root, config_files(bundle))
    return bundle
