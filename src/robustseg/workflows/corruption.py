"""The corruption benchmark: one or more models of a bundle scored clean and under every corruption at 5 severities.

``configs/corruptions.json`` builds a :class:`CorruptionBenchmark` from the bundle contract: the cases loaded by
the bundle's preprocessing up to its intensity normalisation (``raw_preprocessing``), the normalisation itself
(``intensity_normalisation``), a benchmark (BraTS-C for MRI, the common corruptions for natural images; see
:mod:`robustseg.corruptions`) and the models (the bundle's checkpoint by default, with any models trained beside
it). Each model gets one :class:`~robustseg.workflows.sweep.ConditionSweep` in ``<output_dir>/<model>/``: it writes
its rows as it goes, resumes after a kill and refuses results of other settings, and tests every corruption against
clean (paired one-sided Wilcoxon, Holm over its family). :func:`run_corruption_benchmark` then condenses each
corruption ROOD-style, tests the models against each other under every corruption (one Holm family), draws the
curves and a gallery, and records it all in one MLflow run.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustseg.checkpoints import check_checkpoint, unwrap
from robustseg.conditions import CorruptionCondition, corruption_conditions, derive_seed
from robustseg.corruptions import BENCHMARKS, SEVERITIES, corrupt
from robustseg.errors import about
from robustseg.evaluation.metrics import MEAN_IOU, spacing_from_affine
from robustseg.evaluation.model_comparison import MEASURES, PAIRS, compare_models
from robustseg.labels import BRATS, LabelScheme
from robustseg.tracking import RUN_FILE, recorded_run
from robustseg.workflows import distributed
from robustseg.workflows.attack_sweep import _metric_name, selfcheck_tags
from robustseg.workflows.compare import parse_models
from robustseg.workflows.provenance import provenance
from robustseg.workflows.sweep import ConditionSweep, run_model_sweeps, transform_names

__all__ = ["CorruptionBenchmark", "run_corruption_benchmark"]

logger = logging.getLogger(__name__)


class CorruptionBenchmark:
    """Score ``models`` on the same cases clean and under every corruption at every severity, and compare them.

    Args:
        network: the bundle's network; each model gets its own copy.
        models: the models, the baseline first: ``"name=path"``, paths or dicts (as the defence comparison's); one
            model is benchmarked alone.
        inferer: the bundle's inferer.
        dataset: the cases *before* intensity normalisation (the bundle's ``raw_preprocessing``).
        normalisation: the bundle's intensity normalisation (``intensity_normalisation``), a dictionary transform.
        corruptions: corruption or benchmark names, or dicts with ``name`` (and ``channels``, ``label``,
            ``severities``), as :func:`robustseg.conditions.corruption_conditions` takes.
        output_dir: each model's sweep goes to ``<output_dir>/<name>``, the benchmark's report to
            ``<output_dir>/report``.
        severities: the severities (default 1..5).
        pixel_max: white in raw natural-image pixels.
        measures, pairs, alpha: the tests between models
            (:func:`~robustseg.evaluation.model_comparison.compare_models`).
        head, scheme, device, seed, channel_names, empty_policy, max_cases, fresh, mask, metric, hd95, palette: as
            for :class:`~robustseg.workflows.sweep.ConditionSweep`, the same for every model.
    """

    title = "Corruption benchmark"

    def __init__(
        self,
        network: torch.nn.Module,
        models: Sequence[str | Mapping[str, Any]],
        inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor],
        dataset: Sequence[Mapping[str, Any]],
        normalisation: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        corruptions: Sequence[str | Mapping[str, Any]],
        output_dir: str | Path,
        severities: Sequence[int] = SEVERITIES,
        pixel_max: float = 255.0,
        measures: Sequence[str] = MEASURES,
        pairs: str = "all",
        alpha: float = 0.05,
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        device: str | torch.device = "cpu",
        seed: int = 0,
        channel_names: Sequence[str] | None = None,
        empty_policy: str = "brats",
        max_cases: int | None = None,
        fresh: bool = False,
        mask: str = "nonzero",
        metric: str = "dice",
        hd95: bool = True,
        palette: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        with about("--corruption_models"):
            self.models = parse_models(models, minimum=1)
        with about("--corruptions"):
            if not corruptions:
                raise ValueError(f"no corruption is given; name a benchmark ({sorted(BENCHMARKS)}) or corruptions.")
            self.conditions: list[CorruptionCondition] = corruption_conditions(corruptions, severities, pixel_max)
        with about("--corruption_measures / --corruption_pairs"):
            for measure in measures:
                if measure not in MEASURES:
                    raise ValueError(f"measures must be among {list(MEASURES)} but hold {measure!r}.")
            if pairs not in PAIRS:
                raise ValueError(f"pairs must be one of {list(PAIRS)} but is {pairs!r}.")
        self.corruption_specs = list(corruptions)
        self.normalisation = normalisation
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.metric = metric
        self.measures, self.pairs, self.alpha = list(measures), pairs, float(alpha)
        self.seed = int(seed)
        self.pixel_max = float(pixel_max)
        self.channel_names = list(channel_names) if channel_names else None
        template = unwrap(network)
        for m in self.models:  # every checkpoint against the network, before anything is built or loaded
            check_checkpoint(m.checkpoint, template)
        self.sweeps: dict[str, ConditionSweep] = {}
        for i, m in enumerate(self.models):
            sweep = ConditionSweep(
                template if i == 0 else copy.deepcopy(template),
                m.checkpoint,
                inferer,
                dataset,
                self.conditions,
                self.output_dir / m.name,
                head=head,
                scheme=scheme,
                device=device,
                seed=seed,
                num_examples=0,
                channel_names=channel_names,
                empty_policy=empty_policy,
                max_cases=max_cases,
                fresh=fresh,
                mask=mask,
                metric=metric,
                hd95=hd95,
                palette=palette,
                settings={"model": m.name, "benchmark": self.benchmark},
                normalise=normalisation,
            )
            sweep.title = f"{self.title}: {m.name}"
            self.sweeps[m.name] = sweep

    @property
    def benchmark(self) -> str:
        """The benchmark's name in words (``brats-c``, or the corruptions' names)."""
        names = [s if isinstance(s, str) else str(s.get("name")) for s in self.corruption_specs]
        return ", ".join(names)

    def corruptions(self) -> list[str]:
        """The corruptions' names (conditions without their severity), in order."""
        return list(dict.fromkeys(c.name for c in self.conditions))

    def regions(self) -> list[str]:
        """The regions the summary shows: every region for Dice, the case's mIoU for IoU."""
        first = next(iter(self.sweeps.values()))
        return [MEAN_IOU] if self.metric == "iou" else list(first.scheme.region_names)

    def load(self) -> None:
        """Check every model's checkpoint, cases and output folder before any compute."""
        for sweep in self.sweeps.values():
            sweep.load()

    def settings(self) -> dict[str, Any]:
        first = next(iter(self.sweeps.values()))
        return {
            "models": [m.name for m in self.models],
            "checkpoints": {m.name: str(m.checkpoint) for m in self.models},
            "benchmark": self.benchmark,
            "corruptions": self.corruptions(),
            "severities": sorted({c.severity for c in self.conditions}),
            "regions": self.regions(),
            "normalisation": transform_names(self.normalisation),
            "metric": self.metric,
            "measures": self.measures,
            "pairs": self.pairs,
            "alpha": self.alpha,
            "cases": len(first.case_ids()),
            "seed": self.seed,
            "scoring": first.scoring,
            "empty_policy": first.policy.name,
        }

    def run(self) -> dict[str, Any] | None:
        """Run (or resume) every model's sweep; on rank 0 returns rows, the summary, the tests and settings."""
        from robustseg.evaluation.report.corruption import ROOD_OVERALL, case_rood_rows, corruption_summary

        self.load()
        outcomes = run_model_sweeps(self.sweeps)
        if outcomes is None:
            return None
        rows = [{"model": name, **r} for name, outcome in outcomes.items() for r in outcome["rows"]]
        models = [m.name for m in self.models]
        tests: list[dict[str, Any]] = []
        primary: list[dict[str, Any]] = []
        if len(models) > 1:
            primary = compare_models(
                case_rood_rows(rows, self.metric),
                models,
                conditions=[ROOD_OVERALL],
                metric=self.metric,
                measures=self.measures,
                pairs=self.pairs,
                alpha=self.alpha,
                seed=self.seed,
            )
            tests = compare_models(
                rows,
                models,
                conditions=[c.label for c in self.conditions],
                metric=self.metric,
                measures=self.measures,
                pairs=self.pairs,
                alpha=self.alpha,
                seed=self.seed,
            )
        return {
            "rows": rows,
            "summary": corruption_summary(rows, models, self.corruptions(), self.metric),
            "sweep_statistics": {name: outcome["statistics"] for name, outcome in outcomes.items()},
            "model_tests": tests,
            "primary_tests": primary,
            "checks": {name: outcome["checks"] for name, outcome in outcomes.items()},
            "settings": self.settings(),
        }

    def gallery(self, severities: Sequence[int] = (1, 3, 5)) -> list[tuple[str, np.ndarray]]:
        """The first case clean and under each corruption at ``severities``, as scored (same seeds), as 2-D pictures
        in [0, 1]: the FLAIR (or first) channel's slice through most tumour, or the RGB image."""
        from robustseg.evaluation.report.figures import tumour_slice

        first = next(iter(self.sweeps.values()))
        ids = first.case_ids()
        if not ids:
            return []
        item = self.dataset[0]
        raw = torch.as_tensor(item["image"]).as_subclass(torch.Tensor)[None].float()
        spacing = spacing_from_affine(item["image"])
        label = np.asarray(torch.as_tensor(item["label"]).as_subclass(torch.Tensor))
        rgb = raw.ndim == 4 and raw.shape[1] == 3
        names = [n.lower() for n in self.channel_names or []]
        channel = names.index("flair") if "flair" in names else 0
        index = tumour_slice(label.max(0) if label.ndim == raw.ndim - 1 else label[0]) if raw.ndim == 5 else None

        def picture(x: torch.Tensor) -> np.ndarray:
            if rgb:
                return (x[0].permute(1, 2, 0).numpy() / self.pixel_max).clip(0, 1)
            plane = x[0, channel].numpy()
            return plane[..., index] if index is not None else plane

        clean = picture(raw)
        scale = 1.0 if rgb else float(np.percentile(clean[clean > 0], 99.5)) if (clean > 0).any() else 1.0
        out = [("clean", (clean / scale).clip(0, 1))]
        for condition in self.conditions:
            if condition.severity not in severities:
                continue
            seed = derive_seed(self.seed, f"{ids[0]}|{condition.name}")
            x = corrupt(
                raw,
                condition.corruption.name,
                condition.severity,
                seed=seed,
                spacing=spacing,
                channels=condition.channels,
                pixel_max=self.pixel_max,
            )
            out.append((condition.label, (picture(x) / scale).clip(0, 1)))
        return out


def run_corruption_benchmark(
    benchmark: CorruptionBenchmark,
    tracking_dir: str | Path,
    experiment_name: str = "robustseg",
    tracking_uri: str | None = None,
    run_name: str = "corruptions",
) -> Path | None:
    """Run ``benchmark`` inside one MLflow run and write its report; returns the report's path (rank 0).

    The run holds the settings as params; per model, corruption and region the ROOD ``overall`` and
    ``degradation`` and the mean score at each severity as metrics (``step`` = severity, 0 clean), the self-check
    verdicts as tags, and the output folder as artifacts.
    """
    from robustseg.evaluation.report.corruption import corruption_headline, write_corruption_report

    benchmark.load()  # bad input stops here, before an MLflow run is recorded
    if not distributed.is_rank0():
        benchmark.run()
        return None
    benchmark.output_dir.mkdir(parents=True, exist_ok=True)
    with recorded_run(
        tracking_dir, experiment_name, run_name, tracking_uri, run_file=benchmark.output_dir / RUN_FILE
    ) as run:
        run.log_params(benchmark.settings())
        outcome = benchmark.run()
        if outcome is None:
            raise RuntimeError("rank 0 of the run returned no outcome; the run did not finish.")
        settings = {
            **outcome["settings"],
            "title": benchmark.title,
            "provenance": provenance(mlflow_run_id=run.run_id, tracking_uri=run.tracking_uri),
        }
        report = write_corruption_report(
            benchmark.output_dir / "report",
            outcome["rows"],
            outcome["summary"],
            outcome["sweep_statistics"],
            outcome["model_tests"],
            settings,
            benchmark.gallery(),
            outcome["primary_tests"],
        )
        print(corruption_headline(outcome["summary"], benchmark.regions(), benchmark.metric))
        for name in ("primary_tests", "model_tests"):
            if outcome[name]:
                significant = sum(1 for r in outcome[name] if r.get("significant"))
                family = "per-case ROOD overall" if name == "primary_tests" else "every corruption and severity"
                print(f"{significant} of {len(outcome[name])} tests between models significant ({family}, Holm)")
        print(f"report: {report}")
        metrics: dict[str, float] = {}
        curves: dict[str, dict[int, float]] = {}
        for r in outcome["summary"]:
            stem = _metric_name(f"{benchmark.metric}_{r['region']}_{r['corruption']}_{r['model']}".replace(" ", "_"))
            for key in ("overall", "degradation"):
                if not math.isnan(float(r[key])):
                    metrics[f"{stem}_{key}"] = float(r[key])
            curves[stem] = {0: float(r["clean"]), **{s: float(r[f"severity_{s}"]) for s in SEVERITIES}}
        run.log_metrics(metrics, step=0)
        for severity in (0, *SEVERITIES):
            values = {k: v[severity] for k, v in curves.items() if not math.isnan(v[severity])}
            if values:
                run.log_metrics(values, step=severity)
        tags: dict[str, str] = {}
        for name, checks in outcome["checks"].items():
            tags.update(selfcheck_tags(checks, f"selfcheck.{name}."))
        run.set_tags(tags)
        run.log_artifact(benchmark.output_dir, "corruptions")
    return report
