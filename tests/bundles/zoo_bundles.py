"""Bundles in the exact shape of MONAI model zoo bundles, written by the tests, for ``robustseg audit`` to meet.

* :func:`brats_zoo_bundle`: ``brats_mri_segmentation``'s shape: SegResNet with sigmoid TC/WT/ET channels,
  ``ConvertToMultiChannelBasedOnBratsClassesd`` labels, BraTS 2018 naming and labels (4 = enhancing tumour),
  ``data_list_file_path`` / ``data_file_base_dir``, ``validate#inferer``, a datalist without ``case_id``.
* :func:`ct_zoo_bundle`: ``spleen_ct_segmentation``'s shape: a softmax UNet with one foreground class,
  ``Orientationd`` / ``Spacingd`` / ``ScaleIntensityRanged`` preprocessing, ``dataset_dir`` globbed, anisotropic
  voxels on a permuted affine.

Each has ``train.json``, ``evaluate.json`` (the zoo's: ``CheckpointLoader`` + the validation evaluator) and
``metadata.json``, and is trained briefly through its own ``train.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow

LOAD = {"_target_": "LoadImaged", "keys": ["image", "label"]}
TRAINER = {
    "_target_": "SupervisedTrainer",
    "max_epochs": "@epochs",
    "device": "@device",
    "train_data_loader": "@train#dataloader",
    "network": "@network",
    "loss_function": "@loss",
    "optimizer": "@optimizer",
    "inferer": "@train#inferer",
    "train_handlers": [
        {
            "_target_": "ValidationHandler",
            "validator": "@validate#evaluator",
            "epoch_level": True,
            "interval": "@epochs",
        }
    ],
}
"""The zoo's trainer, validating once at the end (its CheckpointSaver then writes models/model.pt)."""
SAVER = {
    "_target_": "CheckpointSaver",
    "save_dir": "@ckpt_dir",
    "save_dict": {"model": "@network"},
    "save_key_metric": True,
    "key_metric_filename": "model.pt",
}


def _write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=4) + "\n")


def _evaluator(dice_metrics: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@validate#dataloader",
        "network": "@network",
        "inferer": "@validate#inferer",
        "postprocessing": "@validate#postprocessing",
        "key_val_metric": {key: dice_metrics[key]},
        "additional_metrics": {k: v for k, v in dice_metrics.items() if k != key},
        "val_handlers": "@validate#handlers",
    }


def _evaluate_json() -> dict[str, Any]:
    """The zoo's evaluate.json: load the checkpoint, run the validation evaluator."""
    return {
        "validate#handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$@ckpt_dir + '/model.pt'",
                "load_dict": {"model": "@network"},
            },
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "run": ["$@validate#evaluator.run()"],
    }


def train_and_evaluate(bundle: Path, epochs: int) -> dict[str, float]:
    """Train through the bundle's own train.json, then run its evaluate.json; the evaluator's metrics."""
    configs = bundle / "configs"
    common = {"meta_file": str(configs / "metadata.json"), "bundle_root": str(bundle)}
    train = ConfigWorkflow(config_file=str(configs / "train.json"), workflow_type="train", epochs=epochs, **common)
    train.initialize()
    train.run()
    train.finalize()
    files = [str(configs / "train.json"), str(configs / "evaluate.json")]
    evaluate = ConfigWorkflow(config_file=files, workflow_type=None, **common)
    evaluate.initialize()
    evaluate.run()
    metrics = {k: float(v) for k, v in evaluate.parser.get_parsed_content("validate#evaluator").state.metrics.items()}
    evaluate.finalize()
    return metrics


# --------------------------------------------------------------------------- (a) BraTS, sigmoid, region labels


def brats2018_copy(phantoms: Path, dest: Path) -> list[dict[str, Any]]:
    """The phantom cases renamed to BraTS 2018 (``Brats18_<id>_t1ce.nii.gz``..., label 3 -> 4); zoo datalist entries.

    The zoo lists the images as T1c, T1, T2, FLAIR (its metadata's channel order) and carries no case_id.
    """
    entries = []
    for case in sorted(p for p in phantoms.iterdir() if p.is_dir()):
        name = "Brats18_" + case.name.replace("BraTS-GLI-", "").replace("-", "_")
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        for old, new in (("t1c", "t1ce"), ("t1n", "t1"), ("t2w", "t2"), ("t2f", "flair")):
            shutil.copy(case / f"{case.name}-{old}.nii.gz", folder / f"{name}_{new}.nii.gz")
        seg = nib.load(case / f"{case.name}-seg.nii.gz")
        labels = np.asarray(seg.dataobj).astype(np.uint8)
        labels[labels == 3] = 4
        nib.save(nib.Nifti1Image(labels, seg.affine), folder / f"{name}_seg.nii.gz")
        images = [f"{name}/{name}_{m}.nii.gz" for m in ("t1ce", "t1", "t2", "flair")]
        entries.append({"image": images, "label": f"{name}/{name}_seg.nii.gz"})
    return entries


def brats_zoo_bundle(dest: Path, phantoms: Path) -> tuple[Path, Path]:
    """The bundle folder and its data folder (``data_file_base_dir``)."""
    data = dest / "brats2018"
    entries = brats2018_copy(phantoms, data)
    bundle = dest / "brats_mri_segmentation"
    _write(bundle / "configs" / "datalist.json", {"training": entries[:5], "validation": entries[5:]})
    dice = {
        "val_mean_dice": {"_target_": "MeanDice", "include_background": True,
                          "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"},
        **{
            f"val_mean_dice_{r}": {"_target_": "MeanDice", "include_background": True,
                                   "output_transform": f"$monai.handlers.from_engine(['pred_{r}', 'label_{r}'])"}
            for r in ("tc", "wt", "et")
        },
    }  # fmt: skip
    train = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": "/workspace/brats_mri_segmentation",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "data_list_file_path": "$@bundle_root + '/configs/datalist.json'",
        "data_file_base_dir": str(data),
        "train_datalist": "$monai.data.load_decathlon_datalist(@data_list_file_path, data_list_key='training', "
        "base_dir=@data_file_base_dir)",
        "val_datalist": "$monai.data.load_decathlon_datalist(@data_list_file_path, data_list_key='validation', "
        "base_dir=@data_file_base_dir)",
        "device": "$torch.device('cpu')",
        "epochs": 40,
        "learning_rate": 0.01,
        "network_def": {
            "_target_": "SegResNet",
            "blocks_down": [1, 1, 1],
            "blocks_up": [1, 1],
            "init_filters": 8,
            "in_channels": 4,
            "out_channels": 3,
            "dropout_prob": 0.0,
        },
        "network": "$@network_def.to(@device)",
        "loss": {
            "_target_": "DiceLoss",
            "smooth_nr": 0,
            "smooth_dr": 1e-05,
            "squared_pred": False,  # MONAI >= 1.5 rejects bool labels with squared_pred
            "to_onehot_y": False,
            "sigmoid": True,
        },
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": "@learning_rate"},
        "train": {
            "preprocessing_transforms": [
                LOAD,
                {"_target_": "ConvertToMultiChannelBasedOnBratsClassesd", "keys": "label"},
                {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
            ],
            "random_transforms": [
                {
                    "_target_": "RandSpatialCropd",
                    "keys": ["image", "label"],
                    "roi_size": [32, 32, 32],
                    "random_size": False,
                },
            ],
            "preprocessing": {
                "_target_": "Compose",
                "transforms": "$@train#preprocessing_transforms + @train#random_transforms",
            },
            "dataset": {"_target_": "CacheDataset", "data": "@train_datalist", "transform": "@train#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 1, "shuffle": True},
            "inferer": {"_target_": "SimpleInferer"},
            "trainer": TRAINER,
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "$@train#preprocessing_transforms"},
            "dataset": {"_target_": "Dataset", "data": "@val_datalist", "transform": "@validate#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1, "shuffle": False},
            "inferer": {
                "_target_": "SlidingWindowInferer",
                "roi_size": [64, 64, 48],
                "sw_batch_size": 1,
                "overlap": 0.5,
            },
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
                    {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
                    {
                        "_target_": "SplitDimd",
                        "keys": ["pred", "label"],
                        "output_postfixes": ["tc", "wt", "et"],
                        "dim": 0,
                    },
                ],
            },
            "handlers": [
                SAVER,
            ],
            "evaluator": _evaluator(dice, "val_mean_dice"),
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)"],
        "run": ["$@train#trainer.run()"],
    }
    _write(bundle / "configs" / "train.json", train)
    _write(bundle / "configs" / "evaluate.json", _evaluate_json())
    channel_def = {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"}
    metadata = {
        "version": "0.3.0",
        "task": "Multimodal Brain Tumor segmentation",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 4, "channel_def": {"0": "T1c", "1": "T1",
                                                                                    "2": "T2", "3": "FLAIR"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                                 "channel_def": channel_def}},
        },
    }  # fmt: skip
    _write(bundle / "configs" / "metadata.json", metadata)
    return bundle, data


# --------------------------------------------------------------------------- (b) CT, softmax, one foreground class


def ct_volume(rng: np.random.Generator, shape: tuple[int, int, int] = (40, 36, 14)) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume (HU) with one ellipsoidal organ (label 1) in soft tissue, and its label."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(float)
    centre = np.array([rng.uniform(14, shape[0] - 14), rng.uniform(12, shape[1] - 12), rng.uniform(5, shape[2] - 5)])
    radii = np.array([rng.uniform(6, 9), rng.uniform(5, 8), rng.uniform(2.5, 3.5)])
    inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1
    body = ((grid - np.array(shape)[:, None, None, None] / 2) / (np.array(shape)[:, None, None, None] / 2.2)) ** 2
    hu = np.where(body.sum(0) < 1, 20.0, -900.0) + rng.normal(0, 12, shape)
    hu[inside] = 110 + rng.normal(0, 12, int(inside.sum()))
    return hu.astype(np.float32), inside.astype(np.uint8)


PERMUTED_AFFINE = np.array(
    [[0.0, 0.0, 3.0, -20.0], [-0.9, 0.0, 0.0, 30.0], [0.0, 1.1, 0.0, -15.0], [0.0, 0.0, 0.0, 1.0]]
)
"""Voxel axes permuted and flipped against RAS, anisotropic: 0.9 x 1.1 x 3 mm."""


def ct_zoo_bundle(dest: Path, num_cases: int = 7) -> tuple[Path, Path]:
    """The bundle folder and its ``dataset_dir`` (``imagesTr``, ``labelsTr``)."""
    data = dest / "Task09_Toy"
    rng = np.random.default_rng(7)
    for i in range(num_cases):
        hu, label = ct_volume(rng)
        for sub, array in (("imagesTr", hu), ("labelsTr", label)):
            (data / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, PERMUTED_AFFINE), data / sub / f"organ_{i:02d}.nii.gz")
    bundle = dest / "toy_ct_segmentation"
    deterministic = [
        LOAD,
        {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
        {"_target_": "Orientationd", "keys": ["image", "label"], "axcodes": "RAS"},
        {
            "_target_": "Spacingd",
            "keys": ["image", "label"],
            "pixdim": [1.5, 1.5, 2.0],
            "mode": ["bilinear", "nearest"],
        },
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1,
         "clip": True},
        {"_target_": "EnsureTyped", "keys": ["image", "label"]},
    ]  # fmt: skip
    post = {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False], "to_onehot": 2},
        ],
    }
    dice = {"val_mean_dice": {"_target_": "MeanDice", "include_background": False,
                              "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}}  # fmt: skip
    train = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": str(data),
        "images": "$list(sorted(glob.glob(@dataset_dir + '/imagesTr/*.nii.gz')))",
        "labels": "$list(sorted(glob.glob(@dataset_dir + '/labelsTr/*.nii.gz')))",
        "epochs": 30,
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                        "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "batch"},
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "include_background": False, "to_onehot_y": True, "softmax": True},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.01},
        "train": {
            "deterministic_transforms": deterministic,
            "random_transforms": [
                {"_target_": "RandCropByPosNegLabeld", "keys": ["image", "label"], "label_key": "label",
                 "spatial_size": [16, 16, 16], "pos": 1, "neg": 1, "num_samples": 2, "image_key": "image",
                 "image_threshold": 0},
            ],
            "preprocessing": {
                "_target_": "Compose",
                "transforms": "$@train#deterministic_transforms + @train#random_transforms",
            },
            "dataset": {"_target_": "CacheDataset", "data": "$[{'image': i, 'label': l} for i, l in "
                        "zip(@images[:-2], @labels[:-2])]", "transform": "@train#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 2, "shuffle": True},
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": post,
            "trainer": TRAINER,
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "%train#deterministic_transforms"},
            "dataset": {"_target_": "CacheDataset", "data": "$[{'image': i, 'label': l} for i, l in "
                        "zip(@images[-2:], @labels[-2:])]", "transform": "@validate#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1, "shuffle": False},
            "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2,
                        "overlap": 0.5},
            "postprocessing": "%train#postprocessing",
            "handlers": [SAVER],
            "evaluator": _evaluator(dice, "val_mean_dice"),
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)"],
        "run": ["$@train#trainer.run()"],
    }  # fmt: skip
    _write(bundle / "configs" / "train.json", train)
    _write(bundle / "configs" / "evaluate.json", _evaluate_json())
    metadata = {
        "version": "0.1.0",
        "task": "Toy organ segmentation",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 1}},
            "outputs": {"pred": {"type": "image", "num_channels": 2, "channel_def": {"0": "background", "1": "organ"}}},
        },
    }
    _write(bundle / "configs" / "metadata.json", metadata)
    return bundle, data


# --------------------------------------------------------------------------- (c) 2-D RGB, softmax, PNG files


def disc_scene(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image of a disc (class 1) inside a ring (class 2) on a noisy background, and its label map."""
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij")).astype(float)
    centre = rng.uniform(10, size - 10, size=2)[:, None, None]
    r = np.sqrt(((grid - centre) ** 2).sum(0))
    label = np.where(r < 4, 1, np.where(r < 7, 2, 0)).astype(np.uint8)
    colours = np.array([[60, 120, 70], [220, 90, 40], [70, 110, 230]], dtype=float)
    image = colours[label] + rng.normal(0, 18, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def natural2d_bundle(dest: Path, num_cases: int = 8) -> tuple[Path, Path]:
    """A 2-D softmax bundle over RGB PNG images (PIL), in the zoo's shape; the bundle folder and its dataset_dir."""
    from PIL import Image

    data = dest / "scenes"
    rng = np.random.default_rng(3)
    for i in range(num_cases):
        image, label = disc_scene(rng)
        for sub, array in (("images", image), ("labels", label)):
            (data / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(data / sub / f"scene_{i:02d}.png")
    bundle = dest / "toy_scene_segmentation"
    deterministic = [
        LOAD,
        {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 255, "b_min": 0, "b_max": 1},
        {"_target_": "EnsureTyped", "keys": ["image", "label"]},
    ]
    post = {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False], "to_onehot": 3},
        ],
    }
    dice = {
        "val_mean_dice": {
            "_target_": "MeanDice",
            "include_background": False,
            "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
        }
    }
    pairs = "[{'image': i, 'label': l} for i, l in zip(@images, @labels)]"
    train = {
        "imports": ["$import glob"],
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "dataset_dir": str(data),
        "images": "$list(sorted(glob.glob(@dataset_dir + '/images/*.png')))",
        "labels": "$list(sorted(glob.glob(@dataset_dir + '/labels/*.png')))",
        "epochs": 40,
        "device": "$torch.device('cpu')",
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": 3,
            "channels": [8, 16, 32],
            "strides": [2, 2],
            "num_res_units": 1,
        },
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.01},
        "train": {
            "preprocessing": {"_target_": "Compose", "transforms": deterministic},
            "dataset": {"_target_": "CacheDataset", "data": f"${pairs}[:-3]", "transform": "@train#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 5, "shuffle": True},
            "inferer": {"_target_": "SimpleInferer"},
            "trainer": TRAINER,
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "%train#preprocessing#transforms"},
            "dataset": {"_target_": "Dataset", "data": f"${pairs}[-3:]", "transform": "@validate#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1, "shuffle": False},
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": post,
            "handlers": [
                SAVER,
            ],
            "evaluator": _evaluator(dice, "val_mean_dice"),
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@train#trainer.run()"],
    }
    _write(bundle / "configs" / "train.json", train)
    _write(bundle / "configs" / "evaluate.json", _evaluate_json())
    outputs = {
        "pred": {"type": "image", "num_channels": 3, "channel_def": {"0": "background", "1": "disc", "2": "ring"}}
    }
    metadata = {"version": "0.1.0", "task": "Toy 2-D scene segmentation", "network_data_format": {"outputs": outputs}}
    _write(bundle / "configs" / "metadata.json", metadata)
    return bundle, data
