"""Runners that bundle configs call: checkpoint checks, the attack audit and the certification run."""

from __future__ import annotations

from robustseg.checkpoints import check_checkpoint
from robustseg.workflows.attack_sweep import AttackSpec, AttackSweep, run_attack_audit
from robustseg.workflows.certify import CertificationRun, run_certification
from robustseg.workflows.defended_training import DefendedIteration, claim_defence_dir, load_initial_weights

__all__ = [
    "AttackSpec",
    "AttackSweep",
    "CertificationRun",
    "DefendedIteration",
    "check_checkpoint",
    "claim_defence_dir",
    "load_initial_weights",
    "run_attack_audit",
    "run_certification",
]
