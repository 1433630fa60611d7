"""The certification run: every test case smoothed at each sigma, certified at each tau, plain and denoised.

A bundle config builds :class:`CertificationRun` from the bundle contract (``network``, ``checkpoint``, ``inferer``,
``validate#preprocessing``, ``label_scheme``) and the overlay ``configs/certify.json``; ``run()`` then

1. checks every setting before any compute (sigma > 0, tau in (0.5, 1), n0 and n >= 1, alpha in (0, 1), the
   checkpoint, the denoiser's presence for the ``denoised`` mode) and the output folder's fingerprint (results of
   other settings stop the run with the differences named; ``fresh=True`` starts over);
2. gives this rank its cases (all in one process, MONAI's uneven shares under ``torchrun``); for each case: the base
   model's Dice (and IoU) on the clean input, then per mode (``plain``, ``denoised``) and sigma one SegCertify pass
   whose samples serve every tau; per tau the certified class map is saved as NIfTI (abstained voxels 255; for 2-D
   images a palette PNG too) and one row per region is appended to the results (a killed run resumes where it
   stopped);
3. on rank 0: merges the ranks' rows and compares denoised with plain smoothing per (sigma, tau) and region on the
   bundle's score (Dice per region, or IoU per class and the image's mIoU) and on certified accuracy (paired
   Wilcoxon, Holm over the family);
4. writes the report and records everything in one MLflow run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import robustseg
from robustseg.certification import ABSTAIN, SegmentationSmoother, certified_metrics, certified_radius, check_sigma
from robustseg.certification.statistics import CORRECTIONS, check_alpha, check_count, check_tau, votes_needed
from robustseg.checkpoints import load_checkpoint, unwrap
from robustseg.conditions.base import derive_seed
from robustseg.data.naming import case_ids
from robustseg.data.nifti import input_affine, save_class_map
from robustseg.data.png import palette_mapping, write_label
from robustseg.data.transforms import to_input_labels
from robustseg.errors import about, keep_created
from robustseg.evaluation.dice import get_policy
from robustseg.evaluation.metrics import MEAN_IOU, mean_present, region_metrics
from robustseg.evaluation.results import ResultsStore
from robustseg.evaluation.statistics import compare_conditions, holm
from robustseg.labels import BRATS, LabelScheme
from robustseg.progress import progress
from robustseg.tracking import RUN_FILE, recorded_run
from robustseg.workflows import distributed
from robustseg.workflows.fingerprint import (
    claim_output_dir,
    file_sha256,
    inferer_signature,
    network_signature,
    state_sha256,
)
from robustseg.workflows.provenance import provenance

__all__ = ["METRICS", "MODES", "CertificationRun", "columns_for", "run_certification"]

logger = logging.getLogger(__name__)

MODES = ("plain", "denoised")
"""Smoothing of the base model alone, or of the base model behind the denoiser."""

COLUMNS = [
    "case_id",
    "mode",
    "sigma",
    "tau",
    "radius",
    "region",
    "certified_dice",
    "base_dice",
    "certified_accuracy",
    "abstain_rate",
    "n0",
    "n",
    "alpha",
]
KEY = ["case_id", "mode", "sigma", "tau", "region"]
METRICS = ("dice", "iou")
"""The bundle's score (contract id ``score_metric``): Dice per region, or IoU per class with the image's mIoU row."""


def columns_for(metric: str) -> list[str]:
    """The results columns of a run scored by ``metric`` (IoU adds the certified and base IoU)."""
    return [*COLUMNS, "certified_iou", "base_iou"] if metric == "iou" else list(COLUMNS)


MAP_ABSTAIN = 255
"""Value of abstained voxels in the saved certified maps (class indices elsewhere)."""
OUTPUTS = ("results.csv", "results.rank*.csv", "fingerprint.json", "maps", "report", "mlflow_run.json")
"""What a certification run writes into its folder (``fresh`` removes these and nothing else)."""


def condition_label(mode: str, sigma: float, tau: float) -> str:
    return f"{mode} sigma={sigma:g} tau={tau:g}"


class CertificationRun:
    """Certify every case of ``dataset`` by randomized smoothing and score the certificates per region.

    Args:
        network: the bundle's network (logits out), ideally trained with Gaussian noise at ``sigma``
            (``configs/noise_training.json``).
        checkpoint: its weights; checked against the network before any compute.
        inferer: the bundle's inferer (a sliding window over the whole volume for MRI).
        dataset: preprocessed cases (dicts with ``image`` ``(C, *spatial)``, ``label`` ``(1, *spatial)``, ``case_id``).
        output_dir: results, maps and report go here; rerunning with the same folder resumes.
        sigmas: noise levels, each > 0, in the model's input units (std of the z-scored MRI).
        taus: thresholds in (0.5, 1); each certifies within ``sigma * PhiInv(tau)``.
        n0, n, alpha, correction: SegCertify's selection samples, counting samples, family-wise level over the voxels
            of a case, and ``holm`` or ``bonferroni``.
        batch_size: noise samples per forward pass.
        denoiser: ``denoiser(noisy, sigma)`` for the ``denoised`` mode (e.g. a loaded
            :class:`~robustseg.certification.denoiser.DiffusionDenoiser`).
        modes: any of :data:`MODES`; default ``plain``, and ``denoised`` too when a denoiser is given.
        mask: ``nonzero`` (accuracy and abstain rate over the brain, the non-zero voxels of the input) or ``none``.
        head, scheme, device, seed: as in the attack sweep; the noise seed of a case is derived from ``seed`` and the
            case id, so a resumed run draws the same noise, whatever the order of cases or their split over ranks.
        max_cases: certify at most this many cases (``None``: all).
        empty_policy: how empty regions are scored (:mod:`robustseg.evaluation.dice`), for base and certified Dice.
        fresh: discard what an earlier run left in ``output_dir`` (results, fingerprint, maps, report).
        trained_sigma: the Gaussian noise the model was trained with (0 or ``None``: none). A sigma that differs is
            certified all the same, with a warning in the log and the report: smoothing is meaningful only for a base
            model trained at the same sigma.
        channel_names: names of the input channels (MRI sequences), shown in the report's examples.
        metric: ``dice`` (per region) or ``iou`` (per class, plus the image's ``mIoU`` row), what the report shows and
            the tests between modes compare (contract id ``score_metric``).
        palette: the colour of each class value (a dataset's palette) for the report's examples and the PNG copies of
            certified 2-D maps; ``None``: Pascal VOC's colours in the PNGs.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
        inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor],
        dataset: Sequence[Mapping[str, Any]],
        output_dir: str | Path,
        sigmas: Sequence[float] = (0.25,),
        taus: Sequence[float] = (0.75,),
        n0: int = 100,
        n: int = 1000,
        alpha: float = 1e-4,
        correction: str = "holm",
        batch_size: int = 16,
        denoiser: Callable[[torch.Tensor, float], torch.Tensor] | None = None,
        modes: Sequence[str] | None = None,
        mask: str = "nonzero",
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        device: str | torch.device = "cpu",
        seed: int = 0,
        max_cases: int | None = None,
        trained_sigma: float | None = None,
        channel_names: Sequence[str] | None = None,
        empty_policy: str = "brats",
        fresh: bool = False,
        metric: str = "dice",
        palette: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        with about("--score_metric"):
            if metric not in METRICS:
                raise ValueError(f"metric must be one of {list(METRICS)} but is {metric!r}.")
        self.metric = metric
        self.columns = columns_for(metric)
        self.palette = palette_mapping(palette)
        with about("--certify_sigmas"):
            if not sigmas:
                raise ValueError('give at least one noise level > 0, e.g. "[0.25]".')
            self.sigmas = [check_sigma(s) for s in sigmas]
        with about("--certify_taus"):
            if not taus:
                raise ValueError('give at least one tau in (0.5, 1), e.g. "[0.75]".')
            self.taus = [check_tau(t) for t in taus]
        with about("--certify_n0 / --certify_n"):
            self.n0, self.n = check_count(n0, "n0"), check_count(n, "n")
        with about("--certify_alpha"):
            self.alpha = check_alpha(alpha)
        with about("--certify_correction"):
            if correction not in CORRECTIONS:
                raise ValueError(f"correction must be one of {list(CORRECTIONS)} but is {correction!r}.")
        self.correction = correction
        self.modes = list(modes) if modes else (["plain", "denoised"] if denoiser is not None else ["plain"])
        with about("--certify_modes"):
            unknown = [m for m in self.modes if m not in MODES]
            if unknown:
                raise ValueError(f"unknown smoothing mode {unknown}; choose from {list(MODES)}.")
            if "denoised" in self.modes and denoiser is None:
                raise ValueError(
                    "mode 'denoised' needs a denoiser; train one with configs/denoiser.json and add "
                    "configs/certify_denoised.json."
                )
        with about("--certify_mask"):
            if mask not in ("nonzero", "none"):
                raise ValueError(f"mask must be 'nonzero' or 'none' but is {mask!r}.")
        self.network = unwrap(network)
        self.checkpoint = Path(checkpoint)
        self.inferer = inferer
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.batch_size = check_count(batch_size, "batch_size")
        self.denoiser = denoiser
        self.mask = mask
        self.head = head
        self.scheme = scheme
        self.device = torch.device(device)
        self.seed = int(seed)
        self._loaded = False
        self.channel_names = [str(n) for n in channel_names] if channel_names else None
        self._layouts: dict[str, str] = {}  # case id -> its input layout, for saving label maps in its values
        self.reused_rows = self.computed_cases = 0
        self.max_cases = max_cases
        self.policy = get_policy(empty_policy)
        self.fresh = bool(fresh)
        self._ids: list[str] | None = None
        scheme.check_head(head)
        self.trained_sigma = float(trained_sigma) if trained_sigma else None
        self.warnings = [
            f"sigma {s:g} differs from the noise the model was trained with "
            f"({'none' if self.trained_sigma is None else format(self.trained_sigma, 'g')}); train a base model with "
            f"configs/noise_training.json --noise_sigma {s:g} for meaningful plain certificates"
            + ("; denoised smoothing is meant for such a model." if "denoised" in self.modes else ".")
            for s in self.sigmas
            if s != self.trained_sigma
        ]
        for warning in self.warnings:
            logger.warning(warning)
        self.examples: list[dict[str, Any]] = []

    def settings(self) -> dict[str, Any]:
        """What the run does, for the report and MLflow params."""
        return {
            "sigmas": self.sigmas,
            "taus": self.taus,
            "radii": {f"sigma{s:g}_tau{t:g}": round(certified_radius(s, t), 4) for s in self.sigmas for t in self.taus},
            "n0": self.n0,
            "n": self.n,
            "alpha": self.alpha,
            "correction": self.correction,
            "modes": self.modes,
            "mask": self.mask,
            "batch_size": self.batch_size,
            "head": self.head,
            "checkpoint": str(self.checkpoint),
            "cases": self._num_cases(),
            "seed": self.seed,
            "empty_policy": self.policy.name,
            **({"metric": self.metric} if self.metric != "dice" else {}),  # unchanged for Dice: earlier runs resume
            "robustseg": robustseg.__version__,
            "trained_sigma": self.trained_sigma if self.trained_sigma is not None else "none",
            **({"warnings": self.warnings} if self.warnings else {}),
        }

    def _num_cases(self) -> int:
        return len(self.dataset) if self.max_cases is None else min(len(self.dataset), int(self.max_cases))

    def case_ids(self) -> list[str]:
        """The ids of the cases certified, from the raw datalist entries (before any transform)."""
        if self._ids is None:
            self._ids = case_ids(getattr(self.dataset, "data", self.dataset))[: self._num_cases()]
        return self._ids

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides the rows (see :mod:`robustseg.workflows.fingerprint`); not the batch size."""
        skip = ("batch_size", "checkpoint", "cases", "robustseg")
        settings = {k: v for k, v in self.settings().items() if k not in skip}
        denoiser = None
        if self.denoiser is not None and "denoised" in self.modes:
            module = self.denoiser if isinstance(self.denoiser, torch.nn.Module) else None
            denoiser = {"weights_sha256": state_sha256(module)} if module is not None else {"repr": repr(self.denoiser)}
            mapping = getattr(self.denoiser, "mapping", None)
            if mapping is not None and hasattr(mapping, "to_dict"):
                denoiser["mapping"] = mapping.to_dict()
        return {
            "settings": settings,
            "checkpoint_sha256": file_sha256(self.checkpoint),
            "network": network_signature(self.network),
            "inferer": inferer_signature(self.inferer),
            "denoiser": denoiser,
            "case_ids": self.case_ids(),
        }

    def load(self) -> None:
        """Check the checkpoint and the cases, then the output folder's fingerprint (once, before any compute)."""
        if self._loaded:
            return
        load_checkpoint(self.checkpoint, self.network, self.device)
        if self._num_cases() == 0:
            raise ValueError("the certification run has no cases; check the bundle's test_data.")
        claim_output_dir(self.output_dir, self.fingerprint(), OUTPUTS, self.fresh)
        self._loaded = True

    def smoother(self, sigma: float, mode: str) -> SegmentationSmoother:
        return SegmentationSmoother(
            self.network,
            sigma,
            inferer=self.inferer,
            head=self.head,
            scheme=self.scheme,
            denoiser=self.denoiser if mode == "denoised" else None,
            batch_size=self.batch_size,
            seed=self.seed,
        )

    def case_seed(self, case_id: str, sigma: float) -> int:
        """The noise seed of a case: fixed by ``seed``, the case id and sigma (plain and denoised share the noise)."""
        return derive_seed(self.seed, f"{case_id}|{sigma:g}")

    def map_path(self, case_id: str, mode: str, sigma: float, tau: float) -> Path:
        return self.output_dir / "maps" / f"{case_id}_{mode}_sigma{sigma:g}_tau{tau:g}_certified.nii.gz"

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any] | None:
        """Run (or resume) the certification; on rank 0 returns the rows, the statistics and the examples."""
        self.load()
        keep_created()  # from here on results are written: a later failure must keep them for the resume
        self.output_dir.mkdir(parents=True, exist_ok=True)
        store = distributed.open_store(self.output_dir, self.columns, KEY)
        ids = self.case_ids()
        first_region = self.scheme.region_names[0]

        def todo_of(case_id: str) -> list[tuple[str, float]]:
            return [
                (mode, sigma)
                for mode in self.modes
                for sigma in self.sigmas
                if not all(
                    store.has({"case_id": case_id, "mode": mode, "sigma": sigma, "tau": t, "region": first_region})
                    for t in self.taus
                )
            ]

        mine = distributed.shard(len(ids))
        work = [i for i in mine if todo_of(ids[i])]
        self.reused_rows, self.computed_cases = len(store), len(work)
        logger.info(
            "certification of %d cases into %s: %s",
            len(ids),
            self.output_dir,
            distributed.resume_summary(len(store), len(mine) - len(work), len(work)),
        )
        bar = progress(
            total=len(mine),
            initial=len(mine) - len(work),
            desc="certification",
            unit="case",
            disable=not distributed.is_rank0(),
        )
        with bar:
            for index in work:
                case_id = ids[index]
                todo = todo_of(case_id)
                item = self.dataset[index]
                if isinstance(item.get("layout"), str):
                    self._layouts[case_id] = item["layout"]
                x = torch.as_tensor(item["image"])[None].to(self.device)
                y = self.scheme.label_class_map(
                    torch.as_tensor(item["label"])[None].to(self.device), f"label of {case_id}"
                )
                base = self._base_scores(x, y)
                brain = x[0].as_subclass(torch.Tensor).ne(0).any(0) if self.mask == "nonzero" else None
                for mode, sigma in todo:
                    certificates = self.smoother(sigma, mode).certify(
                        x,
                        n0=self.n0,
                        n=self.n,
                        alpha=self.alpha,
                        tau=list(self.taus),
                        correction=self.correction,
                        seed=self.case_seed(case_id, sigma),
                    )
                    for cert in certificates:
                        self._save_map(x, case_id, mode, sigma, cert.tau, cert.classes)
                        metrics = certified_metrics(
                            cert.classes, y[0], self.scheme, mask=brain, empty_policy=self.policy, iou=self.iou
                        )
                        store.append(self._rows(case_id, mode, sigma, cert.tau, metrics, base))
                        if index == 0 and sigma == self.sigmas[0] and cert.tau == self.taus[0]:
                            self._remember_example(case_id, mode, sigma, cert.tau, x, y, cert.classes)
                bar.update()
        distributed.barrier()
        if not distributed.is_rank0():
            return None
        return self.finish(distributed.merge(self.output_dir, self.columns, KEY))

    @property
    def iou(self) -> bool:
        return self.metric == "iou"

    def _base_scores(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """The base model's clean ``<region>_dice`` (and ``<region>_iou`` with the ``mIoU`` entry)."""
        with torch.no_grad():
            logits = self.inferer(x, self.network)
        pred = self.scheme.regions_from_logits(torch.as_tensor(logits), head=self.head)
        label = self.scheme.to_regions(y)
        names = self.scheme.region_names
        valid = self.scheme.valid_mask(y)
        scores = region_metrics(pred, label, names, valid=valid, empty_policy=self.policy, hd95=False, iou=self.iou)[0]
        if self.iou:
            scores[f"{MEAN_IOU}_iou"] = mean_present([scores[f"{r}_iou"] for r in names])
        return scores

    def _rows(
        self, case_id: str, mode: str, sigma: float, tau: float, metrics: Mapping[str, float], base: Mapping[str, float]
    ) -> list[dict[str, Any]]:
        """One row per region (and, scored by IoU, the image's mIoU row, whose Dice is empty)."""
        regions = [*self.scheme.region_names, *([MEAN_IOU] if self.iou else [])]
        rows = []
        for r in regions:
            row = {
                "case_id": case_id,
                "mode": mode,
                "sigma": sigma,
                "tau": tau,
                "radius": certified_radius(sigma, tau),
                "region": r,
                "certified_dice": metrics.get(f"certified_dice_{r}", float("nan")),
                "base_dice": base.get(f"{r}_dice", float("nan")),
                "certified_accuracy": metrics["certified_accuracy"],
                "abstain_rate": metrics["abstain_rate"],
                "n0": self.n0,
                "n": self.n,
                "alpha": self.alpha,
            }
            if self.iou:
                row.update(certified_iou=metrics[f"certified_iou_{r}"], base_iou=base[f"{r}_iou"])
            rows.append(row)
        return rows

    def _save_map(
        self, x: torch.Tensor, case_id: str, mode: str, sigma: float, tau: float, classes: torch.Tensor
    ) -> None:
        """The certified class map as NIfTI with the preprocessed input's affine; abstained voxels are 255.

        A 2-D map is written as a palette PNG beside it too (abstained pixels in the palette's colour of 255, VOC's
        void cream), which any image viewer shows in the dataset's colours."""
        volume = torch.where(classes == ABSTAIN, torch.full_like(classes, MAP_ABSTAIN), classes)
        layout = self._layouts.get(case_id)  # in the input's label values, as the evaluate workflow saves them
        volume = to_input_labels(volume, self.scheme.class_names, layout, keep=(MAP_ABSTAIN,))
        path = save_class_map(volume, input_affine(x), self.map_path(case_id, mode, sigma, tau))
        if volume.ndim == 2:
            write_label(path.with_suffix("").with_suffix(".png"), volume.detach().cpu().numpy(), self.palette)

    def _remember_example(
        self, case_id: str, mode: str, sigma: float, tau: float, x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor
    ) -> None:
        self.examples.append(
            {
                "case_id": case_id,
                "condition": condition_label(mode, sigma, tau),
                "image": x[0].detach().cpu().as_subclass(torch.Tensor).numpy(),
                "label": y[0, 0].detach().cpu().as_subclass(torch.Tensor).numpy(),
                "certified": classes.detach().cpu().numpy(),
                "channel_names": self.channel_names,
                "palette": self.palette,
            }
        )

    # ------------------------------------------------------------------ statistics

    def finish(self, store: ResultsStore) -> dict[str, Any]:
        ids = set(self.case_ids())
        rows = [r for r in typed_rows(store.rows()) if r["case_id"] in ids]
        return {"rows": rows, "statistics": compare_modes(rows, self.metric), "examples": self.examples}


def typed_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` with numbers as floats and a ``condition`` label."""
    out = []
    numbers = ("sigma", "tau", "radius", "certified_dice", "base_dice", "certified_accuracy", "abstain_rate")
    for row in rows:
        typed: dict[str, Any] = dict(row)
        for key in (*numbers, *(k for k in ("certified_iou", "base_iou") if k in row)):
            typed[key] = float(row[key]) if row[key] not in ("", None) else float("nan")
        typed["condition"] = condition_label(str(row["mode"]), typed["sigma"], typed["tau"])
        out.append(typed)
    return out


def compare_modes(rows: Sequence[Mapping[str, Any]], metric: str = "dice") -> list[dict[str, Any]]:
    """Denoised against plain smoothing per (sigma, tau) on the certified ``metric`` per region and certified accuracy.

    ``metric`` is ``dice`` (per region) or ``iou`` (per class and the image's mIoU row).
    Paired Wilcoxon signed-rank tests over cases (two-sided, zero differences split), Holm over every test of the run.
    Empty when only one mode was run.
    """
    out: list[dict[str, Any]] = []
    settings = sorted({(r["sigma"], r["tau"]) for r in rows})
    for sigma, tau in settings:
        subset = [r for r in rows if r["sigma"] == sigma and r["tau"] == tau]
        if {r["mode"] for r in subset} != set(MODES):
            continue
        score = f"certified_{metric}"
        table = [{**r, "condition": r["mode"]} for r in subset]
        per_case = {(r["case_id"], r["mode"]): r for r in subset}
        accuracy = [{**r, "region": "voxels", "condition": r["mode"]} for r in per_case.values()]
        for stats_row in compare_conditions(
            table, baseline="plain", metric=score, alternative="two-sided"
        ) + compare_conditions(accuracy, baseline="plain", metric="certified_accuracy", alternative="two-sided"):
            stats_row["condition"] = f"denoised vs plain, sigma={sigma:g} tau={tau:g}"
            stats_row["metric"] = "certified_accuracy" if stats_row["region"] == "voxels" else score
            out.append(stats_row)
    if out:
        adjusted = holm([r["p_value"] for r in out])
        for row, p in zip(out, adjusted, strict=True):
            row["p_holm"] = float(p)
            row["significant"] = bool(p <= 0.05)
    return out


def run_certification(
    run: CertificationRun,
    tracking_dir: str | Path,
    experiment_name: str = "robustseg",
    tracking_uri: str | None = None,
    run_name: str = "certify",
) -> Path | None:
    """Run ``run`` inside one MLflow run, write its report, print the summary; returns the report path."""
    from robustseg.evaluation.certify_report import summary_table, write_certification_report

    run.load()  # bad input stops here, before an MLflow run is recorded
    if not distributed.is_rank0():
        run.run()
        return None
    run_file = run.output_dir / RUN_FILE
    with recorded_run(tracking_dir, experiment_name, run_name, tracking_uri, run_file=run_file) as mlflow_run:
        voxels = int(np.prod(run.dataset[0]["image"].shape[1:])) if len(run.dataset) else 1  # run() says if empty
        needed = {f"tau{t:g}": votes_needed(voxels, run.n, t, run.alpha) for t in run.taus}  # Bonferroni threshold
        for key, k in needed.items():
            if k is None:
                logger.warning(
                    "%s: no voxel of a %d-voxel case can be certified with n=%d at alpha=%g; raise certify_n "
                    "(robustseg.certification.power_table says how far).",
                    key,
                    voxels,
                    run.n,
                    run.alpha,
                )
        mlflow_run.log_params({**run.settings(), "votes_needed": needed})
        outcome = run.run()
        if outcome is None:
            raise RuntimeError("rank 0 of the run returned no outcome; the run did not finish.")
        settings = {
            **run.settings(),
            "votes_needed": needed,
            "provenance": provenance(
                run.checkpoint, run.settings().get("checkpoint_sha256"), mlflow_run.run_id, mlflow_run.tracking_uri
            ),
        }
        report = write_certification_report(
            run.output_dir / "report", outcome["rows"], outcome["statistics"], outcome["examples"], settings
        )
        print(summary_table(outcome["rows"], run.metric))
        print(f"certification report: {report}")
        means: dict[str, list[float]] = {}
        score = f"certified_{run.metric}"
        for r in outcome["rows"]:
            tag = f"{r['mode']}_sigma{r['sigma']:g}_tau{r['tau']:g}"
            means.setdefault(f"{score}_{r['region']}_{tag}", []).append(r[score])
            if r["region"] == run.scheme.region_names[0]:
                means.setdefault(f"certified_accuracy_{tag}", []).append(r["certified_accuracy"])
                means.setdefault(f"abstain_rate_{tag}", []).append(r["abstain_rate"])
        averaged = {k: mean_present(v) for k, v in means.items()}  # a class in no case has no mean: not logged
        mlflow_run.log_metrics({k: v for k, v in averaged.items() if not np.isnan(v)}, step=0)
        mlflow_run.log_metrics({"rows_reused": run.reused_rows, "cases_computed": run.computed_cases}, step=0)
        mlflow_run.log_artifact(run.output_dir, "certify")
    return report
