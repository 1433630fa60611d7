"""Augmented training in a bundle's own trainer: the policy runs in ``prepare_batch``, on the batch's device.

``configs/sensitivity.json`` sets ``train#trainer#prepare_batch`` to an :class:`AugmentedBatch` around one policy
of :mod:`robustseg.sensitivity.augment` (:func:`make_policy`): the bundle's data, loss, optimizer, handlers, AMP and
``multi_gpu_train.json`` stay as they are, and every arm of an experiment (adaptive, uniform, TrivialAugment,
MONAI's intensity augmentations, none) sees the same batches in the same order and pays the same per-sample cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from robustseg.sensitivity.augment import MonaiAugmentation, SampledAugmentation, TrivialAugmentSampler, UniformSampler
from robustseg.sensitivity.perturbations import MRI_OPS, NATURAL_OPS, check_request

__all__ = ["POLICIES", "AugmentedBatch", "default_ops", "make_policy"]

POLICIES = ("adaptive", "uniform", "trivial", "monai", "none")
"""The augmentation policies: seed 000's sensitivity-adaptive one and its baselines."""


def default_ops(spatial_dims: int, in_channels: int) -> list[str]:
    """The basis perturbations of a bundle's domain: the natural-image ops for 2-D RGB or grey input, the MRI ones
    otherwise."""
    if int(spatial_dims) == 2 and int(in_channels) in (1, 3):
        return list(NATURAL_OPS)
    return list(MRI_OPS)


def make_policy(
    policy: str,
    ops: Sequence[str],
    seed: int = 0,
    channels: Sequence[int] | None = None,
    label_fill: int = 0,
    renormalise: bool = False,
) -> SampledAugmentation | MonaiAugmentation | None:
    """The augmentation of ``policy`` (one of :data:`POLICIES`); ``adaptive`` starts uniform (its warm-up) until the
    first refresh gives it a sensitivity sampler; ``none`` gives ``None``."""
    if policy not in POLICIES:
        raise ValueError(f"sensitivity_policy must be one of {list(POLICIES)} but is {policy!r}.")
    for op in ops:
        check_request(op, 0.0)
    if policy == "none":
        return None
    if policy == "monai":
        return MonaiAugmentation(seed=seed)
    sampler = TrivialAugmentSampler(ops) if policy == "trivial" else UniformSampler(ops)
    return SampledAugmentation(sampler, seed=seed, channels=channels, label_fill=label_fill, renormalise=renormalise)


class AugmentedBatch:
    """A ``SupervisedTrainer`` ``prepare_batch``: MONAI's default batch preparation, then ``policy`` on the device.

    Attach it to the trainer (it is also a handler) so that each batch's draws are seeded by the iteration.

    Args:
        policy: ``policy(images, labels, step) -> (images, labels)``, or ``None`` for no augmentation.
    """

    def __init__(self, policy: Any = None) -> None:
        from monai.engines.utils import default_prepare_batch

        self.policy = policy
        self.base = default_prepare_batch
        self.step = 0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self._at)

    def _at(self, engine: Any) -> None:
        self.step = int(engine.state.iteration)

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> Any:
        batch = self.base(batchdata, device, non_blocking, **kwargs)
        if self.policy is None or not isinstance(batch, tuple) or len(batch) < 2 or batch[1] is None:
            return batch
        images, labels = self.policy(batch[0], batch[1], self.step)
        return (images, labels, *batch[2:])
