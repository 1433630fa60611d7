"""How far a perturbation moves a model's own features: encoder activations and their kernel inception distance.

The seed measured sensitivity with Inception features; offline, and in 3-D, the segmenter's own encoder is the
feature extractor. :class:`EncoderFeatures` takes the activations of one named layer by a forward hook and pools
them over space to one vector per case, so 2-D and 3-D networks give the same kind of feature set.
:func:`kernel_inception_distance` is torchmetrics' KID (unbiased polynomial-kernel MMD over random subsets) on
those vectors, seeded so that the same features give the same value.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

__all__ = ["EncoderFeatures", "kernel_inception_distance"]


class EncoderFeatures:
    """Spatially pooled activations of ``network``'s module named ``layer`` (a name of ``named_modules()``).

    Calling it runs the whole network on a batch in eval mode without gradients and returns ``(N, C)``: the mean of
    the layer's ``(N, C, *spatial)`` output over its spatial axes (a tuple output gives its first tensor).

    Raises:
        KeyError: no module of that name, with the closest names the network has.
    """

    def __init__(self, network: nn.Module, layer: str) -> None:
        modules = dict(network.named_modules())
        if layer not in modules or not layer:
            close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.3)
            raise KeyError(
                f"the network has no layer {layer!r} to take features from; close names: {close or sorted(modules)[:8]}"
                " (set the feature layer to a name of network.named_modules(), e.g. the deepest encoder block)"
            )
        self.network = network
        self.layer = layer
        self.module = modules[layer]

    @staticmethod
    def _pool(output: object) -> torch.Tensor:
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2:
            raise TypeError(f"the feature layer gave {type(tensor).__name__}, not an (N, C, ...) tensor")
        return tensor.flatten(2).mean(2) if tensor.ndim > 2 else tensor

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.during(self.network, images)[1]

    def during(
        self, run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``run(images)`` (e.g. a sliding-window inferer over the network) and the layer's pooled features seen on
        the way: ``(output, (N, C))``, the mean over every call of the layer (every window), in eval mode, without
        gradients. One pass gives the prediction and the features."""
        taken: list[torch.Tensor] = []
        handle = self.module.register_forward_hook(lambda _m, _i, out: taken.append(self._pool(out).detach()))
        was_training = self.network.training
        try:
            self.network.eval()
            with torch.no_grad():
                output = run(images)
        finally:
            handle.remove()
            self.network.train(was_training)
        if not taken:
            raise RuntimeError(f"layer {self.layer!r} did not run in the network's forward pass")
        n = images.shape[0]
        if all(t.shape[0] == n for t in taken):
            return output, torch.stack(taken).mean(0).float()
        # windows batched across cases (a sliding window over a batch): one case per call of a batch of one
        return output, torch.cat(taken).mean(0, keepdim=True).expand(n, -1).float()


def kernel_inception_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    subsets: int = 50,
    subset_size: int | None = None,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between two feature sets ``(N, D)`` and ``(M, D)``: mean and standard deviation over ``subsets``.

    Each subset draws ``subset_size`` rows of each set without replacement (default: all rows of the smaller set) and
    takes the unbiased MMD^2 with the kernel ``(x.y / D + 1) ** degree``. The draws come from a generator seeded by
    ``seed``; torch's global random state is left as it was.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"KID needs two (N, D) feature sets of one width, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    size = subset_size or min(len(real), len(fake))
    if size < 2 or size > min(len(real), len(fake)):
        raise ValueError(f"KID's subset size {size} must be in [2, {min(len(real), len(fake))}] (the smaller set)")
    with warnings.catch_warnings():  # its warning that it keeps every feature: these sets are small by design
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=nn.Identity(), subsets=subsets, subset_size=size, degree=degree)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
