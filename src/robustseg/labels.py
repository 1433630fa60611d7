"""Label schemes: class names, reported regions and the conversions between heads, class maps and regions.

A :class:`LabelScheme` is the one place that knows what the classes of a segmenter mean. Metrics, attacks and reports
ask it for the regions to score (ET, TC, WT for BraTS), and it turns either kind of model head into class maps:

* softmax heads: one logit channel per class, the class map is the arg-max;
* sigmoid multi-label heads (the model zoo's BraTS bundle: TC, WT, ET channels): each channel is a region, and the
  class map is rebuilt from the nested regions.

Scores are taken on region masks the way the head defines them (:meth:`LabelScheme.regions_from_logits`): from the
arg-max class map for softmax heads, per region channel for sigmoid heads, as the bundle's own per-channel metric
does. Ground truth may come as a class map or as region masks (one channel per region, as the model zoo's
``ConvertToMultiChannelBasedOnBratsClassesd`` gives); :meth:`LabelScheme.label_class_map` brings both to one class
map, and refuses region masks that no class map can represent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

__all__ = ["BRATS", "HEADS", "LabelScheme"]


HEADS: tuple[str, ...] = ("softmax", "sigmoid")
"""Output heads a :class:`LabelScheme` reads: softmax over classes, or sigmoid region channels."""


@dataclass(frozen=True)
class LabelScheme:
    """What the classes of a segmenter mean and which regions are reported.

    Args:
        class_names: name of each class index, background first.
        regions: reported regions, each a name and the class indices it unites (BraTS: ``ET = (3,)``,
            ``TC = (1, 3)``, ``WT = (1, 2, 3)``). Defaults to one region per non-background class.
        ignore_index: label value that is not scored (255 for Pascal VOC and Cityscapes), or ``None``.
        sigmoid_regions: for sigmoid multi-label heads, the region of each output channel in channel order
            (model zoo BraTS: ``("TC", "WT", "ET")``). The regions must be nested so a class map can be rebuilt.
    """

    class_names: tuple[str, ...]
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    ignore_index: int | None = None
    sigmoid_regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"a label scheme needs at least 2 classes but has {len(self.class_names)}.")
        if not self.regions:
            object.__setattr__(self, "regions", {n: (i,) for i, n in enumerate(self.class_names) if i > 0})
        for name, classes in self.regions.items():
            bad = [c for c in classes if not 0 <= c < self.num_classes]
            if bad or not classes:
                raise ValueError(
                    f"region {name!r} must list class indices in [0, {self.num_classes}) but has {classes}."
                )
        unknown = [r for r in self.sigmoid_regions if r not in self.regions]
        if unknown:
            raise ValueError(f"sigmoid_regions {unknown} are not among the regions {list(self.regions)}.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    @property
    def channel_regions(self) -> tuple[str, ...]:
        """Region of each channel of region-mask labels and of a sigmoid head: ``sigmoid_regions``, else the regions."""
        return self.sigmoid_regions or self.region_names

    def valid_mask(self, labels: torch.Tensor) -> torch.Tensor:
        """Bool mask of ``labels``' shape: False where a class map holds ``ignore_index`` (the one home of ignore)."""
        if self.ignore_index is None:
            return torch.ones(labels.shape, dtype=torch.bool, device=labels.device)
        return labels != self.ignore_index

    def regions_from_logits(self, logits: torch.Tensor, head: str = "softmax", threshold: float = 0.5) -> torch.Tensor:
        """Predicted region masks ``(N, R, *spatial)`` (bool, regions in :attr:`region_names` order) of a head.

        softmax: the regions of the arg-max class map; sigmoid: each region is its own channel thresholded at
        ``threshold`` on the probability (``>=``, as MONAI's ``AsDiscrete``), so overlapping or non-nested channels
        are scored as the head gave them.
        """
        if head == "softmax":
            return self.to_regions(self.class_map_from_logits(logits, head="softmax")).bool()
        self.check_head(head)
        self._check_sigmoid_channels(logits.shape[1])
        missing = [r for r in self.region_names if r not in self.sigmoid_regions]
        if missing:
            raise ValueError(f"regions {missing} have no channel in the sigmoid head {self.sigmoid_regions}.")
        order = [self.sigmoid_regions.index(r) for r in self.region_names]
        return torch.sigmoid(logits[:, order]) >= threshold  # MONAI's AsDiscrete(threshold=...) convention

    def label_class_map(self, label: torch.Tensor, what: str = "label") -> torch.Tensor:
        """A ground-truth class map ``(N, 1, *spatial)`` from a class map or from region masks ``(N, R, *spatial)``.

        Region masks are one channel per region of :attr:`channel_regions`; they are converted when a class map
        represents them exactly (nested regions, as BraTS's TC, WT and ET are), and refused otherwise.
        """
        label = label.as_subclass(torch.Tensor) if type(label) is not torch.Tensor else label
        if label.ndim < 3 or label.shape[1] == 1:
            return label.long() if label.shape[1:2] == (1,) else label.long().unsqueeze(1)
        if label.shape[1] != len(self.channel_regions):
            raise ValueError(
                f"{what} has {label.shape[1]} channels; a class map has 1 and region masks have one per region "
                f"{self.channel_regions}."
            )
        masks = label.bool()
        out = self._paint(masks, self.channel_regions, f"region of the {what}")
        index = [self.region_names.index(r) for r in self.channel_regions]
        if not torch.equal(self.to_regions(out)[:, index].bool(), masks):
            raise ValueError(
                f"the {what}'s region masks {self.channel_regions} are not nested, so no class map holds them; "
                "give class-map labels (drop the bundle's multi-channel label transform) or nested regions."
            )
        return out

    def _check_sigmoid_channels(self, channels: int) -> None:
        if channels != len(self.sigmoid_regions):
            raise ValueError(
                f"a sigmoid head must have {len(self.sigmoid_regions)} channels {self.sigmoid_regions} "
                f"but has {channels}."
            )

    def to_regions(self, class_map: torch.Tensor) -> torch.Tensor:
        """Turn class maps ``(N, 1, *spatial)`` or ``(N, *spatial)`` into region masks ``(N, R, *spatial)`` (float 0/1).

        Voxels labelled ``ignore_index`` belong to no region.
        """
        if class_map.ndim >= 2 and class_map.shape[1] == 1:
            class_map = class_map[:, 0]
        class_map = class_map.long()
        size = max((max(c, default=0) for c in self.regions.values()), default=0) + 2  # the last: in no region
        table = torch.zeros((size, len(self.regions)), device=class_map.device)
        for r, classes in enumerate(self.regions.values()):
            table[list(classes), r] = 1.0
        inside = (class_map >= 0) & (class_map < size - 1)
        return table[torch.where(inside, class_map, size - 1)].movedim(-1, 1).contiguous()  # a look-up, not R isin

    def check_head(self, head: str) -> str:
        """``head`` if this scheme can read it: ``softmax``, or ``sigmoid`` when ``sigmoid_regions`` are set."""
        if head not in HEADS:
            raise ValueError(f"head must be one of {list(HEADS)} but is {head!r}.")
        if head == "sigmoid" and not self.sigmoid_regions:
            raise ValueError("a sigmoid head needs a LabelScheme with sigmoid_regions (e.g. robustseg.labels.BRATS).")
        return head

    def class_map_from_logits(
        self, logits: torch.Tensor, head: str = "softmax", threshold: float = 0.5
    ) -> torch.Tensor:
        """Class map ``(N, 1, *spatial)`` from model output ``(N, C, *spatial)`` of a softmax or sigmoid head."""
        if head == "softmax":
            if logits.shape[1] != self.num_classes:
                raise ValueError(f"a softmax head must have {self.num_classes} channels but has {logits.shape[1]}.")
            return logits.max(dim=1, keepdim=True).indices  # argmax, several times faster on CPU
        if head == "sigmoid":
            return self.class_map_from_region_masks(torch.sigmoid(logits) >= threshold)
        raise ValueError(f"head must be 'softmax' or 'sigmoid' but is {head!r}.")

    def class_map_from_region_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Rebuild a class map from nested sigmoid region masks ``(N, len(sigmoid_regions), *spatial)``.

        Regions are painted from the largest to the smallest, so a voxel takes the class that only its innermost
        region contains (BraTS: WT alone is oedema, TC without ET is necrotic core, ET is enhancing).
        """
        if not self.sigmoid_regions:
            raise ValueError("this label scheme has no sigmoid_regions; pass them to read a sigmoid head.")
        self._check_sigmoid_channels(masks.shape[1])
        return self._paint(masks.bool(), self.sigmoid_regions, "sigmoid region")

    def _paint(self, masks: torch.Tensor, channels: tuple[str, ...], what: str) -> torch.Tensor:
        """Class map ``(N, 1, *spatial)`` of bool region masks, one channel per region of ``channels``, painted from
        the largest region to the smallest so each voxel takes the class only its innermost region contains."""
        sets = [set(self.regions[r]) for r in channels]
        out = torch.zeros((masks.shape[0], 1, *masks.shape[2:]), dtype=torch.long, device=masks.device)
        for i in sorted(range(len(sets)), key=lambda k: -len(sets[k])):
            own = sets[i].difference(*[s for s in sets if s < sets[i]])
            if len(own) != 1:
                raise ValueError(f"{what} {channels[i]!r} does not identify one class ({own}).")
            out[masks[:, i : i + 1]] = own.pop()
        return out

    def region_targets_for_sigmoid(self, class_map: torch.Tensor) -> torch.Tensor:
        """Region masks in the channel order of the sigmoid head, for binary cross-entropy targets."""
        all_masks = self.to_regions(class_map)
        index = [self.region_names.index(r) for r in self.sigmoid_regions]
        return all_masks[:, index]


def _brats() -> LabelScheme:
    return LabelScheme(
        class_names=("background", "necrotic_core", "oedema", "enhancing_tumour"),
        regions={"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)},
        sigmoid_regions=("TC", "WT", "ET"),
    )


BRATS: LabelScheme = _brats()
"""The canonical BraTS scheme: 0 background, 1 necrotic/non-enhancing core, 2 oedema, 3 enhancing tumour."""
