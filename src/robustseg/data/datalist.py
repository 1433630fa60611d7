"""MONAI datalists with seeded train / validation / test splits.

A datalist is a JSON file that MONAI's :func:`monai.data.load_decathlon_datalist` reads. Paths are relative to the
dataset root, so the datalist travels with the data. Each entry::

    {"case_id": "BraTS-GLI-00001-000", "layout": "brats2023",
     "image": ["BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz", ...],   # T1, T1c, T2, FLAIR
     "label": "BraTS-GLI-00001-000/BraTS-GLI-00001-000-seg.nii.gz"}

For the ``decathlon`` layout ``image`` is the one 4-D file; the channels are reordered by
:class:`robustseg.data.transforms.CanonicalBraTSd`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SPLITS",
    "empty_policy_of",
    "hold_out",
    "load_datalist",
    "split_cases",
    "write_datalist",
    "write_splits",
]

SPLITS: tuple[str, ...] = ("training", "validation", "testing")


def split_cases(
    case_ids: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """Split case ids into training / validation / testing by a seeded permutation.

    The order of ``case_ids`` does not matter (they are sorted first), so the same cases and seed always give the same
    split. Every split with a positive fraction gets at least one case when there are enough cases.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1 but are {tuple(fractions)}.")
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        raise ValueError("case ids must be unique.")
    if not ids:
        raise ValueError("no cases to split: the datalist would be empty.")
    order = np.random.default_rng(seed).permutation(len(ids))
    n = len(ids)
    counts = [int(np.floor(f * n)) for f in fractions]
    for i, f in enumerate(fractions):  # give each requested split at least one case, taken from training
        if f > 0 and counts[i] == 0 and n >= sum(1 for x in fractions if x > 0):
            counts[i] = 1
    counts[0] = n - counts[1] - counts[2]
    bounds = np.cumsum([0, *counts])
    return {name: [ids[j] for j in sorted(order[bounds[i] : bounds[i + 1]])] for i, name in enumerate(SPLITS)}


def write_datalist(
    records: Sequence[dict[str, Any]],
    path: str | Path,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``records`` (one dict per case with ``case_id``) split into a MONAI datalist at ``path``.

    Returns the datalist written. ``extra`` adds top-level fields (for example ``"source": "phantom"``).
    """
    if not records:
        raise ValueError(f"no cases to write to {path}: the datalist would be empty.")
    by_id = {r["case_id"]: r for r in records}
    splits = split_cases(list(by_id), fractions, seed)
    header: dict[str, Any] = {
        "name": "robustseg BraTS datalist",
        "seed": seed,
        "fractions": list(fractions),
        "labels": {"0": "background", "1": "necrotic_core", "2": "oedema", "3": "enhancing_tumour"},
        "modalities": ["t1", "t1c", "t2", "flair"],
        **(extra or {}),
    }
    return write_splits({name: [by_id[i] for i in splits[name]] for name in SPLITS}, path, header)


def write_splits(splits: dict[str, list[dict[str, Any]]], path: str | Path, header: dict[str, Any]) -> dict[str, Any]:
    """Write records already split (``training``, ``validation``, ``testing``) under ``header`` to ``path``."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"a datalist's splits are {list(SPLITS)}, not {unknown}.")
    datalist = {**header, **{name: list(splits.get(name, [])) for name in SPLITS}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(datalist, indent=2) + "\n")
    return datalist


def hold_out(
    records: Sequence[dict[str, Any]], fraction: float, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``records`` into ``(kept, held_out)``: a seeded ``fraction`` held out, at least one when positive.

    Used to take a validation split (checkpoint selection) out of an official training split, so that the official
    validation split stays untouched for testing. The order of ``records`` does not matter.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1) but is {fraction}.")
    ids = [r["case_id"] for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique.")
    split = split_cases(ids, (1.0 - fraction, fraction, 0.0), seed)
    held = set(split["validation"])
    return [r for r in records if r["case_id"] not in held], [r for r in records if r["case_id"] in held]


def load_datalist(path: str | Path, split: str, base_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Entries of one split with paths made absolute against ``base_dir`` (default: the datalist's folder).

    Raises a ValueError naming the file when it is missing, unreadable, lacks the split, or the split is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"datalist {path} does not exist; write one with scripts/make_datalist.py (real BraTS) "
            "or scripts/make_phantoms.py (phantom data)."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"datalist {path} is not valid JSON ({e}); regenerate it with scripts/make_datalist.py."
        ) from e
    if split not in data:
        raise ValueError(f"datalist {path} has no {split!r} split; it has {sorted(k for k in data if k in SPLITS)}.")
    entries = data[split]
    if not entries:
        raise ValueError(
            f"the {split!r} split of datalist {path} is empty; rebuild it with more cases or other fractions."
        )
    base = Path(base_dir) if base_dir is not None else path.parent

    def absolute(p: str) -> str:
        return str(p if Path(p).is_absolute() else base / p)

    out = []
    for entry in entries:
        item = dict(entry)
        image = item["image"]
        item["image"] = [absolute(p) for p in image] if isinstance(image, list) else absolute(image)
        if "label" in item:
            item["label"] = absolute(item["label"])
        out.append(item)
    return out


ERA_POLICY: dict[str, str] = {"brats2021": "brats", "decathlon": "brats", "brats2023": "brats2023"}
"""The empty-region policy of each layout's challenge era (:mod:`robustseg.evaluation.dice`)."""


def empty_policy_of(path: str | Path, default: str = "brats") -> str:
    """The empty-region policy of a datalist's cases: the official evaluation of their layout's challenge era.

    BraTS 2023+ layouts follow the BraTS 2023 package (``brats2023``), BraTS 2018-2022 and Decathlon layouts the
    earlier convention (``brats``); a datalist without layouts, or with several eras, gets ``default``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return default  # a missing or broken datalist is reported by load_datalist, where it is read for cases
    layouts = {e["layout"] for split in SPLITS for e in data.get(split, []) if isinstance(e, dict) and "layout" in e}
    policies = {ERA_POLICY.get(str(layout), default) for layout in layouts} or {default}
    return policies.pop() if len(policies) == 1 else default
