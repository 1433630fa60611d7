"""Checks an audit runs on itself, so that a robustness number that cannot be trusted says so (after AutoAttack).

Each check returns a :class:`SelfCheck` with a verdict and an explanation written for the report. None of them stops a
sweep: they flag results that are likely to overstate robustness.

* ``probabilities``: the model returns probabilities instead of logits. Softmax-saturated outputs flatten the loss,
  so gradient attacks are weaker than they should be.
* ``gradients``: the input gradient is not finite, or exactly zero on a large share of the attacked voxels. This is
  gradient masking (a saturated softmax, defensive distillation): the attack cannot move there, and the model only
  looks robust.
* ``noise_baseline``: an attack lowers Dice no more than random noise of the same norm and budget does. A gradient
  attack that cannot beat noise is not following a useful gradient.
* ``attack_order``: an attack with fewer steps or restarts (FGSM) beats one with more (i-FGSM, PGD restarts) at the
  same budget, loss and target. The stronger attack is then failing to optimise (too small a step, masked or noisy
  gradients).
* ``transfer``: adversarial inputs crafted on another model hurt this model more than white-box attacks on itself,
  which happens when its own gradients are masked.
* ``temperature``: the attack on the logits divided by the model's temperature (a distilled student's T) lowers Dice
  more than the same attack on its raw logits: the raw softmax is saturated and its gradient masked.
* ``determinism``: predictions differ between two identical calls (dropout left on, randomised defences). Random
  outputs make gradient attacks look weaker; attack the expectation instead (EOT).

Every check on Dice compares means over the same cases and regions (NaN dropped pairwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "SelfCheck",
    "check_attack_order",
    "check_determinism",
    "check_gradients",
    "check_logits",
    "check_noise_baseline",
    "check_temperature_scaling",
    "check_transfer",
    "paired_means",
]


@dataclass(frozen=True)
class SelfCheck:
    """The verdict of one self-check.

    Attributes:
        name: ``probabilities``, ``gradients``, ``attack_order`` or ``determinism``.
        passed: ``False`` when the results are suspect.
        detail: what was measured.
        explanation: why it matters and what to do, for the report.
    """

    name: str
    passed: bool
    detail: str
    explanation: str


def check_logits(outputs: torch.Tensor, head: str = "softmax", atol: float = 1e-4) -> SelfCheck:
    """Flag a model that returns probabilities: all values in [0, 1] and, for softmax heads, channels summing to 1."""
    in_unit = bool(((outputs >= -atol) & (outputs <= 1 + atol)).all())
    sums_to_one = bool(torch.allclose(outputs.sum(dim=1), torch.ones(()), atol=1e-3)) if head == "softmax" else True
    suspect = in_unit and sums_to_one
    return SelfCheck(
        name="probabilities",
        passed=not suspect,
        detail=f"outputs in [{outputs.min().item():.3g}, {outputs.max().item():.3g}]"
        + (", channels sum to 1" if head == "softmax" and sums_to_one else ""),
        explanation="The model seems to return probabilities, not logits; losses on probabilities saturate and "
        "understate what an attack can do. Attack the logits (remove the final activation from the network)."
        if suspect
        else "The model returns logits.",
    )


def check_gradients(
    gradient: torch.Tensor, mask: torch.Tensor | None = None, max_zero_share: float = 0.5, tol: float = 0.0
) -> SelfCheck:
    """Flag input gradients that are non-finite, or zero on at least ``max_zero_share`` of some case's voxels.

    A voxel counts as zero when the gradient of every channel there is at most ``tol`` in size. A trained model
    has a non-zero input gradient almost everywhere its receptive fields see a non-zero loss; a saturated softmax or
    a distilled model has exact zeros wherever it is confident.

    Args:
        gradient: ``(N, C, *spatial)`` gradient of the attack loss with respect to the input.
        mask: ``(N, 1, *spatial)`` voxels the attack may change; all voxels when ``None``.
        max_zero_share: the share of zero-gradient voxels inside the mask from which a case fails; 1 flags only a
            gradient that is zero on every attacked voxel (what an attack warns about at any loss, since SegPGD's
            first step weighs misclassified voxels 0).
        tol: largest absolute gradient still counted as zero.
    """
    finite = bool(torch.isfinite(gradient).all())
    zero = (torch.nan_to_num(gradient).abs() <= tol).all(dim=1, keepdim=True)
    inside = torch.ones_like(zero) if mask is None else mask.to(torch.bool).expand_as(zero)
    counts = inside.flatten(1).sum(dim=1).clamp_min(1)
    shares = ((zero & inside).flatten(1).sum(dim=1) / counts).tolist()
    masked = [i for i, share in enumerate(shares) if share >= max_zero_share]
    passed = finite and not masked
    problems = [] if finite else ["non-finite values"]
    if masked:
        where = (
            "every attacked voxel" if max_zero_share >= 1 else f"at least {max_zero_share:.0%} of the attacked voxels"
        )
        problems.append(f"zero gradient on {where} of case(s) {masked}")
    shares_text = f"zero-gradient share inside the mask per case {[round(v, 4) for v in shares]}"
    return SelfCheck(
        name="gradients",
        passed=passed,
        detail="; ".join([*problems, shares_text]),
        explanation="Gradient masking: the attack cannot follow the gradient, so robustness is overstated. Attack "
        "temperature-scaled logits, use a margin loss on logits, a transfer attack from an undefended model, or a "
        "gradient-free attack."
        if not passed
        else "Input gradients are finite and non-zero on most attacked voxels.",
    )


def paired_means(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int]:
    """Means of two paired score lists over the pairs where neither is NaN, and the number of pairs."""
    x = torch.tensor(list(a), dtype=torch.float64)
    y = torch.tensor(list(b), dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired scores must have one length but have {x.numel()} and {y.numel()}.")
    keep = torch.isfinite(x) & torch.isfinite(y)
    n = int(keep.sum())
    if n == 0:
        return math.nan, math.nan, 0
    return x[keep].mean().item(), y[keep].mean().item(), n


def _compare(
    name: str,
    first: str,
    first_dice: Sequence[float],
    second: str,
    second_dice: Sequence[float],
    fails: Callable[[float, float], bool],
    warning: str,
    fine: str,
) -> SelfCheck:
    """Compare the paired means of two conditions; ``fails(mean_first, mean_second)`` flags the results."""
    a, b, n = paired_means(first_dice, second_dice)
    passed = n == 0 or not fails(a, b)
    return SelfCheck(
        name=name,
        passed=passed,
        detail=f"mean Dice {a:.4f} under {first}, {b:.4f} under {second} ({n} case x region pairs)",
        explanation=fine if passed else warning,
    )


def check_noise_baseline(
    attack: str, attack_dice: Sequence[float], noise: str, noise_dice: Sequence[float], margin: float = 0.0
) -> SelfCheck:
    """Flag an attack whose mean Dice is not below that of random noise of the same norm and budget (paired)."""
    return _compare(
        "noise_baseline",
        attack,
        attack_dice,
        noise,
        noise_dice,
        lambda attacked, noised: attacked >= noised - margin,
        f"{attack} does no better than random noise of the same norm: its gradients do not point anywhere useful "
        "(masked or obfuscated gradients), or the model is robust at this budget. Do not read its Dice as "
        "robustness without a transfer or gradient-free attack.",
        f"{attack} is stronger than {noise}.",
    )


def check_transfer(
    white_box: str, white_box_dice: Sequence[float], transfer: str, transfer_dice: Sequence[float], margin: float = 0.0
) -> SelfCheck:
    """Flag a transfer attack from another model that lowers Dice more than the white-box attack (paired means)."""
    return _compare(
        "transfer",
        white_box,
        white_box_dice,
        transfer,
        transfer_dice,
        lambda own, transferred: transferred < own - margin,
        f"Inputs crafted on another model ({transfer}) hurt this model more than a white-box attack on it: its own "
        "gradients mislead the attack (gradient masking), so white-box numbers overstate robustness.",
        f"The white-box {white_box} is at least as strong as {transfer}.",
    )


def check_temperature_scaling(
    plain: str, plain_dice: Sequence[float], scaled: str, scaled_dice: Sequence[float], margin: float = 0.0
) -> SelfCheck:
    """Flag an attack on raw logits that lowers mean Dice less than the same attack on logits / T (paired means)."""
    return _compare(
        "temperature",
        plain,
        plain_dice,
        scaled,
        scaled_dice,
        lambda raw, tempered: tempered < raw - margin,
        f"{scaled} (the loss on the logits divided by the model's temperature) is stronger than {plain} on the raw "
        "logits: the raw softmax is saturated, so its cross-entropy gradient vanishes or points nowhere useful "
        "(gradient masking, as defensive distillation does). Read the model's robustness from the scaled, margin "
        "and transfer attacks, not from the raw one.",
        f"{plain} on the raw logits is at least as strong as {scaled}.",
    )


def check_attack_order(
    weaker: str, weaker_dice: Sequence[float], stronger: str, stronger_dice: Sequence[float], margin: float = 0.0
) -> SelfCheck:
    """Flag an attack with fewer steps or restarts that lowers mean Dice more than one with more (paired scores)."""
    return _compare(
        "attack_order",
        weaker,
        weaker_dice,
        stronger,
        stronger_dice,
        lambda weak, strong: weak < strong - margin,
        f"{weaker} is stronger than {stronger} at the same budget: the attack with more steps or restarts is not "
        "optimising (too few steps, a step size too small, or masked gradients). Its numbers are an upper bound.",
        f"{stronger} is at least as strong as {weaker}.",
    )


def check_determinism(
    forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, reference: torch.Tensor | None = None
) -> SelfCheck:
    """Flag a forward pass whose class maps differ between two identical calls on ``inputs``.

    ``reference`` is the output of a first call when the caller already has it (one forward is then enough).
    """
    with torch.no_grad():
        first = (forward(inputs) if reference is None else reference).argmax(dim=1)
        second = forward(inputs).argmax(dim=1)
    changed = (first != second).float().mean().item()
    return SelfCheck(
        name="determinism",
        passed=changed == 0.0,
        detail=f"{changed:.2%} of voxels change class between two identical calls",
        explanation="Predictions are random (dropout in train mode, or a randomised defence): gradient attacks on "
        "one draw understate the risk. Put the model in eval mode or attack the expectation over draws (EOT)."
        if changed
        else "Predictions are deterministic.",
    )
