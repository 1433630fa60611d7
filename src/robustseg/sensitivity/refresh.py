"""The refresh of seed 000's training: re-measure the model's sensitivity on a held-out slice of the *training*
split and rebuild the sampler from it.

The public code measured sensitivity on a quarter of the validation set, which was also its reported clean test set.
Here :func:`split_holdout` takes the slice out of the training cases (chosen by a hash of each case's id, so the
choice depends neither on the datalist's order nor on the number of ranks) and :func:`check_holdout` refuses a slice
that shares a file with the validation or test cases. :class:`SensitivityRefresh` runs
:func:`~robustseg.sensitivity.analysis.analyse_op` for every op on those cases and turns the curves into a
:class:`~robustseg.sensitivity.sampler.SensitivitySampler`: per op, the levels at the curve's targets, ranked by the
score the model keeps there (interpolated between the evaluated levels).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustseg.evaluation.dice import get_policy
from robustseg.evaluation.metrics import mean_present, region_metrics
from robustseg.labels import LabelScheme
from robustseg.sensitivity.analysis import OpAnalysis, SensitivityCache, analyse_op
from robustseg.sensitivity.curve import DEFAULT_TARGETS
from robustseg.sensitivity.sampler import SensitivitySampler

__all__ = [
    "Refreshed",
    "SensitivityRefresh",
    "case_score",
    "check_holdout",
    "deepest_layer",
    "foreground_crop",
    "sampler_table",
    "split_holdout",
]


def _files(entry: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for key in ("image", "label"):
        value = entry.get(key)
        for v in value if isinstance(value, list | tuple) else [value]:
            if isinstance(v, str):
                out.add(v)
    return out


def _case_key(entry: Mapping[str, Any]) -> str:
    return str(entry.get("case_id") or sorted(_files(entry)) or repr(sorted(entry.items())))


def split_holdout(
    entries: Sequence[Mapping[str, Any]],
    fraction: float = 0.2,
    minimum: int = 2,
    seed: int = 0,
    maximum: int | None = None,
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The training cases split into ``(train, holdout)``: ``round(fraction * n)`` cases held out, at least
    ``minimum`` and at most ``maximum``, those whose id hashes lowest with ``seed`` (the same cases whatever the
    datalist's order)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1) but is {fraction!r}.")
    n = len(entries)
    k = max(int(minimum), round(fraction * n))
    if maximum is not None:
        k = max(int(minimum), min(k, int(maximum)))
    if n - k < 1:
        raise ValueError(
            f"the training split has {n} cases: too few to hold out {k} for the sensitivity analysis and train on the "
            "rest; add training cases or lower sensitivity_holdout_fraction / sensitivity_holdout_minimum."
        )

    def rank(entry: Mapping[str, Any]) -> str:
        return hashlib.sha256(f"{seed}|{_case_key(entry)}".encode()).hexdigest()

    held = {id(e) for e in sorted(entries, key=rank)[:k]}
    return [e for e in entries if id(e) not in held], [e for e in entries if id(e) in held]


def check_holdout(holdout: Sequence[Mapping[str, Any]], others: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Raise when a held-out case shares a file with the validation or test cases (``others``: split -> entries)."""
    mine = set().union(*(_files(e) for e in holdout)) if holdout else set()
    for split, entries in others.items():
        shared = mine & set().union(*(_files(e) for e in entries)) if entries else set()
        if shared:
            raise ValueError(
                f"the sensitivity analysis's held-out cases share {len(shared)} files with the {split} split (e.g. "
                f"{sorted(shared)[0]}); the analysis must never see {split} data: fix the datalist."
            )


def case_score(
    scheme: LabelScheme, head: str = "softmax", metric: str = "dice", empty_policy: str = "brats"
) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``score(logits, label)`` of one case: the mean Dice over the scheme's regions, or the mIoU over the classes
    in the case's truth or prediction, as :func:`robustseg.evaluation.metrics.region_metrics` scores them (for a
    softmax head from one confusion matrix, which is what a refresh's hundreds of calls can afford)."""
    policy = get_policy(empty_policy)
    k = len(scheme.class_names)
    members = [torch.tensor(sorted(c), dtype=torch.long) for c in scheme.regions.values()]

    def by_regions(logits: torch.Tensor, classes: torch.Tensor) -> float:
        pred = scheme.regions_from_logits(logits, head=head)
        values = region_metrics(
            pred,
            scheme.to_regions(classes),
            scheme.region_names,
            valid=scheme.valid_mask(classes),
            empty_policy=policy,
            hd95=False,
            iou=metric == "iou",
        )[0]
        return mean_present([values[f"{r}_{metric}"] for r in scheme.region_names])

    def score(logits: torch.Tensor, label: torch.Tensor) -> float:
        classes = scheme.label_class_map(label, "label")
        if head != "softmax" or logits.shape[0] != 1:
            return by_regions(logits, classes)
        truth = classes[0, 0].reshape(-1)
        pred = logits[0].argmax(0).reshape(-1)
        valid = scheme.valid_mask(truth)
        truth, pred = truth[valid], pred[valid]
        if truth.numel() and (int(truth.min()) < 0 or int(truth.max()) >= k):
            return by_regions(logits, classes)  # values outside the classes: the general path says which
        confusion = torch.bincount(truth * k + pred, minlength=k * k).view(k, k).double().cpu()
        scores = []
        for c in members:
            inter = float(confusion[c][:, c].sum())
            truth_size, pred_size = float(confusion[c].sum()), float(confusion[:, c].sum())
            if metric == "iou":
                union = truth_size + pred_size - inter
                scores.append(inter / union if union > 0 else math.nan)
                continue
            total = truth_size + pred_size
            dice = 2 * inter / total if total > 0 else policy.both_empty_dice
            scores.append(math.nan if policy.ignore_empty_truth and truth_size == 0 else dice)
        return mean_present(scores)

    return score


def deepest_layer(
    network: nn.Module, example: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> str:
    """The name of the first module whose output has the fewest voxels (the encoder's bottleneck), found by one
    forward pass of ``example`` (through ``predict``, e.g. a sliding window over the network, when given)."""
    sizes: dict[str, int] = {}
    handles = []
    for name, module in network.named_modules():
        if not name or any(True for _ in module.children()):
            continue

        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            t = out[0] if isinstance(out, tuple | list) else out
            if isinstance(t, torch.Tensor) and t.ndim >= 3:
                sizes.setdefault(name, int(np.prod(t.shape[2:])))

        handles.append(module.register_forward_hook(hook))
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            (predict or network)(example)
    finally:
        for h in handles:
            h.remove()
        network.train(was_training)
    if not sizes:
        raise ValueError("no layer of the network gives a spatial output; name the feature layer in the config.")
    smallest = min(sizes.values())
    leaf = next(n for n, s in sizes.items() if s == smallest)
    return leaf.rsplit(".", 1)[0] if "." in leaf else leaf  # the block around it, pooled as one


@dataclass(frozen=True)
class Refreshed:
    """One refresh: each op's analysis, the sampler built from them, what it cost."""

    analyses: dict[str, OpAnalysis]
    sampler: SensitivitySampler
    seconds: float
    evaluations: int
    reused: int


class SensitivityRefresh:
    """Re-measure sensitivity on held-out training cases and build the sampler (see the module).

    Args:
        network: the model being trained (analysed in eval mode, its mode restored).
        cases: the held-out cases, preprocessed: dicts with ``image`` ``(C, *spatial)`` and ``label``.
        ops: the basis perturbations.
        score: ``score(logits, label)`` of one case (:func:`case_score`).
        predict: logits of a batch (the bundle's inferer over the network); default the network.
        feature_layer: the layer the KID's features come from (``None``: :func:`deepest_layer`).
        device: where the cases go.
        seed, tol, max_evaluations, targets, kid_subsets, channels, renormalise: as for
            :func:`~robustseg.sensitivity.analysis.analyse_op`.
        a, b, clean_share, jitter: the sampler's (:class:`~robustseg.sensitivity.sampler.SensitivitySampler`).
        cache: keeps each (checkpoint, op) analysis so a resumed training does not redo it.
        crop_size: analyse a crop of each case of this size, centred on its labelled foreground, by the network
            itself (the crop is one window: no sliding window, no padding to the inferer's window); ``None``: whole
            cases through ``predict``.
    """

    def __init__(
        self,
        network: nn.Module,
        cases: Sequence[Mapping[str, Any]],
        ops: Sequence[str],
        score: Callable[[torch.Tensor, torch.Tensor], float],
        predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
        feature_layer: str | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        tol: float = 0.05,
        max_evaluations: int = 12,
        targets: Sequence[float] = DEFAULT_TARGETS,
        kid_subsets: int = 20,
        channels: Sequence[int] | None = None,
        renormalise: bool = False,
        a: float = 0.75,
        b: float = 1.0,
        clean_share: float | None = None,
        jitter: float = 0.1,
        cache: SensitivityCache | None = None,
        crop_size: Sequence[int] | None = None,
    ) -> None:
        if len(cases) < 2:
            raise ValueError(f"the sensitivity analysis needs at least 2 held-out cases but has {len(cases)}.")
        if not ops:
            raise ValueError("the sensitivity analysis needs at least one op.")
        self.network = network
        self.cases = cases
        self.ops = list(ops)
        self.score = score
        self.predict = predict
        self.feature_layer = feature_layer
        self.device = torch.device(device)
        self.analysis_settings: dict[str, Any] = {
            "seed": int(seed),
            "tol": float(tol),
            "max_evaluations": int(max_evaluations),
            "targets": [float(t) for t in targets],
            "kid_subsets": int(kid_subsets),
            "channels": None if channels is None else list(channels),
            "renormalise": bool(renormalise),
        }
        self.sampler_settings: dict[str, Any] = {"a": a, "b": b, "clean_share": clean_share, "jitter": jitter}
        self.cache = cache
        self.crop_size = None if crop_size is None else [int(n) for n in crop_size]
        self.analysis_settings["crop_size"] = self.crop_size
        self._cases: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "feature_layer": self.feature_layer,
            "cases": len(self.cases),
            **self.analysis_settings,
            **self.sampler_settings,
        }

    def _loaded(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The held-out cases as batches of one (cropped), read and preprocessed once: they do not change between
        refreshes."""
        if self._cases is None:
            out = []
            for item in self.cases:
                image = torch.as_tensor(item["image"]).as_subclass(torch.Tensor)[None].to(self.device)
                label = torch.as_tensor(item["label"]).as_subclass(torch.Tensor)[None].to(self.device)
                out.append(foreground_crop(image, label, self.crop_size) if self.crop_size else (image, label))
            self._cases = out
        return self._cases

    def run(self, checkpoint_key: str, sampler_seed: int = 0) -> Refreshed:
        """Analyse every op for the model as it is now (``checkpoint_key`` names its weights in the cache)."""
        start = time.perf_counter()
        cases = self._loaded()
        predict = None if self.crop_size else self.predict
        if self.feature_layer is None:
            self.feature_layer = deepest_layer(self.network, cases[0][0], predict)
        settings = {**self.analysis_settings, "feature_layer": self.feature_layer, "cases": len(cases)}
        analyses: dict[str, OpAnalysis] = {}
        evaluations = reused = 0
        for op in self.ops:
            found = self.cache.get(checkpoint_key, op, settings) if self.cache is not None else None
            if found is not None:
                analyses[op], reused = found, reused + 1
                continue
            analysis = analyse_op(
                self.network,
                cases,
                op,
                self.score,
                self.feature_layer,
                predict=predict,
                seed=settings["seed"],
                tol=settings["tol"],
                max_evaluations=settings["max_evaluations"],
                targets=settings["targets"],
                kid_subsets=settings["kid_subsets"],
                channels=settings["channels"],
                renormalise=settings["renormalise"],
            )
            evaluations += analysis.curve.evaluations
            if self.cache is not None:
                self.cache.put(checkpoint_key, settings, analysis)
            analyses[op] = analysis
        sampler = SensitivitySampler(sampler_table(analyses), seed=sampler_seed, **self.sampler_settings)
        return Refreshed(analyses, sampler, time.perf_counter() - start, evaluations, reused)


def foreground_crop(image: torch.Tensor, label: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` and ``label`` ``(1, C, *spatial)`` cropped to ``size``, centred on the label's foreground (the
    image's centre without one), zero-padded where the case is smaller."""
    spatial = image.shape[2:]
    if len(size) != len(spatial):
        raise ValueError(f"the crop size {list(size)} has {len(size)} axes; the case has {len(spatial)}.")
    where = label.as_subclass(torch.Tensor).ne(0).any(1)[0].nonzero()
    centre = ((where.min(0).values + where.max(0).values) // 2).tolist() if len(where) else [n // 2 for n in spatial]
    pad = [p for n, k in zip(reversed(spatial), reversed(size), strict=True) for p in (0, max(0, k - n))]
    image, label = torch.nn.functional.pad(image, pad), torch.nn.functional.pad(label, pad)
    slices = [slice(None), slice(None)]
    for c, n, k in zip(centre, image.shape[2:], size, strict=True):
        start = min(max(0, int(c) - k // 2), n - k)
        slices.append(slice(start, start + k))
    return image[tuple(slices)], label[tuple(slices)]


def sampler_table(analyses: Mapping[str, OpAnalysis]) -> dict[str, list[tuple[float, float]]]:
    """Per op, its levels at the curve's targets with the score the model keeps there (linear between the
    evaluated levels)."""
    table: dict[str, list[tuple[float, float]]] = {}
    for op, analysis in analyses.items():
        levels = sorted(analysis.scores)
        kept = [analysis.scores[v] for v in levels]
        chosen = [float(v) for v in analysis.curve.levels if not math.isnan(float(v))]
        table[op] = [(v, float(np.interp(v, levels, kept))) for v in chosen] or [(1.0, kept[-1])]
    return table
