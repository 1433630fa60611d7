"""Defended training in a bundle's own trainer: the defence's objective as the ``SupervisedTrainer`` iteration.

``configs/adversarial_training.json`` and ``configs/distillation.json`` set ``train#trainer#iteration_update`` to a
:class:`DefendedIteration` around a :mod:`robustseg.defenses` objective. Everything else of the bundle's training
stays: its data, loss, optimizer, handlers (checkpoints, validation, MLflow), AMP and ``multi_gpu_train.json``.
:func:`claim_defence_dir` records the defence's settings in the checkpoint folder so that a resume with other
settings stops before any compute, and :func:`load_initial_weights` starts a fine-tuning from a clean checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn

from robustseg.checkpoints import check_checkpoint, unwrap
from robustseg.workflows import distributed
from robustseg.workflows.fingerprint import differences

__all__ = [
    "DEFENCE_FILE",
    "STAGES",
    "DefendedIteration",
    "check_stage",
    "claim_defence_dir",
    "distillation_iteration",
    "distillation_settings",
    "load_initial_weights",
]

logger = logging.getLogger(__name__)

DEFENCE_FILE = "defence.json"
"""The record of a defended model's training settings, in its checkpoint folder."""

Objective = Callable[..., tuple[torch.Tensor, torch.Tensor]]


class DefendedIteration:
    """One training iteration of a MONAI ``SupervisedTrainer`` whose loss is a defence's objective.

    It follows ``SupervisedTrainer._iteration`` (batch preparation, the IMAGE / LABEL / PRED / LOSS outputs, the
    FORWARD / LOSS / BACKWARD / MODEL_COMPLETED events, ``optim_set_to_none``, AMP through the trainer's scaler)
    and replaces the forward and loss by ``objective(network, inferer, loss_function, images, labels, iteration=,
    rank=)`` (:class:`robustseg.defenses.AdversarialTraining`, :class:`robustseg.defenses.Distillation`).

    Args:
        objective: the defence's training objective.
    """

    def __init__(self, objective: Objective) -> None:
        if not callable(objective):
            raise ValueError(f"the defence objective must be callable but is {type(objective).__name__}.")
        self.objective = objective

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if getattr(engine, "accumulation_steps", 1) > 1:
            raise ValueError(
                "defended training does not support gradient accumulation (accumulation_steps > 1): the attack "
                "would be crafted against weights that are not updated; set train#trainer#accumulation_steps to 1."
            )
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        amp = bool(engine.amp and engine.scaler is not None)
        with torch.autocast("cuda", enabled=amp, **(engine.amp_kwargs if amp else {})):
            loss, pred = self.objective(
                engine.network,
                engine.inferer,
                engine.loss_function,
                inputs,
                targets,
                iteration=int(engine.state.iteration),
                rank=distributed.rank_and_world()[0],
            )
        engine.state.output[Keys.PRED] = pred
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.state.output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if amp:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


def claim_defence_dir(ckpt_dir: str | Path, settings: Mapping[str, Any], resume: bool = False) -> Path:
    """Before training: record ``settings`` in ``ckpt_dir/defence.json``, or check them against the record.

    A folder holding checkpoints of another defence (or of other settings) is refused with the differences named,
    whether resuming or not, so that a checkpoint folder never mixes two trainings. Only rank 0 writes.

    Returns:
        The record's path.
    """
    folder = Path(ckpt_dir)
    path = folder / DEFENCE_FILE
    current = json.loads(json.dumps(dict(settings), default=str))
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is unreadable ({e}); remove it, or train into another ckpt_dir.") from e
        diff = differences(stored, current)
        if diff:
            raise ValueError(
                f"{folder} holds a model trained with other defence settings ({'; '.join(diff)}); train into another "
                "ckpt_dir, or remove the folder to start over."
            )
        return path
    if not resume and any(folder.glob("checkpoint_epoch=*.pt")):
        raise ValueError(
            f"{folder} holds training checkpoints without a {DEFENCE_FILE}: they are not of this defence. Train into "
            "another ckpt_dir or remove them."
        )
    if distributed.is_rank0():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    return path


def load_initial_weights(path: str | Path | None, network: nn.Module) -> nn.Module:
    """Start a defended training from a clean checkpoint (fine-tuning): its weights into ``network``.

    ``path`` none or empty: training starts from the bundle's initialisation. The checkpoint must fit the network
    (:func:`robustseg.checkpoints.check_checkpoint` names what differs). A resumed training then loads its own
    newest checkpoint over these weights when the trainer starts.
    """
    if not path:
        return network
    module = unwrap(network)
    module.load_state_dict(check_checkpoint(path, module))
    logger.info("defended training starts from the weights of %s", path)
    return network


STAGES = ("teacher", "student")
"""The two trainings of defensive distillation: the teacher at temperature T, then the student on its softmax."""


def check_stage(stage: Any) -> str:
    """``stage`` if it is one of :data:`STAGES`, else a clear error naming ``distill_stage``."""
    if stage not in STAGES:
        raise ValueError(f"distill_stage must be 'teacher' or 'student' but is {stage!r}.")
    return str(stage)


def distillation_iteration(
    stage: str,
    teacher_network: nn.Module,
    teacher_checkpoint: str | Path,
    temperature: float,
    hard_weight: float = 0.0,
    scheme: Any = None,
) -> DefendedIteration | None:
    """The student's :class:`DefendedIteration` (the teacher loaded from its checkpoint), or ``None`` for the
    teacher stage, which trains with the bundle's own iteration on a loss at temperature ``T``
    (:class:`robustseg.defenses.AtTemperature`)."""
    from robustseg.defenses import Distillation, check_temperature

    check_temperature(temperature)
    if check_stage(stage) == "teacher":
        return None
    teacher = unwrap(teacher_network)
    try:
        teacher.load_state_dict(check_checkpoint(teacher_checkpoint, teacher))
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"the distillation teacher {teacher_checkpoint} does not exist: train it first with --distill_stage "
            "teacher, or pass --distill_teacher_checkpoint."
        ) from e
    return DefendedIteration(Distillation(teacher, temperature=temperature, hard_weight=hard_weight, scheme=scheme))


def distillation_settings(
    stage: str, temperature: float, hard_weight: float, teacher_checkpoint: str | Path | None
) -> dict[str, Any]:
    """The record of a distillation stage for ``defence.json`` and MLflow (the teacher named by its SHA-256)."""
    from robustseg.defenses import check_temperature
    from robustseg.workflows.fingerprint import file_sha256

    settings: dict[str, Any] = {
        "defence": "distillation",
        "stage": check_stage(stage),
        "temperature": check_temperature(temperature),
    }
    if stage == "student":
        settings["hard_weight"] = float(hard_weight)
        path = Path(str(teacher_checkpoint))
        settings["teacher_sha256"] = file_sha256(path) if path.is_file() else None
    return settings
