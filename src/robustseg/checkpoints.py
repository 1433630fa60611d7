"""Check a checkpoint against the network before any compute, with errors that say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["check_checkpoint", "load_checkpoint", "unwrap"]


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / DataParallel (its keys are in a checkpoint), else ``network``."""
    inner = getattr(network, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else network


def check_checkpoint(path: str | Path, network: torch.nn.Module, key: str | None = "model") -> dict[str, Any]:
    """Raise a clear error when ``path`` is missing, unreadable, or does not fit ``network``; else its state dict.

    Args:
        path: a ``torch.save`` file holding a state dict, or a dict with the state dict under ``key``.
        network: the bundle's network; every parameter name and shape must match.
        key: where the state dict lives in a dict checkpoint (MONAI's ``CheckpointSaver`` uses ``model``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist. Train the bundle first (configs/train.json), or pass "
            "--ckpt_dir pointing to the folder that holds model.pt."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it may be truncated.") from e
    if isinstance(state, dict) and key is not None and key in state and isinstance(state[key], dict):
        state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict.")
    expected = {k: tuple(v.shape) for k, v in unwrap(network).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            k = mismatched[0]
            where = f"{k} is {found[k]} in the file, {expected[k]} in the network"
            details.append(f"{len(mismatched)} shape mismatches (first: {where})")
        if missing:
            details.append(f"{len(missing)} parameters missing (first: {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise ValueError(
            f"checkpoint {path} does not match the network: {'; '.join(details)}. It was trained with another "
            "network config (channels, strides, num_res_units, profile); evaluate with the same config overlay."
        )
    return state


def load_checkpoint(path: str | Path, network: torch.nn.Module, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Check ``path`` against ``network`` (:func:`check_checkpoint`), load it, and return the network in eval mode."""
    unwrap(network).load_state_dict(check_checkpoint(path, network))
    return network.to(device).eval()
