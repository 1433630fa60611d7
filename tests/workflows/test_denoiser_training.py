"""Pieces of the denoiser's training workflow: truncated timesteps, fixed validation noise, final weights, checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.networks.schedulers import DDPMScheduler

from robustseg.certification.denoiser import IntensityMapping, timestep_for_sigma
from robustseg.workflows.denoiser_training import (
    DenoiserPrepareBatch,
    DenoiserSaver,
    GaussianNoisePrepareBatch,
    check_denoiser_settings,
    max_train_timestep,
)


def test_prepare_batch_draws_timesteps_up_to_the_maximum_only() -> None:
    torch.manual_seed(0)
    images = torch.rand((4000, 1, 2, 2))
    _, target, _, kwargs = DenoiserPrepareBatch(1000, max_timestep=9)({"image": images})
    assert torch.equal(target, kwargs["noise"]) and target.shape == images.shape
    assert set(kwargs["timesteps"].tolist()) == set(range(10))
    full = DenoiserPrepareBatch(1000)({"image": images})[3]["timesteps"]
    assert full.max() > 900
    with pytest.raises(ValueError, match=r"max_timestep must be in \[0, 999\]"):
        DenoiserPrepareBatch(1000, max_timestep=1000)


def test_max_train_timestep_is_t_star_of_the_largest_sigma() -> None:
    scheduler, mapping = DDPMScheduler(1000), IntensityMapping(4.0)
    assert max_train_timestep(scheduler, mapping, None) is None
    assert max_train_timestep(scheduler, mapping, 1.0) == timestep_for_sigma(scheduler, 0.25)


def test_validation_noise_has_sigma_and_repeats_after_each_reset() -> None:
    clean = torch.zeros((2, 3, 40, 50))
    prepare = GaussianNoisePrepareBatch(sigma=0.5, seed=3)
    noisy, target, args, kwargs = prepare({"image": clean, "label": torch.zeros(1)})
    assert torch.equal(target, clean) and args == () and kwargs == {"sigma": 0.5}
    assert noisy.std().item() == pytest.approx(0.5, rel=0.02)
    second = prepare({"image": clean})[0]
    assert not torch.equal(noisy, second)
    engine = Engine(lambda engine, batch: None)
    prepare.attach(engine)
    engine.run([0])  # the evaluator starts: the noise starts over
    assert torch.equal(prepare({"image": clean})[0], noisy)
    for sigma in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            GaussianNoisePrepareBatch(sigma)


def test_saver_writes_weights_and_mapping_when_training_completes(tmp_path: Path) -> None:
    network = torch.nn.Conv2d(2, 2, 1)
    saver = DenoiserSaver(tmp_path / "den" / "denoiser.pt", network, IntensityMapping(4.0, 0.5))
    engine = Engine(lambda engine, batch: None)
    saver.attach(engine)
    engine.run([0])
    state = torch.load(tmp_path / "den" / "denoiser.pt", weights_only=True)
    assert set(state) == {"model"} and torch.equal(state["model"]["weight"], network.weight)
    assert IntensityMapping.load(tmp_path / "den" / "intensity_mapping.json") == IntensityMapping(4.0, 0.5)
    assert sorted(p.name for p in (tmp_path / "den").iterdir()) == ["denoiser.pt", "intensity_mapping.json"]


def test_saver_writes_nothing_when_training_fails(tmp_path: Path) -> None:
    def fail(engine: Engine, batch: object) -> None:
        raise RuntimeError("boom")

    engine = Engine(fail)
    DenoiserSaver(tmp_path / "denoiser.pt", torch.nn.Conv2d(1, 1, 1), IntensityMapping(4.0)).attach(engine)
    with pytest.raises(RuntimeError, match="boom"):
        engine.run([0])
    assert not list(tmp_path.iterdir())


def test_settings_check_names_the_id_to_change() -> None:
    scheduler, mapping = DDPMScheduler(1000), IntensityMapping(4.0)
    good = {"scheduler": scheduler, "mapping": mapping, "channels": [8, 16, 16], "spatial_dims": 3}
    check_denoiser_settings(roi_size=[32, 16, 64], sigmas={"denoiser_val_sigma": 0.5, "x": None}, **good)
    with pytest.raises(ValueError, match=r"multiple of 4 .* denoiser_roi_size is \[32, 18, 64\]"):
        check_denoiser_settings(roi_size=[32, 18, 64], sigmas={}, **good)
    with pytest.raises(ValueError, match="must have 3 entries"):
        check_denoiser_settings(roi_size=[32, 32], sigmas={}, **good)
    with pytest.raises(ValueError, match=r"denoiser_val_sigma = 0\.0 .*sigma must be > 0"):
        check_denoiser_settings(roi_size=[32, 32, 32], sigmas={"denoiser_val_sigma": 0.0}, **good)
    with pytest.raises(ValueError, match=r"denoiser_max_train_sigma = 10000\.0 .*beyond the largest noise level"):
        check_denoiser_settings(roi_size=[32, 32, 32], sigmas={"denoiser_max_train_sigma": 1e4}, **good)
