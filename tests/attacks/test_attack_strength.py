"""Attacks on a trained toy segmenter (bright blobs in a 'brain'): they lower Dice, in the expected order."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from attack_helpers import BLOBS, blob_batch, hand_dice, train_blob_net
from monai.inferers import SlidingWindowInferer
from torch import nn

from robustseg.attacks import (
    FGSM,
    Attack,
    IterativeFGSM,
    TargetedIterativeFGSM,
    ThreatModel,
    agreement_per_case,
    dice_per_case,
    erase_tumour,
    per_sample_norm,
)

EPS = {"linf": 0.3, "l2": 3.0}

ATTACKS: dict[str, Callable[[nn.Module, ThreatModel], Attack]] = {
    "fgsm": lambda net, threat: FGSM(net, threat, scheme=BLOBS),
    "ifgsm": lambda net, threat: IterativeFGSM(net, threat, steps=5, scheme=BLOBS),
    "pgd": lambda net, threat: IterativeFGSM(net, threat, steps=5, random_start=True, scheme=BLOBS),
    "segpgd": lambda net, threat: IterativeFGSM(net, threat, steps=5, loss="segpgd", scheme=BLOBS),
    "cospgd": lambda net, threat: IterativeFGSM(net, threat, steps=5, loss="cospgd", scheme=BLOBS),
    "dice": lambda net, threat: IterativeFGSM(net, threat, steps=5, loss="dice", scheme=BLOBS),
    "tifgsm": lambda net, threat: TargetedIterativeFGSM(net, threat, steps=5, scheme=BLOBS),
}


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def trained(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A conv net trained for 100 steps on the blob task, and 4 held-out cases it segments well."""
    dims = request.param
    net = train_blob_net(dims)
    images, labels = blob_batch(dims, 4, torch.Generator().manual_seed(123))
    return net, images, labels


def _dice(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hand_dice(net(images).argmax(dim=1, keepdim=True), labels)


def test_toy_model_is_trained_and_scores_agree_with_a_hand_dice(trained: tuple) -> None:
    net, images, labels = trained
    clean = _dice(net, images, labels)
    assert clean.min() > 0.8
    with torch.no_grad():
        prediction = net(images).argmax(dim=1, keepdim=True)
    torch.testing.assert_close(dice_per_case(BLOBS.to_regions(prediction), labels, BLOBS), clean)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_lowers_dice(trained: tuple, name: str, norm: str) -> None:
    net, images, labels = trained
    clean = _dice(net, images, labels)
    result = ATTACKS[name](net, ThreatModel(norm, EPS[norm]))(images, labels)
    attacked = _dice(net, result.adversarial, labels)
    assert attacked.mean() < clean.mean() - 0.05
    if name in {"ifgsm", "segpgd", "cospgd", "dice"}:
        assert (result.loss_history[-1] > result.loss_history[0]).all()  # the objective rose
    if name == "tifgsm":
        assert (result.loss_history[-1] < result.loss_history[0]).all()  # the loss to the target fell


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_ifgsm_is_at_least_as_strong_as_fgsm(trained: tuple, norm: str) -> None:
    net, images, labels = trained
    threat = ThreatModel(norm, EPS[norm])
    one_step = _dice(net, FGSM(net, threat, scheme=BLOBS)(images, labels).adversarial, labels)
    iterative = _dice(net, IterativeFGSM(net, threat, steps=10, scheme=BLOBS)(images, labels).adversarial, labels)
    assert iterative.mean() <= one_step.mean()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_are_never_weaker_per_case_than_the_first_run(trained: tuple, norm: str) -> None:
    net, images, labels = trained
    threat = ThreatModel(norm, EPS[norm] / 3)
    kwargs = {"steps": 3, "random_start": True, "seed": 11, "scheme": BLOBS}
    single = IterativeFGSM(net, threat, **kwargs)(images, labels)
    several = IterativeFGSM(net, threat, restarts=3, **kwargs)(images, labels)
    d_single, d_several = _dice(net, single.adversarial, labels), _dice(net, several.adversarial, labels)
    assert (d_several <= d_single).all()
    tie = d_several == d_single
    assert (several.loss_history[-1][tie] >= single.loss_history[-1][tie] - 1e-6).all()
    assert (per_sample_norm(several.perturbation, norm) <= threat.eps + 1e-5).all()


def test_targeted_attacks_raise_agreement_with_their_target(trained: tuple) -> None:
    net, images, labels = trained
    threat = ThreatModel("linf", EPS["linf"])
    attack = TargetedIterativeFGSM(net, threat, steps=5, scheme=BLOBS)

    def agreement(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return agreement_per_case(net(x).argmax(dim=1, keepdim=True), target, BLOBS)

    erased = erase_tumour(labels)
    default = attack(images, labels)
    assert torch.equal(default.adversarial, attack(images, labels, erased).adversarial)  # the default target
    assert (agreement(default.adversarial, erased) > agreement(images, erased)).all()
    moved = torch.roll(labels, shifts=4, dims=2)  # any label map: the blob moved
    result = attack(images, labels, moved)
    assert (agreement(result.adversarial, moved) > agreement(images, moved)).all()
    also_ifgsm = IterativeFGSM(net, threat, steps=5, scheme=BLOBS)(images, labels, moved)
    assert also_ifgsm.targeted and (agreement(also_ifgsm.adversarial, moved) > agreement(images, moved)).all()


def test_attack_through_a_sliding_window_lowers_dice(trained: tuple) -> None:
    net, images, labels = trained
    roi = tuple(s // 2 + 1 for s in images.shape[2:])
    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=4, overlap=0.25)
    with torch.no_grad():  # the attack enables gradients itself
        clean = hand_dice(inferer(images, net).argmax(dim=1, keepdim=True), labels)
        adv = IterativeFGSM(net, ThreatModel("linf", EPS["linf"]), steps=5, inferer=inferer, scheme=BLOBS)(
            images, labels
        ).adversarial
        attacked = hand_dice(inferer(adv, net).argmax(dim=1, keepdim=True), labels)
    assert attacked.mean() < clean.mean() - 0.05
