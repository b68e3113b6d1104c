"""The options of a training run, as a commented dataclass (one field per line).

A leaf module: it imports nothing of fkdbench, so the presets, the run folders, the
training loop and the command line can all read :class:`TrainConfig` without importing
one another.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where a run trains: "auto" is CUDA when torch sees a device, else the CPU.
DEVICES = ("auto", "cpu", "cuda")
# Where a matrix of runs trains: here, one after another, or as Ray tasks
# (fkdbench.train.distributed).
EXECUTORS = ("local", "ray")
# What --weights does to a backbone: "frozen" trains only the head, "finetuned" every layer.
# (A run without weights is "scratch": see fkdbench.runs.WEIGHTS_MODES.)
PRETRAINED_WEIGHTS_MODES = ("frozen", "finetuned")
# The keypoint losses (what each computes: fkdbench.train.losses); MSE is the papers'.
LOSSES = ("mse", "l1", "wing", "adaptive-wing")
DEFAULT_LOSS = "mse"


@dataclass
class TrainConfig:
    """Everything one training run needs; ``config.json`` stores it with the results."""

    # Architecture name from the model registry (``fkdbench.models.list_models()``).
    arch: str = "cnn-baseline"
    # Data variant of the training split: none | ffill | knn | aug | masked.
    variant: str = "none"
    # Prepared data folder: train/val/test .npz and manifest.json (``fkdbench prepare``).
    data_dir: Path = Path("data/synthetic")
    # Parent of the run folders; this run lives in ``<runs_dir>/<run name>/``.
    runs_dir: Path = Path("runs")
    # Pretrained backbone weights to start from: a local file, or timm's ``timm:imagenet``
    # (downloads; fails at once offline); None trains from scratch (said loudly).
    weights: Path | None = None
    # A pretraining step whose backbone the run starts from, instead of a weights file: a
    # method name ("synthetic-landmarks", "autoencoder") or a dict of
    # fkdbench.pretrain.PRESET_KEYS. Made by fkdbench.pretrain once, cached under
    # <runs_dir>/pretrain/ by its recipe checksum; weights_mode says frozen or finetuned.
    pretrain: str | dict[str, Any] | None = None
    # With weights: "frozen" trains only the head, "finetuned" trains every layer.
    weights_mode: str = "finetuned"
    # The head the model ends with: regression | heatmap | integral (fkdbench.models.heads);
    # None: the architecture's own (regression for the papers' models).
    head: str | None = None
    # The keypoint loss: mse | l1 | wing | adaptive-wing (fkdbench.train.losses).
    loss: str = DEFAULT_LOSS
    # Flip test: every prediction (validation, test, the exported model) is the mean of the
    # image's and its mirror's, keypoint pairs swapped. Training itself is unchanged.
    flip_test: bool = False
    # Extra keyword arguments of ``create_model`` (cnn-tuned: {"spec": path or dict}).
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Most passes over the training data in the keypoint phase.
    epochs: int = 30
    # Images per optimiser step.
    batch_size: int = 64
    # Peak learning rate of the schedule.
    lr: float = 1e-3
    # Finetuned runs: the backbone's learning rate as a fraction of lr at every step (the
    # head keeps lr). 1.0 trains every layer alike; other weights modes ignore it.
    backbone_lr_scale: float = 1.0
    # AdamW decoupled weight decay, applied to weight matrices and kernels only.
    weight_decay: float = 1e-4
    # Seeds initialisation, shuffling, augmentation and the ``aug`` variant's copies.
    seed: int = 0
    # Name the run folder ``...--s<seed>`` (one of several seeds, :func:`seeded_configs`);
    # False keeps the plain name, so single-seed runs keep the folders they always had.
    seed_in_name: bool = False
    # A safety stop, never a budget: wall-clock cap on the whole run (both phases), minutes;
    # None for no cap. A run it stops is "time-limited", and never a finished result, since
    # where it stops depends on how fast and how busy the machine is.
    max_minutes: float | None = None
    # "auto" (CUDA when available), "cpu" or "cuda".
    device: str = "auto"
    # Stop after this many epochs without a better validation RMSE; None or 0: never.
    patience: int | None = 10
    # Augmented copies per complete row in the ``aug`` variant.
    augment_copies: int = 3
    # Autoencoder reconstruction epochs before the keypoint phase (ae-cnn only).
    ae_pretrain_epochs: int = 10
    # Train on a seeded random subset of at most this many rows (smoke runs); None: all.
    max_train_rows: int | None = None
    # Select epochs on the first this-many validation rows (smoke runs); None: all. The
    # test split is always scored whole.
    max_val_rows: int | None = None
    # torch CPU threads (``torch.set_num_threads``); None keeps torch's default.
    num_threads: int | None = None
    # No progress display or status lines (warnings still print).
    quiet: bool = False
    # Retrain even if the run is finished; discard an unfinished run's resume state.
    force: bool = False

    def __post_init__(self) -> None:
        # Accept strings from the CLI and from presets where paths are meant.
        self.data_dir, self.runs_dir = Path(self.data_dir), Path(self.runs_dir)
        if self.weights is not None:
            self.weights = Path(self.weights)


# Fields that do not change what a run computes: a resumed run may differ in them.
FREE_ON_RESUME = (
    "runs_dir",
    "data_dir",
    "seed_in_name",
    "max_minutes",
    "device",
    "num_threads",
    "quiet",
    "force",
)


def below_minimum(settings: object, minimums: dict[str, int]) -> str | None:
    """The first of ``settings``' integer fields that is not an integer >= its minimum, as
    "<field> must be an integer >= <minimum>, got <value>"; None when all are."""
    for name, minimum in minimums.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"{name} must be an integer >= {minimum}, got {value!r}"
    return None


def pretrain_method(step: str | dict[str, Any] | None) -> str | None:
    """The method of a :attr:`TrainConfig.pretrain` step (a name or a dict with "method")."""
    if isinstance(step, dict):
        method = step.get("method")
        return str(method) if method is not None else None
    return step


def seeded_configs(config: TrainConfig, seeds: int) -> list[TrainConfig]:
    """``config`` trained with ``seeds`` seeds: ``seed, seed + 1, ..., seed + seeds - 1``.

    One seed keeps ``config`` as it is (and its run name); more each name their run
    ``...--s<seed>``, so the seeds of a run sit side by side in the runs folder.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    if seeds == 1:
        return [config]
    return [
        dataclasses.replace(config, seed=config.seed + offset, seed_in_name=True)
        for offset in range(seeds)
    ]
