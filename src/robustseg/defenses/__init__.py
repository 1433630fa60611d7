"""Defences: adversarial training and defensive distillation, as training objectives free of engines.

Each defence is a callable ``objective(network, inferer, loss_function, images, labels, *, iteration, rank) ->
(loss, logits)`` that :class:`robustseg.workflows.DefendedIteration` runs inside an Ignite trainer, and a
``settings()`` record for MLflow params and the checkpoint folder.

Example:
    >>> import torch
    >>> from robustseg.defenses import AdversarialTraining
    >>> net = torch.nn.Conv3d(4, 4, 3, padding=1)
    >>> objective = AdversarialTraining("pgd", eps=0.1, steps=2, seed=0)
    >>> images, labels = torch.randn(2, 4, 8, 8, 8), torch.randint(0, 4, (2, 1, 8, 8, 8))
    >>> loss_fn = lambda logits, y: torch.nn.functional.cross_entropy(logits, y[:, 0])
    >>> loss, logits = objective(net, lambda x, n: n(x), loss_fn, images, labels, iteration=1)
    >>> tuple(logits.shape), bool(loss > 0)
    ((2, 4, 8, 8, 8), True)
"""

from __future__ import annotations

from robustseg.defenses.adversarial import METHODS, AdversarialTraining, trades_kl
from robustseg.defenses.distillation import AtTemperature, Distillation, check_temperature, distillation_kl

__all__ = [
    "METHODS",
    "AdversarialTraining",
    "AtTemperature",
    "Distillation",
    "check_temperature",
    "distillation_kl",
    "trades_kl",
]
