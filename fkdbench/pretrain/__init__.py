"""``fkdbench pretrain``: a backbone checkpoint made here, with no download, in the exact
format ``train --weights`` reads (safetensors, the backbone's own tensor names).

Two methods (:data:`METHODS`): ``synthetic-landmarks`` regresses 68 dense landmarks on
faces the synthetic generator draws for it (as many as the budget allows: they cost only
generation time), and ``autoencoder`` (paper 000's idea, for any registered backbone)
rebuilds the data's unlabelled and training images with patches hidden. Neither is
ImageNet: the report says which one a row's weights came from.

A checkpoint is cached by the checksum of its recipe (:func:`options.recipe`): the same
method, settings, data and backbone layout reuse the folder a first call wrote, so a
preset naming a pretraining step pays for it once. ``timm:<tag>`` weights
(:func:`timm_weights`) are the one path that downloads, and only when asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fkdbench import runs
from fkdbench.allocator import keep_freed_memory
from fkdbench.data.splits import DataError
from fkdbench.io import plain
from fkdbench.models import DEFAULT_INPUT_SIZE, list_models
from fkdbench.pretrain import cache, methods
from fkdbench.pretrain.options import (
    METHODS,
    PRESET_KEYS,
    PretrainError,
    PretrainOptions,
    check_options,
    options_from_preset,
    recipe,
    recipe_checksum,
)
from fkdbench.pretrain.timm_weights import TIMM_PREFIX, is_timm_tag, timm_weights
from fkdbench.progress import make_progress, say
from fkdbench.provenance import check_threads, environment_record
from fkdbench.train.loop import Phase, Progress, batches_per_epoch, epoch_batches, make_optimizer
from fkdbench.train.loop import train_epoch as _train_epoch

__all__ = [
    "METHODS",
    "PRESET_KEYS",
    "TIMM_PREFIX",
    "PretrainError",
    "PretrainOptions",
    "PretrainPlan",
    "PretrainResult",
    "is_timm_tag",
    "install",
    "options_from_preset",
    "plan",
    "pretrain",
    "timm_weights",
]


@dataclass(frozen=True)
class PretrainResult:
    """Where the checkpoint is and what made it."""

    weights: Path  # the cached backbone.safetensors
    record: dict[str, Any]  # its pretrain.json
    reused: bool  # True when the cache already held this recipe
    out: Path | None = None  # the --out copy, when asked for


@dataclass(frozen=True)
class PretrainPlan:
    """Where the checkpoint of some options goes and what identifies it, known before
    any work (:func:`plan`)."""

    folder: Path  # its cache folder
    checksum: str  # the sha256 of its recipe
    recipe: dict[str, Any]
    image_size: int

    def cached(self) -> dict[str, Any] | None:
        """The record of the checkpoint in the cache, when it holds this recipe."""
        return cache.reusable(self.folder / cache.WEIGHTS_FILE, self.checksum)


def plan(options: PretrainOptions) -> PretrainPlan:
    """Check ``options`` and say where their checkpoint goes; :class:`PretrainError` or
    ``DataError`` in one line naming the setting or file."""
    check_options(options)
    check_threads(options.num_threads)
    if options.arch not in list_models(include_tests=True):
        raise PretrainError(
            f"unknown architecture {options.arch!r}; known: {', '.join(list_models())}"
        )
    if options.out is not None:
        cache.check_out(options.out)
    image_size = _image_size(options)
    layout = methods.backbone_layout(methods.build_backbone_model(options.arch, 2, image_size))
    recipe_record = recipe(options, methods.recipe_data(options, image_size), layout)
    checksum = recipe_checksum(recipe_record)
    folder = cache.cache_folder(options.runs_dir, options.arch, options.method, checksum)
    return PretrainPlan(folder, checksum, recipe_record, image_size)


def pretrain(options: PretrainOptions) -> PretrainResult:
    """Make (or reuse) the backbone checkpoint ``options`` describe; see the module doc.

    Errors are :class:`PretrainError` or ``DataError`` with one line naming the file or
    setting, raised before anything is written; ``io.WriteError`` when the disk refuses.
    """
    planned = plan(options)
    folder = planned.folder
    with _cache_lock(folder):
        record = None if options.force else planned.cached()
        reused = record is not None
        if record is None:
            record = _make(options, planned)
        else:
            say(f"{folder.name}: pretrained already (same recipe), reused", options.quiet)
    weights = folder / cache.WEIGHTS_FILE
    out = cache.copy_out(weights, record, options.out, options.force) if options.out else None
    return PretrainResult(weights, record, reused, out)


def install(planned: PretrainPlan, files: dict[str, bytes], made_on: dict[str, Any]) -> Path:
    """Put a checkpoint made on another machine (a Ray worker: its cache folder's files)
    into this machine's cache, as :func:`pretrain` would have written it, with where it
    was made added to the record; :class:`PretrainError` when the files are not of this
    recipe or the weights are not the ones the record names."""
    name = planned.folder.name
    missing = sorted({cache.WEIGHTS_FILE, cache.RECORD_FILE} - set(files))
    if missing:
        raise PretrainError(f"{name}: the checkpoint came back without {', '.join(missing)}")
    weights = files[cache.WEIGHTS_FILE]
    try:
        record = json.loads(files[cache.RECORD_FILE])
    except ValueError:
        raise PretrainError(f"{name}: the {cache.RECORD_FILE} that came back is not JSON") from None
    if not isinstance(record, dict) or record.get("recipe_sha256") != planned.checksum:
        raise PretrainError(f"{name}: the checkpoint that came back is of another recipe")
    if record.get("weights_sha256") != hashlib.sha256(weights).hexdigest():
        raise PretrainError(f"{name}: the checkpoint that came back is damaged")
    with _cache_lock(planned.folder):
        return cache.write_folder(planned.folder, weights, {**record, "made_on": made_on})


def _cache_lock(folder: Path) -> contextlib.AbstractContextManager:
    """The lock of a cache folder: one process makes or installs a checkpoint at a time."""
    return runs.hold_run(folder.with_name(f".{folder.name}.lock"), folder.name)


def _image_size(options: PretrainOptions) -> int:
    """The data's image side; synthetic-landmarks, which reads no data, falls back to the
    default input size when no data is prepared."""
    try:
        return methods.image_size_of(options.data_dir)
    except DataError:
        if options.method == "synthetic-landmarks":
            return DEFAULT_INPUT_SIZE
        raise


def _make(options: PretrainOptions, planned: PretrainPlan) -> dict[str, Any]:
    """Build the method's task, train it, write the cache folder; returns the record."""
    image_size, recipe_record, folder = planned.image_size, planned.recipe, planned.folder
    started = time.monotonic()
    keep_freed_memory()
    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    device = torch.device("cpu")
    task = _build_task(options, image_size, device, generator)
    fit = _fit(task, options, generator, device, folder.name)
    seconds = time.monotonic() - started
    record = {
        "format_version": recipe_record["format_version"],
        "recipe": recipe_record,
        "recipe_sha256": planned.checksum,
        "method_description": METHODS[options.method],
        "not_imagenet": True,
        "data_read": plain(task.data),
        "backbone_parameters": sum(p.numel() for p in task.model.backbone.parameters()),
        "epoch_losses": fit["losses"],
        "images_per_second": fit["images_per_second"],
        "seconds": seconds,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "environment": environment_record(),
    }
    weights = cache.write_cache(folder, task.model.backbone.state_dict(), record)
    say(f"{folder.name}: pretrained in {seconds:.0f} s -> {weights}", options.quiet)
    return record


def _build_task(
    options: PretrainOptions, image_size: int, device: torch.device, generator: torch.Generator
) -> methods.Task:
    if options.method == "autoencoder":
        return methods.autoencoder(options, image_size, device, generator)
    with make_progress(options.quiet) as display:
        bar = display.add_task(f"{options.arch}: drawing faces", total=options.faces)
        return methods.synthetic_landmarks(
            options, image_size, device, on_faces=lambda done: display.advance(bar, done)
        )


def _fit(
    task: methods.Task,
    options: PretrainOptions,
    generator: torch.Generator,
    device: torch.device,
    name: str,
) -> dict[str, Any]:
    """The training loop's own epoch (warm-up then cosine, AdamW, a non-finite loss
    stops it), over the task's images for ``options.epochs`` epochs."""
    optimizer = make_optimizer(task.module, options)
    phase = Phase(
        "pretrain", options.epochs, task.module, optimizer, task.rows, task.batch_loss, None
    )
    progress = Progress(phase="pretrain")
    steps = batches_per_epoch(task.rows, options.batch_size)
    losses, seconds, images = [], 0.0, 0
    with make_progress(options.quiet) as display:
        epochs_bar = display.add_task(f"{name}: pretrain", total=options.epochs)
        batches_bar = display.add_task("  batches", total=steps)
        for epoch in range(1, options.epochs + 1):
            display.reset(batches_bar, total=steps, description=f"  epoch {epoch}/{options.epochs}")
            phase.enter_training_mode()
            started = time.monotonic()
            tally = _train_epoch(
                phase,
                progress,
                epoch_batches(task.rows, options.batch_size, generator, device),
                options.epochs * steps,
                options.lr,
                deadline=float("inf"),
                on_batch=lambda: display.advance(batches_bar),
                where=f"{name}: pretrain epoch {epoch}",
            )
            seconds += time.monotonic() - started
            images += tally.images_seen
            losses.append(tally.mean_loss)
            display.update(epochs_bar, advance=1, description=f"{name}: loss {tally.mean_loss:.4g}")
    return {"losses": losses, "images_per_second": images / max(seconds, 1e-9)}
