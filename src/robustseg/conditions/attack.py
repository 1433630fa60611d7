"""Attack conditions: one attack spec at one budget, built and checked before any case is touched.

An attack spec is a name from :data:`ATTACKS` and its parameters (``{"name": "pgd", "steps": 20, "loss": "segpgd"}``),
given once and swept over every budget. Each (spec, budget) is one :class:`AttackCondition`, labelled
``<spec label>@<eps>``. A spec's label is its name (with the target of a non-default ti-FGSM target); when several
specs share a name, each label also lists the parameters in which they differ (``pgd[loss=segpgd]``), and two specs
with the same effective parameters are refused: their rows would be indistinguishable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustseg.attacks import FGSM, Attack, IterativeFGSM, TargetedIterativeFGSM, ThreatModel
from robustseg.attacks.targets import erase_tumour, relabel_enhancing_as_oedema
from robustseg.conditions.base import CaseContext, Condition, Perturbed

__all__ = ["ATTACKS", "TARGETS", "AttackCondition", "AttackSpec", "attack_conditions"]

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "ifgsm": IterativeFGSM,
    "pgd": IterativeFGSM,
    "tifgsm": TargetedIterativeFGSM,
}
"""Attack names a sweep accepts; ``pgd`` is i-FGSM with a random start."""

TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "erase_tumour": erase_tumour,
    "enhancing_as_oedema": relabel_enhancing_as_oedema,
}
"""Built-in ti-FGSM targets; ``erase_tumour`` (every voxel background) is the default."""

_COMMON = ("loss", "temperature")
"""Parameters of :class:`~robustseg.attacks.base.Attack` a spec may set (the sweep sets the others)."""


def _own_parameters(cls: type[Attack]) -> dict[str, Any]:
    """Keyword parameters (and defaults) of an attack class's constructors below :class:`Attack` itself."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is Attack or not issubclass(klass, Attack) or "__init__" not in vars(klass):
            continue
        for name, p in inspect.signature(klass.__init__).parameters.items():
            if p.kind is p.KEYWORD_ONLY:
                out[name] = p.default
    return out


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a sweep: a name from :data:`ATTACKS` and its parameters (``steps``, ``loss``, ``target``...).

    ``label`` (optional) names its conditions in tables; by default the name, see the module docstring.
    """

    name: str
    params: Mapping[str, Any]
    label: str | None = None

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> AttackSpec:
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(f"an attack is a name or a dict with 'name' but is {spec!r}.")
        name = str(spec.get("name", ""))
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}.")
        params = {k: v for k, v in spec.items() if k not in ("name", "label")}
        allowed = sorted({*_own_parameters(ATTACKS[name]), *_COMMON, "target"} - {"target_fn"})
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"attack {name!r} has no parameter {unknown}; it takes {allowed}.")
        target = params.get("target")
        if target is not None and (name != "tifgsm" or target not in TARGETS):
            raise ValueError(f"target {target!r} needs attack 'tifgsm' and one of {sorted(TARGETS)}.")
        label = spec.get("label")
        return cls(name, params, None if label is None else str(label))

    @property
    def base_label(self) -> str:
        """The label before disambiguation: ``label``, else the name (``tifgsm-<target>`` for a non-default target)."""
        if self.label:
            return self.label
        target = self.params.get("target")
        return f"{self.name}-{target}" if target not in (None, "erase_tumour") else self.name

    def effective(self, loss: str) -> dict[str, Any]:
        """Every parameter with its default filled in (``loss`` as the built attack resolved it): what decides the
        attack's output besides the budget."""
        params: dict[str, Any] = {k: v for k, v in _own_parameters(ATTACKS[self.name]).items() if k != "target_fn"}
        if self.name == "pgd":
            params["random_start"] = True
        if self.name == "tifgsm":
            params["target"] = "erase_tumour"
        params.update({k: v for k, v in self.params.items() if k != "loss" and v is not None})
        if params.get("temperature") == 1:
            del params["temperature"]  # the default: the same attack as without it
        params["loss"] = loss
        return {"name": self.name, **dict(sorted(params.items()))}

    def build(self, model: torch.nn.Module, threat: ThreatModel, **common: Any) -> Attack:
        params = dict(self.params)
        if self.name == "pgd":
            params.setdefault("random_start", True)
        if self.name == "tifgsm":
            params["target_fn"] = TARGETS[params.pop("target", None) or "erase_tumour"]
        if params.get("loss") is None:
            params.pop("loss", None)
        else:
            common.pop("loss", None)
        return ATTACKS[self.name](model, threat, **common, **params)


class AttackCondition(Condition):
    """One attack at one budget, white-box on the sweep's model through its inferer.

    Args:
        spec: the attack.
        label: the spec's label in this sweep (see :func:`attack_conditions`).
        attack: the built attack (its threat model holds the budget).
        settings: the effective parameters of the spec.
    """

    kind = "attack"

    def __init__(self, spec: AttackSpec, name: str, attack: Attack, settings: Mapping[str, Any]) -> None:
        super().__init__(name, attack.threat.eps, attack.threat.unit)
        self.spec = spec
        self.attack = attack
        self._settings = dict(settings)

    def settings(self) -> dict[str, Any]:
        threat = self.attack.threat
        return {
            "kind": self.kind,
            "label": self.label,
            "attack": self._settings,
            "threat": _threat_settings(threat),
            "head": self.attack.head,
        }

    @property
    def share_key(self) -> tuple[str, Any]:
        return ("white-box", self.attack.share_key)

    def apply(self, case: CaseContext) -> Perturbed:
        attack = self.attack.set_random_state(case.seed_for(self.label))
        result = attack(case.image, case.label, initial=case.shared.get(self.share_key))
        if result.initial is not None:
            case.shared.setdefault(self.share_key, result.initial)
        return Perturbed(
            image=result.adversarial,
            logits=result.logits,
            linf=float(result.linf[0]),
            l2=float(result.l2[0]),
            psnr_db=float(result.psnr_db[0]),
        )

    @property
    def steps(self) -> int:
        """Gradient steps of one run (FGSM: 1)."""
        return int(getattr(self.attack, "steps", 1))

    @property
    def restarts(self) -> int:
        return int(getattr(self.attack, "restarts", 1))


def _threat_settings(threat: ThreatModel) -> dict[str, Any]:
    def bound(value: Any) -> Any:
        return torch.as_tensor(value).tolist() if value is not None else None

    mask = threat.mask if isinstance(threat.mask, str) else "tensor"
    return {
        "norm": threat.norm,
        "eps": threat.eps,
        "unit": threat.unit,
        "clip_min": bound(threat.clip_min),
        "clip_max": bound(threat.clip_max),
        "mask": mask,
    }


def _labels(specs: Sequence[AttackSpec], effective: Sequence[Mapping[str, Any]]) -> list[str]:
    """Unique labels: the base label, with the differing parameters added where several specs share it."""
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.base_label, []).append(i)
    labels = [spec.base_label for spec in specs]
    for base, members in groups.items():
        if len(members) == 1:
            continue
        keys = sorted({k for i in members for k in effective[i]})
        differing = [k for k in keys if len({repr(effective[i].get(k)) for i in members}) > 1]
        for i in members:
            if not differing:
                raise ValueError(
                    f"attack {dict(effective[i])} is given twice (as {base!r}); remove the duplicate, or give the "
                    "specs different parameters."
                )
            labels[i] = base + "[" + ",".join(f"{k}={effective[i].get(k)}" for k in differing) + "]"
    return labels


def attack_conditions(
    model: torch.nn.Module,
    attacks: Sequence[str | Mapping[str, Any]],
    eps: Sequence[float],
    norm: str = "linf",
    unit: str = "std of z-scored input",
    clip_min: Any = None,
    clip_max: Any = None,
    mask: Any = "nonzero",
    **common: Any,
) -> list[AttackCondition]:
    """Every attack at every budget, built now so that a bad spec fails before any case is touched.

    Args:
        model: the network the attacks differentiate (the unwrapped module under DDP).
        attacks: names or dicts (``{"name": "ifgsm", "steps": 10}``); see :data:`ATTACKS` and :data:`TARGETS`.
        eps: budgets, each > 0, in ``unit``.
        norm, unit, clip_min, clip_max, mask: the threat model (:class:`robustseg.attacks.ThreatModel`).
        **common: ``inferer``, ``head``, ``scheme`` and the default ``loss`` of every attack.
    """
    if not attacks:
        raise ValueError("attacks is empty; name at least one of " + str(sorted(ATTACKS)) + ".")
    if not eps:
        raise ValueError("eps is empty; give at least one budget > 0.")
    specs = [AttackSpec.parse(a) for a in attacks]
    budgets = [float(e) for e in eps]
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"eps lists a budget twice: {budgets}.")
    threats = [ThreatModel(norm, e, unit=unit, clip_min=clip_min, clip_max=clip_max, mask=mask) for e in budgets]
    built = [[spec.build(model, threat, **common) for threat in threats] for spec in specs]  # raises on a bad spec
    effective = [spec.effective(per_eps[0].loss) for spec, per_eps in zip(specs, built, strict=True)]
    labels = _labels(specs, effective)
    return [
        AttackCondition(spec, label, attack, settings)
        for spec, label, settings, per_eps in zip(specs, labels, effective, built, strict=True)
        for attack in per_eps
    ]
