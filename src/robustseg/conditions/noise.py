"""Random noise of an attack's norm and budget: the baseline every attack must beat.

For each budget of a sweep, :class:`NoiseCondition` adds seeded random noise whose norm (L-inf or L2, on the voxels
the attacker may change) is exactly the budget, clipped like the attacks. An attack that lowers Dice no more than
this noise is not using its gradient (the ``noise_baseline`` self-check); the noise's own drop tells how fragile the
model is without any adversary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from robustseg.attacks.threat import ThreatModel
from robustseg.conditions.attack import _threat_settings
from robustseg.conditions.base import CaseContext, Condition, Perturbed

__all__ = ["NoiseCondition", "noise_conditions"]


class NoiseCondition(Condition):
    """Seeded noise of exactly ``threat.eps`` in ``threat.norm`` (:meth:`robustseg.attacks.ThreatModel.noise`).

    Args:
        threat: the threat model of the attacks it is the baseline of.
        distribution: ``uniform`` (default for L-inf) or ``gaussian`` (default for L2).
    """

    kind = "noise"

    def __init__(self, threat: ThreatModel, distribution: str | None = None) -> None:
        self.distribution = distribution or ("uniform" if threat.norm == "linf" else "gaussian")
        super().__init__("noise", threat.eps, threat.unit)
        self.threat = threat

    def settings(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "distribution": self.distribution,
            "threat": _threat_settings(self.threat),
        }

    def apply(self, case: CaseContext) -> Perturbed:
        x = case.image.detach()
        generator = torch.Generator(device="cpu").manual_seed(case.seed_for(self.label))
        delta = self.threat.noise(x.as_subclass(torch.Tensor), generator, self.distribution)
        noisy = x.clone()
        noisy.copy_(x.as_subclass(torch.Tensor) + delta)
        return case.perturbed(noisy)


def noise_conditions(threats: Sequence[ThreatModel], distribution: str | None = None) -> list[NoiseCondition]:
    """One noise baseline per threat model (budget)."""
    return [NoiseCondition(threat, distribution) for threat in threats]
