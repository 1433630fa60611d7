"""Adaptive sensitivity analysis of a small segmenter, and its cache per (checkpoint, op)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustseg.sensitivity.analysis import SensitivityCache, analyse_op


def _bright_pixel_segmenter() -> nn.Module:
    """Class 1 where the grey value exceeds 0.5: a 1x1 convolution with fixed weights, and a feature layer."""
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1, 1], [-1, -1, -1], [1, 0, 0], [0, 1, 0]]).view(4, 3, 1, 1) / 3)
        net[0].bias.copy_(torch.tensor([-0.5, 0.5, 0.0, 0.0]))
        net[2].weight.copy_(torch.tensor([[-20.0, 20, 0, 0], [20, -20, 0, 0]]).view(2, 4, 1, 1))
        net[2].bias.zero_()
    return net


def _iou(logits: torch.Tensor, label: torch.Tensor) -> float:
    pred, truth = logits.argmax(1) == 1, label[:, 0] == 1
    union = (pred | truth).sum()
    return float((pred & truth).sum() / union) if union else 1.0


def _cases(n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for _ in range(n):
        image = torch.rand((1, 3, 24, 24), generator=g) * 0.5 + 0.3
        cases.append((image, (image.mean(1, keepdim=True) > 0.5).long()))
    return cases


def test_darkening_costs_the_segmenter_more_the_darker_and_the_curve_is_adaptive() -> None:
    net = _bright_pixel_segmenter()
    cases = _cases()
    assert all(_iou(net(image), label) == 1.0 for image, label in cases)  # the clean cases are segmented exactly
    result = analyse_op(net, cases, "brightness_down", _iou, "1", max_evaluations=9)
    assert result.clean_score == 1.0
    levels = sorted(result.scores)
    assert levels[0] == 0.0 and levels[-1] == 1.0 and len(levels) == result.curve.evaluations <= 9
    kept = [result.scores[level] for level in levels]
    assert bool(np.all(np.diff(kept) <= 1e-9)) and kept[-1] < 0.2
    kids = [p.kid for p in result.curve.curve.points]
    assert kids[0] == 0.0 and kids[-1] == max(kids) > 0
    assert list(result.curve.levels) == sorted(result.curve.levels) and result.curve.levels[0] > 0


def test_the_cache_returns_an_analysis_for_its_checkpoint_and_settings_only(tmp_path: Path) -> None:
    net = _bright_pixel_segmenter()
    result = analyse_op(net, _cases(3), "blur", _iou, "1", max_evaluations=4)
    cache = SensitivityCache(tmp_path)
    settings = {"tol": 0.05, "cases": ["a", "b", "c"]}
    path = cache.put("sha-1", settings, result)
    again = cache.get("sha-1", "blur", settings)
    assert again is not None and again.to_dict() == result.to_dict()
    assert cache.get("sha-2", "blur", settings) is None  # another checkpoint
    assert cache.get("sha-1", "blur", {**settings, "tol": 0.02}) is None  # another setting
    assert cache.get("sha-1", "noise", settings) is None
    path.write_text(json.dumps({"analysis": {"op": "blur"}}))  # torn
    assert cache.get("sha-1", "blur", settings) is None
