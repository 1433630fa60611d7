"""What a corruption is: a named function with a five-step severity ladder, and what it is called with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["SEVERITIES", "Corruption", "Setting", "rood_summary", "severity_weight"]

SEVERITIES = (1, 2, 3, 4, 5)
"""The severities of every corruption."""


@dataclass
class Setting:
    """What a corruption function needs besides the image and its severity's parameters.

    Attributes:
        generator: the seeded source of every random draw.
        spacing: voxel size in mm per spatial axis (``None``: 1 mm).
        channels: the sequences (channels) it acts on; ``None``: all.
        pixel_max: the value of white in a natural image's raw pixels (255 for 8-bit files).
    """

    generator: torch.Generator
    spacing: Sequence[float] | None = None
    channels: Sequence[int] | None = None
    pixel_max: float = 255.0

    def spacing_for(self, x: torch.Tensor) -> tuple[float, ...]:
        dims = x.ndim - 2
        if self.spacing is None:
            return (1.0,) * dims
        if len(self.spacing) != dims:
            raise ValueError(f"the spacing {list(self.spacing)} has {len(self.spacing)} axes; the image has {dims}.")
        return tuple(float(s) for s in self.spacing)


@dataclass(frozen=True)
class Corruption:
    """One corruption of a benchmark.

    Attributes:
        name: its name in configs and reports.
        domain: ``mri`` (raw intensities, 2-D or 3-D) or ``natural`` (RGB pixels, 2-D).
        ladder: the function's keyword parameters at severity 1..5.
        function: ``function(x, **ladder[s - 1], setting=setting) -> x'`` on a batch ``(B, C, *spatial)``; for a
            corruption that ``moves_label``, the sampling grid that moves image and label alike
            (:mod:`robustseg.corruptions.geometric`).
        on_brain: put the output back on the brain mask (an artefact of acquisition, before skull stripping; for a
            corruption that ``moves_label``, on the moved brain mask).
        channels: the default sequences it acts on (``None``: all).
        about: one line for the report.
        moves_label: a geometric corruption: the anatomy moves, and the ground truth with it.
    """

    name: str
    domain: str
    ladder: tuple[Mapping[str, float], ...]
    function: Callable[..., torch.Tensor]
    on_brain: bool = False
    channels: tuple[int, ...] | None = None
    about: str = ""
    moves_label: bool = False

    def parameters(self, severity: int) -> dict[str, float]:
        """The parameters of ``severity`` (1..5)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {list(SEVERITIES)} but is {severity!r}.")
        return dict(self.ladder[severity - 1])


def severity_weight(severity: int) -> float:
    """ROOD-MRI's weight of a severity: (2/3)^s."""
    return (2.0 / 3.0) ** int(severity)


def rood_summary(clean: float, by_severity: Mapping[int, float]) -> dict[str, float]:
    """ROOD-MRI's summary of one corruption from the mean score clean and at each severity.

    ``overall = (sum_s w_s m_s + m_clean) / (sum_s w_s + 1)`` and ``degradation = sum_s w_s (m_clean - m_s) / sum_s
    w_s``, with ``w_s = (2/3)^s`` over the severities given (NaN scores are left out of both sums).
    """
    pairs = [(severity_weight(s), float(m)) for s, m in sorted(by_severity.items()) if m == m]
    if not pairs or clean != clean:
        return {"overall": float("nan"), "degradation": float("nan")}
    weights = sum(w for w, _ in pairs)
    return {
        "overall": (sum(w * m for w, m in pairs) + float(clean)) / (weights + 1.0),
        "degradation": sum(w * (float(clean) - m) for w, m in pairs) / weights,
    }
