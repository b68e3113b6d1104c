"""The phases of a run, epoch by epoch: what each phase trains and with which loss, and
the loop that runs them, saving the resume state after every epoch. (Why two phases for
ae-cnn, and the other choices of the loop: :mod:`fkdbench.train`.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.data.augment import augment_batch
from fkdbench.metrics import rmse
from fkdbench.models import build_pretrainer, normalise_keypoints
from fkdbench.progress import make_progress, say
from fkdbench.train.dataset import TrainingData, image_tensor, row_subset
from fkdbench.train.loop import (
    EpochTally,
    Phase,
    Progress,
    batches_per_epoch,
    epoch_batches,
    make_optimizer,
    stop_reason,
    train_epoch,
)
from fkdbench.train.losses import KeypointLoss, keypoint_loss
from fkdbench.train.scoring import predict_pixels
from fkdbench.train.state import (
    Trainables,
    restore_resume_state,
    save_resume_state,
    track_best,
    write_history,
)

# Called with each history row once that epoch's state is saved.
EpochHook = Callable[[dict[str, Any]], None]


def plan_phases(
    config: TrainConfig,
    data: TrainingData,
    model: nn.Module,
    pretrain_epochs: int,
    frozen: bool,
    generator: torch.Generator,
    device: torch.device,
    backbone_lr_scale: float = 1.0,
) -> tuple[Trainables, list[Phase]]:
    """The optimisers and phases of the run: the autoencoder's first when it has one.
    ``backbone_lr_scale``: a fine-tuned backbone's share of the learning rate."""
    backbone = getattr(model, "backbone", None)
    optimizer = make_optimizer(model, config, backbone, backbone_lr_scale)
    trainables = Trainables(model, optimizer, None, None, generator, device)
    phases = []
    if pretrain_epochs:
        trainables.pretrainer = build_pretrainer(model).to(device)
        trainables.pretrain_optimizer = make_optimizer(trainables.pretrainer, config)
        # Autoencoders learn from every training image, labelled or not.
        rows = row_subset(len(data.train_split), config.max_train_rows, config.seed)
        images = image_tensor(data.train_split.images[rows]).to(device)
        phases.append(
            Phase(
                "pretrain",
                pretrain_epochs,
                trainables.pretrainer,
                trainables.pretrain_optimizer,
                len(images),
                _reconstruction_loss(trainables.pretrainer, images),
                evaluate=None,
            )
        )
    phases.append(
        Phase(
            "keypoints",
            config.epochs,
            model,
            optimizer,
            len(data.images),
            _keypoint_loss(
                model, data, generator, keypoint_loss(config.loss, model.head_kind, data.image_size)
            ),
            evaluate=lambda: rmse(
                predict_pixels(model, data.val_split.images, device), data.val_split.keypoints
            ),
            frozen_backbone=model.backbone if frozen else None,
        )
    )
    return trainables, phases


def _reconstruction_loss(pretrainer: nn.Module, images: Tensor) -> Callable[[Tensor], Tensor]:
    def batch_loss(indices: Tensor) -> Tensor:
        batch = images[indices].float().div_(255.0)
        return nn.functional.binary_cross_entropy_with_logits(pretrainer(batch), batch)

    return batch_loss


def _keypoint_loss(
    model: nn.Module, data: TrainingData, generator: torch.Generator, loss: KeypointLoss
) -> Callable[[Tensor], Tensor]:
    def batch_loss(indices: Tensor) -> Tensor:
        images = data.images[indices].float().div_(255.0)
        keypoints, mask = data.keypoints[indices], data.mask[indices]
        if data.variant.online_augmentation:
            images, keypoints, mask = augment_batch(
                images, keypoints, mask, data.flip_permutation, data.augment, generator
            )
        return loss(model, images, normalise_keypoints(keypoints, data.image_size), mask)

    return batch_loss


@dataclass
class RunLoop:
    """What every epoch of a run shares: its settings, folder, tensors and state."""

    config: TrainConfig
    name: str
    folder: Path
    settings: dict[str, Any]  # the resume fingerprint (state.settings_fingerprint)
    trainables: Trainables
    progress: Progress
    on_epoch_end: EpochHook | None = None

    @property
    def budget_seconds(self) -> float:
        # The safety stop counts training and validation across resumes (training_seconds).
        # It is the only clock that changes what a run computes: the budgets are epochs.
        return self.config.max_minutes * 60 if self.config.max_minutes else math.inf


def start_or_resume(
    folder: Path,
    settings: dict[str, Any],
    trainables: Trainables,
    first_phase: str,
    name: str,
    quiet: bool,
) -> Progress:
    """A fresh :class:`Progress`, or the one ``last.pt`` holds (its tensors put back)."""
    path = folder / runs.RESUME_FILE
    if not path.is_file():
        return Progress(phase=first_phase)
    progress = restore_resume_state(path, settings, trainables)
    say(f"{name}: resuming {progress.phase} phase after epoch {progress.epoch}", quiet)
    return progress


def run_phases(loop: RunLoop, phases: list[Phase]) -> None:
    """Train every phase to its stop; Ctrl-C leaves ``last.pt`` at the last whole epoch."""
    try:
        _run_with_display(loop, phases)
    except KeyboardInterrupt:
        say(
            f"[bold red]interrupted:[/] {loop.name}; {loop.folder / runs.RESUME_FILE} keeps "
            "the last finished epoch: run again to resume",
            loop.config.quiet,
        )
        raise


def _run_with_display(loop: RunLoop, phases: list[Phase]) -> None:
    with make_progress(loop.config.quiet) as display:
        bars = _Bars(display, loop.name, sum(phase.epochs for phase in phases), loop.progress)
        for phase in phases:
            _run_phase(loop, phase, bars)


class _Bars:
    """The progress display: one bar over the run's epochs, one over an epoch's batches."""

    def __init__(self, display: Any, name: str, total_epochs: int, progress: Progress) -> None:
        self.display, self.name = display, name
        self.epochs = display.add_task(name, total=total_epochs, completed=len(progress.history))
        self.batches = display.add_task("  batches", total=1)

    def start_epoch(self, phase: Phase, epoch: int, steps: int) -> None:
        description = f"  {phase.name} epoch {epoch}/{phase.epochs}"
        self.display.reset(self.batches, total=steps, description=description)

    def advance_batch(self) -> None:
        self.display.advance(self.batches)

    def end_epoch(self, row: dict[str, Any]) -> None:
        self.display.update(self.epochs, advance=1, description=_epoch_summary(self.name, row))


def _run_phase(loop: RunLoop, phase: Phase, bars: _Bars) -> None:
    steps_per_epoch = batches_per_epoch(phase.rows, loop.config.batch_size)
    while loop.progress.phase == phase.name and not loop.progress.stop_reason:
        row, tally = _train_one_epoch(loop, phase, steps_per_epoch, bars)
        _end_epoch(loop, phase, row, tally)
        bars.end_epoch(row)
        if loop.on_epoch_end:
            loop.on_epoch_end(dict(row))


def _train_one_epoch(
    loop: RunLoop, phase: Phase, steps_per_epoch: int, bars: _Bars
) -> tuple[dict[str, Any], EpochTally]:
    """Train one epoch and validate it; returns its history row, also kept in progress."""
    config, progress, trainables = loop.config, loop.progress, loop.trainables
    epoch = progress.epoch + 1
    epoch_started = time.monotonic()
    bars.start_epoch(phase, epoch, steps_per_epoch)
    phase.enter_training_mode()
    batches = epoch_batches(phase.rows, config.batch_size, trainables.generator, trainables.device)
    tally = train_epoch(
        phase,
        progress,
        batches,
        phase.epochs * steps_per_epoch,
        config.lr,
        deadline=epoch_started + loop.budget_seconds - progress.training_seconds,
        on_batch=bars.advance_batch,
        where=f"{loop.name}: {phase.name} epoch {epoch}",
    )
    train_seconds = time.monotonic() - epoch_started
    val_rmse = phase.evaluate() if phase.evaluate else float("nan")
    epoch_seconds = time.monotonic() - epoch_started
    progress.training_seconds += epoch_seconds
    progress.epoch = epoch
    row = {
        "epoch": epoch,
        "phase": phase.name,
        "train_loss": tally.mean_loss,
        "val_rmse": val_rmse,
        "lr": tally.last_lr,
        "seconds": epoch_seconds,
        "images_per_second": tally.images_seen / max(train_seconds, 1e-9),
    }
    progress.history.append(row)
    return row, tally


def _end_epoch(loop: RunLoop, phase: Phase, row: dict[str, Any], tally: EpochTally) -> None:
    """Keep the best weights, decide whether the phase stops, save the resume state."""
    progress = loop.progress
    if phase.evaluate:
        track_best(progress, row["val_rmse"], row["epoch"], loop.trainables.model, loop.folder)
    out_of_time = progress.training_seconds >= loop.budget_seconds
    reason = stop_reason(progress, phase, loop.config.patience, tally.cut_short, out_of_time)
    if reason and phase.name == "pretrain":
        # The keypoint phase follows even a time-limited pretraining, so the run always
        # ends with a model that predicts keypoints.
        progress.phase = "keypoints"
        progress.epoch = progress.step = 0
    else:
        progress.stop_reason = reason
    save_resume_state(loop.folder / runs.RESUME_FILE, loop.settings, progress, loop.trainables)
    write_history(loop.folder / runs.HISTORY_FILE, progress.history)


def _epoch_summary(name: str, row: dict[str, Any]) -> str:
    val = "" if math.isnan(row["val_rmse"]) else f", val RMSE {row['val_rmse']:.3f} px"
    return f"{name} [{row['phase']} {row['epoch']}: loss {row['train_loss']:.4g}{val}]"
