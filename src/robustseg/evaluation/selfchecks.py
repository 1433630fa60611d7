"""Checks an audit runs on itself, so that a robustness number that cannot be trusted says so (after AutoAttack).

Each check returns a :class:`SelfCheck` with a verdict and an explanation written for the report. None of them stops a
sweep: they flag results that are likely to overstate robustness.

* ``probabilities``: the model returns probabilities instead of logits. Softmax-saturated outputs flatten the loss,
  so gradient attacks are weaker than they should be.
* ``gradients``: the input gradient is zero or not finite on the attacked voxels. This is gradient masking
  (defensive distillation is the classic case): the attack cannot move, and the model only looks robust.
* ``attack_order``: a weaker attack (FGSM) beats a stronger one (i-FGSM) at the same budget. The stronger attack is
  then failing to optimise, often because of masked or noisy gradients.
* ``determinism``: predictions differ between two identical calls (dropout left on, randomised defences). Random
  outputs make gradient attacks look weaker; attack the expectation instead (EOT).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["SelfCheck", "check_attack_order", "check_determinism", "check_gradients", "check_logits"]


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


def check_gradients(gradient: torch.Tensor, mask: torch.Tensor | None = None, tol: float = 0.0) -> SelfCheck:
    """Flag input gradients that are non-finite, or zero everywhere on the attacked voxels of some case.

    Args:
        gradient: ``(N, C, *spatial)`` gradient of the attack loss with respect to the input.
        mask: ``(N, 1, *spatial)`` voxels the attack may change; all voxels when ``None``.
        tol: largest absolute gradient still counted as zero.
    """
    finite = bool(torch.isfinite(gradient).all())
    weights = torch.ones_like(gradient[:, :1]) if mask is None else mask.to(gradient.dtype)
    magnitude = (torch.nan_to_num(gradient).abs() * weights).flatten(1).amax(dim=1)
    zero_cases = [i for i, m in enumerate(magnitude.tolist()) if m <= tol]
    passed = finite and not zero_cases
    problems = []
    if not finite:
        problems.append("non-finite values")
    if zero_cases:
        problems.append(f"zero gradient on every attacked voxel of case(s) {zero_cases}")
    return SelfCheck(
        name="gradients",
        passed=passed,
        detail="; ".join(problems)
        if problems
        else f"max |gradient| per case {[round(m, 6) for m in magnitude.tolist()]}",
        explanation="Gradient masking: the attack cannot follow the gradient, so robustness is overstated. Attack "
        "temperature-scaled logits, use a transfer attack from an undefended model, or a gradient-free attack."
        if not passed
        else "Input gradients are finite and non-zero.",
    )


def check_attack_order(
    dice_by_attack: Mapping[str, Sequence[float]], weaker: str = "fgsm", stronger: str = "ifgsm", margin: float = 0.0
) -> SelfCheck:
    """Flag a weaker attack that lowers mean Dice more than a stronger one at the same budget (paired by case)."""
    if weaker not in dice_by_attack or stronger not in dice_by_attack:
        return SelfCheck("attack_order", True, f"needs both {weaker} and {stronger}", "Not checked.")
    weak = torch.tensor(list(dice_by_attack[weaker]), dtype=torch.float64)
    strong = torch.tensor(list(dice_by_attack[stronger]), dtype=torch.float64)
    if weak.shape != strong.shape:
        raise ValueError(f"{weaker} and {stronger} must be scored on the same cases: {weak.shape} vs {strong.shape}.")
    keep = torch.isfinite(weak) & torch.isfinite(strong)
    weak_mean, strong_mean = weak[keep].mean().item(), strong[keep].mean().item()
    passed = weak_mean >= strong_mean - margin
    cases = int(keep.sum())
    return SelfCheck(
        name="attack_order",
        passed=passed,
        detail=f"mean Dice {weak_mean:.4f} under {weaker}, {strong_mean:.4f} under {stronger} ({cases} cases)",
        explanation=f"{weaker} is stronger than {stronger} at the same budget: the iterative attack is not "
        "optimising (too few steps, a step size too small, or masked gradients). Its numbers are an upper bound."
        if not passed
        else f"{stronger} is at least as strong as {weaker}.",
    )


def check_determinism(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> SelfCheck:
    """Flag a forward pass whose class maps differ between two identical calls on ``inputs``."""
    with torch.no_grad():
        first = forward(inputs).argmax(dim=1)
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
