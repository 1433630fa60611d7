"""The one-step diffusion denoiser: intensity mapping, t* for sigma, the algebra (oracle noise), a tiny trained DDPM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import DiffusionInferer, SlidingWindowInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from robustseg.certification import denoiser as denoiser_module
from robustseg.certification.denoiser import (
    DiffusionDenoiser,
    IntensityMapping,
    fit_intensity_mapping,
    load_denoiser,
    timestep_for_sigma,
)
from robustseg.data.phantom import PhantomConfig, generate_case
from robustseg.workflows.denoiser_training import DenoiserPrepareBatch

SHAPE = {2: (12, 10), 3: (6, 8, 5)}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class OracleNoise(nn.Module):
    """The noise in ``x_t``, from the clean input ``x`` (diffusion units): ``(x_t - sqrt(abar) x) / sqrt(1 - abar)``."""

    def __init__(self, clean: torch.Tensor, scheduler: DDPMScheduler) -> None:
        super().__init__()
        self.clean, self.abar = clean, scheduler.alphas_cumprod.double()
        self.timesteps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.timesteps.append(timesteps)
        abar = self.abar[timesteps].view(-1, *([1] * (x.ndim - 1)))
        return ((x.double() - abar.sqrt() * self.clean.double()) / (1 - abar).sqrt()).to(x.dtype)


class Recorder(nn.Module):
    """Predicts zero noise and keeps the network inputs ``(x_t, timesteps)``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), timesteps.clone()))
        return torch.zeros_like(x)


class Pointwise(nn.Module):
    """A voxel-wise noise predictor that depends on t: sliding windows must give the same result as one pass."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append((x.shape[0], timesteps.shape[0]))
        return torch.tanh(x) * (1.0 + timesteps.view(-1, *([1] * (x.ndim - 1))) / 100.0)


# ------------------------------------------------------------------------------------------------ intensity mapping


def test_mapping_round_trips_and_maps_sigma_by_hand() -> None:
    mapping = IntensityMapping(scale=4.0, shift=1.0)
    x = torch.tensor([1.0, 5.0, -3.0, 9.0])
    z = mapping.to_diffusion(x)
    assert torch.equal(z, torch.tensor([0.0, 1.0, -1.0, 2.0]))
    assert torch.equal(mapping.to_diffusion(x, clip=True), torch.tensor([0.0, 1.0, -1.0, 1.0]))
    assert torch.equal(mapping.from_diffusion(z), x)
    assert mapping.sigma_to_diffusion(0.5) == 0.125
    assert IntensityMapping(2.5).shift == 0.0


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf])
def test_mapping_rejects_a_scale_that_is_not_positive(scale: float) -> None:
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        IntensityMapping(scale=scale)


def test_mapping_file_round_trips_and_errors_name_the_file(tmp_path: Path) -> None:
    mapping = IntensityMapping(4.0, 0.5)
    path = mapping.save(tmp_path / "sub" / "intensity_mapping.json")
    assert json.loads(path.read_text()) == {"scale": 4.0, "shift": 0.5}
    assert IntensityMapping.load(path) == mapping
    with pytest.raises(FileNotFoundError, match=r"missing\.json does not exist"):
        IntensityMapping.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{scale: 4")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        IntensityMapping.load(tmp_path / "bad.json")
    (tmp_path / "noscale.json").write_text('{"shift": 0}')
    with pytest.raises(ValueError, match="must be a JSON object with 'scale'"):
        IntensityMapping.load(tmp_path / "noscale.json")


def test_fit_intensity_mapping_takes_the_quantile_of_abs_values_without_background() -> None:
    values = np.arange(1, 1001, dtype=np.float32)
    signs = np.where(np.arange(1000) % 2 == 0, 1.0, -1.0).astype(np.float32)
    images = [torch.from_numpy(values[:500] * signs[:500]), np.concatenate([values[500:] * signs[500:], np.zeros(700)])]
    assert fit_intensity_mapping(images, quantile=0.5).scale == pytest.approx(500.5)
    assert fit_intensity_mapping(images, quantile=1.0) == IntensityMapping(1000.0)
    # with the 700 zeros counted, the median of 1700 values lies between the 850th and 851st smallest: 150 and 151
    assert fit_intensity_mapping(images, quantile=0.5, ignore_zeros=False).scale == pytest.approx(150.5)
    with pytest.raises(ValueError, match="quantile must be in"):
        fit_intensity_mapping(images, quantile=0.0)
    with pytest.raises(ValueError, match="no voxels"):
        fit_intensity_mapping([np.zeros(5)])


# ------------------------------------------------------------------------------------------------------ t* for sigma


@pytest.mark.parametrize("schedule", ["linear_beta", "cosine"])
def test_timestep_for_sigma_matches_a_brute_force_search(schedule: str) -> None:
    scheduler = DDPMScheduler(num_train_timesteps=200, schedule=schedule)
    abar = [float(a) for a in scheduler.alphas_cumprod.double()]
    for sigma in (0.01, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.5):
        target = 1.0 / (1.0 + sigma * sigma)
        expected = min(range(len(abar)), key=lambda t: abs(abar[t] - target))
        assert timestep_for_sigma(scheduler, sigma) == expected, sigma


def test_timestep_for_sigma_hits_the_timestep_whose_noise_level_is_sigma() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    abar = scheduler.alphas_cumprod.double()
    for t in (0, 17, 74, 500, 999):
        sigma = math.sqrt((1 - float(abar[t])) / float(abar[t]))  # abar_t = 1 / (1 + sigma^2) exactly
        assert timestep_for_sigma(scheduler, sigma) == t


def test_timestep_for_sigma_rejects_sigmas_outside_the_schedule() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=10)  # short linear schedule: abar_T = 0.89, sigma at most 0.35
    largest = math.sqrt((1 - float(scheduler.alphas_cumprod[-1])) / float(scheduler.alphas_cumprod[-1]))
    assert timestep_for_sigma(scheduler, largest) == 9
    for sigma in (0.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            timestep_for_sigma(scheduler, sigma)
    with pytest.raises(ValueError, match="beyond the largest noise level"):
        timestep_for_sigma(scheduler, largest * 1.01)
    with pytest.raises(TypeError, match="alphas_cumprod"):
        timestep_for_sigma(object(), 0.1)


# ----------------------------------------------------------------------------------------------- the denoiser algebra


def test_scaled_noisy_input_has_the_ddpm_forward_marginal() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    mapping = IntensityMapping(scale=4.0)
    recorder = Recorder()
    denoiser = DiffusionDenoiser(recorder, scheduler, mapping)
    sigma = 0.5  # input units: 0.125 in diffusion units
    clean = torch.tensor([[-3.0, 0.0], [1.0, 2.5]])  # input units
    draws = 40_000
    noisy = clean + sigma * torch.randn((draws, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    denoiser(noisy, sigma)
    (x_t, timesteps), *_ = recorder.calls
    t = timestep_for_sigma(scheduler, 0.125)
    assert torch.equal(timesteps, torch.full((draws,), t))
    abar = float(scheduler.alphas_cumprod[t])
    x0 = mapping.to_diffusion(clean)
    torch.testing.assert_close(x_t.mean(0)[0], math.sqrt(abar) * x0, atol=4 * math.sqrt((1 - abar) / draws), rtol=0)
    # the std equals sqrt(abar) * sigma_d, within the abar grid of sqrt(1 - abar) (here 1.2 %)
    std = x_t.std(0)[0]
    torch.testing.assert_close(std, torch.full_like(std, math.sqrt(abar) * 0.125), rtol=0.02, atol=0)
    torch.testing.assert_close(std, torch.full_like(std, math.sqrt(1 - abar)), rtol=0.02, atol=0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("sigma", [0.1, 0.25, 0.5, 1.0, 2.0])
def test_oracle_noise_gives_back_the_clean_input(spatial_dims: int, sigma: float) -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    mapping = IntensityMapping(scale=4.0, shift=0.5)
    generator = torch.Generator().manual_seed(spatial_dims)
    clean = (torch.rand((2, 3, *SHAPE[spatial_dims]), generator=generator) * 7.0 - 3.0).double()  # inside +-4 std
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    oracle = OracleNoise(mapping.to_diffusion(clean), scheduler)
    out = DiffusionDenoiser(oracle, scheduler, mapping)(noisy, sigma)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    torch.testing.assert_close(out, clean, atol=1e-9, rtol=0)


def test_estimate_is_clamped_to_the_diffusion_range() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    mapping = IntensityMapping(scale=4.0)
    clean = torch.tensor([[[[-9.0, 0.0, 3.0, 6.0]]]], dtype=torch.float64)
    noisy = clean + 0.25 * torch.randn(clean.shape, dtype=clean.dtype, generator=torch.Generator().manual_seed(0))
    out = DiffusionDenoiser(OracleNoise(mapping.to_diffusion(clean), scheduler), scheduler, mapping)(noisy, 0.25)
    torch.testing.assert_close(out, torch.tensor([[[[-4.0, 0.0, 3.0, 4.0]]]], dtype=torch.float64))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sliding_window_inferer_passes_t_to_every_window(spatial_dims: int) -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    mapping = IntensityMapping(scale=4.0)
    noisy = torch.randn((2, 2, *(12,) * spatial_dims), generator=torch.Generator().manual_seed(0))
    whole = DiffusionDenoiser(Pointwise(), scheduler, mapping)(noisy, 0.5)
    network = Pointwise()
    inferer = SlidingWindowInferer(roi_size=(8,) * spatial_dims, sw_batch_size=3, overlap=0.25)
    windowed = DiffusionDenoiser(network, scheduler, mapping, inferer=inferer)(noisy, 0.5)
    torch.testing.assert_close(windowed, whole, atol=1e-6, rtol=0)
    assert len(network.batch_sizes) > 1 and all(x == t for x, t in network.batch_sizes)


def test_timestep_is_computed_once_per_sigma(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = denoiser_module.timestep_for_sigma

    def counting(scheduler: DDPMScheduler, sigma: float) -> int:
        calls.append(sigma)
        return original(scheduler, sigma)

    monkeypatch.setattr(denoiser_module, "timestep_for_sigma", counting)
    denoiser = DiffusionDenoiser(Recorder(), DDPMScheduler(1000), IntensityMapping(4.0))
    x = torch.zeros((1, 1, 4, 4))
    for sigma in (0.5, 0.5, 0.25, 0.5):
        denoiser(x, sigma)
    assert calls == [0.125, 0.0625]
    assert denoiser.noise_level(0.5) == (
        timestep_for_sigma(DDPMScheduler(1000), 0.125),
        pytest.approx(1 / 1.015625, abs=1e-3),
    )


def test_denoiser_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="epsilon prediction"):
        DiffusionDenoiser(Recorder(), DDPMScheduler(1000, prediction_type="v_prediction"), IntensityMapping(4.0))
    with pytest.raises(TypeError, match="IntensityMapping"):
        DiffusionDenoiser(Recorder(), DDPMScheduler(1000), 4.0)  # type: ignore[arg-type]
    denoiser = DiffusionDenoiser(Recorder(), DDPMScheduler(10), IntensityMapping(4.0))
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        denoiser(torch.zeros(4, 4), 0.5)
    with pytest.raises(ValueError, match="beyond the largest noise level"):
        denoiser(torch.zeros(1, 1, 4, 4), 2.0)


# ------------------------------------------------------------------------------------------------------- load_denoiser


def tiny_unet(spatial_dims: int = 2, channels: tuple[int, ...] = (8, 8)) -> DiffusionModelUNet:
    return DiffusionModelUNet(
        spatial_dims=spatial_dims,
        in_channels=2,
        out_channels=2,
        channels=channels,
        attention_levels=(False,) * len(channels),
        num_res_blocks=1,
        norm_num_groups=4,
    )


def test_load_denoiser_reads_weights_and_the_mapping_beside_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = tiny_unet()
    torch.save({"model": trained.state_dict()}, tmp_path / "denoiser.pt")
    IntensityMapping(3.0).save(tmp_path / "intensity_mapping.json")
    scheduler = DDPMScheduler(1000)
    loaded = load_denoiser(tmp_path / "denoiser.pt", tiny_unet(), scheduler)
    assert loaded.mapping == IntensityMapping(3.0) and not loaded.training
    noisy = torch.randn((1, 2, 8, 8))
    with torch.no_grad():
        expected = DiffusionDenoiser(trained.eval(), scheduler, IntensityMapping(3.0))(noisy, 0.5)
        torch.testing.assert_close(loaded(noisy, 0.5), expected)
    # a bare state dict and an explicit mapping work too
    torch.save(trained.state_dict(), tmp_path / "bare.pt")
    assert load_denoiser(tmp_path / "bare.pt", tiny_unet(), scheduler, mapping=IntensityMapping(5.0)).mapping.scale == 5


def test_load_denoiser_errors_say_what_to_do(tmp_path: Path) -> None:
    scheduler = DDPMScheduler(1000)
    with pytest.raises(FileNotFoundError, match="Train the denoiser first"):
        load_denoiser(tmp_path / "denoiser.pt", tiny_unet(), scheduler)
    torch.save({"model": tiny_unet().state_dict()}, tmp_path / "denoiser.pt")
    with pytest.raises(FileNotFoundError, match=r"intensity_mapping\.json does not exist"):
        load_denoiser(tmp_path / "denoiser.pt", tiny_unet(), scheduler)
    IntensityMapping(4.0).save(tmp_path / "intensity_mapping.json")
    with pytest.raises(ValueError, match=r"does not match the network(.|\n)*denoiser_channels"):
        load_denoiser(tmp_path / "denoiser.pt", tiny_unet(channels=(8, 16)), scheduler)


# --------------------------------------------------------------------------------------- a tiny DDPM on phantom slices


def zscored_slices(index: int, spacing: float = 4.0) -> torch.Tensor:
    """Axial slices through the middle of a phantom, z-scored per channel over the brain like the bundle does."""
    image = generate_case(index, seed=0, config=PhantomConfig(spacing=spacing))["image"]
    z = np.zeros_like(image)
    for c in range(image.shape[0]):
        brain = image[c] > 0
        z[c][brain] = (image[c][brain] - image[c][brain].mean()) / image[c][brain].std()
    depth = z.shape[-1]
    return torch.from_numpy(np.moveaxis(z[..., depth // 5 : 4 * depth // 5], -1, 0)[:, :, :48, :56].copy())


@pytest.mark.slow
def test_tiny_ddpm_trained_on_phantom_slices_denoises_in_one_step() -> None:
    torch.manual_seed(0)
    train = torch.cat([zscored_slices(0), zscored_slices(1)])
    test = zscored_slices(2)
    mapping = fit_intensity_mapping(train, quantile=0.999)
    assert 3.5 < mapping.scale < 6.0  # z-scored MRI: about 4 standard deviations
    mapping = IntensityMapping(4.0)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    network = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=4,
        out_channels=4,
        channels=(16, 32),
        attention_levels=(False, False),
        num_res_blocks=1,
        norm_num_groups=8,
    )
    # train where the denoiser is used: noise up to 1 std (t <= t* of sigma 1.0)
    prepare = DenoiserPrepareBatch(1000, max_timestep=timestep_for_sigma(scheduler, mapping.sigma_to_diffusion(1.0)))
    inferer = DiffusionInferer(scheduler)
    optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
    data = mapping.to_diffusion(train, clip=True)
    rng = np.random.default_rng(0)
    for _ in range(100):
        i, j = rng.integers(0, 17), rng.integers(0, 25)
        batch = data[torch.randint(0, len(data), (8,))][:, :, i : i + 32, j : j + 32]
        images, target, _, kwargs = prepare({"image": batch})
        loss = torch.nn.functional.mse_loss(inferer(images, network, **kwargs), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    denoiser = DiffusionDenoiser(network, scheduler, mapping).eval()
    noisy = test + 0.5 * torch.randn(test.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        denoised = denoiser(noisy, 0.5)
    noisy_mse = torch.mean((noisy - test) ** 2).item()
    denoised_mse = torch.mean((denoised - test) ** 2).item()
    print(f"sigma 0.5: noisy MSE {noisy_mse:.4f}, one-step denoised MSE {denoised_mse:.4f}")
    assert noisy_mse == pytest.approx(0.25, rel=0.02)
    assert denoised_mse < 0.5 * noisy_mse


def test_a_checkpoint_of_another_intensity_mapping_cannot_be_resumed() -> None:
    mapping = IntensityMapping(4.0)
    assert mapping.state_dict() == {"scale": 4.0, "shift": 0.0}
    mapping.load_state_dict({"scale": 4.0, "shift": 0.0})  # the same mapping: accepted
    with pytest.raises(ValueError, match=r"resume with --denoiser_scale 5 --denoiser_shift 0"):
        mapping.load_state_dict({"scale": 5.0, "shift": 0.0})
