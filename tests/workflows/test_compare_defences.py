"""The defence comparison on models trained on the BraTS phantoms: adversarial training helps, distillation masks.

A small UNet is trained on phantom cases (the baseline), then fine-tuned three ways with robustseg's own defence
objectives: adversarial training (PGD-1 with a random start at the audited budget), and defensive distillation
(a teacher fine-tuned at T = 20, a student distilled from it). The comparison audits the three on held-out cases.

A teacher trained to convergence at T has logits about T times those of a clean model, and so has its student: that
is what saturates the student's softmax at T = 1. Seconds of fine-tuning at T do not get there (it collapses to
background first), so teacher and student start from the baseline with its output layer scaled by T, where a
converged teacher would be.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from robustseg.data.phantom import PhantomConfig, generate_case
from robustseg.defenses import AdversarialTraining, AtTemperature, Distillation
from robustseg.workflows.compare import DefenceComparison

pytestmark = pytest.mark.slow

EPS = 0.25
T = 20.0
TRAIN, TEST = 6, 10


def _case(index: int) -> dict[str, Any]:
    """A phantom case at 6 mm, z-scored per channel over the brain, padded to a multiple of 4."""
    case = generate_case(index, seed=5, config=PhantomConfig(spacing=6.0))
    image = case["image"].astype(np.float32)
    brain = image.any(axis=0)
    for c in range(len(image)):
        values = image[c][brain]
        image[c][brain] = (values - values.mean()) / values.std()
    label = case["label"].astype(np.int64)[None]
    pad = [(0, 0)] + [(0, -s % 4) for s in image.shape[1:]]
    return {
        "image": torch.from_numpy(np.pad(image, pad)),
        "label": torch.from_numpy(np.pad(label, pad)),
        "case_id": f"case{index:02d}",
    }


def _inferer(x: torch.Tensor, net: nn.Module) -> torch.Tensor:
    return net(x)


def _fit(net: nn.Module, cases: list[dict], steps: int, objective: Any, lr: float = 5e-3) -> nn.Module:
    """Train ``net`` with ``objective(net, inferer, loss, images, labels, iteration=)`` on pairs of cases."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    weight = torch.tensor([0.2, 1.0, 1.0, 1.0])

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, labels[:, 0], weight=weight)

    images = torch.stack([c["image"] for c in cases])
    labels = torch.stack([c["label"] for c in cases])
    for step in range(steps):
        batch = [step % len(cases), (step + 3) % len(cases)]
        net.train()
        value, _ = objective(net, _inferer, loss, images[batch], labels[batch], iteration=step)
        opt.zero_grad()
        value.backward()
        opt.step()
    return net.eval()


def _plain(net: nn.Module, inferer: Any, loss: Any, images: torch.Tensor, labels: torch.Tensor, **_: Any) -> tuple:
    pred = inferer(images, net)
    return loss(pred, labels), pred


def _scaled_output(net: nn.Module, factor: float) -> nn.Module:
    """A copy of ``net`` with its last convolution's weight and bias multiplied by ``factor``."""
    net = copy.deepcopy(net)
    last = [m for m in net.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.mul_(factor)
    return net


def _save(net: nn.Module, folder: Path, defence: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    torch.save(net.state_dict(), folder / "model.pt")
    if defence is not None:
        (folder / "defence.json").write_text(json.dumps(defence))
    return folder / "model.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Baseline, adversarially trained and distilled UNets (about a minute), and the held-out cases."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("defended")
    cases = [_case(i) for i in range(TRAIN + TEST)]
    train = cases[:TRAIN]
    net = UNet(3, 4, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="instance")
    baseline = _fit(net, train, 150, _plain)
    adversarial = AdversarialTraining("pgd", eps=EPS, steps=1, seed=0)
    adv = _fit(copy.deepcopy(baseline), train, 80, adversarial, lr=2e-3)
    hot = _scaled_output(baseline, T)
    teacher = _fit(
        copy.deepcopy(hot), train, 60, lambda n, i, loss, x, y, **_: _plain(n, i, AtTemperature(loss, T), x, y), lr=2e-3
    )
    student = _fit(copy.deepcopy(hot), train, 80, Distillation(teacher, temperature=T), lr=2e-3)
    distilled = {"defence": "distillation", "stage": "student", "temperature": T}
    return {
        "network": net,
        "cases": cases[TRAIN:],
        "root": root,
        "models": [
            f"baseline={_save(baseline, root / 'baseline')}",
            f"adv_pgd1={_save(adv, root / 'adv_pgd1', adversarial.settings())}",
            f"distilled={_save(student, root / 'distilled', distilled)}",
        ],
    }


def _comparison(trained: dict, out: Path, **kwargs: Any) -> DefenceComparison:
    settings: dict[str, Any] = {
        "attacks": [{"name": "pgd", "steps": 3}],
        "margin_attacks": [],  # covered by the bundle test; not needed here
        "eps": [EPS],
        "hd95": False,
        "num_examples": 0,
        **kwargs,
    }
    net = UNet(3, 4, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="instance")
    return DefenceComparison(net, trained["models"], _inferer, trained["cases"], output_dir=out, **settings)


@pytest.fixture(scope="module")
def compared(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[DefenceComparison, dict]:
    comparison = _comparison(trained, tmp_path_factory.mktemp("compare"))
    return comparison, comparison.run()


def _test(stats: list[dict], **where: str) -> dict:
    found = [r for r in stats if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, len(found))
    return found[0]


def test_adversarial_training_lowers_the_dice_drop_under_pgd(compared: tuple) -> None:
    _, outcome = compared
    stats = outcome["statistics"]
    for region in ("WT", "TC"):
        drop = _test(
            stats, measure="drop", condition=f"pgd@{EPS:g}", region=region, model_a="baseline", model_b="adv_pgd1"
        )
        assert drop["mean_a"] > drop["mean_b"] + 0.1, drop  # the baseline loses more Dice
        assert drop["p_value"] < 0.01 and drop["median_difference"] > 0, drop
        assert drop["p_holm"] >= drop["p_value"]
    clean = _test(stats, measure="score", condition="clean", region="WT", model_a="baseline", model_b="adv_pgd1")
    assert clean["n"] == TEST and not np.isnan(clean["p_value"])  # the clean cost is tested, whichever way it falls


def test_the_distilled_students_raw_logit_attack_is_masked_and_flagged(compared: tuple) -> None:
    comparison, outcome = compared
    assert [m.temperature for m in comparison.models] == [1.0, 1.0, T]  # read from the student's defence.json
    rows = [r for r in outcome["rows"] if r["model"] == "distilled" and r["region"] == "WT"]
    mean = {c: np.nanmean([r["dice"] for r in rows if r["condition"] == c]) for c in {r["condition"] for r in rows}}
    assert mean[f"pgd-T@{EPS:g}"] < mean[f"pgd@{EPS:g}"] - 0.1, mean  # the raw-logit attack is weaker
    checks = {c.name: c for c in outcome["checks"]["distilled"]}
    assert not checks["temperature"].passed, checks["temperature"]
    assert "temperature" not in {c.name for c in outcome["checks"]["baseline"]}  # T = 1: nothing to compare
    baseline = [r for r in outcome["rows"] if r["model"] == "baseline" and r["condition"] == f"pgd-T@{EPS:g}"]
    assert baseline and all(r["alias_of"] == f"pgd@{EPS:g}" for r in baseline)


def test_the_same_on_2d_scenes_adversarial_training_lowers_the_miou_drop(tmp_path: Path) -> None:
    """A 2-D UNet on 32-pixel scenes, fine-tuned by PGD-1 at 8/255 in [0, 1] pixel units; scored by per-image mIoU."""
    from robustseg.data.natural import get_dataset
    from robustseg.data.scenes import SceneConfig, SceneGenerator

    scheme = get_dataset("scenes").label_scheme()
    generator = SceneGenerator(SceneConfig(size=32), seed=0)
    cases = []
    for k in range(76):
        image, label = generator.scene(k)
        cases.append(
            {
                "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255,
                "label": torch.from_numpy(label.astype(np.int64))[None],
                "case_id": f"scene{k:02d}",
            }
        )
    train, test = cases[:56], cases[56:]
    images, labels = torch.stack([c["image"] for c in train]), torch.stack([c["label"] for c in train])

    def fit(net: nn.Module, steps: int, objective: Any, lr: float) -> nn.Module:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for step in range(steps):
            batch = torch.randint(0, len(train), (8,), generator=torch.Generator().manual_seed(step))
            net.train()
            loss = lambda z, y: nn.functional.cross_entropy(z, y[:, 0], ignore_index=scheme.ignore_index)  # noqa: E731
            value, _ = objective(net, _inferer, loss, images[batch], labels[batch], iteration=step)
            opt.zero_grad()
            value.backward()
            opt.step()
        return net.eval()

    def unet() -> nn.Module:
        return UNet(2, 3, len(scheme.class_names), channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch")

    torch.manual_seed(0)
    pixels = {"unit": "[0, 1] pixel units", "clip_min": 0.0, "clip_max": 1.0, "mask": "none"}
    baseline = fit(unet(), 500, _plain, 5e-3)
    adversarial = AdversarialTraining("pgd", eps=8 / 255, steps=1, scheme=scheme, seed=0, **pixels)
    adv = fit(copy.deepcopy(baseline), 300, adversarial, 2e-3)
    models = [f"baseline={_save(baseline, tmp_path / 'baseline')}", f"adv={_save(adv, tmp_path / 'adv', {})}"]
    comparison = DefenceComparison(
        unet(),
        models,
        _inferer,
        test,
        [{"name": "pgd", "steps": 3}],
        [8 / 255],
        tmp_path / "compare",
        scheme=scheme,
        metric="iou",
        hd95=False,
        num_examples=0,
        margin_attacks=[],
        empty_policy="ignore",
        **pixels,
    )
    stats = comparison.run()["statistics"]
    drop = _test(stats, measure="drop", condition="pgd@0.0313725", region="mIoU", model_a="baseline", model_b="adv")
    assert drop["mean_a"] > drop["mean_b"] and drop["p_value"] < 0.02, drop
    attacked = _test(stats, measure="score", condition="pgd@0.0313725", region="mIoU")
    assert attacked["mean_b"] > attacked["mean_a"] and attacked["p_value"] < 0.01, attacked
