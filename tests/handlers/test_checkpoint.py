"""Tests for :mod:`robustseg.handlers.checkpoint`: per-epoch saves and resuming a killed training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from robustseg.handlers.checkpoint import TrainingCheckpoint, latest_checkpoint

DATA = [torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, 0.5]])]  # two iterations per epoch


def make_trainer(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Engine:
    def step(engine: Engine, x: torch.Tensor) -> dict:
        optimizer.zero_grad()
        loss = (model(x) - 1.0).pow(2).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    return Engine(step)


def make_model(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(2, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def count_epochs(trainer: Engine) -> list[int]:
    ran: list[int] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: ran.append(engine.state.epoch))
    return ran


def test_latest_checkpoint_is_numeric(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    for name in ["checkpoint_epoch=9.pt", "checkpoint_epoch=10.pt", "checkpoint_epoch=2.pt", "other_epoch=99.pt"]:
        (tmp_path / name).touch()
    (tmp_path / "checkpoint_epoch=11.pt.tmp").touch()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=10.pt"


def test_save_then_resume(tmp_path: Path) -> None:
    model, optimizer = make_model(seed=0)
    trainer = make_trainer(model, optimizer)
    TrainingCheckpoint(tmp_path, {"model": model, "optimizer": optimizer}).attach(trainer)
    ran = count_epochs(trainer)
    trainer.run(DATA, max_epochs=3)
    assert ran == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=3.pt"]
    saved = torch.load(tmp_path / "checkpoint_epoch=3.pt", weights_only=True)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(saved["model"][k], v)
    assert saved["trainer"]["iteration"] == 3 * len(DATA)  # ignite stores the iteration; epoch = iteration // length

    fresh, fresh_optimizer = make_model(seed=1)
    assert not torch.equal(fresh.weight, model.weight)
    resumed = make_trainer(fresh, fresh_optimizer)
    TrainingCheckpoint(tmp_path, {"model": fresh, "optimizer": fresh_optimizer}, resume=True, save=False).attach(
        resumed
    )
    loaded: dict[str, torch.Tensor] = {}

    @resumed.on(Events.STARTED)  # registered after the loader, so it sees the loaded state
    def snapshot(engine: Engine) -> None:
        loaded.update({k: v.clone() for k, v in fresh.state_dict().items()})
        assert engine.state.epoch == 3
        assert engine.state.iteration == 3 * len(DATA)

    ran = count_epochs(resumed)
    resumed.run(DATA, max_epochs=5)
    assert ran == [4, 5]
    assert resumed.state.epoch == 5
    assert loaded.keys() == saved["model"].keys()
    for k, v in loaded.items():
        torch.testing.assert_close(v, saved["model"][k])
    assert fresh_optimizer.state_dict()["param_groups"][0]["lr"] == 0.1


def test_resume_continues_like_uninterrupted_training(tmp_path: Path) -> None:
    # 3 + 2 resumed epochs reach the same weights as 5 epochs in one go (SGD, fixed data order)
    reference, reference_optimizer = make_model(seed=0)
    make_trainer(reference, reference_optimizer).run(DATA, max_epochs=5)

    model, optimizer = make_model(seed=0)
    trainer = make_trainer(model, optimizer)
    TrainingCheckpoint(tmp_path, {"model": model, "optimizer": optimizer}).attach(trainer)
    trainer.run(DATA, max_epochs=3)
    fresh, fresh_optimizer = make_model(seed=1)
    resumed = make_trainer(fresh, fresh_optimizer)
    TrainingCheckpoint(tmp_path, {"model": fresh, "optimizer": fresh_optimizer}, resume=True).attach(resumed)
    resumed.run(DATA, max_epochs=5)
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=5.pt"


def test_resume_without_checkpoint_warns_and_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model, optimizer = make_model(seed=0)
    trainer = make_trainer(model, optimizer)
    with caplog.at_level(logging.WARNING, logger="robustseg.handlers.checkpoint"):
        TrainingCheckpoint(tmp_path, {"model": model, "optimizer": optimizer}, resume=True).attach(trainer)
    assert any("no checkpoint_epoch" in r.getMessage() and str(tmp_path) in r.getMessage() for r in caplog.records)
    ran = count_epochs(trainer)
    trainer.run(DATA, max_epochs=2)
    assert ran == [1, 2]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=2.pt"
