"""One-step diffusion denoiser for denoised randomized smoothing (Carlini et al., ICLR 2023; Laousy et al., UAI 2023).

A DDPM trained on data in ``[-1, 1]`` predicts the noise ``eps`` in ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps``.
A smoothing sample ``x + sigma_d * eps`` (``sigma_d``: the noise std in the diffusion model's units) scaled by
``sqrt(abar_t)`` is ``sqrt(abar_t) x + sqrt(abar_t) sigma_d eps``, which has exactly the DDPM forward marginal when
``abar_t = 1 / (1 + sigma_d^2)`` (Laousy et al.; Carlini et al. state the same for data in ``[0, 1]`` with a factor
2). :func:`timestep_for_sigma` picks the timestep ``t*`` whose ``abar`` is closest to that value, and
:class:`DiffusionDenoiser` returns the one-step estimate ``x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)``.

The segmentation model's inputs are z-scored MRI (per-channel standard deviations over the brain, zeros outside), so
the map between those units and ``[-1, 1]`` is explicit: :class:`IntensityMapping` (``z = (x - shift) / scale``) is
saved beside the weights and ``sigma`` in input units becomes ``sigma / scale`` in diffusion units. The denoiser sees
only the noisy input, so it does not know where the clean input's exact zeros (the background) were and does not
mask them; the background comes back as the model's estimate, close to zero for a model trained on brain MRI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustseg.checkpoints import check_checkpoint

__all__ = [
    "DiffusionDenoiser",
    "IntensityMapping",
    "fit_intensity_mapping",
    "load_denoiser",
    "timestep_for_sigma",
]

MAPPING_FILE = "intensity_mapping.json"
"""Name of the intensity mapping saved beside the denoiser's weights."""


@dataclass(frozen=True)
class IntensityMapping:
    """Affine map from the segmentation model's input units to the diffusion model's data range ``[-1, 1]``.

    ``to_diffusion(x) = (x - shift) / scale`` and ``from_diffusion(z) = z * scale + shift``; a noise std ``sigma`` in
    input units is ``sigma / scale`` in diffusion units. For z-scored MRI ``shift = 0`` keeps the background at 0 and
    ``scale = 4`` puts +-4 standard deviations (about the 0.999 quantile of ``|x|`` over the brain) at +-1.

    Args:
        scale: input units per diffusion unit (> 0).
        shift: input value mapped to 0.
    """

    scale: float
    shift: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a finite number > 0 (input units per diffusion unit) but is {self.scale}.")
        if not math.isfinite(self.shift):
            raise ValueError(f"shift must be finite but is {self.shift}.")

    def to_diffusion(self, x: torch.Tensor, clip: bool = False) -> torch.Tensor:
        """``(x - shift) / scale``, clipped to ``[-1, 1]`` with ``clip`` (training data)."""
        z = (x - self.shift) / self.scale
        return z.clamp(-1.0, 1.0) if clip else z

    def from_diffusion(self, z: torch.Tensor) -> torch.Tensor:
        """``z * scale + shift``: back to the segmentation model's input units."""
        return z * self.scale + self.shift

    def sigma_to_diffusion(self, sigma: float) -> float:
        """A noise std in input units expressed in diffusion units: ``sigma / scale``."""
        return float(sigma) / self.scale

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def state_dict(self) -> dict[str, float]:
        """The mapping, so that the denoiser's training checkpoints record it (``configs/denoiser.json``)."""
        return self.to_dict()

    def load_state_dict(self, state: Any) -> None:
        """Check a resumed training's checkpoint against this mapping; the config decides it, the checkpoint only
        confirms it. A checkpoint trained under another mapping cannot be continued under this one."""
        saved = IntensityMapping.from_dict(dict(state), "the checkpoint's intensity mapping")
        if saved != self:
            raise ValueError(
                f"the denoiser checkpoint was trained with intensity mapping {saved.to_dict()} but the config gives "
                f"{self.to_dict()}; resume with --denoiser_scale {saved.scale:g} --denoiser_shift {saved.shift:g}, or "
                "train afresh in another --denoiser_ckpt_dir."
            )

    @classmethod
    def from_dict(cls, data: Any, source: str = "the mapping") -> IntensityMapping:
        if not isinstance(data, dict) or "scale" not in data:
            raise ValueError(f"{source} must be a JSON object with 'scale' (and optionally 'shift') but is {data!r}.")
        return cls(scale=float(data["scale"]), shift=float(data.get("shift", 0.0)))

    def save(self, path: str | Path) -> Path:
        """Write the mapping as JSON (``{"scale": ..., "shift": ...}``) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> IntensityMapping:
        """Read a mapping written by :meth:`save`, with errors that name the file and the fix."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"intensity mapping {path} does not exist. It is written beside denoiser.pt by the denoiser training "
                "(configs/denoiser.json); pass the mapping the denoiser was trained with, e.g. IntensityMapping(4.0)."
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"intensity mapping {path} is not valid JSON ({e}).") from e
        return cls.from_dict(data, source=f"intensity mapping {path}")


def fit_intensity_mapping(
    images: Iterable[torch.Tensor | np.ndarray], quantile: float = 0.999, ignore_zeros: bool = True
) -> IntensityMapping:
    """The mapping (``shift = 0``) that sends the ``quantile`` of ``|x|`` over ``images`` to 1.

    Values beyond that quantile leave ``[-1, 1]`` and are clipped when the diffusion model is trained, so ``quantile``
    is the share of voxels kept unclipped. Exact zeros are the background of z-scored MRI and are left out with
    ``ignore_zeros``. On z-scored brain MRI the 0.999 quantile is about 4 standard deviations (4.6 on the phantoms).

    Args:
        images: arrays or tensors of any shape in the segmentation model's input units.
        quantile: in ``(0, 1]``.
        ignore_zeros: leave out exact zeros (the background).
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1] but is {quantile}.")
    values = []
    for image in images:
        a = np.abs(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)).ravel()
        values.append(a[a > 0] if ignore_zeros else a)
    pooled = np.concatenate(values) if values else np.zeros(0)
    if pooled.size == 0:
        raise ValueError("fit_intensity_mapping got no voxels (no images, or only zeros with ignore_zeros=True).")
    scale = float(np.quantile(pooled, quantile))
    if not scale > 0:
        raise ValueError(f"the {quantile} quantile of |x| is {scale}; the images are (almost) all zero.")
    return IntensityMapping(scale=scale)


def _alphas_cumprod(scheduler: Any) -> torch.Tensor:
    abar = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(abar, torch.Tensor) or abar.ndim != 1 or abar.numel() == 0:
        raise TypeError(f"scheduler must have a 1-D alphas_cumprod tensor (a MONAI Scheduler) but is {scheduler!r}.")
    return abar.detach().to("cpu", torch.float64)


def timestep_for_sigma(scheduler: Any, sigma_diffusion: float) -> int:
    """The timestep ``t*`` whose ``alphas_cumprod`` is closest to ``1 / (1 + sigma_d^2)`` (data in ``[-1, 1]``).

    Then ``sqrt(abar_t*) (x + sigma_d eps)`` has the DDPM forward marginal at ``t*`` (exactly when ``abar_t*`` hits
    the target, up to the grid spacing otherwise).

    Args:
        scheduler: a MONAI ``DDPMScheduler`` (anything with ``alphas_cumprod``).
        sigma_diffusion: the noise std in the diffusion model's units (``IntensityMapping.sigma_to_diffusion``).

    Raises:
        ValueError: ``sigma_diffusion`` is not > 0, or beyond the largest noise level of the scheduler,
            ``sqrt((1 - abar_T) / abar_T)``.
    """
    abar = _alphas_cumprod(scheduler)
    sigma = float(sigma_diffusion)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be > 0 (noise std in diffusion units) but is {sigma}.")
    largest = math.sqrt((1.0 - float(abar[-1])) / float(abar[-1]))
    if sigma > largest:
        raise ValueError(
            f"sigma {sigma:.4g} (diffusion units) is beyond the largest noise level {largest:.4g} of the scheduler "
            f"({abar.numel()} timesteps). Use a larger intensity scale or a scheduler that reaches more noise."
        )
    return int(torch.argmin((abar - 1.0 / (1.0 + sigma**2)).abs()))


class DiffusionDenoiser(nn.Module):
    """One-step denoiser ``denoiser(noisy, sigma)`` from an epsilon-predicting DDPM, in the model's input units.

    For a noise std ``sigma`` (input units): map ``noisy`` to diffusion units, find ``t*`` for ``sigma / scale``
    (:func:`timestep_for_sigma`, cached per sigma), scale by ``sqrt(abar)``, predict the noise, take
    ``x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)``, clamp it to ``[-1, 1]`` and map it back. Works for 2-D
    and 3-D inputs ``(B, C, *spatial)``; the background is not masked (see the module docstring).

    Args:
        network: epsilon predictor called as ``network(x, timesteps)`` (MONAI ``DiffusionModelUNet``) with
            ``timesteps`` a ``(B,)`` long tensor.
        scheduler: the ``DDPMScheduler`` the network was trained with (epsilon prediction).
        mapping: input units <-> ``[-1, 1]``.
        inferer: optional ``inferer(inputs, callable)`` (e.g. ``SlidingWindowInferer`` with the training patch)
            for inputs larger than the training patch; the callable passes ``t*`` to the network for every window.

    Example:
        >>> denoiser = DiffusionDenoiser(unet, DDPMScheduler(1000), IntensityMapping(4.0))
        >>> clean = denoiser(x + 0.5 * torch.randn_like(x), 0.5)
    """

    def __init__(
        self,
        network: nn.Module,
        scheduler: Any,
        mapping: IntensityMapping,
        inferer: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        prediction = getattr(scheduler, "prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(f"the scheduler must use epsilon prediction but uses {prediction!r}.")
        _alphas_cumprod(scheduler)
        if not isinstance(mapping, IntensityMapping):
            raise TypeError(f"mapping must be an IntensityMapping but is {type(mapping).__name__}.")
        self.network = network
        self.scheduler = scheduler
        self.mapping = mapping
        self.inferer = inferer
        self._levels: dict[float, tuple[int, float]] = {}

    def noise_level(self, sigma: float) -> tuple[int, float]:
        """``(t*, abar_t*)`` for a noise std ``sigma`` in input units (cached per sigma)."""
        sigma = float(sigma)
        if sigma not in self._levels:
            t = timestep_for_sigma(self.scheduler, self.mapping.sigma_to_diffusion(sigma))
            self._levels[sigma] = (t, float(_alphas_cumprod(self.scheduler)[t]))
        return self._levels[sigma]

    def predict_noise(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """The network's noise estimate at timestep ``t`` (through the inferer when one is set)."""

        def at_t(x: torch.Tensor) -> torch.Tensor:
            timesteps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            return self.network(x, timesteps)

        return at_t(x_t) if self.inferer is None else self.inferer(x_t, at_t)

    def forward(self, noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        """The one-step estimate of the clean input of ``noisy`` (``(B, C, *spatial)``, noise std ``sigma``)."""
        if noisy.ndim < 3:
            raise ValueError(f"noisy must be (B, C, *spatial) but has shape {tuple(noisy.shape)}.")
        t, abar = self.noise_level(sigma)
        x_t = math.sqrt(abar) * self.mapping.to_diffusion(noisy)
        eps = self.predict_noise(x_t, t)
        if eps.shape != x_t.shape:
            raise ValueError(f"the network returned shape {tuple(eps.shape)} for an input of {tuple(x_t.shape)}.")
        x0 = (x_t - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)
        return self.mapping.from_diffusion(x0.clamp(-1.0, 1.0)).to(noisy.dtype)


def load_denoiser(
    checkpoint: str | Path,
    network: nn.Module,
    scheduler: Any,
    mapping: IntensityMapping | str | Path | None = None,
    inferer: Callable[..., torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> DiffusionDenoiser:
    """Load the weights written by the denoiser training and return the denoiser in eval mode on ``device``.

    Args:
        checkpoint: ``denoiser.pt`` (``{"model": state_dict}``, or a bare state dict), read with ``weights_only``.
        network: the ``DiffusionModelUNet`` built with the training settings (``denoiser_channels`` & co.).
        scheduler: the ``DDPMScheduler`` of the training (same ``denoiser_timesteps`` and schedule).
        mapping: an :class:`IntensityMapping`, a JSON file, or ``None`` for ``intensity_mapping.json`` beside the
            checkpoint.
        inferer: optional sliding-window inferer (see :class:`DiffusionDenoiser`).
        device: where the network runs.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"denoiser checkpoint {checkpoint} does not exist. Train the denoiser first (configs/denoiser.json "
            "merged onto train.json), or point to the folder that holds denoiser.pt."
        )
    if not isinstance(mapping, IntensityMapping):
        mapping = IntensityMapping.load(mapping if mapping is not None else checkpoint.parent / MAPPING_FILE)
    try:
        state = check_checkpoint(checkpoint, network, key="model")
    except ValueError as e:
        raise ValueError(
            f"{e} For the denoiser these are denoiser_channels, denoiser_num_res_blocks, denoiser_attention_levels "
            "and denoiser_norm_num_groups."
        ) from e
    network.load_state_dict(state)
    return DiffusionDenoiser(network.to(device), scheduler, mapping, inferer=inferer).eval()
