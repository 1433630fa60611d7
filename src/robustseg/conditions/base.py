"""Conditions: what a sweep does to a case before scoring it.

A :class:`Condition` maps one case to a perturbed input: an attack at a budget, random noise of the same norm, an
attack crafted on another model (transfer), a corruption of a corruption benchmark at a severity. A sweep scores the
clean case and every condition with one metric, one results store and one statistics step, so a new kind of
condition needs a subclass here and nothing else.

Randomness is per case: :meth:`CaseContext.seed_for` derives a condition's seed from the sweep's seed, the case id and
the condition's label, so results depend neither on the order of cases nor on how they are split over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from robustseg.attacks.base import InitialGradient
from robustseg.attacks.threat import per_sample_norm, psnr_db
from robustseg.seeds import derive_seed

__all__ = ["CLEAN", "CaseContext", "Condition", "Perturbed", "check_unique_labels", "derive_seed"]

CLEAN = "clean"
"""The label of the unperturbed case, the baseline of every comparison."""


@dataclass(frozen=True)
class Perturbed:
    """A condition's output for one case.

    Attributes:
        image: the perturbed input ``(1, C, *spatial)``, a copy of the clean one (a MetaTensor keeps its affine).
        logits: the model's output at ``image`` when the condition already computed it (attacks do), else ``None``.
        linf, l2, psnr_db: size of ``image - clean`` in the input's unit (PSNR in dB over the masked voxels).
        label: the ground truth as the condition left it, when it moved the anatomy (a geometric corruption): the
            case is scored against it; ``None``: the case's own label.
    """

    image: torch.Tensor
    logits: torch.Tensor | None
    linf: float
    l2: float
    psnr_db: float
    label: torch.Tensor | None = None


@dataclass
class CaseContext:
    """One case as conditions see it, with the work they share.

    Attributes:
        case_id: the case's id (seeds and file names derive from it).
        image: preprocessed input ``(1, C, *spatial)`` on the model's device (a MetaTensor keeps its affine).
        label: ground-truth class map ``(1, 1, *spatial)``.
        forward: ``forward(x) -> logits`` of the model through the bundle's inferer.
        seed: the sweep's seed.
        mask: the voxels a perturbation may change ``(1, 1, *spatial)`` (for the PSNR of non-attack conditions).
        shared: per-case cache of work several conditions reuse: the clean input's :class:`InitialGradient` under
            ``("white-box", attack key)`` for the audited model and ``("transfer", attack key)`` for a source model.
        raw: the case before intensity normalisation ``(1, C, *spatial)``, when the sweep has the split (corruptions
            act on it); ``None`` otherwise.
        normalise: ``normalise(raw) -> image``, the bundle's intensity normalisation, with ``raw``.
        spacing: voxel size in mm per spatial axis, from the image's affine (``None``: unknown).
    """

    case_id: str
    image: torch.Tensor
    label: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]
    seed: int = 0
    mask: torch.Tensor | None = None
    shared: dict[Hashable, InitialGradient] = field(default_factory=dict)
    raw: torch.Tensor | None = None
    normalise: Callable[[torch.Tensor], torch.Tensor] | None = None
    spacing: Sequence[float] | None = None

    def seed_for(self, label: str) -> int:
        """The seed of condition ``label`` on this case."""
        return derive_seed(self.seed, f"{self.case_id}|{label}")

    def clean_logits(self) -> torch.Tensor:
        """The model's output on the clean input: taken from a white-box attack's shared clean gradient when one was
        computed (a transfer's is the source model's), else one forward."""
        for key, initial in self.shared.items():
            if isinstance(key, tuple) and key[:1] == ("white-box",):
                return initial.logits
        with torch.no_grad():
            return self.forward(self.image)

    def perturbed(
        self, image: torch.Tensor, logits: torch.Tensor | None = None, label: torch.Tensor | None = None
    ) -> Perturbed:
        """A :class:`Perturbed` of ``image`` (and the moved ``label``) with its size against the clean input."""
        clean = self.image.detach().as_subclass(torch.Tensor)
        change = image.detach().as_subclass(torch.Tensor) - clean
        mask = self.mask if self.mask is not None else torch.ones_like(clean[:, :1])
        return Perturbed(
            image=image,
            logits=logits,
            linf=float(per_sample_norm(change, "linf")[0]),
            l2=float(per_sample_norm(change, "l2")[0]),
            psnr_db=float(psnr_db(clean, change, mask)[0]),
            label=label,
        )


class Condition:
    """Something that maps a case to a perturbed input; subclasses implement :meth:`apply` and :meth:`settings`.

    Attributes:
        kind: ``attack``, ``noise``, ``transfer`` or ``corruption``: the family in reports.
        name: the condition's family label without its budget (``fgsm``, ``pgd[loss=segpgd]``, ``noise``).
        eps: its budget or severity, in ``unit``.
        unit: what one unit of ``eps`` is.
    """

    kind: ClassVar[str] = "condition"

    def __init__(self, name: str, eps: float, unit: str) -> None:
        self.name = str(name)
        self.eps = float(eps)
        self.unit = str(unit)

    @property
    def label(self) -> str:
        """Unique within a sweep: ``<name>@<eps>`` (``fgsm@0.1``)."""
        return f"{self.name}@{self.eps:g}"

    def settings(self) -> dict[str, Any]:
        """Everything that determines the condition's output, for the fingerprint and the report."""
        raise NotImplementedError

    def apply(self, case: CaseContext) -> Perturbed:
        """The perturbed input of ``case`` (and its logits when computed on the way)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"


def check_unique_labels(conditions: Sequence[Condition]) -> None:
    """Raise when two conditions share a label: their rows would be mixed in one results table."""
    seen: dict[str, Mapping[str, Any]] = {}
    for condition in conditions:
        if condition.label == CLEAN:
            raise ValueError(f"{CLEAN!r} is the unperturbed baseline; a condition cannot be called so.")
        if condition.label in seen:
            raise ValueError(
                f"two conditions are both labelled {condition.label!r} ({seen[condition.label]} and "
                f"{condition.settings()}); give one of them a distinct 'label' or remove the duplicate."
            )
        seen[condition.label] = condition.settings()
