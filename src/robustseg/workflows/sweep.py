"""The condition sweep: every case, clean and under every condition, scored per region, tested in pairs.

:class:`ConditionSweep` is the one sweep of robustseg. The attack audit is an instance of it
(:class:`~robustseg.workflows.attack_sweep.AttackSweep`: attacks at every budget, each budget's random-noise baseline,
transfer attacks when a second model is given); the corruption benchmark and the defence comparison add conditions
(:class:`robustseg.conditions.Condition`) without writing another. ``run()``

1. checks the checkpoint, the cases and the output folder's fingerprint before any compute (a folder holding results
   of other settings stops the run with the differences named; ``fresh=True`` starts over);
2. gives this rank its cases (all of them in one process; MONAI's uneven ``DistributedSampler`` shares under
   ``torchrun``), and for each case scores the clean input and every condition through the bundle's inferer,
   appending one row per case x condition x region as soon as it is computed (a killed sweep resumes where it
   stopped). Work conditions share is done once per case: the clean forward, and the clean input's gradient that
   FGSM at every budget and the first step of i-FGSM start from;
3. on rank 0, after every rank is done: merges the rows, adds the worst case over the attacks of each budget, runs the
   self-checks (probabilities, masked gradients, attacks no stronger than noise, fewer steps beating more, transfer
   beating white-box, determinism) and tests every condition against clean per region (paired Wilcoxon, Holm over
   the whole family, effect sizes and intervals).

Regions are scored the way the head defines them: from the arg-max class map for softmax heads, per region channel
for sigmoid heads (as the bundle's own metric does), under one empty-region policy; the settings say which.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import robustseg
from robustseg.checkpoints import load_checkpoint, unwrap
from robustseg.conditions import CLEAN, AttackCondition, CaseContext, Condition, TransferCondition, check_unique_labels
from robustseg.data.naming import case_ids, case_output_name
from robustseg.data.nifti import input_affine, save_class_map
from robustseg.data.png import palette_mapping, scaled_rgb, write_label, write_rgb
from robustseg.data.transforms import from_input_labels, to_input_labels
from robustseg.errors import keep_created
from robustseg.evaluation.dice import get_policy
from robustseg.evaluation.metrics import MEAN_IOU, mean_present, region_metrics, spacing_from_affine
from robustseg.evaluation.results import ResultsStore
from robustseg.evaluation.selfchecks import (
    SelfCheck,
    check_attack_order,
    check_determinism,
    check_gradients,
    check_logits,
    check_noise_baseline,
    check_transfer,
)
from robustseg.evaluation.statistics import compare_conditions
from robustseg.labels import BRATS, LabelScheme
from robustseg.progress import progress
from robustseg.workflows import distributed
from robustseg.workflows.fingerprint import (
    claim_output_dir,
    file_sha256,
    inferer_signature,
    network_signature,
)

__all__ = [
    "COLUMNS",
    "KEY",
    "MEAN_IOU",
    "METRICS",
    "WORST",
    "ConditionSweep",
    "columns_for",
    "prefetched",
    "run_model_sweeps",
    "transform_names",
    "worst_case_rows",
]

logger = logging.getLogger(__name__)

COLUMNS = ["case_id", "condition", "kind", "attack", "eps", "region", "dice", "hd95", "linf", "l2", "psnr_db"]
"""The columns of ``results.csv``; a sweep scored by IoU (:data:`METRICS`) adds ``iou``."""

METRICS: tuple[str, ...] = ("dice", "iou")
"""What a sweep tests: ``dice`` per region (MRI), or ``iou`` per class with a per-case ``mIoU`` row (natural
images: the mean over the classes present in the case's truth or prediction)."""


def columns_for(metric: str) -> list[str]:
    """The results columns of a sweep scored by ``metric``."""
    return [*COLUMNS, "iou"] if metric == "iou" else list(COLUMNS)


KEY = ["case_id", "condition", "region"]
WORST = "worst"
OUTPUTS = ("results.csv", "results.rank*.csv", "fingerprint.json", "examples", "report", "mlflow_run.json")
"""What a sweep writes into its folder (``fresh`` removes these and nothing else)."""


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().as_subclass(torch.Tensor).numpy()


def _file_part(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", label).strip("_")


def worst_case_rows(
    rows: Sequence[Mapping[str, Any]], kinds: Sequence[str] = ("attack", "transfer"), metric: str = "dice"
) -> list[dict]:
    """Per budget with two or more attacks: per case and region the lowest score over them (``worst@<eps>``).

    Rows need ``case_id``, ``condition``, ``kind``, ``eps``, ``region``, ``dice`` and ``hd95`` (and ``iou`` for
    ``metric="iou"``) as numbers. A case counts at a budget only when every attack of that budget scored it, so the
    minimum is over the same set for all. The other scores are those of the attack that gave the lowest ``metric``
    (ties: the first attack in the table).
    """
    by_eps: dict[float, dict[tuple[str, str], dict[str, Mapping[str, Any]]]] = {}
    conditions: dict[float, list[str]] = {}
    for row in rows:
        if row["kind"] not in kinds:
            continue
        eps = float(row["eps"])
        names = conditions.setdefault(eps, [])
        if row["condition"] not in names:
            names.append(row["condition"])
        by_eps.setdefault(eps, {}).setdefault((row["case_id"], row["region"]), {})[row["condition"]] = row
    out = []
    for eps, cells in by_eps.items():
        names = conditions[eps]
        if len(names) < 2:
            continue
        for (case_id, region), scored in cells.items():
            if len(scored) < len(names):
                continue
            values = [scored[n] for n in names]
            finite = [r for r in values if not math.isnan(float(r[metric]))]
            lowest = min(finite, key=lambda r: float(r[metric])) if finite else values[0]
            scores = {"iou": float(lowest["iou"])} if metric == "iou" else {}
            out.append(
                {
                    **scores,
                    "case_id": case_id,
                    "condition": f"{WORST}@{eps:g}",
                    "kind": WORST,
                    "attack": WORST,
                    "eps": eps,
                    "region": region,
                    "dice": float(lowest["dice"]),
                    "hd95": float(lowest["hd95"]),
                    "linf": math.nan,
                    "l2": math.nan,
                    "psnr_db": math.nan,
                    "worst_of": str(lowest["condition"]),
                }
            )
    return out


class ConditionSweep:
    """Score every case of ``dataset`` clean and under every condition, per region; resume, shard, test.

    Args:
        network: the bundle's network (logits out); under DDP its module is used.
        checkpoint: its weights; checked against the network before any compute, and hashed into the fingerprint.
        inferer: the bundle's inferer (a sliding window over the whole volume for MRI); conditions run through it.
        dataset: preprocessed cases: dicts with ``image`` ``(C, *spatial)``, ``label`` (a class map ``(1, *spatial)``
            or region masks ``(R, *spatial)``) and a ``case_id`` (else named by their image file), e.g. a MONAI
            ``Dataset`` over the test split with the bundle's validation preprocessing.
        conditions: what to score besides the clean input; labels must be unique.
        output_dir: results, fingerprint, examples and report go here; rerunning with the same folder resumes.
        head: ``softmax`` or ``sigmoid`` (model zoo style region channels).
        scheme: label scheme of the model's classes and reported regions.
        device: where the model runs.
        seed: the sweep's seed; each case and condition draws from a seed derived from it and the case id.
        num_examples: cases whose perturbed inputs and predictions (at each attack's largest budget) are saved as
            NIfTI and shown in the report.
        channel_names: names of the input channels (MRI sequences), shown in the report's examples.
        empty_policy: how empty regions are scored (:mod:`robustseg.evaluation.dice`).
        max_cases: score at most this many cases (the first ones; ``None``: all).
        fresh: discard what an earlier run left in ``output_dir`` (results, fingerprint, examples, report).
        mask: the voxels perturbations may change for the PSNR of non-attack conditions: ``nonzero`` or ``none``.
        settings: extra settings for the report and MLflow (e.g. the threat model in words).
        metric: what is tested, one of :data:`METRICS`: ``dice`` per region, or ``iou`` per class plus the per-case
            ``mIoU`` (natural images).
        hd95: compute HD95 (``False`` for natural images: the column holds NaN).
        palette: the colour of each class value in the report's examples (a dataset's palette), or ``None``.
        normalise: the bundle's intensity normalisation, a dictionary transform, when ``dataset`` yields cases before
            it (:func:`robustseg.data.preprocessing.split_at_normalisation`): the sweep normalises each case for the
            model and hands conditions the raw case too (corruptions act on it). ``None``: cases come preprocessed.
    """

    title = "Robustness audit"
    worst_kinds: tuple[str, ...] = ("attack", "transfer")
    """The kinds of condition the per-case worst case of each budget is taken over."""

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
        inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor],
        dataset: Sequence[Mapping[str, Any]],
        conditions: Sequence[Condition],
        output_dir: str | Path,
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_examples: int = 2,
        channel_names: Sequence[str] | None = None,
        empty_policy: str = "brats",
        max_cases: int | None = None,
        fresh: bool = False,
        mask: str = "nonzero",
        settings: Mapping[str, Any] | None = None,
        metric: str = "dice",
        hd95: bool = True,
        palette: Mapping[int, Sequence[int]] | None = None,
        normalise: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        check_unique_labels(conditions)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)} but is {metric!r}.")
        scheme.check_head(head)
        if mask not in ("nonzero", "none"):
            raise ValueError(f"mask must be 'nonzero' or 'none' but is {mask!r}.")
        if max_cases is not None and int(max_cases) < 1:
            raise ValueError(f"max_cases must be >= 1 or None but is {max_cases!r}.")
        self.network = unwrap(network)
        self.checkpoint = Path(checkpoint)
        self.inferer = inferer
        self.dataset = dataset
        self.conditions = list(conditions)
        self.output_dir = Path(output_dir)
        self.head = head
        self.scheme = scheme
        self.device = torch.device(device)
        self.seed = int(seed)
        self._loaded = False
        self.reused_rows = self.computed_cases = 0
        self.num_examples = int(num_examples)
        self.channel_names = [str(n) for n in channel_names] if channel_names else None
        self._layouts: dict[str, str] = {}  # case id -> its input layout, for saving label maps in its values
        self.policy = get_policy(empty_policy)
        self.max_cases = None if max_cases is None else int(max_cases)
        self.fresh = bool(fresh)
        self.mask = mask
        self.extra_settings = dict(settings or {})
        self.metric = metric
        self.hd95 = bool(hd95)
        self.palette = palette_mapping(palette)
        self.normalise = normalise
        self.columns = columns_for(metric)
        self.checks: list[SelfCheck] = []
        self.examples: list[dict[str, Any]] = []
        self._ids: list[str] | None = None
        self._checkpoint_sha256: str | None = None

    # ------------------------------------------------------------------ set-up

    def case_ids(self) -> list[str]:
        """The ids of the cases the sweep scores, from the raw datalist entries (before any transform)."""
        if self._ids is None:
            entries = getattr(self.dataset, "data", self.dataset)
            ids = case_ids(entries)
            self._ids = ids if self.max_cases is None else ids[: self.max_cases]
        return self._ids

    @property
    def scoring(self) -> str:
        """How regions are scored, in words, for the report."""
        if self.head == "sigmoid":
            return "per region channel of the sigmoid head (probability >= 0.5), as the bundle's own metric"
        return "from the arg-max class map of the softmax head"

    def settings(self) -> dict[str, Any]:
        """What the sweep does, for the report and MLflow params."""
        return {
            **self.extra_settings,
            "conditions": [c.label for c in self.conditions],
            "head": self.head,
            "scoring": self.scoring,
            "regions": {r: [self.scheme.class_names[c] for c in cs] for r, cs in self.scheme.regions.items()},
            "empty_policy": self.policy.name,
            "metric": self.metric,
            "hd95": self.hd95,
            "checkpoint": str(self.checkpoint.resolve()),
            "checkpoint_sha256": self._checkpoint_sha256 or "",
            "cases": len(self.case_ids()),
            "seed": self.seed,
            "robustseg": robustseg.__version__,
        }

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides the rows (see :mod:`robustseg.workflows.fingerprint`)."""
        if self._checkpoint_sha256 is None:
            self._checkpoint_sha256 = file_sha256(self.checkpoint)
        return {
            "conditions": [c.settings() for c in self.conditions],
            "seed": self.seed,
            "head": self.head,
            "scheme": {
                "class_names": list(self.scheme.class_names),
                "regions": {k: list(v) for k, v in self.scheme.regions.items()},
                "ignore_index": self.scheme.ignore_index,
                "sigmoid_regions": list(self.scheme.sigmoid_regions),
            },
            "empty_policy": self.policy.name,
            **({"metric": self.metric} if self.metric != "dice" else {}),  # unchanged for the default: resumable
            **({"hd95": False} if not self.hd95 else {}),
            "checkpoint_sha256": self._checkpoint_sha256,
            "network": network_signature(self.network),
            "inferer": inferer_signature(self.inferer),
            "case_ids": self.case_ids(),
            **({"normalisation": transform_names(self.normalise)} if self.normalise is not None else {}),
        }

    def load(self) -> None:
        """Check the checkpoint and the cases, then the output folder's fingerprint; all before any compute.

        Runs once: :func:`~robustseg.workflows.attack_sweep.run_attack_audit` calls it before it opens the MLflow
        run, so that bad input records no run.
        """
        if self._loaded:
            return
        load_checkpoint(self.checkpoint, self.network, self.device)
        if len(self.dataset) == 0:
            raise ValueError("the sweep has no cases; check the datalist's split.")
        claim_output_dir(self.output_dir, self.fingerprint(), OUTPUTS, self.fresh)
        self._loaded = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inferer(x, self.network)
        return out[0] if isinstance(out, list | tuple) else out

    def example_conditions(self) -> set[str]:
        """Conditions whose perturbed inputs are saved: each attack's (and transfer's) largest budget."""
        largest: dict[str, Condition] = {}
        for c in self.conditions:
            if c.kind in ("attack", "transfer") and (c.name not in largest or c.eps > largest[c.name].eps):
                largest[c.name] = c
        return {c.label for c in largest.values()}

    # ------------------------------------------------------------------ the sweep

    def run(self) -> dict[str, Any] | None:
        """Run (or resume) the sweep; on rank 0 returns rows, statistics, self-checks, examples and settings."""
        self.load()
        keep_created()  # from here on results are written: a later failure must keep them for the resume
        self.output_dir.mkdir(parents=True, exist_ok=True)
        store = distributed.open_store(self.output_dir, self.columns, KEY)
        ids = self.case_ids()
        mine = distributed.shard(len(ids))
        rank, world = distributed.rank_and_world()
        examples = self.example_conditions()
        work = [i for i in mine if self._todo(i, ids[i], store, examples) is not None]
        self.reused_rows, self.computed_cases = len(store), len(work)
        logger.info(
            "sweep of %d cases x %d conditions + clean into %s: %s%s",
            len(ids),
            len(self.conditions),
            self.output_dir,
            distributed.resume_summary(len(store), len(mine) - len(work), len(work)),
            f"; rank {rank} of {world} scores {len(mine)} of them" if world > 1 else "",
        )
        quiet = not distributed.is_rank0()
        bar = progress(total=len(mine), initial=len(mine) - len(work), desc="sweep", unit="case", disable=quiet)
        with bar:
            for index, item in prefetched(self.dataset, work):
                self._case(index, ids[index], store, examples, item)
                bar.update()
        distributed.barrier()
        if not distributed.is_rank0():
            return None
        return self.finish(distributed.merge(self.output_dir, self.columns, KEY))

    def _stored(self, store: ResultsStore, case_id: str, condition: str) -> bool:
        return store.has({"case_id": case_id, "condition": condition, "region": self.scheme.region_names[0]})

    def _todo(
        self, index: int, case_id: str, store: ResultsStore, examples: set[str]
    ) -> tuple[list[Condition], bool] | None:
        """The conditions a case still needs (or whose stored example must be read back) and whether its clean row
        is missing; ``None`` when the case needs nothing (the first case always runs the self-checks)."""
        keep_examples = index < self.num_examples
        todo = [
            c
            for c in self.conditions
            if not self._stored(store, case_id, c.label) or (keep_examples and c.label in examples)
        ]
        clean_todo = not self._stored(store, case_id, CLEAN)
        return None if not todo and not clean_todo and index != 0 else (todo, clean_todo)

    def _case(
        self, index: int, case_id: str, store: ResultsStore, examples: set[str], item: Mapping[str, Any] | None = None
    ) -> None:
        needed = self._todo(index, case_id, store, examples)
        if needed is None:
            return
        todo, clean_todo = needed
        keep_examples = index < self.num_examples
        case, spacing = self._load_case(index, case_id, item)
        y = case.label
        for condition in todo:
            stored = self._stored(store, case_id, condition.label)
            if stored and self._reload_example(case, condition.label):
                continue
            out = condition.apply(case)
            logits = out.logits
            if logits is None:
                with torch.no_grad():
                    logits = self.forward(out.image)
            pred = self.scheme.regions_from_logits(logits, head=self.head)
            if keep_examples and condition.label in examples:  # saved before the row: a stored row has its example
                self._save_example(case, condition.label, out.image, logits)
            if not stored:
                stats = {"linf": out.linf, "l2": out.l2, "psnr_db": out.psnr_db}
                truth = y if out.label is None else out.label  # a geometric corruption moved the anatomy
                store.append(self._rows(case_id, condition, pred, truth, spacing, stats))
        if clean_todo:
            pred = self.scheme.regions_from_logits(case.clean_logits(), head=self.head)
            store.append(self._rows(case_id, None, pred, y, spacing, {"linf": 0.0, "l2": 0.0, "psnr_db": math.inf}))
        if index == 0:
            self._first_case_checks(case)

    def _load_case(
        self, index: int, case_id: str, item: Mapping[str, Any] | None = None
    ) -> tuple[CaseContext, list[float] | None]:
        """Case ``index`` preprocessed (``item`` when already loaded), on the device, labels as a class map; and its
        voxel spacing in mm."""
        item = self.dataset[index] if item is None else item
        if isinstance(item.get("layout"), str):
            self._layouts[case_id] = item["layout"]
        image = item["image"] if self.normalise is None else self._normalised(item, item["image"])
        x = torch.as_tensor(image)[None].to(self.device)
        y = self.scheme.label_class_map(torch.as_tensor(item["label"])[None].to(self.device), f"label of {case_id}")
        plain = x.as_subclass(torch.Tensor)
        mask = plain.ne(0).any(1, keepdim=True) if self.mask == "nonzero" else torch.ones_like(plain[:, :1]).bool()
        spacing = spacing_from_affine(item["image"])
        case = CaseContext(case_id, x, y, self.forward, self.seed, mask.float(), spacing=spacing)
        if self.normalise is not None:
            case.raw = torch.as_tensor(item["image"])[None].to(self.device)
            case.normalise = lambda raw: torch.as_tensor(self._normalised(item, raw[0]))[None].to(self.device)
        return case, spacing

    def _normalised(self, item: Mapping[str, Any], raw: torch.Tensor) -> Any:
        """``raw`` (``(C, *spatial)``, on any device) through the bundle's intensity normalisation, as part of
        ``item`` (the case's meta data and affine kept)."""
        from monai.utils import convert_to_dst_type

        image = convert_to_dst_type(raw.detach().cpu().clone(), item["image"])[0]
        return image if self.normalise is None else self.normalise({**item, "image": image})["image"]

    def _rows(
        self,
        case_id: str,
        condition: Condition | None,
        pred: torch.Tensor,
        label: torch.Tensor,
        spacing: Sequence[float] | None,
        stats: Mapping[str, float],
    ) -> list[dict[str, Any]]:
        metrics = region_metrics(
            pred,
            self.scheme.to_regions(label),
            self.scheme.region_names,
            valid=self.scheme.valid_mask(label),
            spacing=spacing,
            empty_policy=self.policy,
            hd95=self.hd95,
            iou=self.metric == "iou",
        )[0]
        rows = [
            {
                "case_id": case_id,
                "condition": CLEAN if condition is None else condition.label,
                "kind": CLEAN if condition is None else condition.kind,
                "attack": CLEAN if condition is None else condition.name,
                "eps": 0.0 if condition is None else condition.eps,
                "region": r,
                "dice": metrics[f"{r}_dice"],
                "hd95": metrics[f"{r}_hd95"],
                **({"iou": metrics[f"{r}_iou"]} if self.metric == "iou" else {}),
                **stats,
            }
            for r in self.scheme.region_names
        ]
        if self.metric == "iou":  # the case's mIoU: the mean over the classes in its truth or its prediction
            miou = mean_present([metrics[f"{r}_iou"] for r in self.scheme.region_names])
            rows.append({**rows[0], "region": MEAN_IOU, "dice": math.nan, "hd95": math.nan, "iou": miou})
        return rows

    def _first_case_checks(self, case: CaseContext) -> None:
        """Checks of the model on the first case: logits, determinism, masked gradients with the plain loss."""
        logits = case.clean_logits()
        self.checks.append(check_logits(logits, head=self.head))
        self.checks.append(check_determinism(self.forward, case.image, reference=logits))
        attacks = [c for c in self.conditions if isinstance(c, AttackCondition)]
        if not attacks:
            return
        plain = "ce" if self.head == "softmax" else "bce"
        shared = case.shared.get(("white-box", (plain, None)))
        threat = attacks[0].attack.threat
        if shared is None:
            probe = attacks[0].spec.build(
                self.network, threat, inferer=self.inferer, head=self.head, scheme=self.scheme, loss=plain
            )
            gradient = probe.gradient(case.image, case.label)
        else:
            gradient = shared.gradient
        self.checks.append(check_gradients(gradient, threat.mask_for(case.image.as_subclass(torch.Tensor))))

    # ------------------------------------------------------------------ examples

    def example_path(self, case_id: str, condition: str, name: str) -> Path:
        """Where an example volume is saved: ``examples/<case>_<condition>_<adversarial|pred_adversarial>``."""
        return self.output_dir / "examples" / f"{case_id}_{_file_part(condition)}_{name}.nii.gz"

    def example_png(self, case_id: str, condition: str, name: str) -> Path:
        """The PNG copy of an example of a 2-D colour image (the image in 8 bits, the class map in the palette)."""
        return self.example_path(case_id, condition, name).with_suffix("").with_suffix(".png")

    def _save_example(self, case: CaseContext, condition: str, perturbed: torch.Tensor, logits: torch.Tensor) -> None:
        """The perturbed input and its predicted class map as NIfTI with the preprocessed input's affine."""
        from monai.data import MetaTensor
        from monai.transforms import SaveImage

        meta = {**dict(getattr(case.image, "meta", {})), "filename_or_obj": case.case_id}
        saver = SaveImage(
            output_dir=str(self.output_dir / "examples"),
            output_postfix=f"{_file_part(condition)}_adversarial",
            separate_folder=False,
            output_dtype=np.float32,
            resample=False,
            print_log=False,
            output_name_formatter=case_output_name,
        )
        saver(MetaTensor(perturbed[0].detach().cpu().as_subclass(torch.Tensor), meta=meta))
        classes = self.scheme.class_map_from_logits(logits, head=self.head)
        layout = self._layouts.get(case.case_id)
        saved = to_input_labels(classes[0, 0], self.scheme.class_names, layout)
        save_class_map(  # in the input's label values, as the evaluate workflow saves its predictions
            saved, input_affine(case.image), self.example_path(case.case_id, condition, "pred_adversarial")
        )
        if perturbed.ndim == 4 and perturbed.shape[1] == 3:  # a 2-D colour image: PNG copies to look at
            low, high = self._pixel_bounds()
            picture = scaled_rgb(_numpy(perturbed[0]), low, high)
            write_rgb(self.example_png(case.case_id, condition, "adversarial"), picture)
            write_label(self.example_png(case.case_id, condition, "pred_adversarial"), _numpy(saved), self.palette)
        self._remember_example(case, condition, perturbed, classes)

    def _pixel_bounds(self) -> tuple[float | None, float | None]:
        """The attacks' clip bounds when they are numbers (``[0, 1]`` for natural images), else ``(None, None)``."""
        for c in self.conditions:
            if isinstance(c, AttackCondition):
                low, high = c.attack.threat.clip_min, c.attack.threat.clip_max
                if isinstance(low, int | float) and isinstance(high, int | float):
                    return float(low), float(high)
        return None, None

    def _reload_example(self, case: CaseContext, condition: str) -> bool:
        """Read a stored example back; False when its files are missing (the condition runs again)."""
        from monai.transforms import LoadImage

        paths = [self.example_path(case.case_id, condition, n) for n in ("adversarial", "pred_adversarial")]
        if not all(p.is_file() for p in paths):
            logger.warning("example volumes of %s %s are missing; computing them again", case.case_id, condition)
            return False
        load = LoadImage(image_only=True, ensure_channel_first=True)
        perturbed, saved = (load(str(p)).as_tensor()[None] for p in paths)
        classes = from_input_labels(saved.long(), self.scheme.class_names, self._layouts.get(case.case_id))
        self._remember_example(case, condition, perturbed.reshape(case.image.shape), classes.reshape(case.label.shape))
        return True

    def _remember_example(
        self, case: CaseContext, condition: str, perturbed: torch.Tensor, classes: torch.Tensor
    ) -> None:
        clean = self.scheme.class_map_from_logits(case.clean_logits(), head=self.head)
        self.examples.append(
            {
                "case_id": case.case_id,
                "condition": condition,
                "image": _numpy(case.image[0]),
                "adversarial": _numpy(perturbed[0]),
                "label": _numpy(case.label[0, 0]),
                "pred_clean": _numpy(clean[0, 0]),
                "pred_adversarial": _numpy(classes[0, 0]),
                "label_names": {
                    **dict(enumerate(self.scheme.class_names)),
                    **({self.scheme.ignore_index: "void (not scored)"} if self.scheme.ignore_index is not None else {}),
                },
                "channel_names": self.channel_names,
                "palette": self.palette,
            }
        )

    def _collect_examples(self) -> None:
        """On rank 0: read back the examples other ranks saved (their cases are not in this process)."""
        have = {(e["case_id"], e["condition"]) for e in self.examples}
        ids = self.case_ids()
        for index in range(min(self.num_examples, len(ids))):
            missing = [c for c in sorted(self.example_conditions()) if (ids[index], c) not in have]
            if missing:
                case, _ = self._load_case(index, ids[index])
                for condition in missing:
                    self._reload_example(case, condition)

    # ------------------------------------------------------------------ statistics

    def finish(self, store: ResultsStore) -> dict[str, Any]:
        """Worst case per budget, sweep-level self-checks and the paired tests, from every stored row."""
        rows = typed_rows(store.rows())
        ids = set(self.case_ids())
        rows = [r for r in rows if r["case_id"] in ids]
        rows += worst_case_rows(rows, self.worst_kinds, metric=self.metric)
        self.checks += self.sweep_checks(rows)
        stats = compare_conditions(rows, baseline=CLEAN, alternative="greater", metric=self.metric)
        self._collect_examples()
        order = {case_id: i for i, case_id in enumerate(self.case_ids())}
        examples = sorted(self.examples, key=lambda e: (order[e["case_id"]], e["condition"]))
        return {
            "rows": rows,
            "statistics": stats,
            "checks": self.checks,
            "examples": examples,
            "settings": self.settings(),
        }

    def sweep_checks(self, rows: Sequence[Mapping[str, Any]]) -> list[SelfCheck]:
        """Attacks against their noise baseline, fewer steps against more, transfer against white-box."""
        dice: dict[str, dict[tuple[str, str], float]] = {}
        for r in rows:
            dice.setdefault(r["condition"], {})[(r["case_id"], r["region"])] = r[self.metric]

        def paired(a: str, b: str) -> tuple[list[float], list[float]]:
            cells = sorted(set(dice.get(a, {})) & set(dice.get(b, {})))
            return [dice[a][k] for k in cells], [dice[b][k] for k in cells]

        checks: list[SelfCheck] = []
        attacks = [c for c in self.conditions if isinstance(c, AttackCondition)]
        noise = {c.eps: c.label for c in self.conditions if c.kind == "noise"}
        for c in attacks:
            if c.eps in noise:
                a, b = paired(c.label, noise[c.eps])
                checks.append(check_noise_baseline(c.label, a, noise[c.eps], b))
        for weak in attacks:
            for strong in attacks:
                if _weaker(weak, strong):
                    a, b = paired(weak.label, strong.label)
                    checks.append(check_attack_order(weak.label, a, strong.label, b))
        for transfer in self.conditions:
            if isinstance(transfer, TransferCondition):
                a, b = paired(transfer.white_box, transfer.label)
                checks.append(check_transfer(transfer.white_box, a, transfer.label, b))
        return checks


def run_model_sweeps(sweeps: Mapping[str, ConditionSweep]) -> dict[str, dict[str, Any]] | None:
    """Run (or resume) one sweep per model in turn; on rank 0 their outcomes by model, elsewhere ``None``."""
    outcomes: dict[str, dict[str, Any]] = {}
    for number, (name, sweep) in enumerate(sweeps.items(), start=1):
        if distributed.is_rank0():
            logger.info("model %d of %d: %s (%s)", number, len(sweeps), name, sweep.checkpoint)
        outcome = sweep.run()
        if outcome is not None:
            outcomes[name] = outcome
    return outcomes if distributed.is_rank0() else None


def transform_names(transform: Any) -> list[str]:
    """The class names of a ``Compose``'s transforms (or of one transform): the normalisation in a fingerprint."""
    return [type(t).__name__ for t in getattr(transform, "transforms", [transform])]


def prefetched(dataset: Sequence[Mapping[str, Any]], indices: Sequence[int]) -> Iterator[tuple[int, Any]]:
    """``(index, dataset[index])`` in order, the next case read and preprocessed on a thread while the caller works
    on this one (file reads, decompression and transforms run beside the model's compute)."""
    if not indices:
        return
    with ThreadPoolExecutor(1) as loader:
        upcoming = loader.submit(dataset.__getitem__, indices[0])
        for k, index in enumerate(indices):
            current = upcoming
            if k + 1 < len(indices):
                upcoming = loader.submit(dataset.__getitem__, indices[k + 1])
            yield index, current.result()


def _weaker(a: AttackCondition, b: AttackCondition) -> bool:
    """``a`` should be no stronger than ``b``: same budget, loss and target, no more steps or restarts, and fewer of
    one of them."""
    if a is b or a.eps != b.eps or a.attack.share_key != b.attack.share_key:
        return False
    fewer_or_equal = a.steps <= b.steps and a.restarts <= b.restarts
    return fewer_or_equal and (a.steps < b.steps or a.restarts < b.restarts)


_NUMERIC = ("eps", "dice", "hd95", "iou", "linf", "l2", "psnr_db")


def typed_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` with their numbers as floats (empty text NaN; ``iou`` only where the rows have it)."""
    out = []
    for row in rows:
        typed: dict[str, Any] = dict(row)
        for key in (k for k in _NUMERIC if k != "iou" or k in row):
            value = row.get(key)
            typed[key] = math.nan if value in (None, "") else float(value)
        out.append(typed)
    return out
