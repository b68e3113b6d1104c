"""Train one architecture on one data variant: ``fkdbench train`` as a library.

:func:`train_run` reads top to bottom like nanoGPT's ``train.py``: settings, data,
model, resume state, the optional autoencoder phase, the keypoint phase, the test.
:func:`train_matrix` runs a preset's list of runs and turns each failure into a row.

Choices that hold for every run, and why:

- Loss: mean squared error on *normalised* coordinates (``models.normalise_keypoints``:
  the image spans about [-1, 1]), over labelled coordinates only. Every data variant
  comes with a mask, so one loop serves them all: ``none``/``knn``/``aug`` have full
  masks, ``ffill`` nearly full, ``masked`` the real label pattern.
- Optimiser: AdamW; weight decay only on weight matrices and kernels (not on biases and
  normalisation scales, as in nanoGPT).
- Learning rate: linear warm-up over the first ``WARMUP_FRACTION`` of the planned steps,
  then a cosine decay to ``FINAL_LR_FRACTION`` of the peak, set every batch by a pure
  function of the step (:func:`learning_rate_at`), so resuming needs only the step count.
- Model selection: validation RMSE in pixels after every epoch; the best epoch's weights
  are ``model.pt``; training stops after ``patience`` epochs without improvement, at
  ``epochs``, or when ``max_minutes`` runs out (checked after every batch, so a slow
  architecture stops inside an epoch, which then still gets its validation).
- Determinism: one ``torch.Generator`` seeded from ``seed`` shuffles and augments, the
  global torch RNG (dropout, initialisation) is seeded too, and both states travel in
  ``last.pt``, so on the CPU an interrupted and resumed run ends with the same weights
  as an uninterrupted one.
- ae-cnn: first a reconstruction phase (BCE with logits against the [0, 1] image) on
  every training image, labelled or not, through ``build_pretrainer``, which shares the
  encoder; then the keypoint phase. Each phase has its own optimiser and schedule.
- Data stays in memory as uint8 tensors; batches are index selections, converted to
  float per batch. Validation and test are scored on their real labels only.
  ``max_train_rows`` / ``max_val_rows`` shrink a run for smoke tests (the ``quick``
  preset); the test split is always scored whole, so every run's test RMSE compares with
  every other's. metrics.json records the rows actually used.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fkdbench import runs
from fkdbench.data.augment import AugmentConfig, augment_batch
from fkdbench.data.schemes import WFLW_ATTRIBUTES, KeypointScheme, get_scheme
from fkdbench.data.splits import MANIFEST_NAME, SplitArrays, load_split, read_manifest
from fkdbench.data.variants import VARIANTS, make_variant
from fkdbench.io import plain, sha256_file, write_json_atomic, write_text_atomic
from fkdbench.metrics import (
    CED_STEPS,
    FAILURE_THRESHOLD,
    cumulative_error_distribution,
    landmark_metrics,
    mean_shape,
    mean_shape_rmse,
    nme_per_subset,
    normalised_errors_per_sample,
    normalised_mean_error,
    per_keypoint_rmse,
    rmse,
)
from fkdbench.models import (
    ArchInfo,
    build_pretrainer,
    count_parameters,
    create_model,
    denormalise_keypoints,
    freeze_backbone,
    get_arch_info,
    list_models,
    load_backbone_weights,
    normalise_keypoints,
)
from fkdbench.presets import Preset, load_preset
from fkdbench.progress import console, make_progress, say
from fkdbench.provenance import environment_record

# Share of the planned optimiser steps spent warming the learning rate up from ~0.
WARMUP_FRACTION = 0.05
# The cosine decay ends at this fraction of the peak learning rate.
FINAL_LR_FRACTION = 0.01
# Images per forward pass when predicting validation and test splits (no gradients).
EVAL_BATCH_SIZE = 256
# Columns of history.csv, in order.
HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "train_loss",
    "val_rmse",
    "lr",
    "seconds",
    "images_per_second",
)
LR_SCHEDULE_DESCRIPTION = (
    f"AdamW; linear warm-up over {WARMUP_FRACTION:.0%} of planned steps, then cosine decay "
    f"to {FINAL_LR_FRACTION:.0%} of lr; stepped every batch"
)
# Training settings that do not change what a run computes: a resumed run may differ in them.
_SETTINGS_FREE_TO_CHANGE = (
    "runs_dir",
    "data_dir",
    "max_minutes",
    "device",
    "num_threads",
    "quiet",
    "force",
)


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
    # Pretrained backbone weights to start from; None trains from scratch (said loudly).
    weights: Path | None = None
    # With weights: "frozen" trains only the head, "finetuned" trains every layer.
    weights_mode: str = "finetuned"
    # Extra keyword arguments of ``create_model`` (cnn-tuned: {"spec": path or dict}).
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Most passes over the training data in the keypoint phase.
    epochs: int = 30
    # Images per optimiser step.
    batch_size: int = 64
    # Peak learning rate of the schedule.
    lr: float = 1e-3
    # AdamW decoupled weight decay, applied to weight matrices and kernels only.
    weight_decay: float = 1e-4
    # Seeds initialisation, shuffling, augmentation and the ``aug`` variant's copies.
    seed: int = 0
    # Wall-clock cap on the whole run (both phases), minutes; None for no cap.
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


@dataclass
class RunResult:
    """The outcome of one run, as ``train_matrix`` reports it: a failure is a row too."""

    run_name: str
    run_dir: Path
    arch: str
    variant: str
    weights_mode: str
    # "finished" (trained now), "skipped" (already finished) or "failed".
    status: str
    # metrics.json's content for finished and skipped runs.
    metrics: dict[str, Any] | None = None
    # One line saying why, for failed runs.
    error: str | None = None
    # Wall-clock seconds this call spent on the run.
    seconds: float = 0.0


class RunError(ValueError):
    """A run cannot start or continue; the message names the run or the file."""


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; the message names the run, phase and epoch."""


@dataclass
class _Progress:
    """What ``last.pt`` must restore besides tensors: where the run stands."""

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
class _Phase:
    """One training phase: what it trains, on how many rows, with which loss."""

    name: str  # "pretrain" or "keypoints"
    epochs: int
    module: nn.Module
    optimizer: torch.optim.Optimizer
    rows: int  # training images per epoch
    batch_loss: Callable[[Tensor], Tensor]  # index batch -> scalar loss
    evaluate: Callable[[], float] | None  # validation RMSE in pixels, keypoint phase only


def train_run(
    config: TrainConfig, on_epoch_end: Callable[[dict[str, Any]], None] | None = None
) -> RunResult:
    """Train one run to its end, resuming it if it was interrupted; skip it if finished.

    ``on_epoch_end`` is called with each history row after that epoch's state is saved
    (a hook for tests and callers; an exception from it interrupts the run like Ctrl-C).
    Every error is a ``ValueError`` with one line naming the run or the file:
    :class:`RunError` for bad settings, ``DataError`` for bad data,
    :class:`runs.CheckpointError` for unreadable checkpoints and :class:`TrainingDiverged`
    when the loss stops being finite.
    """
    started = time.monotonic()

    # -- which run, and is there anything to do ------------------------------------------
    arch_info = _check_choices(config)
    weights_mode = _weights_mode(config, arch_info)
    name = runs.run_name(config.arch, config.variant, weights_mode)
    folder = runs.run_dir(config.runs_dir, config.arch, config.variant, weights_mode)
    if runs.is_finished(folder) and not config.force:
        say(f"{name}: already finished, skipped (force to train again)", config.quiet)
        return _result(
            config,
            name,
            folder,
            weights_mode,
            "skipped",
            started,
            metrics=runs.read_metrics(folder),
        )
    if config.force:
        # Unfinish the run first: a crash from here on leaves a resumable run, never a
        # finished one with stale metrics.
        (folder / runs.METRICS_FILE).unlink(missing_ok=True)
        (folder / runs.RESUME_FILE).unlink(missing_ok=True)
    if arch_info.has_backbone and config.weights is None:
        console.print(
            f"[bold yellow]warning:[/] {name}: no weights file given; training "
            f"{config.arch} from SCRATCH (reported as weights_mode 'scratch')"
        )

    device = _pick_device(config.device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    # -- data: the variant on the train split; val and test keep their real labels -------
    manifest = read_manifest(config.data_dir)
    scheme = get_scheme(manifest.get("scheme", "kaggle15"))
    train_split = load_split(config.data_dir, "train")
    val_split = _first_rows(load_split(config.data_dir, "val"), config.max_val_rows)
    test_split = load_split(config.data_dir, "test")
    image_size = train_split.image_size
    augment_config = AugmentConfig()
    variant = make_variant(
        train_split,
        config.variant,
        scheme,
        seed=config.seed,
        augment_copies=config.augment_copies,
        augment=augment_config,
    )
    train_rows = _row_subset(len(variant.images), config.max_train_rows, config.seed)
    if len(variant.images) < 2 or len(val_split) == 0 or len(test_split) == 0:
        raise RunError(
            f"{name}: {config.data_dir} leaves {len(variant.images)} training rows "
            f"({config.variant}), {len(val_split)} val, {len(test_split)} test; "
            "need at least 2, 1, 1"
        )
    train_images = _image_tensor(variant.images[train_rows]).to(device)
    # Pixels; 0 where unlabelled (the mask says which).
    train_keypoints = torch.from_numpy(variant.keypoints[train_rows]).to(device)
    train_mask = torch.from_numpy(variant.mask[train_rows]).to(device)
    flip_permutation = torch.as_tensor(scheme.flip_permutation(), dtype=torch.long)

    # -- model, optional pretrained backbone ----------------------------------------------
    chosen_kwargs, spec_source = runs.choose_spec(
        config.model_kwargs, config.arch, config.variant, config.runs_dir
    )
    if spec_source:
        say(f"{name}: spec from {spec_source}", config.quiet)
    model_kwargs = runs.resolve_model_kwargs(chosen_kwargs, config.arch, image_size)
    model = create_model(config.arch, num_outputs=scheme.num_outputs, in_chans=1, **model_kwargs)
    weights_record = _load_weights(model, config, weights_mode, name)
    # Start from the mean shape of the training labels (a resume overwrites this anyway).
    labels = np.where(variant.mask[..., None], variant.keypoints, np.nan)
    start_shape = np.nan_to_num(mean_shape(labels), nan=(image_size - 1) / 2)
    start_coords = normalise_keypoints(start_shape, image_size).reshape(-1).astype(np.float32)
    model.start_at_shape(torch.from_numpy(start_coords))
    model.to(device)
    pretrain_epochs = config.ae_pretrain_epochs if arch_info.pretrain == "autoencoder" else 0

    settings = _settings_fingerprint(
        config, model_kwargs, weights_mode, weights_record, config.data_dir
    )
    run_config = {
        "format_version": runs.RUN_FORMAT_VERSION,
        "run_name": name,
        "weights_mode": weights_mode,
        "model": runs.model_record(config.arch, scheme, image_size, model_kwargs, spec_source),
        "train": plain(dataclasses.asdict(config)),
        "weights": weights_record,
        "data": {
            "data_dir": str(config.data_dir),
            "manifest_sha256": settings["manifest_sha256"],
            "seed": manifest.get("seed"),
            "source": manifest.get("source"),
            "scheme": scheme.name,
            "image_size": image_size,
            "rows": {
                "train_split": len(train_split),
                "train_used": len(train_rows),
                "val_used": len(val_split),
                "test_used": len(test_split),
            },
            "variant_summary": plain(variant.summary),
            "online_augmentation": variant.online_augmentation,
            "augment": plain(dataclasses.asdict(augment_config)),
        },
        "optimisation": {
            "loss": "masked MSE on normalised coordinates (labelled coordinates only)",
            "pretrain_loss": "BCE with logits, reconstruction of the [0, 1] image"
            if pretrain_epochs
            else None,
            "pretrain_epochs": pretrain_epochs,
            "schedule": LR_SCHEDULE_DESCRIPTION,
            "selection": "best validation RMSE (pixels)",
            "head_init": "output bias = training mean shape, output weights x 0.1",
        },
        "environment": environment_record(),
    }
    write_json_atomic(folder / runs.CONFIG_FILE, run_config)

    # -- the pieces each phase trains -------------------------------------------------------
    frozen = weights_mode == "frozen"
    optimizer = _make_optimizer(model, config)
    pretrainer: nn.Module | None = None
    pretrain_optimizer: torch.optim.Optimizer | None = None
    if pretrain_epochs:
        pretrainer = build_pretrainer(model).to(device)
        pretrain_optimizer = _make_optimizer(pretrainer, config)
        # Autoencoders learn from every training image, labelled or not.
        pretrain_rows = _row_subset(len(train_split), config.max_train_rows, config.seed)
        pretrain_images = _image_tensor(train_split.images[pretrain_rows]).to(device)

    # -- resume state ---------------------------------------------------------------------------
    progress_state = _Progress(phase="pretrain" if pretrain_epochs else "keypoints")
    resume_path = folder / runs.RESUME_FILE
    if resume_path.is_file():
        progress_state = _restore(
            resume_path,
            settings,
            model,
            optimizer,
            pretrainer,
            pretrain_optimizer,
            generator,
            device,
        )
        say(
            f"{name}: resuming {progress_state.phase} phase after epoch {progress_state.epoch}",
            config.quiet,
        )

    def save_resume_state() -> None:
        in_pretrain = progress_state.phase == "pretrain"
        runs.save_checkpoint(
            resume_path,
            {
                "format_version": runs.RUN_FORMAT_VERSION,
                "settings": settings,
                "progress": dataclasses.asdict(progress_state),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "pretrainer": pretrainer.state_dict() if in_pretrain else None,
                "pretrain_optimizer": pretrain_optimizer.state_dict() if in_pretrain else None,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            },
        )
        _write_history(folder / runs.HISTORY_FILE, progress_state.history)

    # The time cap counts training and validation across resumes (training_seconds).
    budget_seconds = config.max_minutes * 60 if config.max_minutes else math.inf

    # -- the loss of one batch in each phase -----------------------------------------------
    def reconstruction_loss(indices: Tensor) -> Tensor:
        images = pretrain_images[indices].float().div_(255.0)
        logits = pretrainer(images)
        return nn.functional.binary_cross_entropy_with_logits(logits, images)

    def keypoint_loss(indices: Tensor) -> Tensor:
        images = train_images[indices].float().div_(255.0)
        keypoints, mask = train_keypoints[indices], train_mask[indices]
        if variant.online_augmentation:
            images, keypoints, mask = augment_batch(
                images, keypoints, mask, flip_permutation, augment_config, generator
            )
        predicted = model(images).reshape(len(indices), -1, 2)
        return masked_mse(predicted, normalise_keypoints(keypoints, image_size), mask)

    def validation_rmse() -> float:
        predicted = predict_pixels(model, val_split.images, device)
        return rmse(predicted, val_split.keypoints)

    phases = []
    if pretrain_epochs:
        phases.append(
            _Phase(
                "pretrain",
                pretrain_epochs,
                pretrainer,
                pretrain_optimizer,
                len(pretrain_images),
                reconstruction_loss,
                evaluate=None,
            )
        )
    phases.append(
        _Phase(
            "keypoints",
            config.epochs,
            model,
            optimizer,
            len(train_images),
            keypoint_loss,
            evaluate=validation_rmse,
        )
    )

    # -- training --------------------------------------------------------------------------------
    try:
        with make_progress(config.quiet) as display:
            epochs_bar = display.add_task(
                name, total=pretrain_epochs + config.epochs, completed=len(progress_state.history)
            )
            batches_bar = display.add_task("  batches", total=1)
            for phase in phases:
                steps_per_epoch = _batches_per_epoch(phase.rows, config.batch_size)
                total_steps = phase.epochs * steps_per_epoch
                while progress_state.phase == phase.name and not progress_state.stop_reason:
                    epoch = progress_state.epoch + 1
                    epoch_started = time.monotonic()
                    display.reset(
                        batches_bar,
                        total=steps_per_epoch,
                        description=f"  {phase.name} epoch {epoch}/{phase.epochs}",
                    )
                    phase.module.train()
                    if frozen and phase.name == "keypoints":
                        # A frozen backbone keeps its BatchNorm statistics: eval mode stops
                        # their update.
                        model.backbone.eval()
                    batches = _epoch_batches(phase.rows, config.batch_size, generator, device)
                    tally = _train_epoch(
                        phase,
                        progress_state,
                        batches,
                        total_steps,
                        config.lr,
                        deadline=epoch_started + budget_seconds - progress_state.training_seconds,
                        on_batch=lambda: display.advance(batches_bar),
                        where=f"{name}: {phase.name} epoch {epoch}",
                    )
                    train_seconds = time.monotonic() - epoch_started
                    val_rmse = phase.evaluate() if phase.evaluate else float("nan")
                    epoch_seconds = time.monotonic() - epoch_started
                    progress_state.training_seconds += epoch_seconds
                    progress_state.epoch = epoch
                    row = {
                        "epoch": epoch,
                        "phase": phase.name,
                        "train_loss": tally.mean_loss,
                        "val_rmse": val_rmse,
                        "lr": tally.last_lr,
                        "seconds": epoch_seconds,
                        "images_per_second": tally.images_seen / max(train_seconds, 1e-9),
                    }
                    progress_state.history.append(row)
                    if phase.evaluate:
                        _track_best(progress_state, val_rmse, epoch, model, folder)
                    out_of_time = progress_state.training_seconds >= budget_seconds
                    stop_reason = _stop_reason(
                        progress_state, phase, config.patience, tally.cut_short, out_of_time
                    )
                    if stop_reason and phase.name == "pretrain":
                        # The keypoint phase follows even a time-limited pretraining, so the
                        # run always ends with a model that predicts keypoints.
                        progress_state.phase = "keypoints"
                        progress_state.epoch = progress_state.step = 0
                    else:
                        progress_state.stop_reason = stop_reason
                    save_resume_state()
                    display.update(epochs_bar, advance=1, description=_epoch_summary(name, row))
                    if on_epoch_end:
                        on_epoch_end(dict(row))
    except KeyboardInterrupt:
        say(
            f"[bold red]interrupted:[/] {name}; {resume_path} keeps the last "
            "finished epoch: run again to resume",
            config.quiet,
        )
        raise

    # -- test with the best epoch's weights ------------------------------------------------------
    if progress_state.best_epoch is None:
        # No epoch validated to a finite RMSE (e.g. a validation split without labels):
        # keep the final weights rather than none.
        runs.save_checkpoint(folder / runs.MODEL_FILE, _cpu_state_dict(model))
    model.load_state_dict(runs.load_checkpoint(folder / runs.MODEL_FILE))
    predicted = predict_pixels(model, test_split.images, device)
    params = count_parameters(model)
    a, b = scheme.normalising_pair
    metrics = {
        "format_version": runs.RUN_FORMAT_VERSION,
        "run_name": name,
        "arch": config.arch,
        "variant": config.variant,
        "weights_mode": weights_mode,
        "pretrain": arch_info.pretrain,
        "test_rmse": _finite_or_none(rmse(predicted, test_split.keypoints)),
        "test_per_keypoint_rmse": {
            keypoint: _finite_or_none(value)
            for keypoint, value in zip(
                scheme.keypoints, per_keypoint_rmse(predicted, test_split.keypoints), strict=True
            )
        },
        "test_nme": _finite_or_none(normalised_mean_error(predicted, test_split.keypoints, scheme)),
        "nme_normaliser": f"distance {scheme.keypoints[a]} - {scheme.keypoints[b]}",
        **_landmark_scores(predicted, test_split, scheme),
        "mean_shape_rmse": _finite_or_none(
            mean_shape_rmse(train_split.keypoints, test_split.keypoints)
        ),
        "best_val_rmse": _finite_or_none(progress_state.best_val_rmse),
        "best_epoch": progress_state.best_epoch,
        "epochs_run": progress_state.epoch,
        "pretrain_epochs_run": sum(row["phase"] == "pretrain" for row in progress_state.history),
        "stop_reason": progress_state.stop_reason or "completed",
        "training_seconds": progress_state.training_seconds,
        "parameters": {
            "pytorch": int(params.pytorch),
            "keras": int(params.keras),
            "trainable": int(params.trainable),
        },
        "model_file_bytes": (folder / runs.MODEL_FILE).stat().st_size,
        "rows": {"train": len(train_rows), "val": len(val_split), "test": len(test_split)},
        "environment": environment_record(),
    }
    _write_history(folder / runs.HISTORY_FILE, progress_state.history)
    write_json_atomic(folder / runs.METRICS_FILE, metrics)
    resume_path.unlink(missing_ok=True)
    say(
        f"{name}: test RMSE {_pixels(metrics['test_rmse'])} (mean shape "
        f"{_pixels(metrics['mean_shape_rmse'])}), {metrics['stop_reason']} after "
        f"{metrics['epochs_run']} epochs",
        config.quiet,
    )
    return _result(config, name, folder, weights_mode, "finished", started, metrics=metrics)


# --------------------------------------------------------------------------------------------
# A preset's matrix of runs.


def preset_configs(
    preset: Preset, data_dir: Path, runs_dir: Path, **overrides: Any
) -> list[TrainConfig]:
    """One :class:`TrainConfig` per run of ``preset``: defaults < run entry < ``overrides``."""
    return [
        TrainConfig(
            **{
                **preset.defaults,
                **entry,
                "data_dir": Path(data_dir),
                "runs_dir": Path(runs_dir),
                **overrides,
            }
        )
        for entry in preset.runs
    ]


def train_matrix(
    preset: Preset | str | Path,
    data_dir: Path,
    runs_dir: Path,
    force: bool = False,
    quiet: bool = False,
    device: str = "auto",
    num_threads: int | None = None,
    on_run_end: Callable[[RunResult], None] | None = None,
    **overrides: Any,
) -> list[RunResult]:
    """Train every run of a preset in turn; finished runs are skipped unless ``force``.

    ``on_run_end`` is called with each run's result (``reproduce`` advances its display).

    A run that fails (diverged, bad weights, a model that will not build, ...) becomes a
    result row with ``status="failed"`` and its error line, and the matrix goes on.
    Ctrl-C stops the matrix (the current run stays resumable). Missing data fails at once,
    before any run, since every run would fail the same way.
    """
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    read_manifest(data_dir)
    configs = preset_configs(
        preset,
        data_dir,
        runs_dir,
        force=force,
        quiet=quiet,
        device=device,
        num_threads=num_threads,
        **overrides,
    )
    results = []
    for index, config in enumerate(configs, start=1):
        say(f"[bold]run {index}/{len(configs)}[/] of preset {preset.name}", quiet)
        started = time.monotonic()
        try:
            results.append(train_run(config))
        except Exception as error:  # noqa: BLE001 - a failure is a row, the matrix goes on
            results.append(_failed(config, error, started))
        if on_run_end is not None:
            on_run_end(results[-1])
    failed = [result for result in results if result.status == "failed"]
    say(f"preset {preset.name}: {len(results) - len(failed)} runs ok, {len(failed)} failed", quiet)
    return results


# --------------------------------------------------------------------------------------------
# Pieces of the loop, in the order train_run uses them.


def _check_choices(config: TrainConfig) -> ArchInfo:
    """Validate the settings before any work; returns the architecture's ``ArchInfo``."""
    known = list_models()
    if config.arch not in known:
        raise RunError(f"unknown architecture {config.arch!r}; known: {', '.join(known)}")
    if config.variant not in VARIANTS:
        raise RunError(f"unknown data variant {config.variant!r}; known: {', '.join(VARIANTS)}")
    if config.weights_mode not in ("frozen", "finetuned"):
        raise RunError(f"unknown weights mode {config.weights_mode!r}; known: frozen, finetuned")
    # BatchNorm cannot train on one image, so a batch holds at least two.
    minimums = {"epochs": 1, "batch_size": 2, "augment_copies": 0, "ae_pretrain_epochs": 0}
    for setting, minimum in minimums.items():
        value = getattr(config, setting)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise RunError(f"{setting} must be an integer >= {minimum}, got {value!r}")
    if not config.lr > 0:
        raise RunError(f"lr must be positive, got {config.lr!r}")
    return get_arch_info(config.arch)


def _weights_mode(config: TrainConfig, arch_info: ArchInfo) -> str:
    """``scratch`` without a weights file, else the configured frozen/finetuned."""
    if config.weights is None:
        return "scratch"
    if not arch_info.has_backbone:
        raise RunError(f"{config.arch} has no pretrained backbone to load {config.weights} into")
    if not Path(config.weights).is_file():
        raise RunError(f"{config.weights}: no such weights file")
    return config.weights_mode


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise RunError(f"unknown device {name!r}; known: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def _image_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W) -> uint8 (N, 1, H, W); floats are made per batch to save memory."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)


def _first_rows(split: SplitArrays, limit: int | None) -> SplitArrays:
    """The first ``limit`` rows: every run scored with the same limit sees the same rows."""
    if limit is None or limit >= len(split):
        return split
    return SplitArrays(split.images[:limit], split.keypoints[:limit], split.ids[:limit])


def _row_subset(rows: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of all rows, or of a seeded random ``limit`` of them in their order."""
    if limit is None or limit >= rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def _load_weights(
    model: nn.Module, config: TrainConfig, weights_mode: str, name: str
) -> dict[str, Any] | None:
    """Load the backbone weights (and freeze them) when the run has a weights file."""
    if weights_mode == "scratch":
        return None
    path = Path(config.weights)
    report = load_backbone_weights(model, path)
    if weights_mode == "frozen":
        freeze_backbone(model)
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "load_report": plain(dataclasses.asdict(report))
        if dataclasses.is_dataclass(report)
        else str(report),
    }


def _settings_fingerprint(
    config: TrainConfig,
    model_kwargs: dict[str, Any],
    weights_mode: str,
    weights_record: dict[str, Any] | None,
    data_dir: Path,
) -> dict[str, Any]:
    """The settings a resumed run must share with the interrupted one (plain Python)."""
    settings = {
        key: value
        for key, value in plain(dataclasses.asdict(config)).items()
        if key not in _SETTINGS_FREE_TO_CHANGE
    }
    settings["weights"] = weights_record["sha256"] if weights_record else None
    settings["model_kwargs"] = json.dumps(model_kwargs, sort_keys=True)
    settings["weights_mode"] = weights_mode
    settings["manifest_sha256"] = sha256_file(Path(data_dir) / MANIFEST_NAME)
    return settings


def _make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; no decay on biases and normalisation scales."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    decayed = [p for p in trainable if p.ndim >= 2]
    not_decayed = [p for p in trainable if p.ndim < 2]
    groups = [
        {"params": decayed, "weight_decay": config.weight_decay},
        {"params": not_decayed, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def _restore(
    path: Path,
    settings: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    pretrainer: nn.Module | None,
    pretrain_optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    device: torch.device,
) -> _Progress:
    """Put model, optimisers and random streams back where ``last.pt`` left them."""
    payload = runs.load_checkpoint(path)
    saved_settings = payload.get("settings", {})
    changed = sorted(
        key
        for key in set(settings) | set(saved_settings)
        if settings.get(key) != saved_settings.get(key)
    )
    if changed:
        details = ", ".join(
            f"{key} {saved_settings.get(key)!r} -> {settings.get(key)!r}" for key in changed[:3]
        )
        raise RunError(
            f"{path}: an unfinished run with other settings ({details}); "
            "train with force to start it again"
        )
    try:
        progress = _Progress(**payload["progress"])
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if progress.phase == "pretrain" and pretrainer is not None:
            pretrainer.load_state_dict(payload["pretrainer"])
            pretrain_optimizer.load_state_dict(payload["pretrain_optimizer"])
        generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        if device.type == "cuda" and payload.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise runs.CheckpointError(f"{path}: not a resume state of this run ({error})") from None
    return progress


def learning_rate_at(step: int, total_steps: int, peak_lr: float) -> float:
    """Linear warm-up to ``peak_lr``, then cosine decay to ``FINAL_LR_FRACTION * peak_lr``."""
    warmup_steps = max(1, round(WARMUP_FRACTION * total_steps))
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak_lr * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine)


def _batches_per_epoch(rows: int, batch_size: int) -> int:
    """Batches :func:`_epoch_batches` yields: a last batch of one image is dropped."""
    full, rest = divmod(rows, batch_size)
    return full + (1 if rest >= 2 else 0)


def _epoch_batches(
    rows: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> list[Tensor]:
    """Shuffled index batches for one epoch. A last batch of a single image is dropped:
    BatchNorm cannot normalise one sample in training mode."""
    order = torch.randperm(rows, generator=generator).to(device)
    batches = list(order.split(batch_size))
    if len(batches[-1]) < 2:
        batches.pop()
    return batches


def masked_mse(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the labelled coordinates of (N, K, 2) tensors.

    ``mask`` (N, K) is True where a keypoint is labelled; both of its coordinates count.
    Unlabelled targets must be finite (the variants store 0) since NaN * 0 is NaN.
    """
    weights = mask.unsqueeze(-1).to(predicted.dtype).expand_as(predicted)
    squared = (predicted - target).square() * weights
    return squared.sum() / weights.sum().clamp_min(1.0)


@torch.no_grad()
def predict_pixels(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Predict keypoints in pixels, float64 (N, K, 2), for uint8 images (N, H, W)."""
    model.eval()
    image_size = images.shape[-1]
    predictions = []
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        batch = _image_tensor(images[start : start + EVAL_BATCH_SIZE]).to(device)
        coords = model(batch.float().div_(255.0)).reshape(len(batch), -1, 2)
        predictions.append(denormalise_keypoints(coords, image_size).double().cpu().numpy())
    return np.concatenate(predictions)


@dataclass
class _EpochTally:
    """What one pass over the batches did."""

    mean_loss: float
    images_seen: int
    last_lr: float
    cut_short: bool  # stopped before the last batch (out of time)


def _train_epoch(
    phase: _Phase,
    state: _Progress,
    batches: list[Tensor],
    total_steps: int,
    peak_lr: float,
    deadline: float,
    on_batch: Callable[[], None],
    where: str,
) -> _EpochTally:
    """One optimiser step per batch, the learning rate set from the step count first.

    Past ``deadline`` (a ``time.monotonic()`` value) the epoch ends after the current
    batch. A non-finite loss raises :class:`TrainingDiverged` before it reaches the weights.
    """
    loss_sum, images_seen, lr = 0.0, 0, peak_lr
    for batch_number, indices in enumerate(batches, start=1):
        lr = learning_rate_at(state.step, total_steps, peak_lr)
        for group in phase.optimizer.param_groups:
            group["lr"] = lr
        loss = phase.batch_loss(indices)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{where}: loss became {loss.item()} at step {state.step}; "
                f"try an lr below {peak_lr}"
            )
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        phase.optimizer.step()
        state.step += 1
        loss_sum += loss.item() * len(indices)
        images_seen += len(indices)
        on_batch()
        if batch_number < len(batches) and time.monotonic() >= deadline:
            return _EpochTally(loss_sum / images_seen, images_seen, lr, cut_short=True)
    return _EpochTally(loss_sum / max(images_seen, 1), images_seen, lr, cut_short=False)


def _stop_reason(
    state: _Progress, phase: _Phase, patience: int | None, cut_short: bool, out_of_time: bool
) -> str | None:
    """Why the phase ends after the epoch just done, or None to go on."""
    if cut_short:
        return "time-limit"
    if state.epoch >= phase.epochs:
        return "completed"
    if phase.evaluate and patience and state.epochs_since_best >= patience:
        return "early-stopped"
    if out_of_time:
        return "time-limit"
    return None


def _track_best(
    state: _Progress, val_rmse: float, epoch: int, model: nn.Module, folder: Path
) -> None:
    """Keep the best epoch's weights in model.pt and count epochs without improvement."""
    if math.isfinite(val_rmse) and (state.best_val_rmse is None or val_rmse < state.best_val_rmse):
        state.best_val_rmse, state.best_epoch, state.epochs_since_best = val_rmse, epoch, 0
        runs.save_checkpoint(folder / runs.MODEL_FILE, _cpu_state_dict(model))
    else:
        state.epochs_since_best += 1


def _cpu_state_dict(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(
            {
                key: "" if isinstance(value, float) and math.isnan(value) else value
                for key, value in row.items()
            }
        )
    write_text_atomic(path, buffer.getvalue())


def _epoch_summary(name: str, row: dict[str, Any]) -> str:
    val = "" if math.isnan(row["val_rmse"]) else f", val RMSE {_pixels(row['val_rmse'])}"
    return f"{name} [{row['phase']} {row['epoch']}: loss {row['train_loss']:.4g}{val}]"


# --------------------------------------------------------------------------------------------
# Small helpers.


def _result(
    config: TrainConfig,
    name: str,
    folder: Path,
    weights_mode: str,
    status: str,
    started: float,
    **fields: Any,
) -> RunResult:
    return RunResult(
        run_name=name,
        run_dir=folder,
        arch=config.arch,
        variant=config.variant,
        weights_mode=weights_mode,
        status=status,
        seconds=time.monotonic() - started,
        **fields,
    )


def _failed(config: TrainConfig, error: Exception, started: float) -> RunResult:
    """A result row for a run that raised; the message is the error's first line."""
    weights_mode = "scratch" if config.weights is None else config.weights_mode
    try:
        name = runs.run_name(config.arch, config.variant, weights_mode)
    except ValueError:
        name = f"{config.arch}--{config.variant}"
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    console.print(f"[bold red]failed:[/] {name}: {type(error).__name__}: {message}")
    return RunResult(
        run_name=name,
        run_dir=Path(config.runs_dir) / name,
        arch=config.arch,
        variant=config.variant,
        weights_mode=weights_mode,
        status="failed",
        error=f"{type(error).__name__}: {message}",
        seconds=time.monotonic() - started,
    )


def _landmark_scores(
    predicted: np.ndarray, split: SplitArrays, scheme: KeypointScheme
) -> dict[str, Any]:
    """FR@0.1 and AUC@0.1 of the NME, and NME per subset where the data has subsets."""
    scores = landmark_metrics(predicted, split.keypoints, scheme, FAILURE_THRESHOLD)
    errors = normalised_errors_per_sample(predicted, split.keypoints, scheme)
    _, fraction = cumulative_error_distribution(errors, FAILURE_THRESHOLD, CED_STEPS)
    record: dict[str, Any] = {
        "test_fr": _finite_or_none(scores["fr"]),
        "test_auc": _finite_or_none(scores["auc"]),
        "failure_threshold": FAILURE_THRESHOLD,
        # The CED at CED_STEPS + 1 even NMEs from 0 to the threshold: the report's figure.
        "test_ced": [_finite_or_none(round(float(value), 6)) for value in fraction],
    }
    if split.attributes is not None:
        subsets = nme_per_subset(errors, split.attributes, WFLW_ATTRIBUTES)
        record["test_nme_per_subset"] = {
            name: _finite_or_none(value) for name, value in subsets.items()
        }
    return record


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: an undefined score is null."""
    return float(value) if value is not None and math.isfinite(value) else None


def _pixels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} px"
