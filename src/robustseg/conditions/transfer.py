"""Transfer attacks: adversarial inputs crafted on another model, applied to the model under audit.

When the audited model masks its gradients (a saturated softmax, defensive distillation), white-box attacks on it
fail while inputs crafted on an undefended model of the same task still hurt it. :class:`TransferCondition` runs an
attack on a source model and scores the model under audit on the result; the ``transfer`` self-check flags a
transfer stronger than the white-box attack it mirrors.
"""

from __future__ import annotations

from typing import Any

from robustseg.conditions.attack import AttackCondition
from robustseg.conditions.base import CaseContext, Condition, Perturbed

__all__ = ["TransferCondition"]


class TransferCondition(Condition):
    """The attack of ``source`` (built on the source model) at its budget; the audited model is only scored.

    Args:
        source: an :class:`~robustseg.conditions.attack.AttackCondition` whose attack runs on the source model.
        source_name: what the source model is, for the report (its checkpoint).
    """

    kind = "transfer"

    def __init__(self, source: AttackCondition, source_name: str) -> None:
        super().__init__(f"transfer-{source.name}", source.eps, source.unit)
        self.source = source
        self.source_name = str(source_name)
        self.white_box = source.label
        """The label of the white-box condition this transfer mirrors (the same attack on the audited model)."""

    def settings(self) -> dict[str, Any]:
        return {**self.source.settings(), "kind": self.kind, "label": self.label, "source": self.source_name}

    def apply(self, case: CaseContext) -> Perturbed:
        attack = self.source.attack.set_random_state(case.seed_for(self.label))
        key = ("transfer", self.source.attack.share_key)
        result = attack(case.image, case.label, initial=case.shared.get(key))
        if result.initial is not None:
            case.shared.setdefault(key, result.initial)
        return Perturbed(result.adversarial, None, float(result.linf[0]), float(result.l2[0]), float(result.psnr_db[0]))
