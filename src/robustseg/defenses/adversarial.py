"""Adversarial training: each batch's adversarial examples made by robustseg's attacks, then one training step.

:class:`AdversarialTraining` is one training objective for four recipes:

* ``pgd``: PGD-k with a random start (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083), the model trained
  on the adversarial examples alone (``ratio`` 1);
* ``fast``: "fast" FGSM from a uniform random start with step ``1.25 * eps`` (Wong, Rice and Kolter, ICLR 2020,
  https://arxiv.org/abs/2001.03994), adversarial examples alone;
* ``fgsm`` and ``ifgsm``: the seed's adversarial training by data augmentation (Liu et al., seed 002): FGSM or
  i-FGSM examples from the clean input replace a share ``ratio`` of each batch (default half);
* any of them with ``trades_beta > 0``: the TRADES-style objective (Zhang et al., ICML 2019,
  https://arxiv.org/abs/1901.08573), the training loss on the clean batch plus ``beta`` times the KL divergence from
  the clean to the adversarial softmax.

The attack runs on the unwrapped network (under DDP no gradient is all-reduced during it), in eval mode with frozen
parameters (:meth:`robustseg.attacks.Attack.attack_mode`), through the training inferer, in the threat model's units
and bounds. Its random starts come from a generator seeded by ``(seed, rank, iteration)``: fresh at every iteration
and on every rank, and the same after a resume, which restores the iteration count. Free of engines and trackers:
:class:`robustseg.workflows.DefendedIteration` calls it from an Ignite trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustseg.attacks import FGSM, Attack, IterativeFGSM, ThreatModel
from robustseg.attacks.base import _plain
from robustseg.checkpoints import unwrap
from robustseg.conditions.base import derive_seed
from robustseg.labels import BRATS, LabelScheme

__all__ = ["METHODS", "AdversarialTraining", "Inferer", "trades_kl"]

METHODS: tuple[str, ...] = ("pgd", "fast", "fgsm", "ifgsm")
"""Adversarial-training recipes (see the module docstring)."""

_DEFAULT_RATIO = {"pgd": 1.0, "fast": 1.0, "fgsm": 0.5, "ifgsm": 0.5}
_DEFAULT_STEPS = {"pgd": 5, "ifgsm": 5}

Inferer = Callable[[torch.Tensor, nn.Module], Any]
"""``inferer(inputs, network) -> logits``: the trainer's inferer (MONAI ``SimpleInferer`` on patches)."""


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, list | tuple) else out


def trades_kl(
    clean_logits: torch.Tensor, adversarial_logits: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over voxels of ``KL(softmax(clean) || softmax(adversarial))``, the TRADES robustness term.

    Args:
        clean_logits, adversarial_logits: ``(N, K, *spatial)``.
        valid: optional ``(N, *spatial)`` mask of the voxels to average over (not the ignore index); none: all.

    Returns:
        A scalar, 0 when the two outputs agree; gradients flow into both.
    """
    if clean_logits.shape != adversarial_logits.shape:
        raise ValueError(
            f"clean and adversarial logits must have one shape but are {tuple(clean_logits.shape)} and "
            f"{tuple(adversarial_logits.shape)}."
        )
    log_p = F.log_softmax(_plain(clean_logits).float(), dim=1)
    log_q = F.log_softmax(_plain(adversarial_logits).float(), dim=1)
    per_voxel = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    if valid is None:
        return per_voxel.mean()
    weights = valid.to(per_voxel.dtype)
    return (per_voxel * weights).sum() / weights.sum().clamp_min(1.0)


class AdversarialTraining:
    """The training objective of adversarial training: adversarial examples of the batch, then the loss on them.

    Args:
        method: one of :data:`METHODS`.
        eps: the budget, > 0, in ``unit`` (the threat model the model is audited under).
        steps: gradient steps of ``pgd`` and ``ifgsm`` (k, >= 1; default 5); ``fgsm`` and ``fast`` take one.
        step_size: step of ``pgd`` and ``ifgsm`` (default ``2.5 * eps / steps``) and ``fast`` (default
            ``1.25 * eps``); ``fgsm`` steps ``eps``.
        ratio: share of each batch replaced by adversarial examples, in [0, 1]; default 1 for ``pgd`` and ``fast``,
            0.5 for ``fgsm`` and ``ifgsm``. A batch of ``n`` gets ``floor(ratio * n + u)`` of them (``u`` uniform),
            chosen at random: ``ratio * n`` on average.
        trades_beta: weight of the TRADES term (>= 0; 0: off). With it every case is attacked and the loss is
            ``loss(clean) + beta * KL(clean || adversarial)``.
        norm, unit, clip_min, clip_max, mask: the threat model (:class:`robustseg.attacks.ThreatModel`).
        head, scheme: the model's head and label scheme (the attack's loss and ignored voxels).
        loss: the attack's per-voxel loss (default ``ce`` for softmax, ``bce`` for sigmoid heads).
        seed: the seed of the random starts and of the choice of cases.
    """

    def __init__(
        self,
        method: str = "pgd",
        eps: float = 0.1,
        steps: int | None = None,
        step_size: float | None = None,
        ratio: float | None = None,
        trades_beta: float = 0.0,
        norm: str = "linf",
        unit: str = "std of z-scored input",
        clip_min: Any = None,
        clip_max: Any = None,
        mask: Any = "nonzero",
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        loss: str | None = None,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"adversarial training method must be one of {list(METHODS)} but is {method!r}.")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"adversarial training eps must be a finite number > 0 (in {unit}) but is {eps!r}.")
        if method in ("fgsm", "fast") and steps not in (None, 1):
            raise ValueError(f"method {method!r} takes one step; steps={steps!r} is for 'pgd' and 'ifgsm'.")
        steps = _DEFAULT_STEPS.get(method, 1) if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"adversarial training steps (k) must be an integer >= 1 but is {steps!r}.")
        if step_size is not None and not (isinstance(step_size, int | float) and step_size > 0):
            raise ValueError(f"adversarial training step_size must be > 0 but is {step_size!r}.")
        if method == "fgsm" and step_size is not None:
            raise ValueError("method 'fgsm' steps eps; step_size is for 'pgd', 'ifgsm' and 'fast'.")
        ratio = _DEFAULT_RATIO[method] if ratio is None else ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= ratio <= 1.0:
            raise ValueError(
                f"adversarial training ratio (share of adversarial examples) must be in [0, 1] but is {ratio!r}."
            )
        if not (isinstance(trades_beta, int | float) and math.isfinite(trades_beta) and trades_beta >= 0):
            raise ValueError(f"trades_beta must be a finite number >= 0 (0: off) but is {trades_beta!r}.")
        scheme.check_head(head)
        self.method = method
        self.threat = ThreatModel(norm, float(eps), unit=unit, clip_min=clip_min, clip_max=clip_max, mask=mask)
        self.steps = int(steps)
        self.step_size = None if step_size is None else float(step_size)
        self.ratio = float(ratio)
        self.trades_beta = float(trades_beta)
        self.head = head
        self.scheme = scheme
        self.loss = loss
        self.seed = int(seed)
        self._attacks: dict[int, Attack] = {}
        self.last_adversarial_share = 0.0
        """The share of the last batch that was adversarial (for logging)."""

    def settings(self) -> dict[str, Any]:
        """Everything that decides the training, for MLflow params and the checkpoint folder's record."""
        return {
            "defence": "adversarial_training",
            "method": self.method,
            "norm": self.threat.norm,
            "eps": self.threat.eps,
            "unit": self.threat.unit,
            "steps": self.steps,
            "step_size": self._step_size(),
            "random_start": self.method in ("pgd", "fast"),
            "ratio": self.ratio,
            "trades_beta": self.trades_beta,
            "loss": self.loss or ("ce" if self.head == "softmax" else "bce"),
            "seed": self.seed,
        }

    def _step_size(self) -> float:
        if self.step_size is not None:
            return self.step_size
        eps = self.threat.eps
        return {"fgsm": eps, "fast": 1.25 * eps}.get(self.method, 2.5 * eps / self.steps)

    def attack_for(self, network: nn.Module, inferer: Inferer | None = None) -> Attack:
        """The attack of this recipe on ``network`` (unwrapped from DDP), built once per network."""
        module = unwrap(network)
        key = id(module)
        if key not in self._attacks:
            common: dict[str, Any] = {"inferer": inferer, "head": self.head, "scheme": self.scheme}
            if self.loss:
                common["loss"] = self.loss
            if self.method == "fgsm":
                attack: Attack = FGSM(module, self.threat, **common)
            else:
                attack = IterativeFGSM(
                    module,
                    self.threat,
                    steps=self.steps,
                    step_size=self._step_size(),
                    random_start=self.method in ("pgd", "fast"),
                    **common,
                )
            attack.score_final = False  # training needs the input, not its score (one forward fewer)
            self._attacks = {key: attack}
        return self._attacks[key]

    def generator(self, iteration: int, rank: int = 0) -> torch.Generator:
        """The generator of one iteration on one rank: fresh draws every iteration, the same after a resume."""
        return torch.Generator().manual_seed(derive_seed(self.seed, f"adversarial training|{rank}|{iteration}"))

    def chosen(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Indices of the cases of a batch of ``n`` to replace: ``floor(ratio * n + u)`` of them, at random."""
        if self.trades_beta > 0 or self.ratio >= 1.0:
            return torch.arange(n)
        u = float(torch.rand((), generator=generator))
        k = min(n, math.floor(self.ratio * n + u))
        return torch.randperm(n, generator=generator)[:k].sort().values

    def examples(
        self,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        inferer: Inferer | None = None,
        iteration: int = 0,
        rank: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch with its chosen cases replaced by adversarial examples, and the chosen indices.

        Args:
            network: the model being trained (DDP-wrapped or not); the attack runs on its module.
            images: the batch ``(N, C, *spatial)`` in the model's input space.
            labels: class maps ``(N, 1, *spatial)``.
            inferer: the trainer's inferer (default ``network(x)``).
            iteration, rank: where in training this is (they seed the random starts).
        """
        generator = self.generator(iteration, rank)
        index = self.chosen(int(images.shape[0]), generator)
        out = images.detach().clone()
        if index.numel() == 0:
            self.last_adversarial_share = 0.0
            return out, index
        attack = self.attack_for(network, inferer)
        attack.set_random_state(int(torch.randint(0, 2**62, (), generator=generator)))
        where = index.to(images.device)
        result = attack(_plain(images)[where], _plain(labels)[where])
        out[where] = result.adversarial.to(out.dtype)
        self.last_adversarial_share = index.numel() / images.shape[0]
        return out, index

    def __call__(
        self,
        network: nn.Module,
        inferer: Inferer,
        loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        iteration: int = 0,
        rank: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch's training loss and the predictions it was computed from.

        Without TRADES: the loss of the batch with its chosen cases adversarial. With TRADES: one forward of the
        clean and adversarial batches together (one gradient all-reduce under DDP) and
        ``loss(clean) + beta * KL(clean || adversarial)``; the predictions returned are the clean ones.
        """
        mixed, _ = self.examples(network, images, labels, inferer=inferer, iteration=iteration, rank=rank)
        if self.trades_beta == 0:
            pred = _logits(inferer(mixed, network))
            return loss_function(pred, labels).mean(), pred
        n = images.shape[0]
        both = _logits(inferer(torch.cat([_plain(images), _plain(mixed)]), network))
        clean, adversarial = both[:n], both[n:]
        valid = self.scheme.valid_mask(_plain(labels)[:, 0].long()) if self.scheme.ignore_index is not None else None
        loss = loss_function(clean, labels).mean() + self.trades_beta * trades_kl(clean, adversarial, valid)
        return loss, clean
