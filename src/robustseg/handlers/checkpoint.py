"""Save the whole training state every epoch, and resume a killed training from the newest save."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["TrainingCheckpoint", "latest_checkpoint"]

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The ``checkpoint_epoch=N.pt`` with the largest N in ``checkpoint_dir``, or ``None``."""
    found = [
        (int(m.group(1)), p) for p in Path(checkpoint_dir).glob("checkpoint_epoch=*.pt") if (m := _EPOCH.search(p.name))
    ]
    return max(found)[1] if found else None


class TrainingCheckpoint:
    """Keep ``checkpoint_epoch=N.pt`` (objects + trainer state) up to date; with ``resume``, start from the newest.

    The trainer itself is added to the saved objects when the handler is attached, so a bundle config can list the
    handler among the trainer's own handlers without a circular reference. Saving uses MONAI's ``CheckpointSaver``
    (one file kept, replaced each epoch); resuming uses MONAI's ``CheckpointLoader``, which restores the epoch and
    iteration so training continues where it stopped.

    Args:
        checkpoint_dir: folder of the checkpoints (the bundle's ``models/``).
        objects: what to save besides the trainer: network, optimizer, lr scheduler.
        resume: load the newest checkpoint when the trainer starts (a warning, not an error, when there is none).
        save: write checkpoints (off on ranks other than 0 in distributed runs).
        save_interval: epochs between saves.
        map_location: for ``torch.load`` (a GPU checkpoint resumed on CPU).
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        objects: Mapping[str, Any],
        resume: bool = False,
        save: bool = True,
        save_interval: int = 1,
        map_location: Any = None,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.objects = dict(objects)
        self.resume = resume
        self.save = save
        self.save_interval = save_interval
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        from monai.handlers import CheckpointLoader, CheckpointSaver

        state = {**self.objects, "trainer": engine}
        if self.resume:
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                logger.warning(
                    "resume requested but no checkpoint_epoch=*.pt in %s; training starts afresh.", self.checkpoint_dir
                )
            else:
                logger.info("resuming training from %s", path)
                CheckpointLoader(load_path=str(path), load_dict=state, map_location=self.map_location).attach(engine)
        if self.save:
            CheckpointSaver(
                save_dir=str(self.checkpoint_dir),
                save_dict=state,
                save_interval=self.save_interval,
                epoch_level=True,
                n_saved=1,
            ).attach(engine)
