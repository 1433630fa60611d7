"""Defensive distillation (Papernot et al., IEEE S&P 2016, https://arxiv.org/abs/1511.04508), per voxel.

A teacher is trained at temperature ``T`` (its training loss on ``logits / T``: :class:`AtTemperature`); a student of
the same network is trained on the teacher's per-voxel softmax at ``T`` (:class:`Distillation`: the KL divergence
scaled by ``T^2``, so that its gradients keep their size across temperatures (Hinton et al., 2015), plus an optional
hard-label term); the student is deployed at ``T = 1`` as a normal network of the bundle. Its logits are then about
``T`` times larger than a normally trained model's, the softmax saturates and input gradients vanish: the defence
masks gradients (Carlini and Wagner, 2016). Audit a distilled model with the masking-aware comparison
(:mod:`robustseg.workflows.compare`): attacks on ``logits / T``, a margin loss on logits, transfer from an undefended
model, noise of the same norm.

Free of engines and trackers: :class:`robustseg.workflows.DefendedIteration` calls :class:`Distillation` from an
Ignite trainer; :class:`AtTemperature` wraps the bundle's loss in a normal trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustseg.attacks.base import _plain
from robustseg.checkpoints import unwrap
from robustseg.defenses.adversarial import _logits
from robustseg.labels import LabelScheme

__all__ = ["AtTemperature", "Distillation", "check_temperature", "distillation_kl"]


def check_temperature(temperature: Any, what: str = "temperature") -> float:
    """``temperature`` as a float, or a clear error unless it is a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ValueError(f"the distillation {what} T must be a number > 0 but is {temperature!r}.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"the distillation {what} T must be a finite number > 0 but is {temperature!r}.")
    return float(temperature)


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T^2`` times the mean over voxels of ``KL(softmax(teacher / T) || softmax(student / T))``.

    Args:
        student_logits, teacher_logits: ``(N, K, *spatial)``; the teacher's are not differentiated.
        temperature: ``T`` > 0.
        valid: optional ``(N, *spatial)`` mask of the voxels to average over (not the ignore index).
    """
    t = check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"the student's logits {tuple(student_logits.shape)} and the teacher's {tuple(teacher_logits.shape)} "
            "differ in shape: the teacher must be a network of the same bundle (classes and head)."
        )
    log_q = F.log_softmax(_plain(student_logits).float() / t, dim=1)
    log_p = F.log_softmax(_plain(teacher_logits).detach().float() / t, dim=1)
    per_voxel = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    if valid is None:
        mean = per_voxel.mean()
    else:
        weights = valid.to(per_voxel.dtype)
        mean = (per_voxel * weights).sum() / weights.sum().clamp_min(1.0)
    return mean * t * t


class AtTemperature(nn.Module):
    """A training loss applied to ``logits / T``: how the teacher of defensive distillation is trained.

    Args:
        loss: the bundle's loss, ``loss(logits, labels)`` (e.g. ``DiceCELoss(softmax=True)``).
        temperature: ``T`` > 0.
    """

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], temperature: float) -> None:
        super().__init__()
        self.loss = loss
        self.temperature = check_temperature(temperature)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits / self.temperature, labels)


class Distillation:
    """The student's training objective: the teacher's softmax at ``T`` as targets, per voxel.

    Args:
        teacher: the teacher network (a network of the same bundle, loaded from its checkpoint); kept in eval mode
            and never trained.
        temperature: ``T`` > 0 (the teacher's training temperature).
        hard_weight: weight (>= 0) of the bundle's own loss on the labels, added to the soft term (0: soft only).
        scheme: the label scheme; voxels with its ``ignore_index`` are left out of the soft term.
    """

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float = 20.0,
        hard_weight: float = 0.0,
        scheme: LabelScheme | None = None,
    ) -> None:
        if not isinstance(teacher, nn.Module):
            raise ValueError(f"the distillation teacher must be a torch.nn.Module but is {type(teacher).__name__}.")
        if not (isinstance(hard_weight, int | float) and math.isfinite(hard_weight) and hard_weight >= 0):
            raise ValueError(f"the distillation hard_weight must be a finite number >= 0 but is {hard_weight!r}.")
        self.teacher = unwrap(teacher).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature = check_temperature(temperature)
        self.hard_weight = float(hard_weight)
        self.scheme = scheme
        self._checked: nn.Module | None = None

    def settings(self) -> dict[str, Any]:
        return {"defence": "distillation", "temperature": self.temperature, "hard_weight": self.hard_weight}

    def _check_separate(self, network: nn.Module) -> None:
        if self._checked is network:
            return
        teacher = {id(p) for p in self.teacher.parameters()}
        if any(id(p) in teacher for p in unwrap(network).parameters()):
            raise ValueError(
                "the distillation teacher shares weights with the student: build it as a separate instance (e.g. "
                "copy.deepcopy of the bundle's network_def), not from a config that reuses the student's modules."
            )
        self._checked = network

    def teacher_logits(self, inferer: Callable[[torch.Tensor, nn.Module], Any], images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on ``images`` (no gradient, eval mode)."""
        self.teacher.eval()
        with torch.no_grad():
            return _plain(_logits(inferer(images, self.teacher)))

    def __call__(
        self,
        network: nn.Module,
        inferer: Callable[[torch.Tensor, nn.Module], Any],
        loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        iteration: int = 0,
        rank: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's loss on one batch and its predictions."""
        self._check_separate(network)
        target = self.teacher_logits(inferer, images)
        pred = _logits(inferer(images, network))
        valid = None
        if self.scheme is not None and self.scheme.ignore_index is not None:
            valid = self.scheme.valid_mask(_plain(labels)[:, 0].long())
        loss = distillation_kl(pred, target, self.temperature, valid)
        if self.hard_weight > 0:
            loss = loss + self.hard_weight * loss_function(pred, labels).mean()
        return loss, pred
