"""FGSM: one gradient step of size eps."""

from __future__ import annotations

import torch

from robustseg.attacks.base import Attack

__all__ = ["FGSM"]


class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow, Shlens and Szegedy, ICLR 2015, https://arxiv.org/abs/1412.6572).

    One step of size ``eps`` from the clean input along the steepest-ascent direction of the norm: ``sign(grad)``
    for L-inf (the original FGSM), ``grad / ||grad||_2`` for L2 (the fast gradient method), then projection onto the
    threat model (mask, clip bounds). With a ``target`` the step descends the loss towards the target map.

    Norm: L-inf or L2, from ``threat.norm``; ``eps`` in ``threat.unit``.

    Args:
        model: network returning logits ``(N, K, *spatial)``.
        threat: the :class:`~robustseg.attacks.threat.ThreatModel`.
        **kwargs: ``inferer``, ``head``, ``scheme``, ``loss``, ``seed`` of :class:`~robustseg.attacks.base.Attack`.

    Shapes:
        images ``(N, C, *spatial)``, labels and target ``(N, 1, *spatial)``; result tensors like the images.

    Example:
        >>> import torch
        >>> from monai.inferers import SlidingWindowInferer
        >>> from robustseg.attacks import FGSM, ThreatModel
        >>> net = torch.nn.Conv3d(4, 4, 3, padding=1)  # 4 MR series in, 4 BraTS classes out
        >>> images, labels = torch.randn(2, 4, 16, 16, 16), torch.randint(0, 4, (2, 1, 16, 16, 16))
        >>> attack = FGSM(net, ThreatModel("linf", eps=0.05), inferer=SlidingWindowInferer(roi_size=(8, 8, 8)))
        >>> result = attack(images, labels)
        >>> result.adversarial.shape, float(result.linf.max())  # doctest: +ELLIPSIS
        (torch.Size([2, 4, 16, 16, 16]), 0.05...)
    """

    name = "fgsm"

    def perturb(
        self, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad = self.initial_loss_and_gradient(x, labels, target)
        delta = self.threat.project(self.threat.eps * self.ascent(grad, x, target is not None), x)
        if not self.score_final:
            return delta, torch.stack([loss, loss])
        final, _ = self.evaluate(x, delta, labels, target)
        return delta, torch.stack([loss, final])
