"""Certification of segmentations by randomized smoothing (SegCertify), optionally with a diffusion denoiser.

:class:`SegmentationSmoother` certifies each voxel of a case within an L2 radius ``sigma * PhiInv(tau)`` or abstains;
:mod:`~robustseg.certification.statistics` holds the binomial tests, the corrections over voxels and the power table;
:mod:`~robustseg.certification.metrics` scores a certificate against the ground truth.
"""

from __future__ import annotations

from robustseg.certification.metrics import certified_metrics
from robustseg.certification.smoothing import (
    ABSTAIN,
    Certificate,
    SegmentationSmoother,
    certified_radius,
    check_sigma,
    noise_augmentation,
)
from robustseg.certification.statistics import (
    CORRECTIONS,
    binomial_pvalue_table,
    binomial_pvalues,
    certify_counts,
    power_table,
    reject_bonferroni,
    reject_holm,
    votes_needed,
)

__all__ = [
    "ABSTAIN",
    "CORRECTIONS",
    "Certificate",
    "SegmentationSmoother",
    "binomial_pvalue_table",
    "binomial_pvalues",
    "certified_metrics",
    "certified_radius",
    "certify_counts",
    "check_sigma",
    "noise_augmentation",
    "power_table",
    "reject_bonferroni",
    "reject_holm",
    "votes_needed",
]
