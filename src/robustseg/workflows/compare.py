"""The defence comparison: several checkpoints of one bundle audited on the same cases under the same conditions.

``configs/compare.json`` builds a :class:`DefenceComparison` from the bundle contract and a list of models (the
baseline first; by default the bundle's checkpoint and every defended model trained beside it, found by its
``defence.json``). Each model gets one :class:`~robustseg.workflows.sweep.ConditionSweep` in
``<output_dir>/<model>/``, so each resumes on its own and refuses results of other settings. The conditions are
masking-aware by default, as Carlini & Wagner and the segmentation attacks since (SEA, PIR-AT) ask:

* the attacks on the plain loss (the seed's FGSM, i-FGSM and ti-FGSM);
* the same attacks on the logits divided by the model's temperature (``<attack>-T``), for a distilled model whose
  raw softmax is saturated; for a model with T = 1 they are the plain attacks, whose rows are reused (aliased);
* a margin (Carlini-Wagner) loss on the logits, blind to their scale;
* every attack crafted on the undefended baseline and transferred (``transfer-<attack>``; for the baseline itself
  these are its white-box attacks, aliased);
* random noise of the same norm and budget;
* per case and region, the worst of all of these at each budget (``worst@<eps>``).

:func:`run_comparison` runs the sweeps in one MLflow run, tests the models against each other
(:func:`robustseg.evaluation.model_comparison.compare_models`, one Holm family), runs the masking self-checks per
model (noise, transfer and temperature against the white-box attacks) and writes the report.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustseg.checkpoints import check_checkpoint, load_checkpoint, unwrap
from robustseg.conditions import (
    AttackSpec,
    Condition,
    TransferCondition,
    attack_conditions,
    noise_conditions,
)
from robustseg.defenses import check_temperature
from robustseg.errors import about
from robustseg.evaluation.model_comparison import MEASURES, PAIRS, compare_models
from robustseg.evaluation.selfchecks import SelfCheck, check_temperature_scaling
from robustseg.labels import BRATS, LabelScheme
from robustseg.tracking import RUN_FILE, recorded_run
from robustseg.workflows import distributed
from robustseg.workflows.attack_sweep import _metric_name, check_budgets, selfcheck_tags
from robustseg.workflows.defended_training import DEFENCE_FILE
from robustseg.workflows.fingerprint import file_sha256
from robustseg.workflows.provenance import provenance
from robustseg.workflows.sweep import WORST, ConditionSweep, run_model_sweeps

__all__ = [
    "DEFAULT_MARGIN_ATTACKS",
    "ComparedModel",
    "DefenceComparison",
    "discover_models",
    "parse_models",
    "run_comparison",
]

logger = logging.getLogger(__name__)

DEFAULT_MARGIN_ATTACKS: tuple[dict[str, Any], ...] = (
    {"name": "pgd", "steps": 10, "loss": "margin", "label": "pgd-margin"},
)
"""The masking-aware white-box attack added to a comparison's attacks: PGD (random start) on the CW margin."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ComparedModel:
    """One model of a comparison.

    Attributes:
        name: its name in tables and its output folder (letters, digits, ``_ . -``).
        checkpoint: its weights, a checkpoint of the bundle's network.
        temperature: T of the ``<attack>-T`` attacks (a distilled model's distillation temperature; 1: none).
        defence: its ``defence.json`` (how it was trained), or empty for a model trained without one.
    """

    name: str
    checkpoint: Path
    temperature: float = 1.0
    defence: Mapping[str, Any] = field(default_factory=dict)


def _read_defence(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint.parent / DEFENCE_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read ({e}); remove it or train the model again.") from e
    return record if isinstance(record, dict) else {}


def parse_models(models: Sequence[str | Mapping[str, Any]], minimum: int = 2) -> list[ComparedModel]:
    """The models of a comparison, the baseline first, each checked to exist (``minimum`` of them at least).

    Each is ``"name=path/to/model.pt"``, a bare path (named by its folder), or a dict with ``name``,
    ``checkpoint`` and optionally ``temperature``. Without a temperature, a model whose folder holds the
    ``defence.json`` of a distillation gets that distillation's T, any other T = 1. Relative paths are read from
    the working directory.
    """
    if isinstance(models, str | bytes | Mapping) or not isinstance(models, Sequence):
        raise ValueError(
            f"give the models as a list, the baseline first, e.g. \"['baseline=models/model.pt', "
            f"'distilled=models/distill_T20/model.pt']\", but got {models!r}."
        )
    out: list[ComparedModel] = []
    for item in models:
        temperature: Any = None
        if isinstance(item, Mapping):
            unknown = sorted(set(item) - {"name", "checkpoint", "temperature"})
            if unknown or "checkpoint" not in item:
                raise ValueError(f"a model is a dict with 'checkpoint' (and 'name', 'temperature') but is {item!r}.")
            path, name, temperature = Path(str(item["checkpoint"])), item.get("name"), item.get("temperature")
        elif isinstance(item, str):
            name, sep, rest = item.partition("=")
            path, name = (Path(rest), name) if sep else (Path(item), None)
        else:
            raise ValueError(f"a model is 'name=path', a path or a dict but is {item!r}.")
        path = path.expanduser().resolve()
        name = str(name) if name else path.parent.name
        if not _NAME.match(name):
            raise ValueError(f"model name {name!r} must be letters, digits and '_ . -' (it names a folder).")
        if not path.is_file():
            raise FileNotFoundError(f"the checkpoint of model {name!r}, {path}, does not exist; train it first.")
        defence = _read_defence(path)
        if temperature is None:
            temperature = defence.get("temperature", 1.0) if defence.get("defence") == "distillation" else 1.0
        with about(f"the temperature of model {name!r}"):
            temperature = check_temperature(temperature)
        out.append(ComparedModel(name, path, temperature, defence))
    names = [m.name for m in out]
    if len(out) < minimum:
        need = "a model" if minimum == 1 else "a baseline and at least one other model"
        raise ValueError(f"a comparison needs {need} but has {names}.")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"model names {twice} are given twice; give each model its own name ('name=path').")
    return out


def discover_models(checkpoint: str | Path) -> list[str]:
    """The bundle's checkpoint as ``baseline``, then every defended model trained beside it: each subfolder of the
    checkpoint's folder holding a ``defence.json`` and a ``model.pt``, named by the folder."""
    path = Path(checkpoint)
    found = [f"baseline={path}"]
    if path.parent.is_dir():
        for folder in sorted(p for p in path.parent.iterdir() if p.is_dir()):
            if (folder / DEFENCE_FILE).is_file() and (folder / "model.pt").is_file():
                found.append(f"{folder.name}={folder / 'model.pt'}")
    return found


def _with(spec: str | Mapping[str, Any], **params: Any) -> dict[str, Any]:
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    return {**spec, **params}


def _alias_kind(label: str) -> str:
    """The kind of a reused condition: ``transfer-<attack>`` (the baseline's own attack) or ``<attack>-T``."""
    return "transfer" if label.startswith("transfer-") else "attack"


@dataclass
class _Plan:
    """One model's conditions, its rows reused under other labels, and the (raw, scaled) pairs of its T attacks."""

    conditions: list[Condition]
    aliases: dict[str, str]
    scaled: list[tuple[str, str]]


class DefenceComparison:
    """Audit several models of one bundle on the same cases under the same masking-aware conditions, and compare.

    Args:
        network: the bundle's network; each model gets its own copy.
        models: the models, the baseline first (see :func:`parse_models`).
        inferer: the bundle's inferer.
        dataset: preprocessed cases (see :class:`~robustseg.workflows.sweep.ConditionSweep`).
        attacks: the white-box attacks on the plain loss (names or dicts, as the attack audit's).
        eps: budgets, each > 0, in ``unit``.
        output_dir: each model's sweep goes to ``<output_dir>/<name>``, the comparison's report and tables to
            ``<output_dir>/report``.
        norm, unit, clip_min, clip_max, mask: the threat model.
        head, scheme, device, seed, num_examples, channel_names, empty_policy, max_cases, fresh, metric, hd95,
            palette: as for :class:`~robustseg.workflows.sweep.ConditionSweep`, the same for every model.
        loss: the attacks' plain loss (``None``: ``ce`` for softmax, ``bce`` for sigmoid heads).
        margin_attacks: further white-box attacks on a scale-free loss (default :data:`DEFAULT_MARGIN_ATTACKS`).
        scaled: add each attack on the logits divided by the model's temperature.
        transfer: add each attack (plain and margin) crafted on the baseline; or a list of the attack labels to
            transfer (``["ifgsm", "pgd-margin"]``), the others only white-box.
        noise: add each budget's noise baseline.
        measures, pairs, alpha: the tests between models
            (:func:`~robustseg.evaluation.model_comparison.compare_models`).
    """

    title = "Defence comparison"

    def __init__(
        self,
        network: torch.nn.Module,
        models: Sequence[str | Mapping[str, Any]],
        inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor],
        dataset: Sequence[Mapping[str, Any]],
        attacks: Sequence[str | Mapping[str, Any]],
        eps: Sequence[float],
        output_dir: str | Path,
        norm: str = "linf",
        unit: str = "std of z-scored input",
        clip_min: Any = None,
        clip_max: Any = None,
        mask: Any = "nonzero",
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_examples: int = 1,
        channel_names: Sequence[str] | None = None,
        loss: str | None = None,
        margin_attacks: Sequence[str | Mapping[str, Any]] | None = DEFAULT_MARGIN_ATTACKS,
        scaled: bool = True,
        transfer: bool | Sequence[str] = True,
        noise: bool = True,
        measures: Sequence[str] = MEASURES,
        pairs: str = "all",
        alpha: float = 0.05,
        empty_policy: str = "brats",
        max_cases: int | None = None,
        fresh: bool = False,
        metric: str = "dice",
        hd95: bool = True,
        palette: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        with about("--compare_models"):
            self.models = parse_models(models)
        with about("--compare_attacks"):
            if not attacks:
                raise ValueError('no attack is given; name at least one (e.g. ["fgsm"]).')
            for spec in attacks:
                AttackSpec.parse(spec)
        with about("--compare_margin_attacks"):
            for spec in margin_attacks or ():
                AttackSpec.parse(spec)
        with about("--compare_eps"):
            budgets = check_budgets(eps)
        with about("--compare_measures / --compare_pairs"):
            for measure in measures:
                if measure not in MEASURES:
                    raise ValueError(f"measures must be among {list(MEASURES)} but hold {measure!r}.")
            if pairs not in PAIRS:
                raise ValueError(f"pairs must be one of {list(PAIRS)} but is {pairs!r}.")
        self.output_dir = Path(output_dir)
        self.device = torch.device(device)
        self.metric = metric
        self.measures = list(measures)
        self.pairs = pairs
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.attacks = list(attacks)
        self.margin_attacks = list(margin_attacks or ())
        self.eps = budgets
        self.threat = {"norm": norm, "unit": unit, "clip_min": clip_min, "clip_max": clip_max, "mask": mask}
        self.common: dict[str, Any] = {"inferer": inferer, "head": head, "scheme": scheme}
        if loss:
            self.common["loss"] = loss
        template = unwrap(network)
        for m in self.models:  # every checkpoint against the network, before anything is built or loaded
            check_checkpoint(m.checkpoint, template)
        baseline = self.models[0]
        source = None
        if transfer:
            source = load_checkpoint(baseline.checkpoint, copy.deepcopy(template), self.device)
            self._baseline_sha256 = file_sha256(baseline.checkpoint)
        self.plans: dict[str, _Plan] = {}
        self.sweeps: dict[str, ConditionSweep] = {}
        for i, m in enumerate(self.models):
            net = template if i == 0 else copy.deepcopy(template)
            plan = self._plan(net, m, source if i > 0 else None, transfer, noise, scaled)
            sweep = ConditionSweep(
                net,
                m.checkpoint,
                inferer,
                dataset,
                plan.conditions,
                self.output_dir / m.name,
                head=head,
                scheme=scheme,
                device=device,
                seed=seed,
                num_examples=num_examples,
                channel_names=channel_names,
                empty_policy=empty_policy,
                max_cases=max_cases,
                fresh=fresh,
                mask=mask if isinstance(mask, str) else "nonzero",
                metric=metric,
                hd95=hd95,
                palette=palette,
                settings={"model": m.name, "temperature": m.temperature, "defence": dict(m.defence) or "none"},
            )
            sweep.worst_kinds = ("attack", "transfer", "noise")
            sweep.title = f"{self.title}: {m.name}"
            self.plans[m.name] = plan
            self.sweeps[m.name] = sweep

    def _plan(
        self,
        net: torch.nn.Module,
        model: ComparedModel,
        source: torch.nn.Module | None,
        transfer: bool | Sequence[str],
        noise: bool,
        scaled: bool,
    ) -> _Plan:
        specs = [*self.attacks, *self.margin_attacks]
        plain = attack_conditions(net, specs, self.eps, **self.threat, **self.common)
        names = [plain[i * len(self.eps)].name for i in range(len(specs))]
        conditions: list[Condition] = list(plain)
        aliases: dict[str, str] = {}
        pairs: list[tuple[str, str]] = []
        if scaled:  # the plain-loss attacks on logits / T (a margin is blind to the logits' scale: not repeated)
            plain_names = names[: len(self.attacks)]
            labelled = [_with(s, label=f"{n}-T") for s, n in zip(self.attacks, plain_names, strict=True)]
            if model.temperature != 1:
                tempered = [_with(s, temperature=model.temperature) for s in labelled]
                conditions += attack_conditions(net, tempered, self.eps, **self.threat, **self.common)
            for n in plain_names:
                for e in self.eps:
                    raw, scaled_label = f"{n}@{e:g}", f"{n}-T@{e:g}"
                    if model.temperature == 1:
                        aliases[scaled_label] = raw  # logits / 1: the same attack
                    else:
                        pairs.append((raw, scaled_label))
        chosen = names if transfer is True else [] if transfer is False else [str(t) for t in transfer]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ValueError(f"--compare_transfer names {unknown}, which are not among the attacks {names}.")
        if chosen:
            for n in chosen:
                for e in self.eps:
                    if source is None:  # the baseline: an attack crafted on itself is its white-box attack
                        aliases[f"transfer-{n}@{e:g}"] = f"{n}@{e:g}"
            if source is not None:  # labelled as the white-box ones, whichever subset is transferred
                picked = [_with(s, label=n) for s, n in zip(specs, names, strict=True) if n in chosen]
                crafted = attack_conditions(source, picked, self.eps, **self.threat, **self.common)
                baseline = self.models[0]
                name = f"{baseline.name}: {baseline.checkpoint} (sha256 {self._baseline_sha256})"
                conditions += [TransferCondition(c, name) for c in crafted]
        if noise:
            first = plain[0].spec
            conditions += noise_conditions([c.attack.threat for c in plain if c.spec is first])
        return _Plan(conditions, aliases, pairs)

    # ------------------------------------------------------------------ running

    def load(self) -> None:
        """Check every model's checkpoint, cases and output folder before any compute."""
        for sweep in self.sweeps.values():
            sweep.load()

    def conditions(self) -> list[str]:
        """Every condition label of the comparison, in report order (the worst case of each budget last)."""
        labels: list[str] = []
        for plan in self.plans.values():
            labels += [c.label for c in plan.conditions] + list(plan.aliases)
        ordered = list(dict.fromkeys(labels))
        kinds = {c.label: c.kind for p in self.plans.values() for c in p.conditions}
        rank = {"attack": 0, "transfer": 1, "noise": 2}
        ordered.sort(key=lambda label: rank.get(kinds.get(label) or _alias_kind(label), len(rank)))
        worst = [f"{WORST}@{e:g}" for e in self.eps]
        return ordered + worst

    def settings(self) -> dict[str, Any]:
        """What the comparison does, for the report and MLflow params."""
        first = next(iter(self.sweeps.values()))
        return {
            "models": [
                {
                    "name": m.name,
                    "checkpoint": str(m.checkpoint),
                    "temperature": m.temperature,
                    "defence": dict(m.defence).get("defence", "none"),
                }
                for m in self.models
            ],
            "baseline": self.models[0].name,
            "attacks": self.attacks,
            "margin_attacks": self.margin_attacks,
            "eps": self.eps,
            "norm": self.threat["norm"],
            "eps_unit": self.threat["unit"],
            "conditions": self.conditions(),
            "measures": self.measures,
            "pairs": self.pairs,
            "alpha": self.alpha,
            "metric": self.metric,
            "cases": len(first.case_ids()),
            "seed": self.seed,
            "scoring": first.scoring,
            "empty_policy": first.policy.name,
        }

    def run(self) -> dict[str, Any] | None:
        """Run (or resume) every model's sweep; on rank 0 returns rows, tests, self-checks and settings."""
        self.load()
        outcomes = run_model_sweeps(self.sweeps)
        if outcomes is None:
            return None
        rows: list[dict[str, Any]] = []
        checks: dict[str, list[SelfCheck]] = {}
        for name, outcome in outcomes.items():
            own = [{"model": name, **r, "alias_of": ""} for r in outcome["rows"]]
            rows += own + self._aliased(name, own)
            checks[name] = list(outcome["checks"]) + self._temperature_checks(name, own)
        statistics = compare_models(
            rows,
            [m.name for m in self.models],
            conditions=self.conditions(),
            metric=self.metric,
            measures=self.measures,
            pairs=self.pairs,
            alpha=self.alpha,
            seed=self.seed,
        )
        return {
            "rows": rows,
            "statistics": statistics,
            "checks": checks,
            "outcomes": outcomes,
            "settings": self.settings(),
        }

    def _aliased(self, name: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A model's rows under the labels of conditions that are, for it, one it ran (see the module docstring)."""
        aliases = self.plans[name].aliases
        by_source: dict[str, list[str]] = {}
        for alias, source in aliases.items():
            by_source.setdefault(source, []).append(alias)
        out = []
        for r in rows:
            for alias in by_source.get(str(r["condition"]), []):
                kind = _alias_kind(alias)
                out.append(
                    {
                        **r,
                        "condition": alias,
                        "kind": kind,
                        "attack": alias.rsplit("@", 1)[0],
                        "alias_of": r["condition"],
                    }
                )
        return out

    def _temperature_checks(self, name: str, rows: Sequence[Mapping[str, Any]]) -> list[SelfCheck]:
        scores: dict[str, dict[tuple[str, str], float]] = {}
        for r in rows:
            scores.setdefault(str(r["condition"]), {})[(str(r["case_id"]), str(r["region"]))] = float(r[self.metric])
        out = []
        for raw, scaled in self.plans[name].scaled:
            cells = sorted(set(scores.get(raw, {})) & set(scores.get(scaled, {})))
            out.append(
                check_temperature_scaling(
                    raw, [scores[raw][k] for k in cells], scaled, [scores[scaled][k] for k in cells]
                )
            )
        return out


def run_comparison(
    comparison: DefenceComparison,
    tracking_dir: str | Path,
    experiment_name: str = "robustseg",
    tracking_uri: str | None = None,
    run_name: str = "compare",
) -> Path | None:
    """Run ``comparison`` inside one MLflow run and write its report; returns the report's path (rank 0).

    The run holds the comparison's settings as params, the mean score per model, condition and region as metrics,
    each model's self-check verdicts as tags (``selfcheck.<model>.<check>``) and the output folder as artifacts.
    """
    from robustseg.evaluation.report import write_html_report
    from robustseg.evaluation.report.comparison import comparison_headline, write_comparison_report

    comparison.load()  # bad input stops here, before an MLflow run is recorded
    if not distributed.is_rank0():
        comparison.run()
        return None
    comparison.output_dir.mkdir(parents=True, exist_ok=True)
    with recorded_run(
        tracking_dir, experiment_name, run_name, tracking_uri, run_file=comparison.output_dir / RUN_FILE
    ) as run:
        run.log_params(comparison.settings())
        outcome = comparison.run()
        if outcome is None:
            raise RuntimeError("rank 0 of the run returned no outcome; the run did not finish.")
        model_reports = {}
        for name, result in outcome["outcomes"].items():
            sweep = comparison.sweeps[name]
            settings = {
                **result["settings"],
                "title": sweep.title,
                "provenance": provenance(sweep.checkpoint, result["settings"]["checkpoint_sha256"]),
            }
            model_reports[name] = write_html_report(
                sweep.output_dir / "report",
                result["rows"],
                result["statistics"],
                result["checks"],
                result["examples"],
                settings,
            )
        settings = {
            **outcome["settings"],
            "title": comparison.title,
            "provenance": provenance(mlflow_run_id=run.run_id, tracking_uri=run.tracking_uri),
        }
        report = write_comparison_report(
            comparison.output_dir / "report",
            outcome["rows"],
            outcome["statistics"],
            outcome["checks"],
            settings,
            model_reports,
        )
        print(comparison_headline(outcome["rows"], outcome["statistics"], settings))
        print(f"report: {report}")
        means: dict[str, list[float]] = {}
        for r in outcome["rows"]:
            key = f"{comparison.metric}_{r['region']}_{r['condition']}_{r['model']}".replace("@", "_eps")
            means.setdefault(key, []).append(float(r[comparison.metric]))
        run.log_metrics(
            {_metric_name(k): float(np.nanmean(v)) for k, v in means.items() if not all(map(math.isnan, v))}, step=0
        )
        tags: dict[str, str] = {}
        for name, checks in outcome["checks"].items():
            tags.update(selfcheck_tags(checks, f"selfcheck.{name}."))
        run.set_tags(tags)
        run.log_artifact(comparison.output_dir, "compare")
    return report
