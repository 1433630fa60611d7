"""Self-checks flag probability outputs, masked gradients, inverted attack strength and random predictions."""

from __future__ import annotations

import math

import pytest
import torch

from robustseg.evaluation.selfchecks import (
    check_attack_order,
    check_determinism,
    check_gradients,
    check_logits,
    check_noise_baseline,
    check_transfer,
)


def test_probabilities_are_flagged_and_logits_pass() -> None:
    logits = torch.randn(2, 4, 6, 6, 6, generator=torch.Generator().manual_seed(0)) * 3
    assert check_logits(logits).passed
    probs = check_logits(logits.softmax(dim=1))
    assert not probs.passed and "logits" in probs.explanation
    assert not check_logits(torch.sigmoid(logits[:, :3]), head="sigmoid").passed
    # values in [0, 1] that do not sum to 1 over channels are not softmax probabilities
    assert check_logits(torch.full((1, 4, 3, 3), 0.1)).passed


def test_zero_or_non_finite_gradients_fail() -> None:
    grad = torch.zeros(2, 4, 5, 5)
    grad[0, 1, 2, 2] = 1e-3
    mask = torch.ones(2, 1, 5, 5)
    check = check_gradients(grad, mask)
    assert not check.passed and "case(s) [0, 1]" in check.detail and "[0.96, 1.0]" in check.detail
    grad[1, 0, 0, 0] = float("nan")
    assert "non-finite" in check_gradients(grad, mask).detail
    assert check_gradients(torch.ones(2, 4, 5, 5), mask).passed


def test_a_gradient_zero_on_most_of_the_mask_fails_though_not_zero_everywhere() -> None:
    """The old check passed any case with one non-zero voxel; a saturated model has exact zeros almost everywhere."""
    grad = torch.ones(1, 4, 10, 10)
    grad[:, :, :7] = 0.0  # 70 % of the voxels: zero in every channel
    grad[:, 0, 0, 0] = 1.0  # one channel non-zero does not make a voxel zero-gradient
    check = check_gradients(grad, torch.ones(1, 1, 10, 10))
    assert not check.passed and "[0.69]" in check.detail
    assert check_gradients(grad, torch.ones(1, 1, 10, 10), max_zero_share=0.75).passed


def test_gradient_outside_the_mask_does_not_count() -> None:
    grad = torch.zeros(1, 1, 4, 4)
    grad[0, 0, 0, 0] = 5.0  # only outside the brain
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 2:, 2:] = 1
    assert not check_gradients(grad, mask).passed


def test_weaker_attack_beating_stronger_is_flagged() -> None:
    assert check_attack_order("fgsm", [0.6, 0.5], "ifgsm", [0.3, 0.2]).passed
    flagged = check_attack_order("fgsm", [0.2, 0.1], "ifgsm", [0.6, 0.5])
    assert not flagged.passed and "0.1500" in flagged.detail
    with pytest.raises(ValueError, match="one length"):
        check_attack_order("fgsm", [0.2], "ifgsm", [0.3, 0.4])
    assert check_attack_order("fgsm", [math.nan], "ifgsm", [0.9]).passed  # no pair to compare


def test_an_attack_no_stronger_than_noise_and_a_stronger_transfer_are_flagged() -> None:
    assert check_noise_baseline("fgsm@0.1", [0.3, 0.4], "noise@0.1", [0.8, 0.9]).passed
    flagged = check_noise_baseline("fgsm@0.1", [0.85, 0.9], "noise@0.1", [0.8, 0.9])
    assert not flagged.passed and "0.8750 under fgsm@0.1, 0.8500 under noise@0.1" in flagged.detail
    assert not check_noise_baseline("fgsm@0.1", [0.8, 0.9], "noise@0.1", [0.8, 0.9]).passed  # equal: not stronger
    assert check_transfer("pgd@0.1", [0.2, 0.3], "transfer@0.1", [0.5, 0.6]).passed
    assert not check_transfer("pgd@0.1", [0.7, 0.8], "transfer@0.1", [0.5, 0.6]).passed


def test_random_predictions_are_flagged() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Dropout(0.5))
    x = torch.randn(2, 3, 8, 8)
    net.train()
    assert not check_determinism(net, x).passed
    net.eval()
    assert check_determinism(net, x).passed
