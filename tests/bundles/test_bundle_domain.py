"""What ``robustseg audit`` infers of a bundle's images: the corruption benchmark and attack mask of its domain (MRI or
RGB), and the input range its validation preprocessing bounds the model's input to (the attacks' clip bounds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from zoo_bundles import ct_zoo_bundle, natural2d_bundle

from robustseg.workflows.bundle import BundleAdapter

IDS = ["corruption_benchmark", "perturbation_mask", "input_min", "input_max", "input_unit"]


def provided(bundle: Path) -> dict[str, tuple[str, Any]]:
    _, report = BundleAdapter(bundle).contract_overlay(IDS)
    return {p.id: (p.how, p.value) for p in report}


def mri_bundle(dest: Path, metadata: dict[str, Any], preprocessing: list[dict[str, Any]], **extra: Any) -> Path:
    """A 3-D, 4-sequence bundle in the zoo's shape with the given validation preprocessing (nothing is run)."""
    bundle = dest / "toy_mri"
    (bundle / "configs").mkdir(parents=True)
    config = {
        "network_def": {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3},
        "validate": {"preprocessing": {"_target_": "Compose", "transforms": preprocessing}},
        **extra,
    }
    (bundle / "configs" / "train.json").write_text(json.dumps(config))
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
    return bundle


Z_SCORE = {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True}
MR = {"network_data_format": {"inputs": {"image": {"modality": "MR", "num_channels": 4}}}}


def test_an_rgb_bundle_gets_natural_c_no_mask_and_its_pixel_range(tmp_path: Path) -> None:
    bundle, _ = natural2d_bundle(tmp_path)  # network 2-D with 3 input channels; ScaleIntensityRanged 0..255 -> 0..1
    got = provided(bundle)
    assert got == {
        "corruption_benchmark": ("inferred", "natural-c"),
        "perturbation_mask": ("inferred", "none"),
        "input_min": ("inferred", 0.0),
        "input_max": ("inferred", 1.0),
        "input_unit": ("inferred", "[0, 1] pixel units"),
    }


def test_metadata_saying_rgb_makes_a_bundle_natural_whatever_its_network(tmp_path: Path) -> None:
    rgb = {"network_data_format": {"inputs": {"image": {"format": "RGB", "modality": "regular"}}}}
    scale = {"_target_": "ScaleIntensityd", "keys": "image"}  # MONAI's defaults: minv 0, maxv 1
    got = provided(mri_bundle(tmp_path, rgb, [scale]))
    assert got["corruption_benchmark"] == ("inferred", "natural-c")
    assert (got["input_min"], got["input_max"]) == (("inferred", 0.0), ("inferred", 1.0))


def test_a_z_scored_mri_bundle_gets_brats_c_the_brain_mask_and_no_clip_bounds(tmp_path: Path) -> None:
    clip = {"_target_": "ScaleIntensityd", "keys": "image", "minv": 0.0, "maxv": 1.0}
    got = provided(mri_bundle(tmp_path, MR, [clip, Z_SCORE]))  # scaled, then z-scored: unbounded
    assert got == {
        "corruption_benchmark": ("inferred", "brats-c"),
        "perturbation_mask": ("inferred", "nonzero"),
        "input_min": ("default", None),
        "input_max": ("default", None),
        "input_unit": ("default", "std of z-scored input"),
    }


def test_a_ct_bundle_clipped_by_its_window_gets_that_range_and_the_default_benchmark(tmp_path: Path) -> None:
    bundle, _ = ct_zoo_bundle(tmp_path, num_cases=1)  # ScaleIntensityRanged(-57 .. 164 -> 0 .. 1, clip=True)
    got = provided(bundle)
    assert got["corruption_benchmark"] == ("default", "brats-c")  # nothing says MRI or RGB
    assert got["perturbation_mask"] == ("default", "nonzero")
    assert (got["input_min"], got["input_max"]) == (("inferred", 0.0), ("inferred", 1.0))
    assert got["input_unit"] == ("inferred", "[0, 1] scaled intensity units")


@pytest.mark.parametrize(
    "transform",
    [
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1},
        {"_target_": "ScaleIntensityd", "keys": "image", "minv": "@low", "maxv": 1.0},
    ],
    ids=["window-without-clip", "bound-not-a-number"],
)
def test_no_range_is_inferred_where_the_preprocessing_does_not_bound_the_input(tmp_path: Path, transform) -> None:
    got = provided(mri_bundle(tmp_path, {}, [transform], low=0.0))
    assert (got["input_min"], got["input_max"]) == (("default", None), ("default", None))


def test_what_the_bundle_defines_wins_over_what_is_inferred(tmp_path: Path) -> None:
    bundle = mri_bundle(tmp_path, MR, [Z_SCORE], corruption_benchmark="natural-c", perturbation_mask="none")
    got = provided(bundle)
    assert got["corruption_benchmark"][0] == got["perturbation_mask"][0] == "bundle"
