"""What produced an output folder, written beside its results, so a resumed run never mixes two settings.

A fingerprint records everything that decides the rows of a results table: the settings of the run (every condition
with all its parameters, seeds, head, empty-region policy), the checkpoint's SHA-256, the network (class and the
names and shapes of its weights), the inferer (class and window settings) and the data's case ids. A run into a
folder with a fingerprint must match it; otherwise it stops before any compute with the differences named, and
``fresh=True`` (``--fresh``) starts over.

Case ids are the one exception to equality: results do not depend on which other cases are scored, so a run may
score more cases of the same data than the stored run (a ``max_cases`` raised; the fingerprint then records all of
them) or fewer (its report covers its own cases). Case sets that neither contain the other are another dataset or
split, and are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from robustseg.errors import creating

__all__ = [
    "FILE",
    "FingerprintMismatchError",
    "check_fingerprint",
    "claim_output_dir",
    "clear_outputs",
    "differences",
    "file_sha256",
    "inferer_signature",
    "network_signature",
    "state_sha256",
]

FILE = "fingerprint.json"


class FingerprintMismatchError(ValueError):
    """The output folder holds results of other settings; raised before any compute."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (a checkpoint), read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's weights (names, shapes and values), for models given as objects, not files."""
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def network_signature(network: torch.nn.Module) -> dict[str, Any]:
    """The network's class and a hash of its weights' names, shapes and dtypes (the architecture, not the values)."""
    module = getattr(network, "module", network)
    state = module.state_dict()
    layout = json.dumps([(k, list(v.shape), str(v.dtype)) for k, v in state.items()])
    return {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "parameters": int(sum(v.numel() for v in state.values())),
        "architecture_sha256": hashlib.sha256(layout.encode()).hexdigest(),
    }


_INFERER_FIELDS = ("roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale", "padding_mode", "cval")


def inferer_signature(inferer: Any) -> dict[str, Any]:
    """The inferer's class and window settings (MONAI's ``SlidingWindowInferer``: roi, batch, overlap, mode...)."""
    out: dict[str, Any] = {"class": f"{type(inferer).__module__}.{type(inferer).__qualname__}"}
    for name in _INFERER_FIELDS:
        if hasattr(inferer, name):
            value = getattr(inferer, name)
            out[name] = list(value) if isinstance(value, tuple | list) else _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _short(value: Any, width: int = 90) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One line per setting that differs between two fingerprints (nested keys joined by ``.``)."""
    out: list[str] = []
    for key in sorted(set(stored) | set(current), key=str):
        name = f"{prefix}{key}"
        if key not in current or key not in stored:
            where = "only in the stored fingerprint" if key not in current else "new in this run"
            out.append(f"{name}: {where}")
            continue
        a, b = stored[key], current[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, prefix=f"{name}.")
        elif key == "case_ids" and isinstance(a, list) and isinstance(b, list):
            gone, new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            if gone and new:  # neither set contains the other: another dataset or split
                out.append(
                    f"case_ids: {len(a)} stored, {len(b)} now, {len(gone)} only stored ({_short(gone, 60)}), "
                    f"{len(new)} only now ({_short(new, 60)})"
                )
        elif _labelled(a) and _labelled(b):  # conditions: compare by label
            old, now = {c["label"]: c for c in a}, {c["label"]: c for c in b}
            gone, new = [k for k in old if k not in now], [k for k in now if k not in old]
            if gone:
                out.append(f"{name}: only stored: {', '.join(gone)}")
            if new:
                out.append(f"{name}: only now: {', '.join(new)}")
            for label in (k for k in old if k in now):
                out += differences(old[label], now[label], prefix=f"{name}[{label}].")
        elif json.dumps(a, default=str, sort_keys=True) != json.dumps(b, default=str, sort_keys=True):
            out.append(f"{name}: {_short(a)} stored, {_short(b)} now")
    return out


def _labelled(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, Mapping) and "label" in v for v in value)


def clear_outputs(output_dir: Path, names: Iterable[str]) -> list[Path]:
    """Remove a run's own outputs (files and folders named ``names``, globs allowed) from ``output_dir``."""
    removed: list[Path] = []
    for pattern in names:
        for path in sorted(output_dir.glob(pattern)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def check_fingerprint(
    output_dir: Path, fingerprint: Mapping[str, Any], results: Sequence[str] = ("results.csv",), write: bool = True
) -> None:
    """Accept ``fingerprint`` for ``output_dir`` or raise :class:`FingerprintMismatchError` naming the differences.

    A folder without a fingerprint is accepted (and the fingerprint written when ``write``) unless it already holds
    one of ``results``: those rows came from a run whose settings are unknown.
    """
    path = output_dir / FILE
    fix = (
        "Use another output folder, or discard the stored results and start over: robustseg audit --fresh (a bundle "
        "run: the workflow's --attack_fresh, --certify_fresh, --compare_fresh or --corruption_fresh true)."
    )
    if not path.is_file():
        orphans = [name for name in results if (output_dir / name).is_file()]
        if orphans:
            raise FingerprintMismatchError(
                f"{output_dir} holds {orphans} but no {FILE}: those rows come from settings that cannot be checked "
                f"(an older robustseg, or a copied file). {fix}"
            )
        if write:
            creating(path)  # a run that then fails on bad input leaves no folder behind
            output_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fingerprint, indent=2, default=str) + "\n")
        return
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FingerprintMismatchError(f"{path} is not valid JSON ({e}). {fix}") from e
    current = json.loads(json.dumps(fingerprint, default=str))
    diff = differences(stored, current)
    if diff:
        listed = "\n  ".join(diff)
        raise FingerprintMismatchError(
            f"{output_dir} holds results of other settings; resuming would mix them. What differs:\n  {listed}\n{fix}"
        )
    more = set(current.get("case_ids", [])) - set(stored.get("case_ids", []))
    if write and more:  # more cases of the same data: the fingerprint now records them all
        merged = {**current, "case_ids": list(dict.fromkeys([*stored.get("case_ids", []), *current["case_ids"]]))}
        path.write_text(json.dumps(merged, indent=2, default=str) + "\n")


def claim_output_dir(
    output_dir: Path, fingerprint: Mapping[str, Any], outputs: Sequence[str], fresh: bool = False
) -> None:
    """Before any compute, on every rank: start over when ``fresh`` (rank 0 removes ``outputs``), then accept the
    folder for ``fingerprint`` (rank 0 writes it; every rank checks it) or raise naming what differs."""
    from robustseg.workflows import distributed

    logger = logging.getLogger(__name__)
    if fresh and distributed.is_rank0():
        for path in clear_outputs(output_dir, outputs):
            logger.info("fresh start: removed %s", path)
    distributed.barrier()
    if distributed.is_rank0():
        check_fingerprint(output_dir, fingerprint, results=tuple(o for o in outputs if o.endswith(".csv")))
    distributed.barrier()
    check_fingerprint(output_dir, fingerprint, results=(), write=False)
