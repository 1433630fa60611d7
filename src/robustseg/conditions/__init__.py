"""Conditions of a sweep: attacks at a budget, random noise of the same norm, transfer attacks from another model,
corruptions at a severity.

Each maps a case to a perturbed input (:class:`Condition`); the sweep in :mod:`robustseg.workflows.sweep` scores the
clean case and every condition alike. Free of engines and trackers, like the rest of the core.
"""

from __future__ import annotations

from robustseg.conditions.attack import ATTACKS, TARGETS, AttackCondition, AttackSpec, attack_conditions
from robustseg.conditions.base import CLEAN, CaseContext, Condition, Perturbed, check_unique_labels, derive_seed
from robustseg.conditions.corruption import CorruptionCondition, corruption_conditions
from robustseg.conditions.noise import NoiseCondition, noise_conditions
from robustseg.conditions.transfer import TransferCondition

__all__ = [
    "ATTACKS",
    "CLEAN",
    "TARGETS",
    "AttackCondition",
    "AttackSpec",
    "CaseContext",
    "Condition",
    "CorruptionCondition",
    "NoiseCondition",
    "Perturbed",
    "TransferCondition",
    "attack_conditions",
    "check_unique_labels",
    "corruption_conditions",
    "derive_seed",
    "noise_conditions",
]
