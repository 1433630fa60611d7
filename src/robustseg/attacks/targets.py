"""Target label maps for targeted attacks.

The seed paper (Liu et al., arXiv:1908.00656) did not publish the target of its targeted i-FGSM. Our documented
choice, the default of :class:`~robustseg.attacks.tifgsm.TargetedIterativeFGSM`, is :func:`erase_tumour`: every voxel
background, i.e. the attacker makes the tumour vanish. A second built-in target relabels enhancing tumour as oedema
(:func:`relabel_enhancing_as_oedema`), which turns ET into a false negative while WT stays intact. Any class map of
the labels' shape can also be passed as the target directly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["ENHANCING_AS_OEDEMA", "erase_tumour", "relabel", "relabel_enhancing_as_oedema"]

ENHANCING_AS_OEDEMA: dict[int, int] = {3: 2}
"""BraTS mapping: enhancing tumour (3) becomes oedema (2)."""


def erase_tumour(labels: torch.Tensor, background: int = 0) -> torch.Tensor:
    """Target with every voxel ``background``: the default ti-FGSM target (our documented choice, see above).

    Args:
        labels: class map ``(N, 1, *spatial)`` or ``(N, *spatial)``.
        background: class index of the background.

    Returns:
        A class map of the same shape and dtype, all ``background``.
    """
    return torch.full_like(labels, background)


def relabel(labels: torch.Tensor, mapping: Mapping[int, int] | Mapping[str, int]) -> torch.Tensor:
    """Target where each class ``old`` of ``mapping`` becomes ``new``; all mappings apply at once (not chained).

    Args:
        labels: class map ``(N, 1, *spatial)`` or ``(N, *spatial)``.
        mapping: ``{old: new}``; keys may be strings of integers (as JSON configs give them).

    Example:
        >>> relabel(torch.tensor([0, 1, 2, 3]), {3: 2, 2: 1}).tolist()
        [0, 1, 1, 2]
    """
    out = labels.clone()
    for old, new in mapping.items():
        try:
            old_i, new_i = int(old), int(new)
        except (TypeError, ValueError):
            raise ValueError(
                f"relabel mapping must map class indices to class indices but has {old!r}: {new!r}."
            ) from None
        out[labels == old_i] = new_i
    return out


def relabel_enhancing_as_oedema(labels: torch.Tensor) -> torch.Tensor:
    """BraTS target: enhancing tumour (3) relabelled as oedema (2), everything else kept."""
    return relabel(labels, ENHANCING_AS_OEDEMA)
