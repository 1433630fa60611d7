"""A tqdm progress bar over an engine's iterations, showing the training loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustseg.handlers.metrics import loss_from_output

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ProgressBar"]


def _loss(output: Any) -> dict[str, float]:
    loss = loss_from_output(output)
    return {"loss": loss} if loss is not None else {}


class ProgressBar:
    """Ignite's tqdm ``ProgressBar`` attached the way MONAI handler lists attach (``attach(engine)``).

    Args:
        show_loss: show the iteration's loss (trainers); off for evaluators.
        persist: keep each epoch's finished bar on screen.

    The bar is shown only on a terminal (tqdm's ``disable=None``), so logs written to files stay readable.
    """

    def __init__(self, show_loss: bool = True, persist: bool = False) -> None:
        self.show_loss = show_loss
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar as IgniteProgressBar

        bar = IgniteProgressBar(persist=self.persist, disable=None)
        bar.attach(engine, output_transform=_loss if self.show_loss else None)
