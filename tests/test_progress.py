"""Progress in log files: periodic one-line progress (done/total, rate, ETA), and epoch lines of a trainer."""

from __future__ import annotations

import io
import logging

import pytest
import torch

from robustseg.progress import LineProgress, format_duration, progress


def test_line_progress_prints_done_total_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = LineProgress(total=4, desc="sweep", unit="case", stream=stream, every=0)
    for _ in range(4):
        bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[0].startswith("sweep: 1/4 cases (25 %), ") and "ETA " in lines[0]
    assert lines[-1].startswith("sweep: 4/4 cases (100 %), ") and "ETA" not in lines[-1]


def test_line_progress_is_periodic_in_between() -> None:
    stream = io.StringIO()
    bar = LineProgress(range(100), total=100, desc="x", stream=stream, every=3600)
    assert sum(1 for _ in bar) == 100
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == [
        "x: 1/100 its (1 %)",
        "x: 100/100 its (100 %)",
    ]


def test_a_resumed_progress_counts_the_rate_of_new_work_only() -> None:
    stream = io.StringIO()
    bar = LineProgress(total=10, initial=8, desc="sweep", unit="case", stream=stream, every=0)
    bar.update()
    assert stream.getvalue().startswith("sweep: 9/10 cases (90 %)")


def test_progress_off_a_terminal_is_line_progress(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress(total=2, desc="validating cases", unit="case")
    assert isinstance(bar, LineProgress)


def test_format_duration() -> None:
    assert format_duration(3725.4) == "1:02:05" and format_duration(-3) == "0:00:00"


def test_trainer_epoch_lines_carry_epoch_loss_metric_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    from ignite.engine import Engine, Events

    from robustseg.handlers import ProgressBar

    losses = iter([1.0, 0.5, 0.25, 0.125])
    trainer = Engine(lambda engine, batch: [{"loss": torch.tensor(next(losses))}])
    evaluator = Engine(lambda engine, batch: None)
    evaluator.state.key_metric_name = "val_mean_dice"

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:  # what MONAI's ValidationHandler does, before the progress handler
        evaluator.state.epoch = engine.state.epoch
        evaluator.state.metrics = {"val_mean_dice": 0.5 + 0.1 * engine.state.epoch}
        evaluator.state.best_metric, evaluator.state.best_metric_epoch = (
            0.5 + 0.1 * engine.state.epoch,
            engine.state.epoch,
        )

    ProgressBar(evaluator=evaluator).attach(trainer)
    with caplog.at_level(logging.INFO, logger="robustseg.progress"):
        trainer.run([0, 1], max_epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "robustseg.progress"]
    assert lines[0].startswith("epoch 1/2: loss 0.7500, val_mean_dice 0.6000 (best 0.6000 at epoch 1), ")
    assert "ETA 0:00:0" in lines[0]
    assert lines[1].startswith("epoch 2/2: loss 0.1875, val_mean_dice 0.7000") and "ETA" not in lines[1]
