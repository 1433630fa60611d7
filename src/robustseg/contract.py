"""The bundle contract: every config id robustseg's workflow overlays read from a bundle, with its default.

The overlays in ``configs/`` (the audit, certification, noise training, the denoiser) run on any MONAI bundle that
provides these ids; they use nothing else but ids of their own. :data:`CONTRACT` is the one list, ``docs/contract.md``
is written from it (``python -m robustseg.contract > docs/contract.md``; a test keeps the two equal), and
:mod:`robustseg.workflows.bundle` maps a bundle's own names onto it (the model zoo's ``network_def``/``network``,
``validate#inferer``, ``data_list_file_path``, ``data_file_base_dir``...).

Each id is required by some overlays. Where an id has a default, a bundle may leave it out and ``robustseg audit``
adds the default to the overlay it writes; where it has none, the bundle must define it (the audit says so, with the
line to add, before any compute).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONTRACT",
    "OVERLAY_REQUIRES",
    "REQUIRED",
    "ContractId",
    "contract_ids",
    "markdown",
    "overlay_ids",
    "references",
]

EVAL = ("attack.json", "certify.json", "compare.json", "corruptions.json")
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
"""The default of an id a bundle must define."""
TRAIN = ("noise_training.json", "denoiser.json")
DEFEND = ("adversarial_training.json", "distillation.json", "sensitivity.json")


@dataclass(frozen=True)
class ContractId:
    """One id of the contract.

    Attributes:
        id: the config id (``#`` for nesting, as MONAI writes it).
        meaning: what it is, in one sentence.
        default: the config value robustseg uses when a bundle lacks it (JSON; ``$`` expressions allowed), or
            :data:`REQUIRED` when the bundle must define it.
        example: a line to add when the bundle must define it.
        used_by: the overlays in ``configs/`` that read it.
        zoo: names that model zoo bundles use for it, from which ``robustseg audit`` maps it.
    """

    id: str
    meaning: str
    default: Any = REQUIRED
    example: str = ""
    used_by: tuple[str, ...] = EVAL
    zoo: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


CONTRACT: tuple[ContractId, ...] = (
    ContractId(
        "bundle_root",
        "The bundle's folder; paths of the bundle start from it.",
        ".",
        used_by=(*EVAL, *DEFEND),
    ),
    ContractId(
        "device",
        "Where the model runs.",
        "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        used_by=(*EVAL, "certify_denoised.json", *TRAIN, "distillation.json"),
    ),
    ContractId(
        "network",
        "The model on its device, returning logits (no final softmax or sigmoid).",
        "$@network_def.to(@device)",
        zoo=("network", "network_def"),
        used_by=(*EVAL, *DEFEND),
    ),
    ContractId(
        "network_def",
        "The model's definition; transfer attacks build a second instance of it with %network_def.",
        example='"network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 4, ...}',
        used_by=("attack.json (transfer attacks only)", "distillation.json"),
    ),
    ContractId(
        "checkpoint",
        "The trained weights: a state dict, or a dict holding it under 'model' (MONAI's CheckpointSaver).",
        "$@bundle_root + '/models/model.pt'",
        zoo=("models/model.pt",),
    ),
    ContractId(
        "inferer",
        "How the model is applied to a whole case as deployed (a SlidingWindowInferer for volumes).",
        "@validate#inferer",
        zoo=("validate#inferer",),
    ),
    ContractId(
        "validate#preprocessing",
        "The transform that loads and preprocesses a case dict with its label: keys 'image' (channel-first) and "
        "'label' (a class map, or one channel per region as ConvertToMultiChannelBasedOnBratsClassesd gives).",
        example='"validate#preprocessing": {"_target_": "Compose", "transforms": [{"_target_": "LoadImaged", '
        '"keys": ["image", "label"], "ensure_channel_first": true}, ...]}',
        used_by=(*EVAL, "denoiser.json"),
        zoo=("validate#preprocessing",),
    ),
    ContractId(
        "dataset_dir",
        "The folder the datalist's relative paths start from.",
        "$@bundle_root + '/data'",
        used_by=(*EVAL, "denoiser.json"),
        zoo=("dataset_dir", "data_file_base_dir"),
    ),
    ContractId(
        "datalist",
        "The datalist JSON (MONAI's decathlon format: lists of case dicts under 'training', 'validation', 'testing').",
        "$@dataset_dir + '/datalist.json'",
        used_by=("denoiser.json",),
        zoo=("datalist", "data_list_file_path"),
    ),
    ContractId(
        "test_data",
        "The case dicts the evaluation workflows score (paths absolute): the datalist's 'testing' split, else the "
        "bundle's validation cases (validate#dataset#data).",
        "$robustseg.data.datalist.load_datalist(@datalist, 'testing', @dataset_dir)",
        zoo=("validate#dataset#data",),
    ),
    ContractId(
        "head",
        "How the output channels are read: 'softmax' (one channel per class, arg-max) or 'sigmoid' (one channel per "
        "region, thresholded at 0.5).",
        "softmax",
        zoo=("validate#postprocessing (Activationsd sigmoid/softmax)",),
        used_by=(*EVAL, "adversarial_training.json"),
    ),
    ContractId(
        "channel_names",
        "Names of the input channels (MRI sequences: T1, T1c, T2, FLAIR), shown in reports; FLAIR is shown when "
        "named; null shows 'channel 0', ...",
        None,
        zoo=("metadata.json network_data_format#inputs#image#channel_def",),
    ),
    ContractId(
        "label_scheme",
        "A robustseg.labels.LabelScheme: class names, the reported regions, the ignore index and, for sigmoid "
        "heads, the region of each channel.",
        "$robustseg.labels.LabelScheme(('background', 'foreground'))",
        zoo=("metadata network_data_format.outputs.pred.channel_def",),
        used_by=(*EVAL, *DEFEND),
    ),
    ContractId(
        "empty_policy",
        "How a region empty in the ground truth or the prediction is scored: 'brats' (BraTS 2018-2022), "
        "'brats2023' (the official BraTS 2023+ package) or 'ignore' (MONAI's ignore_empty).",
        "brats",
    ),
    ContractId(
        "score_metric",
        "What the evaluation workflows test per case: 'dice' per region (MRI), or 'iou' per class with the case's "
        "mIoU (natural images).",
        "dice",
        used_by=("attack.json", "compare.json", "corruptions.json"),
    ),
    ContractId(
        "hd95",
        "Also score the 95th-percentile Hausdorff distance per region (false for natural images).",
        True,
        used_by=("attack.json", "compare.json", "corruptions.json"),
    ),
    ContractId(
        "label_palette",
        "The colour (0..255 RGB) of each class value in report figures, as a mapping (a dataset's palette, 255 its "
        "void colour); null: matplotlib's tab10.",
        None,
        used_by=("attack.json", "compare.json", "corruptions.json"),
    ),
    ContractId(
        "input_unit",
        "What one unit of a perturbation budget is in the model's input: 'std of z-scored input' for normalised MRI, "
        "'[0, 1] pixel units' for natural images with the normalisation inside the model.",
        "std of z-scored input",
        used_by=("attack.json", "compare.json", "adversarial_training.json"),
    ),
    ContractId(
        "input_min",
        "Lowest valid input value, the attacks' clip bound (0.0 for [0, 1] images; null: unbounded, z-scored MRI); "
        "robustseg audit reads it from a ScaleIntensityd or clipped ScaleIntensityRanged in validate#preprocessing.",
        None,
        used_by=("attack.json", "compare.json", "adversarial_training.json"),
    ),
    ContractId(
        "input_max",
        "Highest valid input value, the attacks' clip bound (1.0 for [0, 1] images; null: unbounded); inferred as "
        "input_min is.",
        None,
        used_by=("attack.json", "compare.json", "adversarial_training.json"),
    ),
    ContractId(
        "perturbation_mask",
        "Where an attacker may act: 'nonzero' (MRI: the brain, as perturbing the zero background is trivially "
        "detectable) or 'none' (everywhere: natural images); robustseg audit infers it with corruption_benchmark.",
        "nonzero",
        used_by=("attack.json", "compare.json", "certify.json", "adversarial_training.json", "corruptions.json"),
    ),
    ContractId(
        "raw_preprocessing",
        "The validation preprocessing up to its first intensity normalisation (load, orient, resample, crop): what "
        "a corruption is applied to; by default validate#preprocessing cut before its first NormalizeIntensityd, "
        "ScaleIntensityd, ScaleIntensityRanged... (all of it when it normalises nothing).",
        "$robustseg.data.preprocessing.split_at_normalisation(@validate#preprocessing).raw",
        used_by=("corruptions.json",),
    ),
    ContractId(
        "intensity_normalisation",
        "The rest of the validation preprocessing, from its first intensity normalisation on: run after a "
        "corruption, as on a real case.",
        "$robustseg.data.preprocessing.split_at_normalisation(@validate#preprocessing).normalisation",
        used_by=("corruptions.json",),
    ),
    ContractId(
        "corruption_benchmark",
        "The corruption benchmark of the bundle's domain: 'brats-c' (MRI) or 'natural-c' (natural images); robustseg "
        "audit infers it from the metadata's input modality (MR) or format (RGB), else a 2-D network with 3 input "
        "channels.",
        "brats-c",
        used_by=("corruptions.json",),
    ),
    ContractId(
        "attack_budgets",
        "The default attack budgets eps, in input_unit (the audit's --eps overrides them).",
        [0.05, 0.1, 0.2],
        used_by=("attack.json", "compare.json", "adversarial_training.json"),
    ),
    ContractId("output_dir", "Where workflows write results and the MLflow store.", "$@bundle_root + '/eval'"),
    ContractId(
        "tracking_uri",
        "The MLflow tracking URI; null: MLFLOW_TRACKING_URI, else a SQLite store in output_dir.",
        None,
        used_by=(*EVAL, "denoiser.json"),
    ),
    ContractId(
        "experiment_name",
        "The MLflow experiment.",
        "robustseg",
        used_by=(*EVAL, "denoiser.json"),
        zoo=("metadata name",),
    ),
    ContractId(
        "validate_data",
        "Check every case (files present and readable, one grid, finite values) before any compute.",
        True,
        used_by=(*EVAL, "denoiser.json"),
    ),
    ContractId(
        "noise_sigma",
        "The Gaussian noise sigma the model was trained with (0: none); certification's default sigma.",
        0.0,
        used_by=("certify.json", "noise_training.json"),
    ),
    ContractId(
        "seed",
        "The training seed.",
        0,
        used_by=("denoiser.json",),
    ),
    ContractId(
        "resume",
        "Resume a killed training from its last checkpoint.",
        False,
        used_by=("denoiser.json", *DEFEND),
    ),
    ContractId(
        "is_not_rank0",
        "True on every rank but 0 of a distributed run (logging and saving happen on rank 0).",
        "$torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() > 0",
        used_by=("denoiser.json",),
    ),
    ContractId(
        "amp",
        "Mixed precision for training.",
        False,
        used_by=("denoiser.json",),
    ),
    ContractId(
        "spatial_dims",
        "2 or 3.",
        example='"spatial_dims": 3',
        used_by=("denoiser.json",),
    ),
    ContractId(
        "in_channels",
        "The number of input channels (4 for BraTS, 3 for RGB).",
        example='"in_channels": 4',
        used_by=("denoiser.json",),
    ),
    ContractId(
        "train#deterministic_transforms",
        "The list of training transforms up to the first random one (load, orient, crop, normalise).",
        example='"train": {"deterministic_transforms": [{"_target_": "LoadImaged", ...}, ...]}',
        used_by=TRAIN,
    ),
    ContractId(
        "train#random_transforms",
        "The list of random training transforms (noise training appends its Gaussian noise to it).",
        example='"train": {"random_transforms": [{"_target_": "RandCropByPosNegLabeld", ...}, ...]}',
        used_by=("noise_training.json",),
    ),
    ContractId(
        "train#dataset",
        "The training dataset; the sensitivity overlay sets its data (train#dataset#data) to the training split less "
        "the slice it holds out for the analysis.",
        example='"train": {"dataset": {"_target_": "CacheDataset", "data": ..., "transform": ...}}',
        used_by=("sensitivity.json",),
    ),
    ContractId(
        "train#handlers",
        "The trainer's handlers (the list train#trainer#train_handlers refers to); the sensitivity overlay appends "
        "its refresh handler.",
        example='"train": {"handlers": [{"_target_": "StatsHandler", ...}, ...]}',
        used_by=("sensitivity.json",),
    ),
    ContractId(
        "loss",
        "The training loss, loss(logits, labels) (the distillation teacher is trained on it at temperature T).",
        example='"loss": {"_target_": "DiceCELoss", "to_onehot_y": true, "softmax": true}',
        used_by=("distillation.json",),
    ),
    ContractId(
        "train#trainer",
        "The bundle's MONAI SupervisedTrainer; the defences set its iteration_update (and the distillation "
        "teacher its loss_function) and keep everything else: data, optimizer, handlers, AMP.",
        example='"train": {"trainer": {"_target_": "SupervisedTrainer", "network": "@network", ...}}',
        used_by=DEFEND,
    ),
    ContractId(
        "ckpt_dir",
        "The folder of the training checkpoints; the defences train into a folder of their own under models/.",
        "$@bundle_root + '/models'",
        used_by=DEFEND,
    ),
    ContractId(
        "validate#dataset",
        "The validation dataset (the denoiser is validated on its cases).",
        example='"validate": {"dataset": {"_target_": "Dataset", "data": ..., "transform": "@validate#preprocessing"}}',
        used_by=("denoiser.json",),
    ),
)
"""Every id of the contract, in the order of ``docs/contract.md``."""

OVERLAY_REQUIRES: dict[str, tuple[str, ...]] = {
    "certify_denoised.json": ("certify.json", "denoiser.json"),
    "denoiser.json": ("noise_training.json",),
}
"""Overlays that are used on top of others (their ids count as defined)."""

_REF = re.compile(r"[@%]([A-Za-z_][A-Za-z0-9_#]*)")


def contract_ids() -> set[str]:
    return {c.id for c in CONTRACT}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _defined(config: dict[str, Any], prefix: str = "") -> set[str]:
    """Every id a config defines (``a#b`` for nested keys; ``+`` merge prefixes dropped)."""
    out: set[str] = set()
    for key, value in config.items():
        name = prefix + str(key).lstrip("+")
        out.add(name)
        if isinstance(value, dict):
            out |= _defined(value, prefix=name + "#")
    return out


def references(config: Any) -> set[str]:
    """The ids a raw config value refers to (``@id``, ``%id``), at any depth."""
    return {m.group(1) for text in _strings(config) for m in _REF.finditer(text)}


def overlay_ids(path: str | Path) -> tuple[set[str], set[str]]:
    """The ids an overlay refers to (``@id``, ``%id``) and the ids it defines."""
    config = json.loads(Path(path).read_text())
    return references(config), _defined(config)


def markdown() -> str:
    """``docs/contract.md``: the contract as one page."""
    lines = [
        "# The bundle contract",
        "",
        "Every id that the workflow overlays in `configs/` read from a bundle. A bundle that defines these ids (or",
        "lets `robustseg audit` map them from the names model zoo bundles use) runs every overlay unchanged. Ids",
        "with a default may be left out: `robustseg audit` adds the default to the overlay it writes next to its",
        "outputs (`bundle_overlay.json`). Ids without one must be defined by the bundle for the overlays that use",
        "them; the audit stops before any compute with the line to add. The overlays use no other id of a bundle:",
        "`tests/test_contract.py` parses every overlay and fails on any `@id` outside this list and the overlay's",
        "own ids.",
        "",
        "This page is written by `python -m robustseg.contract > docs/contract.md` from `robustseg.contract.CONTRACT`.",
        "",
        "| id | meaning | default when missing | used by | mapped from (model zoo) |",
        "|---|---|---|---|---|",
    ]
    for c in CONTRACT:
        default = "*required*" if c.required else f"`{json.dumps(c.default)}`"
        zoo = ", ".join(f"`{z}`" for z in c.zoo) or ""
        lines.append(f"| `{c.id}` | {c.meaning.replace('|', '/')} | {default} | {', '.join(c.used_by)} | {zoo} |")
    lines += [
        "",
        "Overlays used on top of others: "
        + "; ".join(f"`{k}` needs {', '.join(f'`{v}`' for v in vs)}" for k, vs in OVERLAY_REQUIRES.items())
        + ".",
        "",
        "Labels may come as class maps or as region masks (one channel per region, in the order of the label",
        "scheme's `sigmoid_regions`, as the model zoo's `ConvertToMultiChannelBasedOnBratsClassesd` gives them);",
        "region masks are turned into a class map when one represents them exactly (nested regions), and refused",
        "otherwise. Cases without a `case_id` are named by their image file.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown())
