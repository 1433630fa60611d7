"""Runners that bundle configs call: checkpoint checks and the attack audit."""

from __future__ import annotations

from robustseg.workflows.attack_sweep import AttackSpec, AttackSweep, run_attack_audit
from robustseg.workflows.checkpoints import check_checkpoint

__all__ = ["AttackSpec", "AttackSweep", "check_checkpoint", "run_attack_audit"]
