"""A MONAI bundle robustseg has never seen, mapped onto the bundle contract without editing it.

:class:`BundleAdapter` reads a bundle's configs (``configs/train.json`` or ``.yaml``, else ``inference.json``, and its
``metadata.json``) without instantiating anything, and writes the overlay that gives the workflow overlays every
contract id (:mod:`robustseg.contract`): ids the bundle defines are used as they are; ids model zoo bundles name
otherwise are mapped (``validate#inferer``, ``data_list_file_path``, ``data_file_base_dir``,
``validate#dataset#data``); the head is read from the validation post-processing (``Activationsd`` with
``sigmoid=True`` or ``softmax=True``, ``AsDiscreted`` with ``argmax``), the label scheme from the label transform
(``ConvertToMultiChannelBasedOnBratsClassesd``: BraTS TC/WT/ET) or from the metadata's output ``channel_def``; the
domain from the metadata's input ``modality`` (MR) or ``format`` (RGB), else from a 2-D network with 3 input channels
(RGB), and with it the corruption benchmark (BraTS-C; natural-C) and where an attack may act (the brain; everywhere);
the attacks' clip bounds and unit from a validation preprocessing that bounds the input (``ScaleIntensityd``, or
``ScaleIntensityRanged`` with ``clip``, and no z-scoring); the rest get the contract's defaults. What cannot be
inferred is listed, each id with its meaning and the line to add, in one :class:`BundleContractError` raised before
any compute.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustseg.contract import CONTRACT, ContractId, references

__all__ = ["BundleAdapter", "BundleContractError", "Provided", "find_base_config"]

_CONFIG_NAMES = ("train", "inference")
_EXTENSIONS = (".json", ".yaml", ".yml")
BRATS_REGION_TRANSFORM = "ConvertToMultiChannelBasedOnBratsClassesd"
_RANGE_TRANSFORMS = ("ScaleIntensityd", "ScaleIntensity", "ScaleIntensityRanged", "ScaleIntensityRange")


class BundleContractError(ValueError):
    """The bundle lacks contract ids robustseg cannot infer; the message lists each with the line to add."""


@dataclass
class Provided:
    """How one contract id was provided: ``bundle`` (defined by it), ``mapped`` (from a zoo name), ``inferred``,
    ``default``, ``cli`` (an option of ``robustseg audit``) or ``missing``."""

    id: str
    how: str
    value: Any = None
    note: str = ""


def find_base_config(bundle_dir: Path) -> Path:
    """The bundle's base config: ``configs/train.json`` (or yaml), else ``configs/inference.json``."""
    configs = bundle_dir / "configs"
    for name in _CONFIG_NAMES:
        for ext in _EXTENSIONS:
            path = configs / f"{name}{ext}"
            if path.is_file():
                return path
    found = sorted(p.name for p in configs.glob("*")) if configs.is_dir() else []
    raise BundleContractError(
        f"{bundle_dir} is not a MONAI bundle robustseg can read: no configs/train.json (or .yaml) or "
        f"configs/inference.json (found {found or 'no configs folder'}). Point robustseg at the bundle's folder, "
        "the one holding configs/ and models/."
    )


@dataclass
class BundleAdapter:
    """Read a bundle and map it onto the contract.

    Args:
        bundle_dir: the bundle's folder (``configs/``, ``models/``).
        extra_configs: overlays merged after the base config (profiles such as ``configs/cpu_demo.json``).
        overrides: values given on the command line (``dataset_dir``, ``checkpoint``...), applied before mapping.
    """

    bundle_dir: Path
    extra_configs: Sequence[Path] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from monai.bundle import ConfigParser

        self.bundle_dir = Path(self.bundle_dir).resolve()
        self.base_config = find_base_config(self.bundle_dir)
        self.parser = ConfigParser()
        self.parser.read_config([str(self.base_config), *(str(p) for p in self.extra_configs)])
        for key, value in {"bundle_root": str(self.bundle_dir), **self.overrides}.items():
            self.parser[key] = value
        meta = self.bundle_dir / "configs" / "metadata.json"
        self.metadata: dict[str, Any] = json.loads(meta.read_text()) if meta.is_file() else {}

    # ------------------------------------------------------------------ reading the config

    def has(self, key: str) -> bool:
        return key in self.parser

    def raw(self, key: str) -> Any:
        return self.parser.get(key) if self.has(key) else None

    def targets(self, key: str) -> set[str]:
        """Every ``_target_`` reachable from ``key``'s raw config, following ``@id`` / ``%id`` references."""
        return {str(n["_target_"]).rsplit(".", 1)[-1] for n in self._nodes(key) if isinstance(n.get("_target_"), str)}

    def _nodes(self, key: str) -> list[Mapping[str, Any]]:
        """Every mapping reachable from ``key``'s raw config, following ``@id`` / ``%id`` references."""
        seen: set[str] = set()
        found: list[Mapping[str, Any]] = []
        todo = [key]
        while todo:
            current = todo.pop()
            if current in seen or not self.has(current):
                continue
            seen.add(current)
            value = self.raw(current)
            found += list(_walk(value))
            todo += sorted(references(value))
        return found

    def evaluate(self, key: str) -> Any:
        """The parsed value of a plain (non-component) id, or ``None`` when it cannot be evaluated here."""
        try:
            return self.parser.get_parsed_content(key, instantiate=False)
        except Exception:  # a config expression of the bundle failing is the bundle's business, not ours here
            return None

    # ------------------------------------------------------------------ inference of head and scheme

    def infer_head(self) -> tuple[str | None, str]:
        """``softmax`` / ``sigmoid`` from the validation post-processing, and where it was read."""
        for key in ("validate#postprocessing", "postprocessing", "train#postprocessing"):
            if not self.has(key):
                continue
            for node in (n for n in _walk(self.raw(key)) if isinstance(n.get("_target_"), str)):
                name = str(node["_target_"]).rsplit(".", 1)[-1]
                if name in ("Activationsd", "Activations"):
                    if node.get("sigmoid") is True:
                        return "sigmoid", f"{key}: Activationsd(sigmoid=True)"
                    if node.get("softmax") is True:
                        return "softmax", f"{key}: Activationsd(softmax=True)"
                if name in ("AsDiscreted", "AsDiscrete") and _truthy_first(node.get("argmax")):
                    return "softmax", f"{key}: AsDiscreted(argmax=True)"
        return None, ""

    def out_channels(self) -> int | None:
        network = self.raw("network_def")
        if isinstance(network, Mapping):
            for key in ("out_channels", "num_classes", "n_classes"):
                if isinstance(network.get(key), int):
                    return int(network[key])
        pred = self.metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {})
        return int(pred["num_channels"]) if isinstance(pred.get("num_channels"), int) else None

    def channel_names(self) -> list[str]:
        pred = self.metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {})
        names = pred.get("channel_def") or {}
        if not isinstance(names, Mapping):
            return []
        try:
            return [str(names[k]).strip().lower().replace(" ", "_") for k in sorted(names, key=int)]
        except (ValueError, TypeError):
            return []

    def infer_scheme(self, head: str) -> tuple[str | None, str]:
        """A ``label_scheme`` config expression and where it came from, or ``None``."""
        label_transforms = self.targets("validate#preprocessing")
        if BRATS_REGION_TRANSFORM in label_transforms:
            return "$robustseg.labels.BRATS", f"{BRATS_REGION_TRANSFORM} in validate#preprocessing: BraTS TC, WT, ET"
        if head != "softmax":
            return None, ""
        classes = self.out_channels()
        if classes is None or classes < 2:
            return None, ""
        names = self.channel_names()
        source = "metadata channel_def"
        if len(names) != classes:
            names, source = ["background", *[f"class_{i}" for i in range(1, classes)]], "generic names"
        return f"$robustseg.labels.LabelScheme({tuple(names)!r})", f"{classes} output channels, {source}"

    def infer_domain(self) -> tuple[str | None, str]:
        """``mri`` or ``natural`` (RGB images) from the metadata's input description, else from the network's shape
        (2-D with 3 input channels: RGB), and where it was read; ``None`` when neither says."""
        image = self.metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
        image = image if isinstance(image, Mapping) else {}
        modality = str(image.get("modality", "")).strip()
        if modality.lower() in ("mr", "mri"):
            return "mri", f"metadata inputs image modality {modality!r}"
        if str(image.get("format", "")).strip().lower() == "rgb":
            return "natural", "metadata inputs image format 'RGB'"
        dims, channels = self.evaluate("network_def#spatial_dims"), self.evaluate("network_def#in_channels")
        if dims == 2 and channels == 3:
            return "natural", "network_def: spatial_dims 2, in_channels 3 (RGB)"
        return None, ""

    def infer_input_range(self) -> tuple[tuple[float, float] | None, str]:
        """The range the validation preprocessing bounds the model's input to, and the transform that does: one
        ``ScaleIntensityd`` (``minv``, ``maxv``) or one ``ScaleIntensityRanged`` with ``clip=True`` (``b_min``,
        ``b_max``; without ``clip`` too for RGB images scaled from 0..255), and no z-scoring; ``None``
        otherwise (several such transforms, or values that are not plain numbers)."""
        nodes = [n for n in self._nodes("validate#preprocessing") if isinstance(n.get("_target_"), str)]
        names = [str(n["_target_"]).rsplit(".", 1)[-1] for n in nodes]
        if any(name.startswith("NormalizeIntensity") for name in names):
            return None, ""
        scaling = [(name, n) for name, n in zip(names, nodes, strict=True) if name in _RANGE_TRANSFORMS]
        if len(scaling) != 1:
            return None, ""
        name, node = scaling[0]
        if name.startswith("ScaleIntensityRange"):
            eight_bit = node.get("a_min") == 0 and node.get("a_max") == 255 and self.infer_domain()[0] == "natural"
            if node.get("clip") is not True and not eight_bit:
                return None, ""
            bounds = (node.get("b_min"), node.get("b_max"))
        else:
            bounds = (node.get("minv", 0.0), node.get("maxv", 1.0))
        numbers = sorted(float(b) for b in bounds if isinstance(b, int | float) and not isinstance(b, bool))
        if len(numbers) != 2:
            return None, ""
        return (numbers[0], numbers[1]), f"validate#preprocessing: {name} to {numbers[0]:g} .. {numbers[1]:g}"

    # ------------------------------------------------------------------ the overlay

    def contract_overlay(self, needed: Iterable[str]) -> tuple[dict[str, Any], list[Provided]]:
        """The overlay that completes the contract ids ``needed``, and how each id was provided."""
        overlay: dict[str, Any] = {}
        report: list[Provided] = []
        by_id = {c.id: c for c in CONTRACT}
        for key in needed:
            entry = self._provide(by_id[key], overlay)
            report.append(entry)
            if entry.how in ("mapped", "inferred", "default"):
                overlay[key] = entry.value
        return overlay, report

    def _provide(self, c: ContractId, overlay: Mapping[str, Any]) -> Provided:
        if c.id in self.overrides:
            return Provided(c.id, "cli", self.overrides[c.id])
        if c.id == "bundle_root":  # zoo bundles hard-code their install path; the folder robustseg was given wins
            return Provided(c.id, "mapped", str(self.bundle_dir), "the bundle's folder")
        if self.has(c.id):
            return Provided(c.id, "bundle")
        special = getattr(self, f"_map_{c.id.replace('#', '_')}", None)
        if special is not None:
            mapped = special()
            if mapped is not None:
                return mapped
        if c.required:
            return Provided(c.id, "missing", note=c.example)
        return Provided(c.id, "default", c.default)

    def _map_network(self) -> Provided | None:
        if self.has("network_def"):
            return Provided("network", "mapped", "$@network_def.to(@device)", "from network_def")
        return Provided(
            "network",
            "missing",
            note='"network_def": {"_target_": "...", ...} and "network": "$@network_def.to(@device)"',
        )

    def _map_inferer(self) -> Provided | None:
        if self.has("validate#inferer"):
            return Provided("inferer", "mapped", "@validate#inferer", "validate#inferer")
        return Provided("inferer", "default", {"_target_": "SimpleInferer"}, "no inferer: the whole case at once")

    def _map_dataset_dir(self) -> Provided | None:
        if self.has("data_file_base_dir"):
            return Provided("dataset_dir", "mapped", "@data_file_base_dir", "data_file_base_dir")
        return None

    def _map_datalist(self) -> Provided | None:
        if self.has("data_list_file_path"):
            return Provided("datalist", "mapped", "@data_list_file_path", "data_list_file_path")
        return None

    def _map_test_data(self) -> Provided | None:
        path = None
        for key in ("datalist", "data_list_file_path"):
            value = self.evaluate(key) if self.has(key) else None
            if isinstance(value, str) and Path(value).is_file():
                path = Path(value)
                break
        if path is not None:
            try:
                splits = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                splits = {}
            if splits.get("testing"):
                value = "$robustseg.data.datalist.load_datalist(@datalist, 'testing', @dataset_dir)"
                return Provided("test_data", "mapped", value, f"the 'testing' split of {path}")
        if self.has("validate#dataset#data"):
            return Provided("test_data", "mapped", "@validate#dataset#data", "the bundle's validation cases")
        return Provided(
            "test_data",
            "missing",
            note="\"test_data\": \"$robustseg.data.datalist.load_datalist('/path/datalist.json', 'testing', "
            '@dataset_dir)" (or pass --datalist FILE --split NAME)',
        )

    def _map_head(self) -> Provided | None:
        head, source = self.infer_head()
        if head is None:
            return Provided("head", "default", "softmax", "nothing in validate#postprocessing says; pass --head")
        return Provided("head", "inferred", head, source)

    def _map_label_scheme(self) -> Provided | None:
        head = self.overrides.get("head") or self.infer_head()[0] or "softmax"
        scheme, source = self.infer_scheme(str(head))
        if scheme is None:
            example = (
                "\"label_scheme\": \"$robustseg.labels.LabelScheme(('background', 'tumour'), "
                "regions={'tumour': (1,)})\""
                if head == "softmax"
                else "\"label_scheme\": \"$robustseg.labels.LabelScheme(('background', 'a', 'b'), "
                "regions={'A': (1, 2), 'B': (2,)}, sigmoid_regions=('A', 'B'))\" (one region per sigmoid channel)"
            )
            return Provided("label_scheme", "missing", note=example)
        return Provided("label_scheme", "inferred", scheme, source)

    def _map_channel_names(self) -> Provided | None:
        image = self.metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
        names = image.get("channel_def") if isinstance(image, Mapping) else None
        if not isinstance(names, Mapping):
            return None
        try:
            listed = [str(names[k]) for k in sorted(names, key=int)]
        except (ValueError, TypeError):
            return None
        return Provided("channel_names", "mapped", listed, "metadata inputs channel_def")

    def _map_corruption_benchmark(self) -> Provided | None:
        domain, source = self.infer_domain()
        if domain is None:
            return Provided(
                "corruption_benchmark",
                "default",
                "brats-c",
                "nothing says what the images are: BraTS-C's MRI corruptions; --set corruption_benchmark=natural-c",
            )
        return Provided("corruption_benchmark", "inferred", "natural-c" if domain == "natural" else "brats-c", source)

    def _map_perturbation_mask(self) -> Provided | None:
        domain, source = self.infer_domain()
        if domain is None:
            return None
        return Provided("perturbation_mask", "inferred", "none" if domain == "natural" else "nonzero", source)

    def _map_input_min(self) -> Provided | None:
        bounds, source = self.infer_input_range()
        return None if bounds is None else Provided("input_min", "inferred", bounds[0], source)

    def _map_input_max(self) -> Provided | None:
        bounds, source = self.infer_input_range()
        return None if bounds is None else Provided("input_max", "inferred", bounds[1], source)

    def _map_input_unit(self) -> Provided | None:
        bounds, source = self.infer_input_range()
        if bounds is None:
            return None
        what = "pixel" if self.infer_domain()[0] == "natural" else "scaled intensity"
        return Provided("input_unit", "inferred", f"[{bounds[0]:g}, {bounds[1]:g}] {what} units", source)

    def _map_experiment_name(self) -> Provided | None:
        name = self.metadata.get("name") or self.bundle_dir.name
        return Provided("experiment_name", "inferred", str(name), "the bundle's name")


def _walk(value: Any) -> Iterable[Mapping[str, Any]]:
    """Every mapping inside a raw config value."""
    if isinstance(value, Mapping):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v)


def _truthy_first(value: Any) -> bool:
    return bool(value[0]) if isinstance(value, list | tuple) and value else value is True
