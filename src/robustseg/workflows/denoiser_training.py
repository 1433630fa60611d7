"""Pieces of the denoiser's training workflow (configs/denoiser.json): batches, validation noise, final weights.

The DDPM itself is trained by MONAI's ``SupervisedTrainer`` with ``DiffusionInferer`` and an MSE on the noise; this
module adds what MONAI lacks for a denoiser used only at the smoothing noise levels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.engines.utils import DiffusionPrepareBatch, PrepareBatch, default_prepare_batch

from robustseg.certification.denoiser import MAPPING_FILE, IntensityMapping, timestep_for_sigma

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "DenoiserPrepareBatch",
    "DenoiserSaver",
    "GaussianNoisePrepareBatch",
    "check_denoiser_settings",
    "max_train_timestep",
]

logger = logging.getLogger(__name__)


def max_train_timestep(scheduler: Any, mapping: IntensityMapping, max_sigma: float | None) -> int | None:
    """The largest timestep to train on so that noise up to ``max_sigma`` (input units) is covered; ``None``: all."""
    if max_sigma is None:
        return None
    return timestep_for_sigma(scheduler, mapping.sigma_to_diffusion(max_sigma))


class DenoiserPrepareBatch(DiffusionPrepareBatch):
    """MONAI's ``DiffusionPrepareBatch`` with timesteps drawn from ``[0, max_timestep]`` instead of all of them.

    A denoiser for randomized smoothing is only called at the ``t*`` of the smoothing sigmas (small ``t``); training
    on those levels alone spends the whole budget where the denoiser is used. ``max_timestep=None`` is the usual DDPM.
    Timesteps come from torch's global generator, like MONAI's (seeded by ``set_determinism``).
    """

    def __init__(self, num_train_timesteps: int, max_timestep: int | None = None) -> None:
        super().__init__(num_train_timesteps)
        if max_timestep is not None and not 0 <= max_timestep < num_train_timesteps:
            raise ValueError(f"max_timestep must be in [0, {num_train_timesteps - 1}] but is {max_timestep}.")
        self.max_timestep = max_timestep

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        high = self.num_train_timesteps if self.max_timestep is None else self.max_timestep + 1
        return torch.randint(0, high, (images.shape[0],), device=images.device).long()


class GaussianNoisePrepareBatch(PrepareBatch):
    """Validation batches ``(clean + sigma * noise, clean)`` with ``sigma`` passed on to the network (the denoiser).

    The noise comes from its own generator, reset to ``seed`` each time the evaluator starts (attach it as a
    validation handler), so every validation sees the same draws and the epochs compare.

    Args:
        sigma: noise std in the model's input units.
        seed: seed of the noise.
    """

    def __init__(self, sigma: float, seed: int = 0) -> None:
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be > 0 but is {sigma}.")
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def reset(self, engine: Engine | None = None) -> None:
        self.generator.manual_seed(self.seed)

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.reset)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        clean, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        noise = torch.randn(clean.shape, generator=self.generator, dtype=clean.dtype).to(clean.device)
        return clean + self.sigma * noise, clean, (), {"sigma": self.sigma}


class DenoiserSaver:
    """At the end of a completed training, write ``{"model": state_dict}`` and the intensity mapping side by side.

    Nothing is written when the training fails, so ``denoiser.pt`` and ``intensity_mapping.json`` always belong to
    one finished training. List it before the MLflow tracker so the tracker finds both files to log.

    Args:
        checkpoint: path of the final weights (``models/denoiser/denoiser.pt``).
        network: the trained ``DiffusionModelUNet``.
        mapping: the intensity mapping of the training data.
        mapping_file: where the mapping goes (default ``intensity_mapping.json`` beside ``checkpoint``).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        network: torch.nn.Module,
        mapping: IntensityMapping,
        mapping_file: str | Path | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.network = network
        self.mapping = mapping
        self.mapping_file = Path(mapping_file) if mapping_file is not None else self.checkpoint.parent / MAPPING_FILE

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        inner = getattr(self.network, "module", None)  # DistributedDataParallel
        module = inner if isinstance(inner, torch.nn.Module) else self.network
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint.with_name(self.checkpoint.name + ".partial")
        torch.save({"model": module.state_dict()}, partial)
        partial.replace(self.checkpoint)
        self.mapping.save(self.mapping_file)
        logger.info("denoiser weights saved to %s with its intensity mapping %s", self.checkpoint, self.mapping_file)


def check_denoiser_settings(
    scheduler: Any,
    mapping: IntensityMapping,
    roi_size: Sequence[int],
    channels: Sequence[int],
    spatial_dims: int,
    sigmas: Mapping[str, float | None],
) -> None:
    """Fail before any compute on settings the training cannot use, naming the id to change.

    Args:
        scheduler: the DDPM scheduler.
        mapping: the intensity mapping (its own checks ran when it was built).
        roi_size: ``denoiser_roi_size``; each side must be a multiple of ``2 ** (len(channels) - 1)``.
        channels: ``denoiser_channels``.
        spatial_dims: of the data.
        sigmas: named noise levels in input units (``denoiser_val_sigma``...) that must lie within the scheduler.
    """
    if len(roi_size) != spatial_dims:
        raise ValueError(f"denoiser_roi_size must have {spatial_dims} entries but is {list(roi_size)}.")
    factor = 2 ** (len(channels) - 1)
    if any(int(s) % factor for s in roi_size):
        raise ValueError(
            f"each side of denoiser_roi_size must be a multiple of {factor} (2 ** (len(denoiser_channels) - 1)) "
            f"but denoiser_roi_size is {list(roi_size)}."
        )
    for name, sigma in sigmas.items():
        if sigma is None:
            continue
        try:
            timestep_for_sigma(scheduler, mapping.sigma_to_diffusion(sigma))
        except ValueError as e:
            raise ValueError(f"{name} = {sigma} (input units, scale {mapping.scale}) cannot be used: {e}") from e
