"""Adversarial attacks on segmentation models: FGSM, i-FGSM / PGD, targeted i-FGSM, SegPGD and CosPGD losses.

Every attack works on ``(N, C, *spatial)`` inputs with 2 or 3 spatial dims, any batch size, L-inf or L2 budgets
(:class:`ThreatModel`), softmax or sigmoid heads, and runs the model through the bundle's inferer so that
sliding-window pipelines are attacked end to end.

Example:
    >>> import torch
    >>> from robustseg.attacks import IterativeFGSM, ThreatModel
    >>> net = torch.nn.Conv3d(4, 4, 3, padding=1)
    >>> images, labels = torch.randn(2, 4, 8, 8, 8), torch.randint(0, 4, (2, 1, 8, 8, 8))
    >>> attack = IterativeFGSM(net, ThreatModel("linf", eps=0.05), steps=3, loss="segpgd")
    >>> result = attack(images, labels)
    >>> sorted(vars(result))
    ['adversarial', 'l2', 'linf', 'loss_history', 'perturbation', 'psnr_db', 'targeted']
"""

from __future__ import annotations

from robustseg.attacks.base import Attack, AttackResult, Inferer, InitialGradient
from robustseg.attacks.fgsm import FGSM
from robustseg.attacks.ifgsm import IterativeFGSM
from robustseg.attacks.losses import (
    LOSSES,
    binary_cross_entropy_map,
    cospgd_map,
    cospgd_weights,
    cross_entropy_map,
    dice_loss_map,
    get_loss,
    segpgd_map,
    segpgd_weights,
)
from robustseg.attacks.scores import agreement_per_case, dice_per_case
from robustseg.attacks.targets import ENHANCING_AS_OEDEMA, erase_tumour, relabel, relabel_enhancing_as_oedema
from robustseg.attacks.threat import ThreatModel, per_sample_norm
from robustseg.attacks.tifgsm import TargetedIterativeFGSM

__all__ = [
    "ENHANCING_AS_OEDEMA",
    "FGSM",
    "LOSSES",
    "Attack",
    "AttackResult",
    "Inferer",
    "InitialGradient",
    "IterativeFGSM",
    "TargetedIterativeFGSM",
    "ThreatModel",
    "agreement_per_case",
    "binary_cross_entropy_map",
    "cospgd_map",
    "cospgd_weights",
    "cross_entropy_map",
    "dice_loss_map",
    "dice_per_case",
    "erase_tumour",
    "get_loss",
    "per_sample_norm",
    "relabel",
    "relabel_enhancing_as_oedema",
    "segpgd_map",
    "segpgd_weights",
]
