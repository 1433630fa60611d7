"""The certification run on a small noise-trained model: rows, maps, statistics, report, resume, MLflow, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from workflow_helpers import nested_tumour, ringed_disc, small_conv_net

from robustseg.certification import SegmentationSmoother, certified_metrics, noise_augmentation
from robustseg.labels import BRATS, LabelScheme
from robustseg.tracking import default_tracking_uri
from robustseg.workflows.certify import CertificationRun, run_certification

SIGMA = 0.25
AFFINE = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))


def box_blur(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """A stand-in denoiser: a 3x3x3 mean filter (the diffusion denoiser has its own tests)."""
    return torch.nn.functional.avg_pool3d(noisy, 3, stride=1, padding=1, count_include_pad=False)


def train_with_noise(net: torch.nn.Module, cases: list[tuple[torch.Tensor, torch.Tensor]], steps: int, **loss) -> None:
    """Full-batch Adam on ``cases`` with Gaussian noise of exactly SIGMA on every image (noise_augmentation)."""
    augment = noise_augmentation(SIGMA)
    augment.set_random_state(0)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    labels = torch.stack([c[1][0] for c in cases])
    for _ in range(steps):
        images = torch.stack([torch.as_tensor(augment({"image": c[0]})["image"]) for c in cases])
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(images), labels, **loss).backward()
        optimiser.step()


@pytest.fixture(scope="module")
def noisy_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, list[dict]]:
    """A softmax conv net trained on nested tumours with Gaussian noise at SIGMA (noise_augmentation), 3 test cases."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = small_conv_net(out_channels=4)
    train_with_noise(net, [nested_tumour(rng) for _ in range(6)], 120, weight=torch.tensor([0.3, 1.0, 1.0, 1.0]))
    path = tmp_path_factory.mktemp("noisy") / "model.pt"
    torch.save(net.state_dict(), path)
    test = [
        {"image": MetaTensor(image, affine=AFFINE), "label": label, "case_id": f"case{i}"}
        for i, (image, label) in enumerate(nested_tumour(rng) for _ in range(3))
    ]
    return net.eval(), path, test


def make_run(noisy_model: tuple, out: Path, **kwargs) -> CertificationRun:
    net, checkpoint, cases = noisy_model
    settings = {
        "sigmas": [SIGMA],
        "taus": [0.6, 0.75],
        "n0": 10,
        "n": 100,
        "alpha": 0.01,
        "batch_size": 25,
        "denoiser": box_blur,
        "mask": "none",
        "trained_sigma": SIGMA,
        **kwargs,
    }
    return CertificationRun(net, checkpoint, SimpleInferer(), cases, out, **settings)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_noise_augmentation_draws_exactly_sigma() -> None:
    augment = noise_augmentation(0.5)
    augment.set_random_state(1)
    out = torch.as_tensor(augment({"image": torch.zeros(1, 40, 40, 40)})["image"])
    assert out.std().item() == pytest.approx(0.5, rel=0.01)  # not a std drawn from [0, 0.5]
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        noise_augmentation(0.0)


def test_run_writes_rows_maps_statistics_and_report(noisy_model: tuple, tmp_path: Path) -> None:
    net, _, cases = noisy_model
    outcome = make_run(noisy_model, tmp_path).run()
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 3 * 2 * 1 * 2 * 3  # cases x modes x sigmas x taus x regions
    # a row's metrics are those of the saved map, recomputed by hand from the NIfTI on disk
    path = tmp_path / "maps" / "case0_plain_sigma0.25_tau0.75_certified.nii.gz"
    saved = nib.load(path)
    np.testing.assert_allclose(saved.affine, AFFINE.numpy())
    certified = torch.as_tensor(np.asarray(saved.dataobj).astype(np.int64))
    certified[certified == 255] = -1
    expected = certified_metrics(certified, cases[0]["label"], BRATS)
    row = next(r for r in rows if (r["case_id"], r["mode"], r["tau"], r["region"]) == ("case0", "plain", "0.75", "WT"))
    assert float(row["certified_dice"]) == pytest.approx(expected["certified_dice_WT"])
    assert float(row["certified_accuracy"]) == pytest.approx(expected["certified_accuracy"])
    # and equal to a direct certificate with the run's seed
    run = make_run(noisy_model, tmp_path / "again")
    cert = SegmentationSmoother(net, SIGMA, batch_size=7, seed=0).certify(
        cases[0]["image"][None], n0=10, n=100, alpha=0.01, tau=0.75, seed=run.case_seed("case0", SIGMA)
    )
    assert torch.equal(cert.classes, certified.reshape(cert.classes.shape))
    # the noise-trained model certifies most of the volume, and Dice is bounded by the base model's
    mean_acc = np.mean([float(r["certified_accuracy"]) for r in rows if r["mode"] == "plain"])
    assert mean_acc > 0.8
    assert all(float(r["certified_dice"]) <= float(r["base_dice"]) + 0.15 for r in rows)
    stats = outcome["statistics"]
    assert {s["metric"] for s in stats} == {"certified_dice", "certified_accuracy"}
    assert len(stats) == 2 * (3 + 1)  # taus x (regions + voxels)
    assert not (tmp_path / "report").exists()  # run() alone writes no report; run_certification does


def test_run_certification_records_one_mlflow_run_and_resumes(
    noisy_model: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "certify"
    make_run(noisy_model, out, max_cases=1).run()  # a run killed after its first case
    calls: list[int] = []
    original = SegmentationSmoother.certify
    monkeypatch.setattr(
        SegmentationSmoother, "certify", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    report = run_certification(make_run(noisy_model, out), tracking_dir=tmp_path)
    assert len(calls) == 2 * 2  # only cases 1 and 2, plain and denoised
    assert len(read_rows(out / "results.csv")) == 36
    html = report.read_text()
    assert "data:image/png;base64," in html and "denoised vs plain" in html
    assert "BraTS 2018-2022" in html and "scored from class maps" in html  # the policy and the scoring, stated
    for name in ("summary.csv", "summary.md", "statistics.csv", "statistics.md", "certified_vs_radius.png"):
        assert (report.parent / name).is_file()
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("robustseg").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "certify"
    assert "certified_accuracy_plain_sigma0.25_tau0.75" in run.data.metrics
    assert float(run.data.params["n"]) == 100
    assert "warnings" not in run.data.params  # certified at the sigma the model was trained with


def test_a_sigma_other_than_the_training_noise_is_flagged(noisy_model: tuple, tmp_path: Path) -> None:
    run = make_run(noisy_model, tmp_path, sigmas=[0.25, 0.5])
    assert len(run.warnings) == 1 and "sigma 0.5 differs" in run.warnings[0]
    assert run.settings()["warnings"] == run.warnings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigmas": [0.25, 0.0]}, "sigma must be a finite number > 0"),
        ({"taus": [0.75, 1.0]}, "tau must lie in"),
        ({"n0": 0}, "n0 must be an integer >= 1"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"alpha": 0.0}, "alpha must lie in"),
        ({"denoiser": None, "modes": ["plain", "denoised"]}, "needs a denoiser"),
        ({"modes": ["sharpened"]}, "unknown smoothing mode"),
    ],
)
def test_bad_settings_fail_before_any_compute(noisy_model: tuple, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_run(noisy_model, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


DISCS = LabelScheme(("background", "disc", "ring"), ignore_index=255)


def disc_model(tmp_path: Path, seed: int, cases: int, affine: torch.Tensor) -> tuple[torch.nn.Module, Path, list]:
    """A 2-D RGB conv net trained with noise at SIGMA on ringed discs (void band 255), its checkpoint, test images."""
    torch.manual_seed(0)
    rng = np.random.default_rng(seed)
    net = small_conv_net(out_channels=3, in_channels=3, spatial_dims=2)
    train_with_noise(net, [ringed_disc(rng) for _ in range(8)], 150, ignore_index=255)
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    test = [
        {"image": MetaTensor(image, affine=affine), "label": label, "case_id": f"img{i}"}
        for i, (image, label) in enumerate(ringed_disc(rng) for _ in range(cases))
    ]
    return net, checkpoint, test


def test_a_2d_rgb_model_is_certified_with_void_pixels_left_out(tmp_path: Path) -> None:
    """The same run for a 2-D natural-image segmenter: 3 colour channels, 3 classes, a VOC-style void band."""
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0]))
    net, checkpoint, test = disc_model(tmp_path, seed=1, cases=3, affine=affine)
    out = tmp_path / "certify"
    run = CertificationRun(
        net, checkpoint, SimpleInferer(), test, out, sigmas=[SIGMA], taus=[0.75], n0=10, n=100, alpha=0.01,
        batch_size=20, mask="none", scheme=DISCS, trained_sigma=SIGMA,
    )  # fmt: skip
    report = run_certification(run, tracking_dir=tmp_path)
    rows = read_rows(out / "results.csv")
    assert [(r["case_id"], r["region"]) for r in rows[:2]] == [("img0", "disc"), ("img0", "ring")]
    assert len(rows) == 3 * 2
    saved = nib.load(out / "maps" / "img1_plain_sigma0.25_tau0.75_certified.nii.gz")
    certified = torch.as_tensor(np.asarray(saved.dataobj).astype(np.int64))
    assert certified.shape == (24, 24)
    np.testing.assert_allclose(saved.affine[:2, :2], affine[:2, :2].numpy())
    # accuracy by hand over the scored pixels (void left out, abstentions wrong), and the certificate itself
    label = test[1]["label"][0]
    scored = label != 255
    certified[certified == 255] = -1
    row = next(r for r in rows if (r["case_id"], r["region"]) == ("img1", "ring"))
    assert float(row["certified_accuracy"]) == pytest.approx(float((certified == label)[scored].float().mean()))
    cert = SegmentationSmoother(net, SIGMA, scheme=DISCS, batch_size=20).certify(
        test[1]["image"][None], n0=10, n=100, alpha=0.01, tau=0.75, seed=run.case_seed("img1", SIGMA)
    )
    assert torch.equal(cert.classes, certified)
    assert np.mean([float(r["certified_accuracy"]) for r in rows]) > 0.8
    assert "data:image/png;base64," in report.read_text()
    assert (report.parent / "certified_vs_radius.png").is_file()


def box_blur_2d(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(noisy, 3, stride=1, padding=1, count_include_pad=False)


def test_a_2d_run_scored_by_iou_writes_palette_pngs_and_compares_modes_on_iou(tmp_path: Path) -> None:
    """score_metric iou: per-class IoU rows and the image's mIoU row, tested between modes; maps as palette PNGs."""
    from PIL import Image

    net, checkpoint, test = disc_model(tmp_path, seed=2, cases=6, affine=torch.eye(4))
    classes = ("background", "disc", "ring")
    scheme = LabelScheme(classes, regions={n: (i,) for i, n in enumerate(classes)}, ignore_index=255)
    palette = {0: [10, 20, 30], 1: [200, 0, 0], 2: [0, 0, 200], 255: [224, 224, 192]}
    out = tmp_path / "certify"
    run = CertificationRun(
        net, checkpoint, SimpleInferer(), test, out, sigmas=[SIGMA], taus=[0.75], n0=10, n=60, alpha=0.01,
        batch_size=20, mask="none", scheme=scheme, trained_sigma=SIGMA, denoiser=box_blur_2d, metric="iou",
        palette=palette,
    )  # fmt: skip
    report = run_certification(run, tracking_dir=tmp_path)
    rows = read_rows(out / "results.csv")
    assert {"certified_iou", "base_iou"} <= set(rows[0])
    assert [r["region"] for r in rows[:4]] == ["background", "disc", "ring", "mIoU"]
    assert len(rows) == 6 * 2 * 4
    for mode in ("plain", "denoised"):
        path = out / "maps" / f"img3_{mode}_sigma0.25_tau0.75_certified"
        certified = np.asarray(nib.load(f"{path}.nii.gz").dataobj).astype(np.int64)
        png = Image.open(f"{path}.png")
        assert png.mode == "P" and np.array_equal(np.asarray(png), certified)
        colours = np.asarray(png.getpalette()).reshape(-1, 3)
        assert colours[1].tolist() == [200, 0, 0] and colours[255].tolist() == [224, 224, 192]
        label = test[3]["label"][0].numpy()
        scored = label != 255
        mine = {r["region"]: float(r["certified_iou"]) for r in rows if (r["case_id"], r["mode"]) == ("img3", mode)}
        ious = []
        for c, name in enumerate(classes):  # by hand: abstained (255) pixels are in no class
            p, t = (certified == c) & scored, (label == c) & scored
            union = (p | t).sum()
            if union:
                ious.append((p & t).sum() / union)
                assert mine[name] == pytest.approx(ious[-1])
        assert mine["mIoU"] == pytest.approx(np.mean(ious))
    stats = read_rows(report.parent / "statistics.csv")
    assert {r["metric"] for r in stats} == {"certified_iou", "certified_accuracy"}
    assert {r["region"] for r in stats} == {"background", "disc", "ring", "mIoU", "voxels"}
    assert "cert/base mIoU" in (report.parent / "summary.md").read_text()
    assert "certified IoU" in report.read_text()
