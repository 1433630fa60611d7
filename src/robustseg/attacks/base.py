"""The base class of every attack: the shared chores, so each attack file holds only its algorithm.

:class:`Attack` runs the model through the bundle's inferer (a sliding-window pipeline is attacked end to end on the
full volume), keeps the model in eval mode during the attack and restores it afterwards, takes gradients with
:func:`torch.autograd.grad` w.r.t. the input only, draws randomness from a generator seeded per call, audits the model
(probabilities instead of logits, zero or non-finite input gradients, with the checks of
:mod:`robustseg.evaluation.selfchecks`) and packs an :class:`AttackResult`.

Work that several attacks of a sweep share is not done twice: the objective, its input gradient and the logits at
the clean input (:class:`InitialGradient`) are what FGSM at every budget and the first step of i-FGSM without a
random start begin with, so a caller may pass the one computed by an earlier attack with the same
:attr:`Attack.share_key`; and the result carries the logits at the adversarial input, so scoring it needs no forward.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustseg.attacks.losses import get_loss
from robustseg.attacks.scores import agreement_per_case, dice_per_case
from robustseg.attacks.threat import ThreatModel, per_sample_norm, psnr_db
from robustseg.evaluation.selfchecks import check_gradients, check_logits
from robustseg.labels import BRATS, LabelScheme

__all__ = ["Attack", "AttackResult", "Inferer", "InitialGradient"]

Inferer = Callable[[torch.Tensor, nn.Module], Any]
"""``inferer(inputs, network) -> logits``, like MONAI's ``SimpleInferer`` and ``SlidingWindowInferer``."""


@dataclass
class AttackResult:
    """What an attack returns, per case.

    Attributes:
        adversarial: attacked input ``(N, C, *spatial)``, a copy of the clean input (a ``MetaTensor`` keeps its
            affine and metadata) holding the new values.
        perturbation: ``adversarial - clean``, ``(N, C, *spatial)``.
        linf: largest absolute change per case ``(N,)``, in the threat model's unit.
        l2: Euclidean norm of the change per case ``(N,)`` over all channels and voxels.
        psnr_db: PSNR of adversarial vs clean per case ``(N,)`` over the masked voxels, the peak being the clean
            masked intensity range (max - min over channels and masked voxels); ``inf`` when nothing changed.
        loss_history: attack objective per step and case ``(steps + 1, N)``: row ``t`` at the iterate before step
            ``t``, the last row at the returned input. Untargeted the objective is the loss w.r.t. the labels (the
            attack raises it); targeted, the loss w.r.t. the target (the attack lowers it). With restarts, the
            history of the restart kept for that case.
        targeted: whether the attack aimed at a target map.
        logits: model output at ``adversarial`` ``(N, K, *spatial)``, detached (from the attack's last forward).
        initial: the objective, gradient and logits at the clean input, when the attack computed or used them
            (shareable with the next attack of the same :attr:`Attack.share_key`); ``None`` after a random start.
    """

    adversarial: torch.Tensor
    perturbation: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    psnr_db: torch.Tensor
    loss_history: torch.Tensor
    targeted: bool = False
    logits: torch.Tensor | None = None
    initial: InitialGradient | None = None


@dataclass(frozen=True)
class InitialGradient:
    """Objective ``(N,)``, its input gradient ``(N, C, *spatial)`` and the logits at the clean input, detached.

    The same for every attack with one :attr:`Attack.share_key` (loss and target) on one input, whatever its budget
    or number of steps: the objective at step 0 depends on neither.
    """

    loss: torch.Tensor
    gradient: torch.Tensor
    logits: torch.Tensor


def _plain(t: torch.Tensor) -> torch.Tensor:
    """The tensor without a subclass such as MONAI's ``MetaTensor`` (no copy)."""
    return t.as_subclass(torch.Tensor) if type(t) is not torch.Tensor else t


class Attack:
    """Base class: an attack on a segmentation model within a :class:`ThreatModel`.

    Subclasses implement :meth:`perturb`; calling the attack does the rest.

    Args:
        model: network returning logits ``(N, K, *spatial)`` (softmax: one channel per class; sigmoid: one per
            region of ``scheme.sigmoid_regions``).
        threat: norm, budget ``eps`` (in ``threat.unit``), clip bounds and perturbation mask.
        inferer: ``inferer(inputs, network) -> logits`` (e.g. MONAI ``SlidingWindowInferer``); the attack
            differentiates through it, so a sliding-window pipeline is attacked end to end on the full input.
            Default: ``model(inputs)``.
        head: ``"softmax"`` or ``"sigmoid"`` (multi-label region channels).
        scheme: the label scheme (classes, regions, ``ignore_index``, sigmoid regions). Default: BraTS.
        loss: name of a per-voxel loss in :data:`robustseg.attacks.losses.LOSSES` (``"ce"``, ``"bce"``, ``"dice"``,
            ``"segpgd"``, ``"cospgd"``, ``"margin"``); default ``"ce"`` for softmax and ``"bce"`` for sigmoid heads.
        seed: seed of the ``torch.Generator`` drawn fresh on each call: the same seed gives the same adversarial input.
        temperature: the loss is taken on ``logits / temperature`` (a distilled model's T: its softmax no longer
            saturates); the predictions and the logits returned are the model's own.

    Shapes:
        images ``(N, C, *spatial)`` with 2 or 3 spatial dims; labels and targets are class maps ``(N, 1, *spatial)`` or
        ``(N, *spatial)``.
    """

    name: str = "attack"
    """Short name for reports."""

    def __init__(
        self,
        model: nn.Module,
        threat: ThreatModel,
        *,
        inferer: Inferer | None = None,
        head: str = "softmax",
        scheme: LabelScheme = BRATS,
        loss: str | None = None,
        seed: int = 0,
        temperature: float = 1.0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module but is {type(model).__name__}.")
        if not isinstance(threat, ThreatModel):
            raise ValueError(f"threat must be a ThreatModel but is {type(threat).__name__}.")
        if inferer is not None and not callable(inferer):
            raise ValueError(f"inferer must be callable as inferer(inputs, network) but is {type(inferer).__name__}.")
        scheme.check_head(head)
        loss = loss if loss is not None else ("ce" if head == "softmax" else "bce")
        if (head, loss) in {("sigmoid", "ce"), ("softmax", "bce")}:
            raise ValueError(f"loss {loss!r} does not fit a {head} head; use {'bce' if loss == 'ce' else 'ce'!r}.")
        self.model = model
        self.threat = threat
        self.inferer = inferer
        self.head = head
        self.scheme = scheme
        self.loss = loss
        self.loss_fn = get_loss(loss)
        self.seed = int(seed)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0 but is {temperature!r}.")
        self.temperature = float(temperature)
        self.score_final = True
        """Evaluate the final adversarial input (loss and success, one more forward). Adversarial training turns it
        off: it trains on the input and needs neither; the last loss of ``loss_history`` then repeats the last step's
        (a single run only: restarts compare the scores)."""
        self._warned: set[str] = set()
        self._logits_checked = False
        self._initial: InitialGradient | None = None
        self._computed_initial: InitialGradient | None = None
        self._final_logits: torch.Tensor | None = None

    def set_random_state(self, seed: int) -> Attack:
        """Use ``seed`` from the next call on; returns ``self``."""
        self.seed = int(seed)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threat.describe()}, loss={self.loss!r}, head={self.head!r})"

    @property
    def share_key(self) -> tuple[str, str | None]:
        """Attacks with one key start from the same :class:`InitialGradient` on one input: (loss, target name)."""
        return (self.loss_key, None)

    @property
    def loss_key(self) -> str:
        """The loss's name, with the temperature when it is not 1 (``ce@T=20``)."""
        return self.loss if self.temperature == 1.0 else f"{self.loss}@T={self.temperature:g}"

    # ------------------------------------------------------------------ the call

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        initial: InitialGradient | None = None,
    ) -> AttackResult:
        """Attack ``images`` with ground truth ``labels``; towards ``target`` when one is given.

        Args:
            images: clean input ``(N, C, *spatial)`` in the model's input space.
            labels: ground-truth class map ``(N, 1, *spatial)`` or ``(N, *spatial)``.
            target: optional class map of the same shape; the attack then lowers the loss towards it.
            initial: the :class:`InitialGradient` of an earlier attack with the same :attr:`share_key` on the same
                input (``AttackResult.initial``); used instead of computing it again. The result is the same.

        Returns:
            An :class:`AttackResult`.
        """
        x = self._check_images(images)
        y = self._check_labels(labels, x, "labels")
        tgt = None if target is None else self._check_labels(target, x, "target")
        self._warned, self._logits_checked = set(), False
        self._initial, self._computed_initial, self._final_logits = initial, None, None
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        with self.attack_mode(), torch.enable_grad():
            delta, history = self.perturb(x, y, tgt, generator)
        delta = self.threat.project(delta.detach(), x)
        adversarial = images.detach().clone()
        adversarial.copy_(x + delta)
        perturbation = adversarial - images.detach()
        change = _plain(perturbation).detach()
        result = AttackResult(
            adversarial=adversarial,
            perturbation=perturbation,
            linf=per_sample_norm(change, "linf"),
            l2=per_sample_norm(change, "l2"),
            psnr_db=psnr_db(x, change, self.threat.mask_for(x)),
            loss_history=history.detach(),
            targeted=tgt is not None,
            logits=self._final_logits,
            initial=self._computed_initial or self._initial,
        )
        self._initial, self._computed_initial, self._final_logits = None, None, None
        return result

    def perturb(
        self, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The algorithm: a perturbation of ``x`` allowed by the threat model and the loss history ``(steps + 1, N)``.

        Called in eval mode with gradients enabled; ``labels`` and ``target`` are class maps ``(N, 1, *spatial)``.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ shared chores

    @contextmanager
    def attack_mode(self) -> Iterator[None]:
        """Eval mode and frozen parameters for the attack; every module's mode and ``requires_grad`` restored after."""
        modes = [(m, m.training) for m in self.model.modules()]
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        try:
            self.model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            yield
        finally:
            for m, training in modes:
                m.training = training
            for p, flag in flags:
                p.requires_grad_(flag)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K, *spatial)`` of ``x`` through the inferer, as deployed."""
        out = self.inferer(x, self.model) if self.inferer is not None else self.model(x)
        if isinstance(out, list | tuple):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the model (through the inferer) must return a tensor of logits but gave {type(out)}.")
        out = _plain(out)
        if not self._logits_checked and out.numel():
            self._logits_checked = True
            self._check_logits(out.detach())
        return out

    def objective(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        step: int,
        total_steps: int,
    ) -> torch.Tensor:
        """Per-case objective ``(N,)``: the mean loss map w.r.t. ``target`` if given, else w.r.t. ``labels``."""
        reference = labels if target is None else target
        if self.temperature != 1.0:
            logits = logits / self.temperature
        loss_map = self.loss_fn(
            logits,
            reference,
            head=self.head,
            scheme=self.scheme,
            step=step,
            total_steps=total_steps,
            targeted=target is not None,
        )
        return loss_map.reshape(loss_map.shape[0], -1).mean(dim=1)

    def loss_and_gradient(
        self,
        x: torch.Tensor,
        delta: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        step: int = 0,
        total_steps: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective ``(N,)`` at ``x + delta`` and its gradient w.r.t. the input (the model's ``.grad`` untouched)."""
        adv = (x + delta).detach().requires_grad_(True)
        loss = self.objective(self.forward(adv), labels, target, step, total_steps)
        (grad,) = torch.autograd.grad(loss.sum(), adv)
        return loss.detach(), self._check_gradient(grad, x, step)

    def initial_loss_and_gradient(
        self, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, total_steps: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective and gradient at the clean input at step 0: the shared :class:`InitialGradient` when one was
        passed to the call, else computed (and offered to the next attack through ``AttackResult.initial``)."""
        if self._initial is not None:
            if self._initial.gradient.shape != x.shape:
                raise ValueError(
                    f"the shared initial gradient has shape {tuple(self._initial.gradient.shape)} but the input "
                    f"{tuple(x.shape)}; share it only between attacks on the same input."
                )
            return self._initial.loss, self._initial.gradient
        adv = x.detach().requires_grad_(True)
        logits = self.forward(adv)
        loss = self.objective(logits, labels, target, 0, total_steps)
        (grad,) = torch.autograd.grad(loss.sum(), adv)
        grad = self._check_gradient(grad, x, 0)
        self._computed_initial = InitialGradient(loss.detach(), grad, logits.detach())
        return loss.detach(), grad

    def ascent(self, grad: torch.Tensor, x: torch.Tensor, targeted: bool) -> torch.Tensor:
        """Unit step of the norm that raises the objective (lowers it when ``targeted``), masked."""
        return self.threat.step(-grad if targeted else grad, self.threat.mask_for(x))

    @torch.no_grad()
    def evaluate(
        self,
        x: torch.Tensor,
        delta: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        total_steps: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective ``(N,)`` at ``x + delta`` and the attack's success per case ``(N,)``, higher = stronger.

        Success is ``1 - Dice`` (mean over the scheme's regions) untargeted, and the fraction of voxels predicted as
        the target when targeted.
        """
        logits = self.forward(x + delta)
        self._final_logits = logits.detach()
        loss = self.objective(logits, labels, target, total_steps, total_steps)
        if target is None:
            regions = self.scheme.regions_from_logits(logits, head=self.head)
            return loss, 1 - dice_per_case(regions, labels, self.scheme)
        prediction = self.scheme.class_map_from_logits(logits, head=self.head)
        return loss, agreement_per_case(prediction, target, self.scheme)

    def gradient(self, images: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Gradient ``(N, C, *spatial)`` of the attack objective w.r.t. the clean input, for audits and tests."""
        x = self._check_images(images)
        y = self._check_labels(labels, x, "labels")
        tgt = None if target is None else self._check_labels(target, x, "target")
        self._warned, self._logits_checked = set(), False
        with self.attack_mode(), torch.enable_grad():
            _, grad = self.loss_and_gradient(x, torch.zeros_like(x), y, tgt)
        return grad

    # ------------------------------------------------------------------ checks and audits

    @staticmethod
    def _check_images(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a tensor (N, C, *spatial) but are {type(images).__name__}.")
        if images.ndim not in (4, 5):
            raise ValueError(
                f"images must be (N, C, *spatial) with 2 or 3 spatial dims but have shape {tuple(images.shape)}."
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point but are {images.dtype}.")
        return _plain(images).detach()

    @staticmethod
    def _check_labels(labels: torch.Tensor, x: torch.Tensor, what: str) -> torch.Tensor:
        labels = _plain(torch.as_tensor(labels, device=x.device)).detach()
        if labels.ndim == x.ndim - 1:
            labels = labels.unsqueeze(1)
        if labels.shape != (x.shape[0], 1, *x.shape[2:]):
            raise ValueError(
                f"{what} must be a class map (N, 1, *spatial) or (N, *spatial) matching the images "
                f"{tuple(x.shape)} but have shape {tuple(labels.shape)}."
            )
        return labels.long()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _check_logits(self, out: torch.Tensor) -> None:
        check = check_logits(out, head=self.head)
        if not check.passed:
            self._warn_once("probabilities", f"{type(self).__name__}: {check.detail}. {check.explanation}")

    def _check_gradient(self, grad: torch.Tensor, x: torch.Tensor, step: int) -> torch.Tensor:
        """Non-finite values set to 0 at every step (with a warning); at step 0 a warning when the gradient is zero on
        every attacked voxel (:func:`~robustseg.evaluation.selfchecks.check_gradients`; the audit runs the stricter
        share check with the plain loss)."""
        if not bool(torch.isfinite(grad).all()):
            self._warn_once(
                "nonfinite",
                f"{type(self).__name__}: the input gradient has non-finite values at step {step}; they were set to 0.",
            )
            grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if step == 0:
            check = check_gradients(grad, self.threat.mask_for(x), max_zero_share=1.0)
            if not check.passed:
                self._warn_once("zero", f"{type(self).__name__}: {check.detail}. {check.explanation}")
        return grad
