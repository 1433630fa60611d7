"""Iterative FGSM (i-FGSM), and PGD when started at random with restarts."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustseg.attacks.base import Attack
from robustseg.attacks.threat import ThreatModel

__all__ = ["IterativeFGSM"]


def _per_case(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.reshape(-1, *([1] * (like.ndim - 1)))


class IterativeFGSM(Attack):
    """Iterative FGSM (Kurakin, Goodfellow and Bengio, ICLR 2017 workshop, https://arxiv.org/abs/1607.02533).

    ``steps`` steps of size ``step_size`` along the steepest-ascent direction of the norm (``sign(grad)`` for L-inf,
    ``grad / ||grad||_2`` for L2), each followed by projection onto the threat model (eps-ball, mask, clip bounds).
    With ``random_start=True`` it starts at a uniform draw from the ball: PGD (Madry et al., ICLR 2018,
    https://arxiv.org/abs/1706.06083). ``restarts`` runs it several times from fresh random starts and keeps, per case,
    the strongest result: lowest Dice w.r.t. the labels (highest agreement with the target when targeted), ties
    broken by the higher loss (lower loss to the target). The first restart equals a single run with the same seed.
    With ``loss="segpgd"`` or ``"cospgd"`` this is SegPGD or CosPGD.

    Norm: L-inf or L2, from ``threat.norm``; ``eps`` and ``step_size`` in ``threat.unit``.

    Args:
        model: network returning logits ``(N, K, *spatial)``.
        threat: the :class:`~robustseg.attacks.threat.ThreatModel`.
        steps: number of gradient steps, >= 1.
        step_size: size of each step; default ``2.5 * eps / steps`` (Madry et al.).
        random_start: start from a uniform draw in the ball instead of the clean input.
        restarts: number of runs, >= 1; more than one needs ``random_start``.
        **kwargs: ``inferer``, ``head``, ``scheme``, ``loss``, ``seed`` of :class:`~robustseg.attacks.base.Attack`.

    Shapes:
        images ``(N, C, *spatial)``, labels and target ``(N, 1, *spatial)``; result tensors like the images.

    Example:
        >>> import torch
        >>> from robustseg.attacks import IterativeFGSM, ThreatModel
        >>> net = torch.nn.Conv2d(3, 4, 3, padding=1)
        >>> images, labels = torch.randn(2, 3, 24, 24), torch.randint(0, 4, (2, 1, 24, 24))
        >>> threat = ThreatModel("l2", eps=1.0, unit="std of z-scored input")
        >>> pgd = IterativeFGSM(net, threat, steps=5, random_start=True, restarts=2, loss="segpgd", seed=0)
        >>> result = pgd(images, labels)
        >>> bool((result.l2 <= 1.0 + 1e-5).all()), tuple(result.loss_history.shape)
        (True, (6, 2))
    """

    name = "ifgsm"

    def __init__(
        self,
        model: nn.Module,
        threat: ThreatModel,
        *,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = False,
        restarts: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, threat, **kwargs)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1 but is {steps!r}.")
        if int(restarts) != restarts or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1 but is {restarts!r}.")
        if restarts > 1 and not random_start:
            raise ValueError(f"restarts={restarts} repeat the same run without random_start; set random_start=True.")
        step_size = 2.5 * threat.eps / steps if step_size is None else float(step_size)
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0 but is {step_size!r}.")
        self.steps = int(steps)
        self.step_size = step_size
        self.random_start = bool(random_start)
        self.restarts = int(restarts)

    def perturb(
        self, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        best_delta, best_history, best_success, best_loss = self._run(x, labels, target, generator)
        for _ in range(1, self.restarts):
            delta, history, success, loss = self._run(x, labels, target, generator)
            better_loss = loss < best_loss if target is not None else loss > best_loss
            better = (success > best_success) | ((success == best_success) & better_loss)
            best_delta = torch.where(_per_case(better, x), delta, best_delta)
            best_history = torch.where(better[None], history, best_history)
            best_success = torch.where(better, success, best_success)
            best_loss = torch.where(better, loss, best_loss)
        return best_delta, best_history

    def _run(
        self, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run: the perturbation, its loss history ``(steps + 1, N)``, success and final loss per case."""
        delta = self.threat.random_start(x, generator) if self.random_start else torch.zeros_like(x)
        history = []
        for t in range(self.steps):
            if t == 0 and not self.random_start:  # the clean input's gradient, shared with FGSM and the clean score
                loss, grad = self.initial_loss_and_gradient(x, labels, target, self.steps)
            else:
                loss, grad = self.loss_and_gradient(x, delta, labels, target, t, self.steps)
            history.append(loss)
            delta = self.threat.project(delta + self.step_size * self.ascent(grad, x, target is not None), x)
        if not self.score_final and self.restarts == 1:
            history.append(history[-1])
            return delta, torch.stack(history), torch.zeros_like(history[-1]), history[-1]
        final, success = self.evaluate(x, delta, labels, target, self.steps)
        history.append(final)
        return delta, torch.stack(history), success, final
