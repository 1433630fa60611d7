"""Target builders for targeted attacks."""

from __future__ import annotations

import pytest
import torch

from robustseg.attacks import ENHANCING_AS_OEDEMA, erase_tumour, relabel, relabel_enhancing_as_oedema


def test_erase_tumour_makes_every_voxel_background() -> None:
    labels = torch.randint(0, 4, (2, 1, 4, 4, 4))
    target = erase_tumour(labels)
    assert target.shape == labels.shape and target.dtype == labels.dtype
    assert (target == 0).all()
    assert (labels != 0).any()  # the input is left alone


def test_relabel_applies_all_mappings_at_once_and_accepts_json_keys() -> None:
    labels = torch.tensor([[0, 1, 2, 3]])
    assert relabel(labels, {3: 2, 2: 1}).tolist() == [[0, 1, 1, 2]]
    assert relabel(labels, {"3": 2}).tolist() == [[0, 1, 2, 2]]
    assert relabel_enhancing_as_oedema(labels).tolist() == [[0, 1, 2, 2]]
    assert ENHANCING_AS_OEDEMA == {3: 2}
    with pytest.raises(ValueError, match="class indices"):
        relabel(labels, {"ET": 2})
