"""``robustseg audit``: one command that audits any MONAI bundle through the workflow overlays.

:func:`plan_audit` maps the bundle onto the contract (:class:`~robustseg.workflows.bundle.BundleAdapter`), stops
with one message when ids are missing, and writes two files next to the outputs: ``bundle_overlay.json`` (the ids
the bundle lacked, mapped or defaulted; it goes before the workflow overlay) and ``audit_settings.json`` (the
command's choices: attacks, budgets, cases...; it goes after). With them, the audit is a plain bundle run, and
:attr:`AuditPlan.commands` are the ``python -m monai.bundle run`` lines that repeat it. :func:`run_audit` runs the
plan in this process, the attack audit first, then certification when asked.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustseg.contract import CONTRACT
from robustseg.errors import creating
from robustseg.workflows.bundle import BundleAdapter, BundleContractError, Provided

__all__ = ["OVERLAYS_DIR", "AuditPlan", "plan_audit", "run_audit"]

logger = logging.getLogger(__name__)

OVERLAYS_DIR = Path(__file__).resolve().parents[3] / "configs"
"""The workflow overlays (``configs/`` of the robustseg checkout)."""


def _needed(workflows: Sequence[str]) -> list[str]:
    """Contract ids the workflow overlays read, in contract order."""
    return [c.id for c in CONTRACT if any(w in " ".join(c.used_by) for w in workflows) and c.id != "network_def"]


@dataclass
class AuditPlan:
    """What ``robustseg audit`` runs: per workflow, the config files and the bundle-run arguments."""

    bundle_dir: Path
    output_dir: Path
    runs: list[tuple[str, list[str], dict[str, Any]]] = field(default_factory=list)
    provided: list[Provided] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        """The equivalent ``python -m monai.bundle run`` command of each workflow."""
        out = []
        for _, files, args in self.runs:
            listed = "[" + ",".join(f"'{f}'" for f in files) + "]"
            parts = ["python -m monai.bundle run", f'--config_file "{listed}"']
            parts += [f"--{key} {shlex.quote(str(value))}" for key, value in args.items()]
            out.append(" ".join(parts))
        return out

    def describe(self) -> str:
        lines = [f"bundle {self.bundle_dir}: contract ids"]
        for p in self.provided:
            if p.how != "bundle":
                shown = json.dumps(p.value) if not isinstance(p.value, str) else p.value
                lines.append(f"  {p.id:<24} {p.how:<9} {shown}" + (f"  ({p.note})" if p.note else ""))
        defined = [p.id for p in self.provided if p.how == "bundle"]
        lines.append(f"  defined by the bundle: {', '.join(defined) or 'none'}")
        return "\n".join(lines)


def _missing_message(bundle_dir: Path, base: Path, missing: Sequence[Provided]) -> str:
    by_id = {c.id: c for c in CONTRACT}
    lines = [
        f"the bundle {bundle_dir} lacks {len(missing)} config id(s) the audit needs, and robustseg cannot infer "
        f"them. Add these lines to {base} (or to an overlay passed with --config_file), then run again:"
    ]
    for p in missing:
        lines.append(f"  {p.id}: {by_id[p.id].meaning}")
        lines.append(f"    {p.note or by_id[p.id].example}")
    lines.append("Every id is described in docs/contract.md.")
    return "\n".join(lines)


def plan_audit(
    bundle_dir: str | Path,
    *,
    dataset_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    attacks: Sequence[str | Mapping[str, Any]] | None = None,
    eps: Sequence[float] | None = None,
    norm: str | None = None,
    certify: bool = False,
    corruptions: bool = False,
    max_cases: int | None = None,
    datalist: str | Path | None = None,
    split: str = "testing",
    head: str | None = None,
    fresh: bool = False,
    transfer_from: str | Path | None = None,
    config_files: Sequence[str | Path] = (),
    settings: Mapping[str, Any] | None = None,
) -> AuditPlan:
    """Map the bundle, check the contract and write the overlays; nothing is computed.

    Args:
        bundle_dir: the bundle's folder.
        dataset_dir: where the data lives (sets ``dataset_dir`` and a zoo bundle's ``data_file_base_dir``).
        output_dir: where the audit writes (default: the bundle's ``output_dir``, else ``<bundle>/eval``);
            the attack audit goes to ``<output_dir>/attack``, certification to ``<output_dir>/certify``, the
            corruption benchmark to ``<output_dir>/corruptions``.
        checkpoint: the weights (default: the bundle's ``checkpoint``, else ``models/model.pt``).
        attacks, eps, norm: the sweep (default: ``configs/attack.json``'s).
        certify: also certify by randomized smoothing (``configs/certify.json``).
        corruptions: also score the corruption benchmark (``configs/corruptions.json``: the bundle's
            ``corruption_benchmark``: BraTS-C for MRI and by default, natural-C for RGB images).
        max_cases: score at most this many cases.
        datalist, split: cases from this datalist's split instead of the bundle's test data.
        head: ``softmax`` or ``sigmoid`` when the bundle's post-processing does not say.
        fresh: discard the results an earlier audit left in the output folder.
        transfer_from: a checkpoint of a second model of the same network: every attack is also transferred from it.
        config_files: profiles (``configs/cpu_demo.json``): read with the bundle's config to map it, and merged after
            the workflow overlay, so their settings of the workflow (``attack_eps``...) win over its defaults.
        settings: further config values for the workflows (``{"attack_examples": 0}``).

    Raises:
        BundleContractError: the bundle is not readable, or lacks ids that cannot be inferred (all listed).
    """
    bundle = Path(bundle_dir).resolve()
    overrides: dict[str, Any] = {}
    if dataset_dir is not None:
        overrides["dataset_dir"] = str(Path(dataset_dir).resolve())
    if checkpoint is not None:
        overrides["checkpoint"] = str(Path(checkpoint).resolve())
    if head is not None:
        overrides["head"] = head
    if datalist is not None:
        overrides["datalist"] = str(Path(datalist).resolve())
        overrides["test_data"] = f"$robustseg.data.datalist.load_datalist(@datalist, {split!r}, @dataset_dir)"
    if output_dir is not None:
        overrides["output_dir"] = str(Path(output_dir).resolve())
    extras = [Path(f).resolve() for f in config_files]
    adapter = BundleAdapter(bundle, extras, overrides)
    if dataset_dir is not None and adapter.has("data_file_base_dir"):
        adapter.parser["data_file_base_dir"] = overrides["dataset_dir"]
        overrides["data_file_base_dir"] = overrides["dataset_dir"]
    workflows = ["attack.json", *(["certify.json"] if certify else []), *(["corruptions.json"] if corruptions else [])]
    overlay, provided = adapter.contract_overlay(_needed(workflows))
    if transfer_from is not None and not adapter.has("network_def"):
        provided.append(Provided("network_def", "missing"))
    missing = [p for p in provided if p.how == "missing"]
    if missing:
        raise BundleContractError(_missing_message(bundle, adapter.base_config, missing))
    for key, value in overlay.items():
        adapter.parser[key] = value
    checkpoint_path = adapter.evaluate("checkpoint")
    if isinstance(checkpoint_path, str) and not Path(checkpoint_path).is_file():
        raise BundleContractError(
            f"the checkpoint {checkpoint_path} does not exist; pass --checkpoint PATH (the trained model.pt of this "
            "bundle), or train the bundle first."
        )
    out_value = adapter.evaluate("output_dir")
    out = Path(str(out_value if out_value else bundle / "eval")).resolve()
    chosen: dict[str, Any] = {k: v for k, v in overrides.items() if k not in overlay}
    chosen["attack_output_dir"] = str(out / "attack")
    if attacks is not None:
        chosen["attacks"] = list(attacks)
    if eps is not None:
        chosen["attack_eps"] = [float(e) for e in eps]
    if norm is not None:
        chosen["attack_norm"] = norm
    if max_cases is not None:
        chosen["attack_max_cases"] = chosen["certify_max_cases"] = chosen["corruption_max_cases"] = int(max_cases)
    if fresh:
        chosen["attack_fresh"] = chosen["certify_fresh"] = chosen["corruption_fresh"] = True
    if transfer_from is not None:
        chosen["attack_transfer_checkpoint"] = str(Path(transfer_from).resolve())
        chosen["attack_transfer_network"] = "%network_def"
    if certify:
        chosen["certify_output_dir"] = str(out / "certify")
    if corruptions:
        chosen["corruption_output_dir"] = str(out / "corruptions")
    chosen.update(settings or {})

    for name in ("bundle_overlay.json", "audit_settings.json", "audit_command.sh"):
        creating(out / name)  # removed again if the audit then fails on bad input
    out.mkdir(parents=True, exist_ok=True)
    overlay_path, settings_path = out / "bundle_overlay.json", out / "audit_settings.json"
    _write(overlay_path, json.dumps(overlay, indent=4) + "\n")
    _write(settings_path, json.dumps(chosen, indent=4) + "\n")
    base = [str(adapter.base_config), str(overlay_path)]
    args: dict[str, Any] = {}
    for name, flag in (("metadata.json", "meta_file"), ("logging.conf", "logging_file")):
        if (bundle / "configs" / name).is_file():
            args[flag] = str(bundle / "configs" / name)
    plan = AuditPlan(bundle, out, provided=provided)
    for workflow in workflows:
        # profiles after the workflow overlay, so that their attack_* / certify_* settings win over its defaults
        files = [*base, str(OVERLAYS_DIR / workflow), *(str(p) for p in extras), str(settings_path)]
        plan.runs.append((workflow, files, dict(args)))
    (out / "audit_command.sh").write_text(
        "#!/usr/bin/env bash\n# robustseg audit, as plain bundle runs\n" + "\n".join(plan.commands) + "\n"
    )
    return plan


def _write(path: Path, text: str) -> None:
    """Write atomically: under torchrun every rank writes the same file, and none may read a torn one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


class _Once(logging.Filter):
    """Let a known, harmless log message through once (MONAI repeats some for every config file)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.prefix):
            return True
        shown, self.seen = self.seen, True
        return not shown


def run_audit(plan: AuditPlan) -> None:
    """Run each workflow of ``plan`` as ``python -m monai.bundle run`` does, in this process."""
    from monai.bundle import run

    from robustseg.workflows import distributed

    # the overlays live outside the bundle's configs/ and meta_file / logging_file are given: MONAI's warning about
    # that, logged once per overlay and workflow, is shown once
    once = _Once("Not all config files are in")
    monai_logger = logging.getLogger("monai.bundle.workflows")
    monai_logger.addFilter(once)
    try:
        with distributed.held_group(), warnings.catch_warnings():  # under torchrun: one process group for all
            for number, (workflow, files, args) in enumerate(plan.runs):
                if distributed.is_rank0():
                    print(f"[robustseg audit] {workflow}: {plan.output_dir}", file=sys.stderr)
                if number:  # MONAI's notice on trusting configs was shown for the first workflow: once is enough
                    warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
                run(config_file=files, **args)
    finally:
        monai_logger.removeFilter(once)
