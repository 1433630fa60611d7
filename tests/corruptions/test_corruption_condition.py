"""Corruptions as sweep conditions: applied to the raw case, then normalised; the preprocessing split; the specs."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureTyped,
    NormalizeIntensityd,
    ScaleIntensityRanged,
)

from robustseg.conditions import CaseContext, CorruptionCondition, corruption_conditions
from robustseg.corruptions import BRATS_C, corrupt
from robustseg.data.preprocessing import split_at_normalisation


def raw_case() -> torch.Tensor:
    x = torch.zeros(1, 4, 12, 14, 10)
    x[..., 2:10, 3:11, 2:8] = torch.rand(1, 4, 8, 8, 6) * 900 + 100  # raw scanner units
    return x


def test_the_split_cuts_before_the_first_intensity_normalisation() -> None:
    steps = [CropForegroundd("image", "image"), NormalizeIntensityd("image", nonzero=True), EnsureTyped("image")]
    split = split_at_normalisation(Compose(steps))
    assert [type(t) for t in split.raw.transforms] == [CropForegroundd]
    assert [type(t) for t in split.normalisation.transforms] == [NormalizeIntensityd, EnsureTyped]
    assert split.at == "NormalizeIntensityd"
    scaled = split_at_normalisation([EnsureTyped("image"), ScaleIntensityRanged("image", 0, 255, 0, 1)])
    assert scaled.at == "ScaleIntensityRanged" and len(scaled.raw.transforms) == 1
    none = split_at_normalisation([EnsureTyped("image")])
    assert none.at is None and len(none.normalisation.transforms) == 0


def test_a_corruption_acts_on_the_raw_case_and_the_model_sees_it_normalised() -> None:
    raw = raw_case()
    normalise = NormalizeIntensityd("image", nonzero=True, channel_wise=True)

    def normalised(x: torch.Tensor) -> torch.Tensor:
        return normalise({"image": MetaTensor(x[0].clone())})["image"].as_tensor()[None]

    case = CaseContext("case", normalised(raw), torch.zeros(1, 1, 12, 14, 10), lambda x: x, seed=3)
    case.raw, case.normalise, case.spacing = raw, normalised, (1.0, 1.0, 1.0)
    condition = CorruptionCondition("bias_field", 4)
    out = condition.apply(case)
    expected = normalised(corrupt(raw, "bias_field", 4, seed=case.seed_for("bias_field"), spacing=(1.0, 1.0, 1.0)))
    torch.testing.assert_close(out.image, expected)
    # corrupting the normalised input instead would give another image: the order matters for a bias field
    after = corrupt(case.image, "bias_field", 4, seed=case.seed_for("bias_field"))
    assert not torch.allclose(after, out.image, atol=1e-3)
    # severities of one case share their draw: the same field pattern, scaled
    assert condition.label == "bias_field@4" and condition.settings()["parameters"] == {"coefficient": 1.2}


def test_without_the_split_the_condition_says_how_to_give_it() -> None:
    case = CaseContext("case", raw_case(), torch.zeros(1, 1, 12, 14, 10), lambda x: x)
    with pytest.raises(ValueError, match="normalise="):
        CorruptionCondition("smoothing", 1).apply(case)


def test_specs_expand_benchmarks_and_check_their_fields() -> None:
    conditions = corruption_conditions(["brats-c"])
    assert len(conditions) == 5 * len(BRATS_C)
    assert len({c.label for c in conditions}) == len(conditions)
    picked = corruption_conditions([{"name": "missing_sequence", "channels": [0], "severities": [2, 5]}])
    assert [c.label for c in picked] == ["missing_sequence[0]@2", "missing_sequence[0]@5"]
    with pytest.raises(ValueError, match="'name'"):
        corruption_conditions([{"corruption": "fog"}])
    with pytest.raises(ValueError, match="one corruption"):
        corruption_conditions([{"name": "natural-c", "channels": [0]}])
    with pytest.raises(KeyError, match="known"):
        corruption_conditions(["snow"])
    with pytest.raises(ValueError, match="severity"):
        corruption_conditions([{"name": "fog", "severities": [0]}])
