"""Adaptive sensitivity analysis of a trained model: one curve per basis perturbation, cached per (checkpoint, op).

For each op, :func:`analyse_op` perturbs every case of a held-out slice at the levels that :func:`adaptive_curve`
asks for and measures two things against the clean cases: the mean score drop (``score(logits, label)``, e.g. the
mean Dice over regions or mIoU, given by the caller) and the KID between the clean and perturbed features of the
model's own encoder (:class:`EncoderFeatures`). Level 0 is the clean set itself: drop 0, KID 0. The unbiased KID can
dip below 0 when the sets barely differ; it is clipped at 0, since a feature distance below none means none.

:class:`SensitivityCache` keeps each op's result as JSON under a key of the checkpoint's fingerprint, the op and
every setting that changes the result, so a refresh with a new checkpoint recomputes and one with the same reuses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustseg.sensitivity.augment import perturb_normalised
from robustseg.sensitivity.curve import (
    DEFAULT_TARGETS,
    AdaptiveCurve,
    SensitivityCurve,
    SensitivityPoint,
    adaptive_curve,
)
from robustseg.sensitivity.features import EncoderFeatures, kernel_inception_distance

__all__ = ["OpAnalysis", "SensitivityCache", "analyse_op"]

Score = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class OpAnalysis:
    """One op's analysis: its adaptive curve, and the mean score the model kept at every evaluated level."""

    op: str
    curve: AdaptiveCurve
    clean_score: float
    scores: dict[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "clean_score": self.clean_score,
            "scores": {str(k): v for k, v in sorted(self.scores.items())},
            **self.curve.to_dict(),
        }

    @staticmethod
    def from_dict(record: dict[str, Any]) -> OpAnalysis:
        points = tuple(SensitivityPoint(**p) for p in record["points"])
        curve = AdaptiveCurve(
            SensitivityCurve(points),
            tuple(record["targets"]),
            tuple(record["levels"]),
            float(record["error"]),
            int(record["evaluations"]),
        )
        scores = {float(k): float(v) for k, v in record["scores"].items()}
        return OpAnalysis(record["op"], curve, float(record["clean_score"]), scores)


def analyse_op(
    network: nn.Module,
    cases: Sequence[tuple[torch.Tensor, torch.Tensor]],
    op: str,
    score: Score,
    feature_layer: str,
    *,
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    tol: float = 0.05,
    max_evaluations: int = 12,
    targets: Sequence[float] = DEFAULT_TARGETS,
    kid_subsets: int = 20,
    channels: Sequence[int] | None = None,
    renormalise: bool = False,
) -> OpAnalysis:
    """The adaptive sensitivity curve of ``network`` to ``op`` on ``cases`` (``(image, label)`` batches of one).

    Args:
        predict: logits of a batch (default: ``network`` itself; a sliding-window inferer for large volumes).
        seed: the seed of case ``k``'s perturbation is ``seed + k``, the same at every level and refresh.
        kid_subsets: subsets of torchmetrics' KID (each the whole, smaller set: at least 2 cases are needed).
        renormalise: the cases are z-scored MRI: each op acts on them shifted to a raw-like, nonnegative range and
            is z-scored again after (:func:`~robustseg.sensitivity.augment.perturb_normalised`).
    """
    if len(cases) < 2:
        raise ValueError(f"sensitivity analysis of {op!r} needs at least 2 cases for the KID, got {len(cases)}")
    run = predict or network
    extractor = EncoderFeatures(network, feature_layer)
    was_training = network.training
    network.eval()
    try:
        clean_scores, clean_features = [], []
        for image, label in cases:
            logits, features = extractor.during(run, image)
            clean_scores.append(float(score(logits, label)))
            clean_features.append(features)
        clean_score = sum(clean_scores) / len(clean_scores)
        clean_set = torch.cat(clean_features)
        kept: dict[float, float] = {0.0: clean_score}

        def evaluate(level: float) -> tuple[float, float]:
            if level == 0.0:
                return 0.0, 0.0
            scores, features = [], []
            for k, (image, label) in enumerate(cases):
                with torch.no_grad():
                    moved, moved_label = perturb_normalised(
                        image, label, op, level, seed=seed + k, channels=channels, renormalise=renormalise
                    )
                logits, taken = extractor.during(run, moved)
                scores.append(float(score(logits, label if moved_label is None else moved_label)))
                features.append(taken)
            kept[level] = sum(scores) / len(scores)
            kid, _ = kernel_inception_distance(clean_set, torch.cat(features), subsets=kid_subsets, seed=seed)
            return clean_score - kept[level], max(kid, 0.0)

        curve = adaptive_curve(evaluate, tol=tol, max_evaluations=max_evaluations, targets=targets)
    finally:
        network.train(was_training)
    return OpAnalysis(op, curve, clean_score, kept)


class SensitivityCache:
    """Op analyses as JSON files in ``folder``, keyed by checkpoint fingerprint, op and settings."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(checkpoint: str, op: str, settings: dict[str, Any]) -> str:
        text = json.dumps({"checkpoint": checkpoint, "op": op, "settings": settings}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def _path(self, checkpoint: str, op: str, settings: dict[str, Any]) -> Path:
        return self.folder / f"{op}-{self.key(checkpoint, op, settings)}.json"

    def get(self, checkpoint: str, op: str, settings: dict[str, Any]) -> OpAnalysis | None:
        path = self._path(checkpoint, op, settings)
        if not path.is_file():
            return None
        try:
            return OpAnalysis.from_dict(json.loads(path.read_text())["analysis"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # a torn or foreign file: recompute and overwrite it

    def put(self, checkpoint: str, settings: dict[str, Any], analysis: OpAnalysis) -> Path:
        path = self._path(checkpoint, analysis.op, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"checkpoint": checkpoint, "settings": settings, "analysis": analysis.to_dict()}
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(record, indent=1, default=str))
        partial.replace(path)  # never a half-written cache entry
        return path
