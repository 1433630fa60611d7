"""Every attack lowers the Dice of a UNet trained on the BraTS phantoms (real anatomy, four modalities, 3 regions)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from robustseg.attacks import (
    FGSM,
    Attack,
    IterativeFGSM,
    TargetedIterativeFGSM,
    ThreatModel,
    relabel_enhancing_as_oedema,
)
from robustseg.data.phantom import PhantomConfig, generate_case
from robustseg.evaluation.metrics import case_metrics
from robustseg.labels import BRATS

pytestmark = pytest.mark.slow

SPACING = 6.0  # mm: 33 x 39 x 32 voxels, the whole volume in one forward pass
EPS = 0.25  # standard deviations of the z-scored input, the demo's budget

ATTACKS: dict[str, Callable[[nn.Module, ThreatModel], Attack]] = {
    "fgsm": lambda net, threat: FGSM(net, threat),
    "ifgsm": lambda net, threat: IterativeFGSM(net, threat, steps=5),
    "pgd": lambda net, threat: IterativeFGSM(net, threat, steps=5, random_start=True, seed=3),
    "segpgd": lambda net, threat: IterativeFGSM(net, threat, steps=5, loss="segpgd"),
    "cospgd": lambda net, threat: IterativeFGSM(net, threat, steps=5, loss="cospgd"),
    "dice": lambda net, threat: IterativeFGSM(net, threat, steps=5, loss="dice"),
    "tifgsm": lambda net, threat: TargetedIterativeFGSM(net, threat, steps=5),
    "tifgsm-enhancing_as_oedema": lambda net, threat: TargetedIterativeFGSM(
        net, threat, steps=5, target_fn=relabel_enhancing_as_oedema
    ),
}


def _case(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One phantom case, z-scored per channel over the brain as the bundle does, padded to a multiple of 4."""
    case = generate_case(index, seed=5, config=PhantomConfig(spacing=SPACING))
    image = case["image"].astype(np.float32)
    brain = image.any(axis=0)
    for c in range(len(image)):
        values = image[c][brain]
        image[c][brain] = (values - values.mean()) / values.std()
    label = case["label"].astype(np.int64)[None]
    pad = [(0, 0)] + [(0, -s % 4) for s in image.shape[1:]]
    return torch.from_numpy(np.pad(image, pad)), torch.from_numpy(np.pad(label, pad))


@pytest.fixture(scope="module")
def phantom_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small UNet trained on 6 phantom cases (about 20 s), and 3 held-out cases."""
    torch.manual_seed(0)
    cases = [_case(i) for i in range(9)]
    train_x = torch.stack([c[0] for c in cases[:6]])
    train_y = torch.stack([c[1] for c in cases[:6]])
    net = UNet(3, 4, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="instance")
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    weight = torch.tensor([0.2, 1.0, 1.0, 1.0])
    for step in range(150):
        batch = [step % 6, (step + 3) % 6]
        loss = nn.functional.cross_entropy(net(train_x[batch]), train_y[batch, 0], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, torch.stack([c[0] for c in cases[6:]]), torch.stack([c[1] for c in cases[6:]])


def _region_dice(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean Dice per region over the cases, with MONAI's metric (robustseg.evaluation.case_metrics)."""
    with torch.no_grad():
        prediction = BRATS.class_map_from_logits(net(images))
    rows = case_metrics(prediction, labels, scheme=BRATS)
    return {r: float(np.mean([row[f"{r}_dice"] for row in rows])) for r in BRATS.region_names}


def test_the_phantom_model_segments_held_out_cases(phantom_model: tuple) -> None:
    net, images, labels = phantom_model
    clean = _region_dice(net, images, labels)
    assert clean["WT"] > 0.75 and clean["TC"] > 0.6, clean


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_lowers_dice_of_the_phantom_model(phantom_model: tuple, name: str) -> None:
    net, images, labels = phantom_model
    clean = _region_dice(net, images, labels)
    result = ATTACKS[name](net, ThreatModel("linf", EPS))(images, labels)
    attacked = _region_dice(net, result.adversarial, labels)
    assert float(result.linf.max()) <= EPS + 1e-6
    if name == "tifgsm-enhancing_as_oedema":  # moves ET into oedema: ET and TC fall, WT need not
        assert attacked["ET"] < clean["ET"] - 0.1, (clean, attacked)
    else:
        assert attacked["WT"] < clean["WT"] - 0.1, (clean, attacked)


def test_ifgsm_is_at_least_as_strong_as_fgsm_on_the_phantom_model(phantom_model: tuple) -> None:
    net, images, labels = phantom_model
    threat = ThreatModel("linf", EPS / 2)
    one_step = _region_dice(net, FGSM(net, threat)(images, labels).adversarial, labels)
    iterative = _region_dice(net, IterativeFGSM(net, threat, steps=5)(images, labels).adversarial, labels)
    assert np.mean(list(iterative.values())) <= np.mean(list(one_step.values()))
