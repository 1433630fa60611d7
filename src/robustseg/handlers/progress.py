"""Progress of an engine's run, readable on a terminal and in a log file.

On a terminal, a tqdm bar over the iterations (Ignite's ``ProgressBar``) shows the training loss. Everywhere, and so
in log files, where a bar would be saved as thousands of ``\\r``-joined redraws, one line is logged per epoch of a
trainer::

    epoch 3/12: loss 0.4123, val_mean_dice 0.9311 (best 0.9311 at epoch 3), 38.8 s/epoch, ETA 0:05:49

and, off a terminal, a line now and then within a long epoch or evaluation (:class:`robustseg.progress.LineProgress`:
done/total, rate, ETA).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from robustseg.handlers.metrics import loss_from_output
from robustseg.progress import LineProgress, format_duration, on_terminal

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ProgressBar"]

logger = logging.getLogger("robustseg.progress")


def _loss(output: Any) -> dict[str, float]:
    loss = loss_from_output(output)
    return {"loss": loss} if loss is not None else {}


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, float | int) and math.isfinite(value) else None


class ProgressBar:
    """Progress of a trainer or an evaluator, attached the way MONAI handler lists attach (``attach(engine)``).

    Args:
        show_loss: show the iteration's loss and log one line per epoch (trainers); off for evaluators.
        persist: keep each epoch's finished bar on screen (terminals only).
        evaluator: the trainer's validation engine; its key metric (and best so far) goes into the epoch line.
        desc: the name shown in the lines (default ``epoch N/M`` for trainers, ``evaluate`` for evaluators).
    """

    def __init__(
        self, show_loss: bool = True, persist: bool = False, evaluator: Engine | None = None, desc: str | None = None
    ) -> None:
        self.show_loss = show_loss
        self.persist = persist
        self.evaluator = evaluator
        self.desc = desc
        self._lines: LineProgress | None = None
        self._losses: list[float] = []
        self._epoch_start = 0.0
        self._epoch_seconds: list[float] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if on_terminal():
            from ignite.handlers import ProgressBar as IgniteProgressBar

            bar = IgniteProgressBar(persist=self.persist)
            bar.attach(engine, output_transform=_loss if self.show_loss else None)
        else:
            engine.add_event_handler(Events.EPOCH_STARTED, self._start_lines)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._update_lines)
        if self.show_loss:
            engine.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_loss)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._log_epoch)

    def _name(self, engine: Engine) -> str:
        if self.desc:
            return self.desc
        if self.show_loss:
            return f"epoch {engine.state.epoch}/{engine.state.max_epochs}"
        return "evaluate"

    def _start_lines(self, engine: Engine) -> None:
        total = engine.state.epoch_length
        unit = "iteration" if self.show_loss else "case"
        self._lines = LineProgress(total=total, desc=self._name(engine), unit=unit)
        if self.show_loss:  # a trainer's epoch lines say where it is: no line after its first iteration
            self._lines.last = time.monotonic()

    def _update_lines(self, engine: Engine) -> None:
        if self._lines is None:
            return
        if self.show_loss and self._losses:
            self._lines.set_postfix_str(f"loss {sum(self._losses) / len(self._losses):.4f}")
        total = self._lines.total
        if total is not None and self._lines.n + 1 >= total and self.show_loss:
            self._lines.n += 1  # the epoch line follows at once
            return
        self._lines.update()

    def _start_epoch(self, engine: Engine) -> None:
        self._losses = []
        self._epoch_start = time.monotonic()

    def _collect_loss(self, engine: Engine) -> None:
        loss = loss_from_output(engine.state.output)
        if loss is not None:
            self._losses.append(loss)

    def _log_epoch(self, engine: Engine) -> None:
        seconds = time.monotonic() - self._epoch_start
        self._epoch_seconds.append(seconds)
        parts = []
        if self._losses:
            parts.append(f"loss {sum(self._losses) / len(self._losses):.4f}")
        parts += self._validation(engine)
        parts.append(f"{seconds:.1f} s/epoch")
        left = engine.state.max_epochs - engine.state.epoch if engine.state.max_epochs is not None else 0
        if left > 0:
            recent = self._epoch_seconds[-5:]
            parts.append(f"ETA {format_duration(left * sum(recent) / len(recent))}")
        logger.info("%s: %s", self._name(engine), ", ".join(parts))

    def _validation(self, engine: Engine) -> list[str]:
        evaluator = self.evaluator
        if evaluator is None or evaluator.state.epoch != engine.state.epoch:  # no validation at this epoch
            return []
        name = getattr(evaluator.state, "key_metric_name", None)
        value = _scalar(evaluator.state.metrics.get(name)) if name else None
        if name is None or value is None:
            return []
        text = f"{name} {value:.4f}"
        best = _scalar(getattr(evaluator.state, "best_metric", None))
        best_epoch = getattr(evaluator.state, "best_metric_epoch", None)
        if best is not None and best_epoch is not None and best_epoch > 0:
            text += f" (best {best:.4f} at epoch {best_epoch})"
        return [text]
