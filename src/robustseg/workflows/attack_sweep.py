"""The attack audit: the condition sweep with attacks at every budget, their noise baselines and transfer attacks.

A bundle config builds :class:`AttackSweep` from the bundle contract (``network``, ``checkpoint``, ``inferer``,
``validate#preprocessing``, ``label_scheme``, ``head``) and the overlay ``configs/attack.json``. Every attack spec is
built at every budget when the sweep is constructed, so a bad spec fails before any case is touched; each budget
gets random noise of the same norm as a condition; with a second model (``transfer_network`` and
``transfer_checkpoint``) every attack is also crafted on it and transferred. :func:`run_attack_audit` runs the sweep
inside one MLflow run and writes the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustseg.checkpoints import load_checkpoint, unwrap
from robustseg.conditions import (
    ATTACKS,
    TARGETS,
    AttackSpec,
    Condition,
    TransferCondition,
    attack_conditions,
    noise_conditions,
)
from robustseg.errors import about
from robustseg.evaluation.selfchecks import SelfCheck
from robustseg.evaluation.statistics import small_sample_warning
from robustseg.labels import BRATS, LabelScheme
from robustseg.tracking import RUN_FILE, recorded_run
from robustseg.workflows import distributed
from robustseg.workflows.provenance import provenance
from robustseg.workflows.sweep import ConditionSweep

__all__ = ["ATTACKS", "TARGETS", "AttackSpec", "AttackSweep", "check_budgets", "run_attack_audit"]

logger = logging.getLogger(__name__)


class AttackSweep(ConditionSweep):
    """Attack every case with every attack at every budget, beside each budget's noise baseline; score per region.

    Args:
        network: the bundle's network (logits out).
        checkpoint: its weights (``model.pt``).
        inferer: the bundle's inferer, e.g. ``SlidingWindowInferer``; attacks differentiate through it.
        dataset: preprocessed cases (see :class:`~robustseg.workflows.sweep.ConditionSweep`).
        attacks: names or dicts (``{"name": "ifgsm", "steps": 10}``); see :data:`ATTACKS` and :data:`TARGETS`.
        eps: budgets, each > 0, in ``unit``.
        output_dir: where results, statistics, report and examples go; rerunning with the same folder resumes.
        norm, unit, clip_min, clip_max, mask: the threat model (:class:`robustseg.attacks.ThreatModel`).
        head: ``softmax`` or ``sigmoid`` (model zoo style TC/WT/ET channels).
        scheme: label scheme of the model's classes and reported regions.
        device: where the model runs.
        seed: the sweep's seed; a case's attacks and noise draw from seeds derived from it and the case id.
        num_examples: cases whose adversarial volumes and predictions are saved as NIfTI and shown in the report.
        channel_names: names of the input channels (MRI sequences) shown in the report's examples.
        loss: the attacks' default loss (``ce`` for softmax, ``bce`` for sigmoid heads when ``None``).
        noise: add each budget's random-noise baseline (``uniform`` for L-inf, ``gaussian`` for L2).
        transfer_network, transfer_checkpoint: a second model of the same task; every attack is also crafted on it
            and applied to the audited model (``None``: no transfer attacks).
        empty_policy, max_cases, fresh, metric, hd95, palette: see :class:`~robustseg.workflows.sweep.ConditionSweep`
            (natural images: ``metric="iou"``, ``hd95=False``).
    """

    title = "Adversarial robustness audit"

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
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
        num_examples: int = 2,
        channel_names: Sequence[str] | None = None,
        loss: str | None = None,
        noise: bool = True,
        transfer_network: torch.nn.Module | None = None,
        transfer_checkpoint: str | Path | None = None,
        empty_policy: str = "brats",
        max_cases: int | None = None,
        fresh: bool = False,
        metric: str = "dice",
        hd95: bool = True,
        palette: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        common: dict[str, Any] = {"inferer": inferer, "head": head, "scheme": scheme}
        if loss:
            common["loss"] = loss
        threat = {"norm": norm, "unit": unit, "clip_min": clip_min, "clip_max": clip_max, "mask": mask}
        with about("--attacks (robustseg audit: --attack)"):
            if not attacks:
                raise ValueError(f"no attack is given; name at least one of {sorted(ATTACKS)}.")
            for spec in attacks:
                AttackSpec.parse(spec)
        with about("--attack_eps (robustseg audit: --eps)"):
            eps = check_budgets(eps)
        attacks_ = attack_conditions(unwrap(network), attacks, eps, **threat, **common)
        conditions: list[Condition] = list(attacks_)
        if noise:
            first = attacks_[0].spec
            conditions += noise_conditions([c.attack.threat for c in attacks_ if c.spec is first])
        if transfer_checkpoint is not None:
            if transfer_network is None:
                raise ValueError(
                    "transfer_checkpoint needs transfer_network, a second instance of the network "
                    '(in a bundle config: "attack_transfer_network": "%network_def").'
                )
            source = load_checkpoint(transfer_checkpoint, unwrap(transfer_network), device)
            sourced = attack_conditions(unwrap(source), attacks, eps, **threat, **common)
            conditions += [TransferCondition(c, str(transfer_checkpoint)) for c in sourced]
        super().__init__(
            network,
            checkpoint,
            inferer,
            dataset,
            conditions,
            output_dir,
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
            settings={
                "norm": norm,
                "eps": [float(e) for e in eps],
                "eps_unit": unit,
                "mask": mask if isinstance(mask, str) else "tensor",
                "attacks": [c.settings()["attack"] for c in attacks_ if c.eps == attacks_[0].eps],
                "noise": ("uniform" if norm == "linf" else "gaussian") if noise else "none",
                "transfer_from": str(transfer_checkpoint) if transfer_checkpoint is not None else "none",
            },
        )


def check_budgets(eps: Sequence[Any]) -> list[float]:
    """The budgets as floats: at least one, each a finite number > 0, none twice."""
    if isinstance(eps, str | bytes) or not isinstance(eps, Sequence) or not eps:
        raise ValueError(f'give a list of budgets > 0 such as "[0.05, 0.1]" but got {eps!r}.')
    budgets = []
    for e in eps:
        value = float(e) if isinstance(e, int | float) and not isinstance(e, bool) else math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"every budget must be a finite number > 0, but {list(eps)} holds {e!r}.")
        budgets.append(value)
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"{budgets} lists a budget twice.")
    return budgets


def run_attack_audit(
    sweep: ConditionSweep,
    tracking_dir: str | Path,
    experiment_name: str = "robustseg",
    tracking_uri: str | None = None,
    run_name: str = "attack",
) -> Path | None:
    """Run ``sweep`` inside one MLflow run, write its report, print the headline table; returns the report path.

    Under ``torchrun`` every rank scores its cases and rank 0 alone records the run, writes the report and returns
    its path (the others return ``None``). The tracking store is checked before any compute. The run holds the
    sweep's settings as params (logged at the start), the mean Dice per region and condition as metrics, the
    self-check verdicts as tags and the output folder (results, fingerprint, report, examples) as artifacts; it ends
    FINISHED, or FAILED with the error as a tag.
    """
    from robustseg.evaluation.report import headline_table, write_html_report

    sweep.load()  # bad input stops here, before an MLflow run is recorded
    if not distributed.is_rank0():
        sweep.run()
        return None
    run_file = sweep.output_dir / RUN_FILE
    with recorded_run(tracking_dir, experiment_name, run_name, tracking_uri, run_file=run_file) as run:
        run.log_params({k: v for k, v in sweep.settings().items() if k != "checkpoint_sha256"})
        outcome = sweep.run()
        if outcome is None:
            raise RuntimeError("rank 0 of the run returned no outcome; the run did not finish.")
        settings = {
            **outcome["settings"],
            "title": sweep.title,
            "provenance": provenance(
                sweep.checkpoint, outcome["settings"]["checkpoint_sha256"], run.run_id, run.tracking_uri
            ),
        }
        report = write_html_report(
            sweep.output_dir / "report",
            outcome["rows"],
            outcome["statistics"],
            outcome["checks"],
            outcome["examples"],
            settings,
        )
        print(headline_table(outcome["rows"], outcome["statistics"], sweep.metric))
        alpha = next((float(r["alpha"]) for r in outcome["statistics"] if r.get("alpha") is not None), 0.05)
        print(f"Holm p over the {len(outcome['statistics'])} tests; significant: Holm p <= alpha = {alpha:g}")
        warning = small_sample_warning(outcome["statistics"])
        if warning:
            logger.warning(warning)
        print(f"report: {report}")
        run.log_params({"checkpoint_sha256": settings["checkpoint_sha256"]})
        means: dict[str, list[float]] = {}
        for r in outcome["rows"]:
            name = f"{sweep.metric}_{r['region']}_{r['condition']}".replace("@", "_eps")
            means.setdefault(name, []).append(r[sweep.metric])
        run.log_metrics({_metric_name(k): float(np.nanmean(v)) for k, v in means.items()}, step=0)
        run.log_metrics({"rows_reused": sweep.reused_rows, "cases_computed": sweep.computed_cases}, step=0)
        run.set_tags(selfcheck_tags(outcome["checks"]))
        run.log_artifact(sweep.output_dir, "attack")
    return report


def selfcheck_tags(checks: Sequence[SelfCheck], prefix: str = "selfcheck.") -> dict[str, str]:
    """MLflow tags of self-check verdicts: ``<prefix><check>`` is ``pass``, or ``WARN`` when any check of that name
    failed."""
    verdicts: dict[str, bool] = {}
    for check in checks:
        verdicts[check.name] = verdicts.get(check.name, True) and check.passed
    return {f"{prefix}{name}": "pass" if ok else "WARN" for name, ok in verdicts.items()}


def _metric_name(name: str) -> str:
    """An MLflow metric name: letters, digits and ``_ - . /`` only (condition labels may hold ``[=,]``)."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)
