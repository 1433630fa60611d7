"""Corruptions as conditions: one (corruption, severity) of a benchmark, applied to the raw case, then normalised.

:class:`CorruptionCondition` corrupts the case as loaded (before the bundle's intensity normalisation, so a bias
field or a missing sequence reaches the model the way a real one would), runs the bundle's normalisation on it and
hands the result to the sweep. The draw is seeded by the sweep's seed, the case and the corruption's name, not its
severity: the five severities of a case share one bias field pattern, one ghosting axis, one noise draw, scaled by
the ladder, so a curve of score against severity measures the severity and not the luck of five draws. A
geometric corruption (``affine``, ``elastic``) moves the case's label on the same grid, and the case is scored
against the moved label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustseg.conditions.base import CaseContext, Condition, Perturbed
from robustseg.corruptions import BENCHMARKS, SEVERITIES, corrupt_with_label, get_corruption

__all__ = ["CorruptionCondition", "corruption_conditions"]


class CorruptionCondition(Condition):
    """Corruption ``corruption`` at ``severity`` (1..5) of :mod:`robustseg.corruptions`.

    Args:
        corruption: its name (``bias_field``, ``missing_sequence``, ``jpeg``...).
        severity: 1..5.
        channels: the sequences it acts on (default: the corruption's own, e.g. FLAIR for ``missing_sequence``).
        label: its name in reports (default: the corruption's name, with the channels when they are given).
        pixel_max: white in raw natural-image pixels (255 for 8-bit files).
    """

    kind = "corruption"

    def __init__(
        self,
        corruption: str,
        severity: int,
        channels: Sequence[int] | None = None,
        label: str | None = None,
        pixel_max: float = 255.0,
    ) -> None:
        self.corruption = get_corruption(corruption)
        self.parameters = self.corruption.parameters(int(severity))
        self.channels = None if channels is None else [int(c) for c in channels]
        self.pixel_max = float(pixel_max)
        name = label or (corruption if self.channels is None else f"{corruption}[{','.join(map(str, self.channels))}]")
        super().__init__(name, int(severity), "severity (1-5)")

    @property
    def severity(self) -> int:
        return int(self.eps)

    def settings(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "corruption": self.corruption.name,
            "severity": self.severity,
            "parameters": self.parameters,
            "channels": self.channels if self.channels is not None else self.corruption.channels,
            "on_brain": self.corruption.on_brain,
            **({"moves_label": True} if self.corruption.moves_label else {}),
            **({"pixel_max": self.pixel_max} if self.corruption.domain == "natural" else {}),
        }

    def apply(self, case: CaseContext) -> Perturbed:
        if case.raw is None or case.normalise is None:
            raise ValueError(
                f"{self.label} corrupts the case before intensity normalisation, but the sweep was given no split of "
                "the preprocessing; build it with normalise= (configs/corruptions.json passes the contract's "
                "raw_preprocessing and intensity_normalisation)."
            )
        corrupted, label = corrupt_with_label(
            case.raw.detach(),
            case.label,
            self.corruption.name,
            self.severity,
            seed=case.seed_for(self.name),
            spacing=case.spacing,
            channels=self.channels,
            pixel_max=self.pixel_max,
        )
        moved = label if self.corruption.moves_label else None
        return case.perturbed(case.normalise(corrupted), label=moved)


def corruption_conditions(
    corruptions: Sequence[str | Mapping[str, Any]],
    severities: Sequence[int] = SEVERITIES,
    pixel_max: float = 255.0,
) -> list[CorruptionCondition]:
    """Every corruption at every severity.

    Each item is a corruption's name, a benchmark's name (``brats-c``, ``natural-c``: all of its corruptions), or a
    dict with ``name`` and optionally ``channels``, ``label`` and ``severities``.
    """
    out: list[CorruptionCondition] = []
    for item in corruptions:
        spec: dict[str, Any] = {"name": item} if isinstance(item, str) else dict(item)
        unknown = sorted(set(spec) - {"name", "channels", "label", "severities"})
        if unknown or "name" not in spec:
            raise ValueError(
                f"a corruption is a name or a dict with 'name' (and 'channels', 'label', 'severities') but is {item!r}."
            )
        names = list(BENCHMARKS[spec["name"]]) if spec["name"] in BENCHMARKS else [str(spec["name"])]
        if len(names) > 1 and (spec.get("channels") is not None or spec.get("label")):
            raise ValueError(f"'channels' and 'label' apply to one corruption, not to the benchmark {spec['name']!r}.")
        for name in names:
            for severity in spec.get("severities", severities):
                out.append(CorruptionCondition(name, int(severity), spec.get("channels"), spec.get("label"), pixel_max))
    return out
