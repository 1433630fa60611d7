"""Targeted iterative FGSM (ti-FGSM): descend the loss towards a target label map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from robustseg.attacks.base import AttackResult, InitialGradient
from robustseg.attacks.ifgsm import IterativeFGSM
from robustseg.attacks.targets import erase_tumour
from robustseg.attacks.threat import ThreatModel

__all__ = ["TargetedIterativeFGSM"]


class TargetedIterativeFGSM(IterativeFGSM):
    """Targeted iterative FGSM (Kurakin et al., ICLR 2017 workshop, https://arxiv.org/abs/1607.02533; used on BraTS
    by Liu et al., arXiv:1908.00656).

    Like :class:`~robustseg.attacks.ifgsm.IterativeFGSM`, but each step descends the loss w.r.t. a target class map,
    so the prediction moves towards the target. The target is the one passed to the call, or else
    ``target_fn(labels)``; the default :func:`~robustseg.attacks.targets.erase_tumour` (every voxel background) is our
    documented choice, since the seed paper did not publish its target.

    Norm: L-inf or L2, from ``threat.norm``; ``eps`` and ``step_size`` in ``threat.unit``.

    Args:
        model: network returning logits ``(N, K, *spatial)``.
        threat: the :class:`~robustseg.attacks.threat.ThreatModel`.
        target_fn: builds the target class map from the labels (see :mod:`robustseg.attacks.targets`).
        **kwargs: ``steps``, ``step_size``, ``random_start``, ``restarts`` of ``IterativeFGSM`` and ``inferer``,
            ``head``, ``scheme``, ``loss``, ``seed`` of :class:`~robustseg.attacks.base.Attack`.

    Shapes:
        images ``(N, C, *spatial)``, labels and target ``(N, 1, *spatial)``; result tensors like the images.

    Example:
        >>> import torch
        >>> from robustseg.attacks import TargetedIterativeFGSM, ThreatModel, relabel_enhancing_as_oedema
        >>> net = torch.nn.Conv3d(4, 4, 3, padding=1)
        >>> images, labels = torch.randn(1, 4, 8, 8, 8), torch.randint(0, 4, (1, 1, 8, 8, 8))
        >>> attack = TargetedIterativeFGSM(
        ...     net, ThreatModel("linf", eps=0.1), steps=5, target_fn=relabel_enhancing_as_oedema
        ... )
        >>> result = attack(images, labels)
        >>> result.targeted, bool(result.loss_history[-1, 0] < result.loss_history[0, 0])
        (True, True)
    """

    name = "tifgsm"

    def __init__(
        self,
        model: nn.Module,
        threat: ThreatModel,
        *,
        target_fn: Callable[[torch.Tensor], torch.Tensor] = erase_tumour,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, threat, **kwargs)
        if not callable(target_fn):
            raise ValueError(f"target_fn must map labels to a target class map but is {type(target_fn).__name__}.")
        self.target_fn = target_fn

    @property
    def share_key(self) -> tuple[str, str | None]:
        """(loss, the target function's name): attacks towards the same target share their clean gradient."""
        return (self.loss_key, getattr(self.target_fn, "__name__", repr(self.target_fn)))

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        initial: InitialGradient | None = None,
    ) -> AttackResult:
        """Attack towards ``target``, or towards ``target_fn(labels)`` when none is given (``initial`` is only
        shared for the latter, whose :attr:`share_key` names the target)."""
        if target is None:
            target = self.target_fn(torch.as_tensor(labels))
        else:
            initial = None
        return super().__call__(images, labels, target, initial=initial)
