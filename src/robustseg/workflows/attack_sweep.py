"""The attack audit: every test case, clean and under each attack and budget, scored per region, tested in pairs.

A bundle config builds :class:`AttackSweep` from the bundle contract (``network``, ``checkpoint``, ``inferer``,
``validate#preprocessing``, ``label_scheme``) and the overlay ``configs/attack.json``; ``run()`` then

1. checks the whole sweep before any compute (attack names, budgets, checkpoint, data);
2. for each case: infers the clean prediction through the bundle's inferer (a sliding window over the whole volume),
   attacks it end to end through the same inferer, and appends one row per case x condition x region to
   ``results.csv`` as soon as it is computed (a killed sweep resumes where it stopped);
3. runs the self-checks (logits, gradient masking, attack order, determinism);
4. tests every condition against clean per region (paired Wilcoxon, Holm over the family, effect sizes);
5. writes the statistics, the report and example NIfTI volumes, and records everything in one MLflow run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustseg.attacks import FGSM, Attack, IterativeFGSM, TargetedIterativeFGSM, ThreatModel
from robustseg.attacks.targets import erase_tumour, relabel_enhancing_as_oedema
from robustseg.checkpoints import load_checkpoint
from robustseg.data.naming import case_output_name
from robustseg.data.nifti import input_affine, save_class_map
from robustseg.evaluation.metrics import case_metrics
from robustseg.evaluation.report import audit_rows, headline_table, write_html_report
from robustseg.evaluation.results import ResultsStore
from robustseg.evaluation.selfchecks import (
    SelfCheck,
    check_attack_order,
    check_determinism,
    check_gradients,
    check_logits,
)
from robustseg.evaluation.statistics import compare_conditions
from robustseg.labels import BRATS, LabelScheme
from robustseg.tracking import recorded_run

__all__ = ["ATTACKS", "TARGETS", "AttackSpec", "AttackSweep", "run_attack_audit"]

logger = logging.getLogger(__name__)

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "ifgsm": IterativeFGSM,
    "pgd": IterativeFGSM,
    "tifgsm": TargetedIterativeFGSM,
}
"""Attack names a sweep accepts; ``pgd`` is i-FGSM with a random start."""

TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "erase_tumour": erase_tumour,
    "enhancing_as_oedema": relabel_enhancing_as_oedema,
}
"""Built-in ti-FGSM targets; ``erase_tumour`` (every voxel background) is the default."""

COLUMNS = ["case_id", "attack", "eps", "region", "dice", "hd95", "linf", "l2", "psnr_db"]
KEY = ["case_id", "attack", "eps", "region"]


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a sweep: a name from :data:`ATTACKS` and its arguments (``steps``, ``loss``, ``target``...)."""

    name: str
    params: Mapping[str, Any]

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> AttackSpec:
        if isinstance(spec, str):
            spec = {"name": spec}
        params = {k: v for k, v in spec.items() if k != "name"}
        name = str(spec.get("name", ""))
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}.")
        target = params.get("target")
        if target is not None and (name != "tifgsm" or target not in TARGETS):
            raise ValueError(f"target {target!r} needs attack 'tifgsm' and one of {sorted(TARGETS)}.")
        return cls(name, params)

    @property
    def label(self) -> str:
        """The condition's attack name in tables (``tifgsm-enhancing_as_oedema`` for a non-default target)."""
        target = self.params.get("target")
        return f"{self.name}-{target}" if target not in (None, "erase_tumour") else self.name

    def build(self, model: torch.nn.Module, threat: ThreatModel, **common: Any) -> Attack:
        params = dict(self.params)
        if self.name == "pgd":
            params.setdefault("random_start", True)
        if self.name == "tifgsm":
            params["target_fn"] = TARGETS[params.pop("target", "erase_tumour")]
        return ATTACKS[self.name](model, threat, **common, **params)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().as_subclass(torch.Tensor).numpy()


class AttackSweep:
    """Attack every case with every attack at every budget and score it per region.

    Args:
        network: the bundle's network (logits out).
        checkpoint: its weights (``model.pt``); checked against the network before any compute.
        inferer: the bundle's inferer, e.g. ``SlidingWindowInferer``; attacks differentiate through it.
        dataset: preprocessed cases (dicts with ``image`` ``(C, *spatial)``, ``label`` ``(1, *spatial)`` and
            ``case_id``), e.g. a MONAI ``Dataset`` over the test split with the bundle's validation preprocessing.
        attacks: names or dicts (``{"name": "ifgsm", "steps": 10}``); see :data:`ATTACKS` and :data:`TARGETS`.
        eps: budgets, each > 0, in ``unit``.
        output_dir: where results, statistics, report and examples go; rerunning with the same folder resumes.
        norm, unit, clip_min, clip_max, mask: the threat model (:class:`robustseg.attacks.ThreatModel`).
        head: ``softmax`` or ``sigmoid`` (model zoo style TC/WT/ET channels).
        scheme: label scheme of the model's classes and reported regions.
        device: where the model runs.
        seed: seed of every attack (the same seed gives the same adversarial inputs).
        num_examples: cases whose adversarial volumes and predictions are saved as NIfTI and shown in the report.
        spacing_key: metadata key of the voxel spacing for HD95 in mm (``pixdim`` of the image's meta).
    """

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
        loss: str | None = None,
    ) -> None:
        if not attacks:
            raise ValueError("attacks is empty; name at least one of " + str(sorted(ATTACKS)) + ".")
        if not eps:
            raise ValueError("eps is empty; give at least one budget > 0.")
        self.specs = [AttackSpec.parse(a) for a in attacks]
        self.eps = [float(e) for e in eps]
        self.threats = {
            e: ThreatModel(norm, e, unit=unit, clip_min=clip_min, clip_max=clip_max, mask=mask) for e in self.eps
        }  # raises for eps <= 0, an unknown norm or mask policy
        self.network = network
        self.checkpoint = Path(checkpoint)
        self.inferer = inferer
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.head = head
        self.scheme = scheme
        self.device = torch.device(device)
        self.seed = int(seed)
        self.num_examples = int(num_examples)
        self.loss = loss
        self.unit = unit
        self.norm = norm
        self.checks: list[SelfCheck] = []
        self.examples: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up

    def settings(self) -> dict[str, Any]:
        """What the sweep does, for the report and MLflow params."""
        return {
            "norm": self.norm,
            "eps": self.eps,
            "eps_unit": self.unit,
            "mask": self.threats[self.eps[0]].describe().split("mask=")[-1],
            "attacks": [{"name": s.name, **s.params} for s in self.specs],
            "head": self.head,
            "checkpoint": str(self.checkpoint),
            "cases": len(self.dataset),
            "seed": self.seed,
        }

    def load(self) -> None:
        load_checkpoint(self.checkpoint, self.network, self.device)
        if len(self.dataset) == 0:
            raise ValueError("the sweep has no cases; check the datalist's testing split.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inferer(x, self.network)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.scheme.class_map_from_logits(self.forward(x), head=self.head)

    # ------------------------------------------------------------------ the sweep

    def _rows(
        self,
        case_id: str,
        attack: str,
        eps: float,
        pred: torch.Tensor,
        label: torch.Tensor,
        spacing: Sequence[float] | None,
        stats: Mapping[str, float],
    ) -> list[dict[str, Any]]:
        metrics = case_metrics(pred, label, scheme=self.scheme, spacing=spacing)[0]
        return [
            {
                "case_id": case_id,
                "attack": attack,
                "eps": eps,
                "region": r,
                "dice": metrics[f"{r}_dice"],
                "hd95": metrics[f"{r}_hd95"],
                **stats,
            }
            for r in self.scheme.region_names
        ]

    def run(self) -> dict[str, Any]:
        """Run (or resume) the sweep; returns the statistics rows and the self-checks."""
        self.load()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        store = ResultsStore(self.output_dir / "results.csv", COLUMNS, KEY)
        first_region = self.scheme.region_names[0]
        from tqdm import tqdm

        for index in tqdm(range(len(self.dataset)), desc="attack sweep", unit="case"):
            item = self.dataset[index]
            case_id = str(item.get("case_id", index))
            x = torch.as_tensor(item["image"])[None].to(self.device)
            y = torch.as_tensor(item["label"])[None].to(self.device)
            spacing = self._spacing(item["image"])
            if index == 0:
                self._first_case_checks(x, y)
            clean_pred = None
            if not store.has({"case_id": case_id, "attack": "clean", "eps": 0.0, "region": first_region}):
                clean_pred = self.predict(x)
                none = {"linf": 0.0, "l2": 0.0, "psnr_db": float("inf")}
                store.append(self._rows(case_id, "clean", 0.0, clean_pred, y, spacing, none))
            for spec in self.specs:
                for eps in self.eps:
                    key = {"case_id": case_id, "attack": spec.label, "eps": eps, "region": first_region}
                    keep_example = index < self.num_examples and eps == max(self.eps)
                    condition = f"{spec.label}@{eps:g}"
                    stored = store.has(key)
                    if stored and not keep_example:
                        continue
                    if stored:  # resumed: read the example saved with the row rather than attack again
                        clean_pred = self.predict(x) if clean_pred is None else clean_pred
                        if self._reload_example(case_id, condition, x, y, clean_pred):
                            continue
                    attack = spec.build(
                        self.network,
                        self.threats[eps],
                        inferer=self.inferer,
                        head=self.head,
                        scheme=self.scheme,
                        seed=self.seed,
                        **({"loss": self.loss} if self.loss else {}),
                    )
                    result = attack(x, y)
                    adv_pred = self.predict(result.adversarial)
                    stats = {
                        "linf": float(result.linf[0]),
                        "l2": float(result.l2[0]),
                        "psnr_db": float(result.psnr_db[0]),
                    }
                    if keep_example:  # saved before the row, so a stored row always has its example on disk
                        clean_pred = self.predict(x) if clean_pred is None else clean_pred
                        self._save_example(case_id, condition, x, result.adversarial, adv_pred)
                        self._remember_example(case_id, condition, x, result.adversarial, y, clean_pred, adv_pred)
                    if not stored:
                        store.append(self._rows(case_id, spec.label, eps, adv_pred, y, spacing, stats))
        return self.finish(store)

    def _spacing(self, image: Any) -> list[float] | None:
        meta = getattr(image, "meta", None)
        if not meta or "pixdim" not in meta:
            return None
        pixdim = np.asarray(meta["pixdim"], dtype=float).ravel()
        dims = image.ndim - 1
        return [float(v) for v in pixdim[1 : 1 + dims]] if pixdim.size > dims else None

    def _first_case_checks(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            logits = self.forward(x)
        self.checks.append(check_logits(logits, head=self.head))
        self.checks.append(check_determinism(self.forward, x))
        probe = FGSM(
            self.network,
            self.threats[self.eps[0]],
            inferer=self.inferer,
            head=self.head,
            scheme=self.scheme,
            loss=self.loss,
        )
        self.checks.append(check_gradients(probe.gradient(x, y), self.threats[self.eps[0]].mask_for(x)))

    def example_path(self, case_id: str, condition: str, name: str) -> Path:
        """Where an example volume is saved: ``examples/<case>_<attack>@<eps>_<adversarial|pred_adversarial>``."""
        return self.output_dir / "examples" / f"{case_id}_{condition}_{name}.nii.gz"

    def _save_example(
        self, case_id: str, condition: str, x: torch.Tensor, adversarial: torch.Tensor, adv_pred: torch.Tensor
    ) -> None:
        """Save the adversarial input and its prediction as NIfTI with the preprocessed input's affine."""
        from monai.data import MetaTensor
        from monai.transforms import SaveImage

        meta = {**dict(getattr(x, "meta", {})), "filename_or_obj": case_id}
        saver = SaveImage(
            output_dir=str(self.output_dir / "examples"),
            output_postfix=f"{condition}_adversarial",
            separate_folder=False,
            output_dtype=np.float32,
            resample=False,
            print_log=False,
            output_name_formatter=case_output_name,
        )
        saver(MetaTensor(adversarial[0].detach().cpu().as_subclass(torch.Tensor), meta=meta))
        save_class_map(adv_pred[0, 0], input_affine(x), self.example_path(case_id, condition, "pred_adversarial"))

    def _reload_example(
        self, case_id: str, condition: str, x: torch.Tensor, label: torch.Tensor, clean_pred: torch.Tensor
    ) -> bool:
        """On resume, read a stored example back; False when its files are missing (the case is attacked again)."""
        from monai.transforms import LoadImage

        paths = [self.example_path(case_id, condition, n) for n in ("adversarial", "pred_adversarial")]
        if not all(p.is_file() for p in paths):
            logger.warning("example volumes of %s %s are missing; attacking the case again", case_id, condition)
            return False
        load = LoadImage(image_only=True, ensure_channel_first=True)
        adversarial, adv_pred = (load(str(p)).as_tensor()[None] for p in paths)
        adversarial = adversarial.reshape(x.shape)  # a 2-D image comes back with a trailing axis of size 1
        self._remember_example(case_id, condition, x, adversarial, label, clean_pred, adv_pred)
        return True

    def _remember_example(
        self,
        case_id: str,
        condition: str,
        x: torch.Tensor,
        adversarial: torch.Tensor,
        label: torch.Tensor,
        clean_pred: torch.Tensor,
        adv_pred: torch.Tensor,
    ) -> None:
        self.examples.append(
            {
                "case_id": case_id,
                "condition": condition,
                "image": _to_numpy(x[0]),
                "adversarial": _to_numpy(adversarial[0]),
                "label": _to_numpy(label[0, 0]),
                "pred_clean": _to_numpy(clean_pred[0, 0]),
                "pred_adversarial": _to_numpy(adv_pred[0, 0]),
            }
        )

    # ------------------------------------------------------------------ statistics and report

    def finish(self, store: ResultsStore) -> dict[str, Any]:
        """Statistics against clean per region and the attack-order self-check, from every stored row."""
        rows = audit_rows(store.rows())
        stats = compare_conditions(rows, baseline="clean", alternative="greater")
        for eps in self.eps:
            dice = {
                spec.label: [r["dice"] for r in rows if r["attack"] == spec.label and r["eps"] == eps]
                for spec in self.specs
            }
            if len(dice.get("fgsm", [])) == len(dice.get("ifgsm", [])) > 0:
                check = check_attack_order("fgsm", dice["fgsm"], "ifgsm", dice["ifgsm"])
                self.checks.append(
                    SelfCheck(check.name, check.passed, f"eps {eps:g}: {check.detail}", check.explanation)
                )
        return {"rows": rows, "statistics": stats, "checks": self.checks, "examples": self.examples}


def run_attack_audit(
    sweep: AttackSweep,
    tracking_dir: str | Path,
    experiment_name: str = "robustseg",
    tracking_uri: str | None = None,
    run_name: str = "attack",
) -> Path:
    """Run ``sweep`` inside one MLflow run, write its report, print the headline table; returns the report path.

    The tracking store is checked before any compute. The run holds the sweep's settings as params, the mean Dice per
    region and condition as metrics, and the whole output folder (results, statistics, report, example NIfTI) as
    artifacts; it ends FINISHED, or FAILED with the error as a tag.
    """
    with recorded_run(tracking_dir, experiment_name, run_name, tracking_uri) as run:
        outcome = sweep.run()
        settings = sweep.settings()
        report = write_html_report(
            sweep.output_dir / "report",
            outcome["rows"],
            outcome["statistics"],
            outcome["checks"],
            outcome["examples"],
            settings,
        )
        print(headline_table(outcome["rows"], outcome["statistics"]))
        print(f"attack report: {report}")
        run.log_params(settings)
        means: dict[str, list[float]] = {}
        for r in outcome["rows"]:
            means.setdefault(f"dice_{r['region']}_{r['condition']}".replace("@", "_eps"), []).append(r["dice"])
        run.log_metrics({k: float(np.nanmean(v)) for k, v in means.items()}, step=0)
        run.set_tags({f"selfcheck.{c.name}": "pass" if c.passed else "WARN" for c in outcome["checks"]})
        run.log_artifact(sweep.output_dir, "attack")
    return report
