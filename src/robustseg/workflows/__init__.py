"""Runners that bundle configs call: checkpoint checks, the attack audit and the certification run."""

from __future__ import annotations

from robustseg.checkpoints import check_checkpoint
from robustseg.workflows.attack_sweep import AttackSpec, AttackSweep, run_attack_audit
from robustseg.workflows.certify import CertificationRun, run_certification

__all__ = ["AttackSpec", "AttackSweep", "CertificationRun", "check_checkpoint", "run_attack_audit", "run_certification"]
