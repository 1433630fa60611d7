"""The models of a defence comparison: how they are named, found, and refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustseg.workflows.compare import discover_models, parse_models


def _checkpoint(folder: Path, defence: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(torch.nn.Conv3d(4, 4, 1).state_dict(), folder / "model.pt")
    if defence is not None:
        (folder / "defence.json").write_text(json.dumps(defence))
    return folder / "model.pt"


def test_models_are_named_and_a_distilled_one_gets_its_temperature(tmp_path: Path) -> None:
    base = _checkpoint(tmp_path / "models")
    student = _checkpoint(tmp_path / "models" / "distill_T50", {"defence": "distillation", "temperature": 50.0})
    adv = _checkpoint(tmp_path / "models" / "adv", {"defence": "adversarial_training", "eps": 0.2})
    models = parse_models([f"baseline={base}", str(student), {"name": "robust", "checkpoint": str(adv)}])
    assert [(m.name, m.temperature) for m in models] == [("baseline", 1.0), ("distill_T50", 50.0), ("robust", 1.0)]
    assert models[2].defence["eps"] == 0.2
    given = parse_models([f"a={base}", {"name": "b", "checkpoint": str(student), "temperature": 4}])
    assert given[1].temperature == 4.0  # a given T wins over the record


def test_discovery_finds_the_defended_models_beside_the_checkpoint(tmp_path: Path) -> None:
    base = _checkpoint(tmp_path / "models")
    _checkpoint(tmp_path / "models" / "adv_pgd_eps0.2", {"defence": "adversarial_training"})
    _checkpoint(tmp_path / "models" / "plain_copy")  # no defence.json
    (tmp_path / "models" / "distill_T20").mkdir()  # a defence.json without a model.pt: training did not finish
    (tmp_path / "models" / "distill_T20" / "defence.json").write_text("{}")
    found = discover_models(base)
    assert found == [f"baseline={base}", f"adv_pgd_eps0.2={tmp_path / 'models' / 'adv_pgd_eps0.2' / 'model.pt'}"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: [f"baseline={p}"], "a baseline and at least one other model"),
        (lambda p: [f"a={p}", f"a={p}"], r"\['a'\] are given twice"),
        (lambda p: [f"a={p}", f"b={p.parent / 'missing.pt'}"], "the checkpoint of model 'b'.*does not exist"),
        (lambda p: [f"a={p}", f"b c={p}"], "must be letters, digits"),
        (lambda p: [f"a={p}", {"name": "b", "checkpoint": str(p), "temperature": 0}], "temperature of model 'b'"),
        (lambda p: [f"a={p}", {"name": "b", "path": str(p)}], "a dict with 'checkpoint'"),
        (lambda p: f"a={p}", "give the models as a list"),
    ],
)
def test_bad_model_lists_are_refused_with_the_model_named(tmp_path: Path, make, message: str) -> None:
    base = _checkpoint(tmp_path / "models")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_models(make(base))


def test_a_corrupt_defence_record_is_named(tmp_path: Path) -> None:
    base = _checkpoint(tmp_path / "models")
    other = _checkpoint(tmp_path / "other")
    (tmp_path / "other" / "defence.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"defence\.json cannot be read"):
        parse_models([f"a={base}", f"b={other}"])
