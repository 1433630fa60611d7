"""The bundle contract: every overlay uses only contract ids and its own; the page docs/contract.md is the list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustseg.contract import CONTRACT, OVERLAY_REQUIRES, contract_ids, markdown, overlay_ids

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = sorted(p for p in (REPO / "configs").glob("*.json"))
PROFILES = {"cpu_demo.json", "gloo.json", "distributed.json"}


def outside_contract(path: Path) -> set[str]:
    """The ids an overlay uses that are neither contract ids nor defined by it or the overlays it needs."""
    used, defined = overlay_ids(path)
    for companion in OVERLAY_REQUIRES.get(path.name, ()):
        defined |= overlay_ids(path.parent / companion)[1]
    return {i for i in used if i not in contract_ids() and i not in defined}


@pytest.mark.parametrize("overlay", [p for p in OVERLAYS if p.name not in PROFILES], ids=lambda p: p.name)
def test_every_overlay_uses_only_contract_ids_and_its_own(overlay: Path) -> None:
    assert not outside_contract(overlay), f"{overlay.name} uses ids outside the contract"


def test_an_id_outside_the_contract_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"my_eps": 0.1, "sweep": {"eps": "@my_eps", "net": "@model", "ds": "%train#loader"}}))
    assert outside_contract(bad) == {"model", "train#loader"}


def test_the_contract_page_is_the_contract() -> None:
    page = (REPO / "docs" / "contract.md").read_text()
    assert page == markdown(), "docs/contract.md is stale: python -m robustseg.contract > docs/contract.md"
    for c in CONTRACT:
        assert f"| `{c.id}` |" in page


def test_our_bundle_defines_every_contract_id() -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "brats_unet3d" / "configs" / "train.json"))
    missing = [c.id for c in CONTRACT if c.id not in parser]
    assert not missing
