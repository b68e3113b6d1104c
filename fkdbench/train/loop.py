"""One epoch of one phase, and the rules around it: the learning rate of every step, the
masked loss, the optimiser, the batches, and when a phase stops.

Pure pieces with no files and no display: :mod:`fkdbench.train.phases` strings them
together into a run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from fkdbench import runs
from fkdbench.config import DEFAULT_LOSS
from fkdbench.train.losses import describe_loss
from fkdbench.train.result import TrainingDiverged

# Share of the planned optimiser steps spent warming the learning rate up from ~0.
WARMUP_FRACTION = 0.05
# The cosine decay ends at this fraction of the peak learning rate.
FINAL_LR_FRACTION = 0.01
# Convolution weights and activations are kept channels-last (NHWC) while training: oneDNN's
# CPU convolutions run NHWC natively, and NCHW pays a reorder around every conv. With the
# allocator keeping freed memory (fkdbench.allocator), real runs on a calm 2-core AMD EPYC
# (3 epochs of the synthetic default's none split, batch 64, 2 threads, best of epochs 2-3,
# median of interleaved rounds; load 1.3-2.0) train at images/s, NCHW -> channels-last ->
# channels-last with kept memory: cnn-manual 295 -> 414 -> 699 (2.37x over NCHW, 4 rounds),
# mobilenetv2 100 -> 161 -> 177 (1.77x, 2 rounds). In one-step timings torch.compile did
# not beat channels-last (cnn-manual 348 against 438 images/s, mobilenetv2 122 against 146)
# and a fused AdamW gained nothing.
MEMORY_FORMAT = torch.channels_last
LR_SCHEDULE_DESCRIPTION = (
    f"AdamW; linear warm-up over {WARMUP_FRACTION:.0%} of planned steps, then cosine decay "
    f"to {FINAL_LR_FRACTION:.0%} of lr; stepped every batch"
)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for a training step: bfloat16 autocast on a CUDA device that has it
    (Ampere and later; bfloat16 keeps float32's range, so no loss scaling is needed), else
    float32 as on the CPU, where autocast would slow this CPU down (no AMX-BF16 here)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_of(device: torch.device) -> str:
    """What :func:`autocast_for` trains in on ``device``, as config.json says it."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bfloat16 autocast (CUDA), float32 weights and optimiser"
    return "float32"


def optimisation_record(
    pretrain_epochs: int,
    loss: str = DEFAULT_LOSS,
    head: str = "regression",
    device: torch.device | None = None,
    backbone_lr_scale: float = 1.0,
) -> dict[str, Any]:
    """The ``optimisation`` section of ``config.json``: what this loop optimises, and how."""
    return {
        "backbone_lr": "the head's lr (every layer alike)"
        if backbone_lr_scale == 1.0
        else f"{backbone_lr_scale:g} x the head's lr at every step",
        "loss": describe_loss(loss, head),
        "pretrain_loss": "BCE with logits, reconstruction of the [0, 1] image"
        if pretrain_epochs
        else None,
        "pretrain_epochs": pretrain_epochs,
        "schedule": LR_SCHEDULE_DESCRIPTION,
        "memory_format": "channels-last (NHWC) weights and activations",
        "precision": precision_of(device or torch.device("cpu")),
        "selection": "best validation RMSE (pixels)",
        "head_init": "output bias = training mean shape, output weights x 0.1"
        if head == "regression"
        else "default initialisation (a spatial head has no coordinate bias)",
    }


def learning_rate_at(step: int, total_steps: int, peak_lr: float) -> float:
    """Linear warm-up to ``peak_lr``, then cosine decay to ``FINAL_LR_FRACTION * peak_lr``."""
    warmup_steps = max(1, round(WARMUP_FRACTION * total_steps))
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak_lr * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine)


class OptimiserSettings(Protocol):
    """What :func:`make_optimizer` reads: a TrainConfig, or fkdbench.pretrain's options."""

    lr: float
    weight_decay: float


def make_optimizer(
    module: nn.Module,
    config: OptimiserSettings,
    backbone: nn.Module | None = None,
    backbone_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; no decay on biases and normalisation scales.

    With ``backbone`` (a part of ``module``) and a ``backbone_lr_scale`` other than 1, its
    parameters get their own groups, whose ``lr_scale`` :func:`train_epoch` multiplies the
    step's learning rate by (a fine-tuned backbone moved gently, the new head at full lr).
    """
    trainable = [p for p in module.parameters() if p.requires_grad]
    scaled = set()
    if backbone is not None and backbone_lr_scale != 1.0:
        scaled = {id(p) for p in backbone.parameters()}
    groups = _decay_groups([p for p in trainable if id(p) not in scaled], config, 1.0)
    backbone_params = [p for p in trainable if id(p) in scaled]
    if backbone_params:
        groups += _decay_groups(backbone_params, config, backbone_lr_scale)
    return torch.optim.AdamW(groups, lr=config.lr)


def _decay_groups(
    params: list[nn.Parameter], config: OptimiserSettings, lr_scale: float
) -> list[dict[str, Any]]:
    """Two AdamW groups at ``lr_scale`` of the step's learning rate: weight matrices and
    kernels decayed, biases and normalisation scales not."""
    decayed = [p for p in params if p.ndim >= 2]
    not_decayed = [p for p in params if p.ndim < 2]
    return [
        {"params": decayed, "weight_decay": config.weight_decay, "lr_scale": lr_scale},
        {"params": not_decayed, "weight_decay": 0.0, "lr_scale": lr_scale},
    ]


def batches_per_epoch(rows: int, batch_size: int) -> int:
    """Batches :func:`epoch_batches` yields: a last batch of one image is dropped."""
    full, rest = divmod(rows, batch_size)
    return full + (1 if rest >= 2 else 0)


def epoch_batches(
    rows: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> list[Tensor]:
    """Shuffled index batches for one epoch. A last batch of a single image is dropped:
    BatchNorm cannot normalise one sample in training mode."""
    order = torch.randperm(rows, generator=generator).to(device)
    batches = list(order.split(batch_size))
    if len(batches[-1]) < 2:
        batches.pop()
    return batches


@dataclass
class Phase:
    """One training phase: what it trains, on how many rows, with which loss."""

    name: str  # "pretrain" or "keypoints"
    epochs: int
    module: nn.Module
    optimizer: torch.optim.Optimizer
    rows: int  # training images per epoch
    batch_loss: Callable[[Tensor], Tensor]  # index batch -> scalar loss
    evaluate: Callable[[], float] | None  # validation RMSE in pixels, keypoint phase only
    # A backbone kept fixed: eval mode stops its BatchNorm statistics from updating.
    frozen_backbone: nn.Module | None = None

    def enter_training_mode(self) -> None:
        self.module.train()
        if self.frozen_backbone is not None:
            self.frozen_backbone.eval()


@dataclass
class Progress:
    """Where the run stands: what ``last.pt`` must restore besides tensors."""

    phase: str = "keypoints"  # "pretrain" (ae-cnn reconstruction) or "keypoints"
    epoch: int = 0  # epochs completed in ``phase``
    step: int = 0  # optimiser steps taken in ``phase`` (drives the learning rate)
    best_val_rmse: float | None = None
    best_epoch: int | None = None
    epochs_since_best: int = 0
    training_seconds: float = 0.0
    stop_reason: str | None = None  # set once the keypoint phase has ended
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EpochTally:
    """What one pass over the batches did."""

    mean_loss: float
    images_seen: int
    last_lr: float
    cut_short: bool  # stopped before the last batch (out of time)


def train_epoch(
    phase: Phase,
    progress: Progress,
    batches: list[Tensor],
    total_steps: int,
    peak_lr: float,
    deadline: float,
    on_batch: Callable[[], None],
    where: str,
) -> EpochTally:
    """One optimiser step per batch, the learning rate set from the step count first.

    Past ``deadline`` (a ``time.monotonic()`` value) the epoch ends after the current
    batch. A non-finite loss raises :class:`TrainingDiverged` before it reaches the weights.
    """
    loss_sum, images_seen, lr = 0.0, 0, peak_lr
    for batch_number, indices in enumerate(batches, start=1):
        lr = learning_rate_at(progress.step, total_steps, peak_lr)
        for group in phase.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with autocast_for(indices.device):
            loss = phase.batch_loss(indices)
        loss = loss.float()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{where}: loss became {loss.item()} at step {progress.step}; "
                f"try an lr below {peak_lr}"
            )
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        phase.optimizer.step()
        progress.step += 1
        loss_sum += loss.item() * len(indices)
        images_seen += len(indices)
        on_batch()
        if batch_number < len(batches) and time.monotonic() >= deadline:
            return EpochTally(loss_sum / images_seen, images_seen, lr, cut_short=True)
    return EpochTally(loss_sum / max(images_seen, 1), images_seen, lr, cut_short=False)


def stop_reason(
    progress: Progress, phase: Phase, patience: int | None, cut_short: bool, out_of_time: bool
) -> str | None:
    """Why the phase ends after the epoch just done (one of ``runs.STOP_REASONS``), or None
    to go on. Only "time-limited", the max_minutes safety stop, reads the clock."""
    if cut_short:
        return runs.TIME_LIMITED
    if progress.epoch >= phase.epochs:
        return "completed"
    if phase.evaluate and patience and progress.epochs_since_best >= patience:
        return "early-stopped"
    if out_of_time:
        return runs.TIME_LIMITED
    return None
