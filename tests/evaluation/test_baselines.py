"""The colour baseline: perfect where colour gives the class, near chance where it does not; ignore pixels left out."""

from __future__ import annotations

import numpy as np
import pytest

from robustseg.evaluation.baselines import colour_baseline

COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)


def _coloured(seed: int, n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        label = rng.integers(0, 3, (8, 8))
        out.append((COLOURS[label], label))
    return out


def test_colour_that_gives_the_class_is_learned() -> None:
    result = colour_baseline(_coloured(0), _coloured(1), num_classes=3)
    assert result["mIoU"] == pytest.approx(1.0) and result["pixel_accuracy"] == pytest.approx(1.0)


def test_random_colours_leave_it_near_chance_and_void_is_not_scored() -> None:
    rng = np.random.default_rng(2)
    pairs = []
    for _ in range(6):
        label = rng.integers(0, 3, (16, 16))
        label[0] = 255  # a void row: neither fitted nor scored
        pairs.append((rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), label))
    result = colour_baseline(pairs[:4], pairs[4:], num_classes=3)
    assert result["mIoU"] < 0.4 and result["pixels_fitted"] == 4 * 15 * 16
    with pytest.raises(ValueError, match="training and test"):
        colour_baseline([], pairs, num_classes=3)
