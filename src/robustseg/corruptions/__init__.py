"""Corruption benchmarks: BraTS-C for MRI (ROOD-MRI's ladders and the failures of BraTS pipelines) and common
corruptions of natural images, five severities each, seeded, applied to raw inputs before intensity normalisation.

Free of engines and trackers; :class:`robustseg.conditions.CorruptionCondition` makes each (corruption, severity) a
condition of the sweep, and :func:`rood_summary` condenses a corruption's scores over its severities.
"""

from __future__ import annotations

from robustseg.corruptions.base import SEVERITIES, Corruption, Setting, rood_summary, severity_weight
from robustseg.corruptions.benchmarks import (
    BENCHMARKS,
    BRATS_C,
    CORRUPTIONS,
    NATURAL_C,
    brain_mask,
    corrupt,
    corrupt_with_label,
    get_corruption,
)

__all__ = [
    "BENCHMARKS",
    "BRATS_C",
    "CORRUPTIONS",
    "NATURAL_C",
    "SEVERITIES",
    "Corruption",
    "Setting",
    "brain_mask",
    "corrupt",
    "corrupt_with_label",
    "get_corruption",
    "rood_summary",
    "severity_weight",
]
