"""Per-voxel segmentation losses for attacks, and the SegPGD and CosPGD weightings.

Every loss maps logits ``(N, C, *spatial)`` and a class map ``(N, 1, *spatial)`` or ``(N, *spatial)`` to a loss map
``(N, *spatial)``; an attack's per-case objective is the mean of the map over the voxels. Voxels labelled with the
scheme's ``ignore_index`` carry zero loss. All losses take the same keyword arguments, so an attack can call any of
them; the ones a loss does not need are ignored.

* ``"ce"``: cross-entropy of a softmax head.
* ``"bce"``: binary cross-entropy of a sigmoid multi-label head, with targets from
  :meth:`~robustseg.labels.LabelScheme.region_targets_for_sigmoid`, averaged over the channels.
* ``"dice"``: soft Dice loss per case (softmax: foreground classes; sigmoid: every region channel), spread evenly over
  the voxels so that its per-case mean is the case's Dice loss.
* ``"segpgd"``: SegPGD (Gu et al., ECCV 2022, https://arxiv.org/abs/2207.12391): cross-entropy (or BCE) weighted
  ``1 - lambda`` on correctly and ``lambda`` on wrongly classified voxels, ``lambda = t / (2T)`` at step ``t`` of
  ``T`` (``t`` counted from 0).
* ``"cospgd"``: CosPGD (Agnihotri et al., ICML 2024, https://arxiv.org/abs/2302.02213): cross-entropy (or BCE)
  weighted per voxel by the cosine similarity between ``softmax(logits)`` (``sigmoid`` for sigmoid heads) and the
  one-hot target, detached.

Targeted attacks descend the loss towards a target map. There SegPGD puts ``1 - lambda`` on voxels not yet at the
target and ``lambda`` on those already there, and CosPGD weighs by ``1 - cosine``, as in the CosPGD authors' code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from robustseg.labels import HEADS, LabelScheme

__all__ = [
    "LOSSES",
    "VoxelLoss",
    "binary_cross_entropy_map",
    "cospgd_map",
    "cospgd_weights",
    "cross_entropy_map",
    "dice_loss_map",
    "get_loss",
    "margin_map",
    "segpgd_lambda",
    "segpgd_map",
    "segpgd_weights",
    "valid_voxels",
]


_SMOOTH = 1e-5


class VoxelLoss(Protocol):
    """The signature every registered loss shares."""

    def __call__(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        head: str = "softmax",
        scheme: LabelScheme | None = None,
        step: int = 0,
        total_steps: int = 1,
        targeted: bool = False,
    ) -> torch.Tensor: ...


def _class_map(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Labels as a long class map ``(N, *spatial)``, checked against the logits ``(N, C, *spatial)``."""
    given = tuple(labels.shape)
    if labels.ndim == logits.ndim and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"labels must be (N, 1, *spatial) or (N, *spatial) matching the logits {tuple(logits.shape)} "
            f"but are {given}."
        )
    return labels.long()


def _check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head must be one of {list(HEADS)} but is {head!r}.")


def _sigmoid_scheme(scheme: LabelScheme | None) -> LabelScheme:
    if scheme is None or not scheme.sigmoid_regions:
        raise ValueError("a sigmoid head needs a LabelScheme with sigmoid_regions (e.g. robustseg.labels.BRATS).")
    return scheme


def valid_voxels(labels: torch.Tensor, scheme: LabelScheme | None) -> torch.Tensor:
    """Float mask ``(N, *spatial)``: 1 where the class map ``(N, *spatial)`` is not the scheme's ``ignore_index``."""
    if scheme is None:
        return torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    return scheme.valid_mask(labels).float()


def _probabilities_and_targets(
    logits: torch.Tensor, labels: torch.Tensor, head: str, scheme: LabelScheme | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel probabilities and 0/1 targets ``(N, C, *spatial)``, ignored voxels set to 0 in the targets."""
    if head == "softmax":
        n_classes = logits.shape[1]
        safe = torch.where((labels >= 0) & (labels < n_classes), labels, torch.zeros_like(labels))
        onehot = F.one_hot(safe, n_classes).movedim(-1, 1).to(logits.dtype)
        return torch.softmax(logits, dim=1), onehot
    targets = _sigmoid_scheme(scheme).region_targets_for_sigmoid(labels).to(logits.dtype)
    if targets.shape != logits.shape:
        raise ValueError(f"a sigmoid head must give {targets.shape[1]} channels but gives {logits.shape[1]}.")
    return torch.sigmoid(logits), targets


def _predicted_class_map(logits: torch.Tensor, head: str, scheme: LabelScheme | None) -> torch.Tensor:
    if head == "softmax":
        return logits.max(dim=1).indices  # same result as argmax, several times faster on CPU
    return _sigmoid_scheme(scheme).class_map_from_logits(logits, head="sigmoid")[:, 0]


def cross_entropy_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """Cross-entropy per voxel ``(N, *spatial)`` of a softmax head; ``ignore_index`` voxels are 0."""
    _check_head(head)
    if head != "softmax":
        raise ValueError("the 'ce' loss is for softmax heads; use 'bce' for a sigmoid head.")
    y = _class_map(labels, logits)
    ignore = -100 if scheme is None or scheme.ignore_index is None else scheme.ignore_index
    return F.cross_entropy(logits, y, reduction="none", ignore_index=ignore)


def binary_cross_entropy_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "sigmoid",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """Binary cross-entropy per voxel ``(N, *spatial)`` of a sigmoid head, averaged over its region channels."""
    _check_head(head)
    if head != "sigmoid":
        raise ValueError("the 'bce' loss is for sigmoid heads; use 'ce' for a softmax head.")
    y = _class_map(labels, logits)
    _, targets = _probabilities_and_targets(logits, y, "sigmoid", scheme)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
    return bce * valid_voxels(y, scheme).to(bce.dtype)


def _base_map(logits: torch.Tensor, labels: torch.Tensor, head: str, scheme: LabelScheme | None) -> torch.Tensor:
    fn = cross_entropy_map if head == "softmax" else binary_cross_entropy_map
    return fn(logits, labels, head=head, scheme=scheme)


def dice_loss_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """Soft Dice loss per case, ``1 - mean_c (2 sum p g + s) / (sum p + sum g + s)``, as a constant map.

    The map ``(N, *spatial)`` holds the case's loss at every voxel, so its per-case mean is the Dice loss.

    Softmax heads score the foreground classes (1..C-1), sigmoid heads every region channel; ignored voxels are left
    out of the sums; ``s = 1e-5``.
    """
    _check_head(head)
    y = _class_map(labels, logits)
    probs, targets = _probabilities_and_targets(logits, y, head, scheme)
    if head == "softmax":
        probs, targets = probs[:, 1:], targets[:, 1:]
    valid = valid_voxels(y, scheme).to(probs.dtype).unsqueeze(1)
    dims = tuple(range(2, logits.ndim))
    inter = (probs * targets * valid).sum(dims)
    total = (probs * valid).sum(dims) + (targets * valid).sum(dims)
    loss = 1 - ((2 * inter + _SMOOTH) / (total + _SMOOTH)).mean(dim=1)
    return loss.reshape(-1, *([1] * (logits.ndim - 2))).expand(y.shape)


def segpgd_lambda(step: int, total_steps: int) -> float:
    """SegPGD's ``lambda = t / (2T)`` at step ``t`` (from 0) of ``T``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1 but is {total_steps}.")
    return step / (2 * total_steps)


def segpgd_weights(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """SegPGD weights ``(N, *spatial)``: ``1 - lambda`` on voxels still to attack, ``lambda`` on the others.

    Untargeted, the voxels still to attack are the correctly classified ones; targeted, those not yet at the target.
    Ignored voxels weigh 0.
    """
    _check_head(head)
    y = _class_map(labels, logits)
    lam = segpgd_lambda(step, total_steps)
    with torch.no_grad():
        hit = _predicted_class_map(logits, head, scheme) == y
        to_attack = ~hit if targeted else hit
        w = torch.where(to_attack, 1.0 - lam, lam).to(logits.dtype)
    return w * valid_voxels(y, scheme).to(w.dtype)


def segpgd_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """SegPGD loss map ``(N, *spatial)``: cross-entropy (BCE for sigmoid heads) times :func:`segpgd_weights`."""
    w = segpgd_weights(logits, labels, head=head, scheme=scheme, step=step, total_steps=total_steps, targeted=targeted)
    return w * _base_map(logits, labels, head, scheme)


def cospgd_weights(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """CosPGD weights ``(N, *spatial)``: cosine between probabilities and one-hot target (``1 - cosine`` targeted).

    Detached: the weights steer the attack but carry no gradient. Ignored voxels weigh 0.
    """
    _check_head(head)
    y = _class_map(labels, logits)
    with torch.no_grad():
        probs, targets = _probabilities_and_targets(logits, y, head, scheme)
        cos = F.cosine_similarity(probs, targets, dim=1)
        w = 1 - cos if targeted else cos
    return w * valid_voxels(y, scheme).to(w.dtype)


def cospgd_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """CosPGD loss map ``(N, *spatial)``: cross-entropy (BCE for sigmoid heads) times :func:`cospgd_weights`."""
    w = cospgd_weights(logits, labels, head=head, scheme=scheme, targeted=targeted)
    return w * _base_map(logits, labels, head, scheme)


def margin_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: str = "softmax",
    scheme: LabelScheme | None = None,
    step: int = 0,
    total_steps: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """The margin (Carlini-Wagner, kappa 0) loss per voxel ``(N, *spatial)``, on logits: it does not saturate as a
    softmax does, so it keeps a gradient on models with scaled-up logits (defensive distillation).

    Softmax head, untargeted: ``min(max_{j != y} z_j - z_y, 0)``, raised until the voxel is misclassified; targeted
    (``labels`` is the target ``t``): ``max(max_{j != t} z_j - z_t, 0)``, lowered until the target wins. Sigmoid
    head: per region channel the signed logit ``m = (1 - 2 g) z`` (positive when the channel is wrong), clamped the
    same way and averaged over channels. Voxels with the scheme's ``ignore_index`` are 0.
    """
    _check_head(head)
    y = _class_map(labels, logits)
    valid = valid_voxels(y, scheme)
    if head == "softmax":
        safe = torch.where((y >= 0) & (y < logits.shape[1]), y, torch.zeros_like(y))
        own = logits.gather(1, safe[:, None])[:, 0]
        others = logits.scatter(1, safe[:, None], float("-inf")).max(dim=1).values
        margin = others - own
    else:
        _, targets = _probabilities_and_targets(logits, y, head, scheme)
        margin = (1 - 2 * targets) * logits
    margin = margin.clamp(min=0) if targeted else margin.clamp(max=0)
    if head != "softmax":
        margin = margin.mean(dim=1)
    return margin * valid


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": cross_entropy_map,
    "bce": binary_cross_entropy_map,
    "dice": dice_loss_map,
    "segpgd": segpgd_map,
    "cospgd": cospgd_map,
    "margin": margin_map,
}
"""Registered per-voxel losses by name."""


def get_loss(name: str) -> VoxelLoss:
    """The registered loss called ``name`` (one of :data:`LOSSES`)."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}.") from None
