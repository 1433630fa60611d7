"""Self-checks flag probability outputs, masked gradients, inverted attack strength and random predictions."""

from __future__ import annotations

import torch

from robustseg.evaluation.selfchecks import check_attack_order, check_determinism, check_gradients, check_logits


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
    assert not check.passed and "case(s) [1]" in check.detail
    grad[1, 0, 0, 0] = float("nan")
    assert "non-finite" in check_gradients(grad, mask).detail
    assert check_gradients(torch.ones(2, 4, 5, 5), mask).passed


def test_gradient_outside_the_mask_does_not_count() -> None:
    grad = torch.zeros(1, 1, 4, 4)
    grad[0, 0, 0, 0] = 5.0  # only outside the brain
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 2:, 2:] = 1
    assert not check_gradients(grad, mask).passed


def test_weaker_attack_beating_stronger_is_flagged() -> None:
    assert check_attack_order({"fgsm": [0.6, 0.5], "ifgsm": [0.3, 0.2]}).passed
    flagged = check_attack_order({"fgsm": [0.2, 0.1], "ifgsm": [0.6, 0.5]})
    assert not flagged.passed and "0.1500" in flagged.detail
    assert check_attack_order({"fgsm": [0.2]}).detail.startswith("needs both")


def test_random_predictions_are_flagged() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Dropout(0.5))
    x = torch.randn(2, 3, 8, 8)
    net.train()
    assert not check_determinism(net, x).passed
    net.eval()
    assert check_determinism(net, x).passed
