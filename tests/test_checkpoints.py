"""Tests for :func:`robustseg.checkpoints.check_checkpoint`: clear errors before any compute."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from robustseg.checkpoints import check_checkpoint, load_checkpoint


def unet(channels: tuple[int, ...] = (4, 8)) -> torch.nn.Module:
    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=channels, strides=(2,))


class Wrapper(torch.nn.Module):
    """Stands in for DistributedDataParallel: the network under ``.module``, its keys prefixed ``module.``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "models" / "model.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        check_checkpoint(path, unet())


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(ValueError, match="cannot be read"):
        check_checkpoint(path, unet())


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="not a state dict"):
        check_checkpoint(path, unet())


def test_other_network_names_a_mismatched_parameter(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    other = unet(channels=(2, 4)).state_dict()
    torch.save(other, path)
    network = unet()
    expected = network.state_dict()
    mismatched = {k for k in expected if k in other and expected[k].shape != other[k].shape}
    assert mismatched  # the two configs differ in shapes, not only in names
    with pytest.raises(ValueError, match="does not match the network") as info:
        check_checkpoint(path, network)
    named = re.search(r"first: (\S+) is", str(info.value))
    assert named is not None
    assert named.group(1) in mismatched
    k = named.group(1)
    assert f"{tuple(other[k].shape)} in the file" in str(info.value)
    assert f"{tuple(expected[k].shape)} in the network" in str(info.value)


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    state = unet().state_dict()
    first = sorted(state)[0]
    state["extra.weight"] = state.pop(first)
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"1 parameters missing \(first: {re.escape(first)}\).*extra\.weight"):
        check_checkpoint(path, unet())


@pytest.mark.parametrize("as_dict", [False, True])
def test_matching_checkpoint_passes(tmp_path: Path, as_dict: bool) -> None:
    path = tmp_path / "model.pt"
    state = unet().state_dict()
    torch.save({"model": state, "optimizer": {"state": {}}, "epoch": 3} if as_dict else state, path)
    check_checkpoint(path, unet())


def test_wrapped_network_is_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(unet().state_dict(), path)
    check_checkpoint(path, Wrapper(unet()))
    torch.save(unet(channels=(2, 4)).state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatches"):
        check_checkpoint(path, Wrapper(unet()))


def test_load_checkpoint_loads_the_weights_into_a_wrapped_network_in_eval_mode(tmp_path: Path) -> None:
    source = unet()
    path = tmp_path / "model.pt"
    torch.save({"model": source.state_dict()}, path)
    target = Wrapper(unet()).train()
    assert load_checkpoint(path, target) is target and not target.training
    for name, value in source.state_dict().items():
        torch.testing.assert_close(target.module.state_dict()[name], value)
