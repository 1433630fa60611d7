"""Sensitivity-adaptive augmentation (seed 000), free of engines and trackers.

- :mod:`~robustseg.sensitivity.features`: a model's own encoder features and their KID.
- :mod:`~robustseg.sensitivity.curve`: the adaptive, monotone PCHIP sensitivity curve of one op.
- :mod:`~robustseg.sensitivity.perturbations`: the basis perturbations, batched in torch, and their MONAI
  transforms (:mod:`~robustseg.sensitivity.transforms`).
- :mod:`~robustseg.sensitivity.analysis`: one op's adaptive analysis of a trained model, cached per (checkpoint, op).
- :mod:`~robustseg.sensitivity.sampler`: (op, level) draws weighted towards the levels that cost the model most.
- :mod:`~robustseg.sensitivity.augment`: training-batch policies: the adaptive one and its baselines.
- :mod:`~robustseg.sensitivity.refresh`: the held-out training slice and the refresh that rebuilds the sampler.

Example:
    >>> from robustseg.sensitivity import SensitivitySampler
    >>> sampler = SensitivitySampler({"blur": [(0.2, 0.9), (0.5, 0.7), (0.8, 0.4)]}, jitter=0.0)
    >>> [row["level"] for row in sampler.table()[1:]]  # the most damaging level first, with the most weight
    [0.8, 0.5, 0.2]
"""

from __future__ import annotations

from robustseg.sensitivity.analysis import OpAnalysis, SensitivityCache, analyse_op
from robustseg.sensitivity.curve import (
    DEFAULT_TARGETS,
    AdaptiveCurve,
    SensitivityCurve,
    SensitivityPoint,
    adaptive_curve,
    interval_errors,
    objective,
    surpluses,
)
from robustseg.sensitivity.features import EncoderFeatures, kernel_inception_distance
from robustseg.sensitivity.perturbations import MRI_OPS, NATURAL_OPS, OPS, BasisOp, perturb
from robustseg.sensitivity.refresh import SensitivityRefresh, case_score, check_holdout, split_holdout
from robustseg.sensitivity.sampler import Draw, SensitivitySampler
from robustseg.sensitivity.transforms import BasisPerturbation, BasisPerturbationd

__all__ = [
    "DEFAULT_TARGETS",
    "MRI_OPS",
    "NATURAL_OPS",
    "OPS",
    "AdaptiveCurve",
    "BasisOp",
    "BasisPerturbation",
    "BasisPerturbationd",
    "Draw",
    "EncoderFeatures",
    "OpAnalysis",
    "SensitivityCache",
    "SensitivityCurve",
    "SensitivityPoint",
    "SensitivityRefresh",
    "SensitivitySampler",
    "adaptive_curve",
    "analyse_op",
    "case_score",
    "check_holdout",
    "interval_errors",
    "kernel_inception_distance",
    "objective",
    "perturb",
    "split_holdout",
    "surpluses",
]
