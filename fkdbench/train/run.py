"""One training run, in stages that read top to bottom like nanoGPT's ``train.py``.

:func:`train_run`: check the settings, take the run folder's lock (skip a finished run
whose recorded settings and data match, refuse one whose do not), seed, load the data,
build the model, plan the phases, resume or start, write ``config.json``, train the phases
epoch by epoch, score the test split with the best epoch's weights and write
``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fkdbench import runs
from fkdbench.allocator import keep_freed_memory
from fkdbench.config import DEVICES, PRETRAINED_WEIGHTS_MODES, TrainConfig, below_minimum
from fkdbench.data.schemes import KeypointScheme, get_scheme
from fkdbench.data.splits import read_manifest
from fkdbench.data.variants import VARIANTS
from fkdbench.io import plain, sha256_file, write_json_atomic
from fkdbench.models import (
    ArchInfo,
    count_parameters,
    create_model,
    freeze_backbone,
    get_arch_info,
    list_models,
    load_backbone_weights,
)
from fkdbench.models.heads import HEADS
from fkdbench.progress import console, say
from fkdbench.provenance import check_threads
from fkdbench.train.convergence import convergence
from fkdbench.train.dataset import TrainingData, load_training_data
from fkdbench.train.loop import MEMORY_FORMAT, Progress, optimisation_record
from fkdbench.train.losses import LossError, check_loss
from fkdbench.train.phases import EpochHook, RunLoop, plan_phases, run_phases, start_or_resume
from fkdbench.train.result import RunError, RunResult, weights_mode_of
from fkdbench.train.scoring import predict_pixels, score_test_split
from fkdbench.train.state import (
    check_finished_settings,
    cpu_state_dict,
    settings_fingerprint,
    write_history,
)

if TYPE_CHECKING:
    from fkdbench.pretrain import PretrainOptions


def train_run(config: TrainConfig, on_epoch_end: EpochHook | None = None) -> RunResult:
    """Train one run to its end, resuming it if it was interrupted; skip it if finished
    with the same settings and data.

    ``on_epoch_end`` is called with each history row after that epoch's state is saved
    (a hook for tests and callers; an exception from it interrupts the run like Ctrl-C).
    Every error is a ``ValueError`` or ``OSError`` with one line naming the run or the file:
    :class:`RunError` for bad settings (or a finished run with other ones), ``DataError``
    for bad data, :class:`runs.CheckpointError` for unreadable checkpoints,
    :class:`runs.RunBusy` when another process owns the run folder,
    :class:`TrainingDiverged` when the loss stops being finite and ``io.WriteError`` when
    a file cannot be written (disk full, read-only).
    """
    started = time.monotonic()
    return train_resolved(resolve_weights(config), on_epoch_end, started)


def train_resolved(
    config: TrainConfig, on_epoch_end: EpochHook | None = None, started: float | None = None
) -> RunResult:
    """:func:`train_run` for a config whose weights are already a local file
    (:func:`resolve_weights` done): what a Ray worker runs with the file it was sent."""
    started = time.monotonic() if started is None else started
    check_threads(config.num_threads)
    run = _open_run_folder(config)
    # One process owns the folder; nothing in it is written before the lock is held.
    with runs.hold_run(run.folder, run.name) as stale:
        if stale is not None:
            console.print(
                f"[bold yellow]warning:[/] {run.name}: took over the lock of pid {stale.pid} "
                f"on {stale.host}, which is no longer running"
            )
        if run.finished:
            check_finished_settings(run.folder, run.name, _finished_run_settings(config, run))
            say(f"{run.name}: already finished, skipped (force to train again)", config.quiet)
            return run.result("skipped", started, metrics=runs.read_metrics(run.folder))
        return _train(config, run, started, on_epoch_end)


def _train(
    config: TrainConfig, run: Run, started: float, on_epoch_end: EpochHook | None
) -> RunResult:
    """Every check (data, model, weights, a resume state's settings) passes before the
    first write: a refused run leaves its folder as it was."""
    device, generator = _seed_torch(config)
    data = load_training_data(config, run.name, device)
    built = _build_model(config, run, data, device)
    settings = settings_fingerprint(config, built.kwargs, run.weights_mode, built.weights)

    frozen = run.weights_mode == "frozen"
    trainables, phases = plan_phases(
        config,
        data,
        built.model,
        run.pretrain_epochs,
        frozen,
        generator,
        device,
        run.backbone_lr_scale,
    )
    if config.force:
        # Unfinished first: a crash from here on leaves a resumable run, never a finished
        # one with stale metrics.
        (run.folder / runs.METRICS_FILE).unlink(missing_ok=True)
        (run.folder / runs.RESUME_FILE).unlink(missing_ok=True)
    progress = start_or_resume(
        run.folder, settings, trainables, phases[0].name, run.name, config.quiet
    )
    _write_config(config, run, data, built, settings["manifest_sha256"])
    loop = RunLoop(config, run.name, run.folder, settings, trainables, progress, on_epoch_end)
    run_phases(loop, phases)

    metrics = _score_test(config, run, data, built.model, progress, device)
    return run.result("finished", started, metrics=metrics)


# --------------------------------------------------------------------------------------------
# The stages, in the order train_run uses them.


@dataclass
class Run:
    """Which run a config trains, where it lives, and what its settings imply."""

    name: str
    folder: Path
    arch: str
    variant: str
    weights_mode: str  # scratch | frozen | finetuned
    arch_info: ArchInfo
    pretrain_epochs: int  # autoencoder epochs before the keypoint phase (0: none)
    backbone_lr_scale: float  # the backbone's share of the lr: config's when finetuned, else 1
    finished: bool  # finished before this call, and not forced: skipped if settings match

    def result(self, status: str, started: float, **fields: Any) -> RunResult:
        return RunResult(
            run_name=self.name,
            run_dir=self.folder,
            arch=self.arch,
            variant=self.variant,
            weights_mode=self.weights_mode,
            status=status,
            seconds=time.monotonic() - started,
            **fields,
        )


def _open_run_folder(config: TrainConfig) -> Run:
    """Check the settings, name the run and find its folder (writing nothing)."""
    arch_info = _check_choices(config)
    weights_mode = _weights_mode(config, arch_info)
    name = runs.config_run_name(config, weights_mode)
    folder = Path(config.runs_dir) / name
    run = Run(
        name=name,
        folder=folder,
        arch=config.arch,
        variant=config.variant,
        weights_mode=weights_mode,
        arch_info=arch_info,
        pretrain_epochs=config.ae_pretrain_epochs if arch_info.pretrain == "autoencoder" else 0,
        backbone_lr_scale=runs.trained_backbone_lr_scale(weights_mode, config.backbone_lr_scale),
        finished=runs.is_finished(folder) and not config.force,
    )
    if not run.finished and arch_info.has_backbone and config.weights is None:
        console.print(
            f"[bold yellow]warning:[/] {name}: no weights file given; training "
            f"{config.arch} from SCRATCH (reported as weights_mode 'scratch')"
        )
    return run


def resolve_weights(config: TrainConfig) -> TrainConfig:
    """``config`` with its weights as a local file: its pretraining step made (or reused
    from the cache), or timm's ``timm:<tag>`` fetched; any other config as it is."""
    # Imported here: fkdbench.pretrain trains with this package's loop (train.loop).
    from fkdbench import pretrain

    if config.pretrain is None and not pretrain.is_timm_tag(config.weights):
        return config
    _check_choices(config)
    if config.pretrain is None:
        weights = pretrain.timm_weights(config.arch, str(config.weights), config.runs_dir)
    elif config.weights is not None:
        raise RunError(
            f"{config.arch}: give a weights file or a pretraining step, not both "
            f"(weights {config.weights}, pretrain {config.pretrain!r})"
        )
    else:
        weights = pretrain.pretrain(pretrain_options(config)).weights
    return dataclasses.replace(config, weights=weights)


def pretrain_options(config: TrainConfig) -> PretrainOptions:
    """The options of ``config``'s pretraining step (``config.pretrain`` set): its
    architecture, data, runs folder and threads."""
    from fkdbench import pretrain

    return pretrain.options_from_preset(
        config.pretrain,
        config.arch,
        config.data_dir,
        config.runs_dir,
        num_threads=config.num_threads,
        quiet=config.quiet,
    )


def _finished_run_settings(config: TrainConfig, run: Run) -> dict[str, Any]:
    """The settings fingerprint this config would train, without loading the data: the
    model's kwargs need only the image size, which the manifest records."""
    manifest = read_manifest(config.data_dir)  # DataError naming it when missing
    recorded = runs.read_config(run.folder).get("data", {})
    image_size = int(manifest.get("image_size") or recorded.get("image_size") or 0)
    scheme = get_scheme(manifest.get("scheme") or recorded.get("scheme") or "kaggle15")
    kwargs, _ = _model_kwargs(config, image_size, scheme)
    weights = None if run.weights_mode == "scratch" else {"sha256": sha256_file(config.weights)}
    return settings_fingerprint(config, kwargs, run.weights_mode, weights)


def _check_choices(config: TrainConfig) -> ArchInfo:
    """Validate the settings before any work; returns the architecture's ``ArchInfo``."""
    # Tiny test-* variants train like any model, but the message lists the real ones.
    if config.arch not in list_models(include_tests=True):
        known = ", ".join(list_models())
        raise RunError(f"unknown architecture {config.arch!r}; known: {known}")
    if config.variant not in VARIANTS:
        raise RunError(f"unknown data variant {config.variant!r}; known: {', '.join(VARIANTS)}")
    if config.weights_mode not in PRETRAINED_WEIGHTS_MODES:
        known = ", ".join(PRETRAINED_WEIGHTS_MODES)
        raise RunError(f"unknown weights mode {config.weights_mode!r}; known: {known}")
    # BatchNorm cannot train on one image, so a batch holds at least two.
    minimums = {"epochs": 1, "batch_size": 2, "augment_copies": 0, "ae_pretrain_epochs": 0}
    problem = below_minimum(config, minimums)
    if problem:
        raise RunError(problem)
    if not (_is_number(config.lr) and config.lr > 0):
        raise RunError(f"lr must be positive, got {config.lr!r}")
    scale = config.backbone_lr_scale
    if not (_is_number(scale) and 0 < scale <= 1):
        raise RunError(f"backbone_lr_scale must be in (0, 1], got {scale!r}")
    arch_info = get_arch_info(config.arch)
    if config.head is not None and config.head not in HEADS:
        raise RunError(f"unknown head {config.head!r}; known: {', '.join(HEADS)}")
    try:
        check_loss(config.loss, config.head or arch_info.default_head)
    except LossError as error:
        raise RunError(str(error)) from None
    if not isinstance(config.flip_test, bool):
        raise RunError(f"flip_test must be true or false, got {config.flip_test!r}")
    return arch_info


def _is_number(value: Any) -> bool:
    """A real number as a preset's JSON or Python gives one (a string is refused in one
    line, not compared into a TypeError)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _weights_mode(config: TrainConfig, arch_info: ArchInfo) -> str:
    """:func:`weights_mode_of`, once the weights file is known to be there."""
    if config.weights is not None and not Path(config.weights).is_file():
        raise RunError(f"{config.weights}: no such weights file")
    return weights_mode_of(config)


def _seed_torch(config: TrainConfig) -> tuple[torch.device, torch.Generator]:
    """The device, and the seeded random streams: the global one (initialisation, dropout)
    and the generator that shuffles and augments."""
    device = _pick_device(config.device)
    keep_freed_memory()  # no page faults for the buffers every batch frees and re-makes
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    return device, torch.Generator().manual_seed(config.seed)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES:
        raise RunError(f"unknown device {name!r}; known: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


@dataclass
class BuiltModel:
    """The model of a run, and what config.json records of how it was built."""

    model: nn.Module
    kwargs: dict[str, Any]  # complete create_model kwargs: config.json alone rebuilds it
    spec_source: str | None  # where a spec-built model's spec came from
    weights: dict[str, Any] | None  # the pretrained backbone file; None from scratch


def _build_model(
    config: TrainConfig, run: Run, data: TrainingData, device: torch.device
) -> BuiltModel:
    """The model, with its pretrained backbone if any, starting at the mean shape."""
    kwargs, spec_source = _model_kwargs(config, data.image_size, data.scheme)
    if spec_source:
        say(f"{run.name}: spec from {spec_source}", config.quiet)
    model = create_model(config.arch, num_outputs=data.scheme.num_outputs, in_chans=1, **kwargs)
    weights = _load_weights(model, config, run.weights_mode)
    # Start from the mean shape of the training labels (a resume overwrites this anyway).
    model.start_at_shape(torch.from_numpy(data.mean_shape_coordinates()))
    model.to(device, memory_format=MEMORY_FORMAT)
    return BuiltModel(model, kwargs, spec_source, weights)


def _model_kwargs(
    config: TrainConfig, image_size: int, scheme: KeypointScheme
) -> tuple[dict[str, Any], str | None]:
    """The complete ``create_model`` kwargs of the run, and where its spec came from."""
    chosen_kwargs, spec_source = runs.choose_spec(
        config.model_kwargs, config.arch, config.variant, config.runs_dir
    )
    kwargs = runs.resolve_model_kwargs(chosen_kwargs, config.arch, image_size)
    return {**kwargs, **runs.recipe_kwargs(config, image_size, scheme)}, spec_source


def _load_weights(
    model: nn.Module, config: TrainConfig, weights_mode: str
) -> dict[str, Any] | None:
    """Load the backbone weights (and freeze them) when the run has a weights file."""
    if weights_mode == "scratch":
        return None
    path = Path(config.weights)
    report = load_backbone_weights(model, path)
    if weights_mode == "frozen":
        freeze_backbone(model)
    from fkdbench.pretrain.cache import made_by

    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "load_report": plain(dataclasses.asdict(report))
        if dataclasses.is_dataclass(report)
        else str(report),
        # What made the file, when fkdbench did (pretrain.json beside it): None for a
        # file of the user's, whose origin only the user knows.
        "made_by": made_by(path),
    }


def _write_config(
    config: TrainConfig, run: Run, data: TrainingData, built: BuiltModel, manifest_sha256: str
) -> None:
    """config.json: everything needed to rebuild the model and repeat the run."""
    image_size = data.image_size
    record = runs.config_record(
        run_name=run.name,
        weights_mode=run.weights_mode,
        model=runs.model_record(
            config.arch, data.scheme, image_size, built.kwargs, built.spec_source
        ),
        train=config,
        weights=built.weights,
        data=runs.data_record(
            data_dir=config.data_dir,
            manifest=data.manifest,
            manifest_sha256=manifest_sha256,
            scheme=data.scheme,
            image_size=image_size,
            train_split_rows=len(data.train_split),
            train_rows=len(data.train_rows),
            val_rows=len(data.val_split),
            test_rows=len(data.test_split),
            variant_summary=data.variant.summary,
            online_augmentation=data.variant.online_augmentation,
            augment=data.augment,
        ),
        optimisation=optimisation_record(
            run.pretrain_epochs,
            config.loss,
            config.head or run.arch_info.default_head,
            device=next(built.model.parameters()).device,
            backbone_lr_scale=run.backbone_lr_scale,
        ),
    )
    write_json_atomic(run.folder / runs.CONFIG_FILE, record)


def _score_test(
    config: TrainConfig,
    run: Run,
    data: TrainingData,
    model: nn.Module,
    progress: Progress,
    device: torch.device,
) -> dict[str, Any]:
    """Score the test split with the best epoch's weights; write training.json, then
    metrics.json last."""
    model_file = run.folder / runs.MODEL_FILE
    if progress.best_epoch is None:
        # No epoch validated to a finite RMSE (e.g. a validation split without labels):
        # keep the final weights rather than none.
        runs.save_checkpoint(model_file, cpu_state_dict(model))
    model.load_state_dict(runs.load_checkpoint(model_file))
    predicted = predict_pixels(model, data.test_split.images, device)
    # A resume state saved by an older fkdbench may hold an older name.
    stop_reason = runs.current_stop_reason(progress.stop_reason) or "completed"
    metrics = runs.metrics_record(
        run_name=run.name,
        arch=config.arch,
        variant=config.variant,
        weights_mode=run.weights_mode,
        recipe=runs.config_recipe(config, run.weights_mode),
        scores=score_test_split(predicted, data.test_split, data.train_split, data.scheme),
        best_val_rmse=progress.best_val_rmse,
        best_epoch=progress.best_epoch,
        epochs_run=progress.epoch,
        pretrain_epochs_run=sum(row["phase"] == "pretrain" for row in progress.history),
        stop_reason=stop_reason,
        convergence=convergence(progress.history, stop_reason, config.patience),
        seed=config.seed,
        parameters=count_parameters(model),
        model_file=model_file,
        train_rows=len(data.train_rows),
        val_rows=len(data.val_split),
        test_rows=len(data.test_split),
    )
    write_history(run.folder / runs.HISTORY_FILE, progress.history)
    training = runs.training_record(
        run_name=run.name, training_seconds=progress.training_seconds, history=progress.history
    )
    write_json_atomic(run.folder / runs.TRAINING_FILE, training)
    write_json_atomic(run.folder / runs.METRICS_FILE, metrics)
    (run.folder / runs.RESUME_FILE).unlink(missing_ok=True)
    say(
        f"{run.name}: test RMSE {_pixels(metrics['test_rmse'])} (mean shape "
        f"{_pixels(metrics['mean_shape_rmse'])}), {metrics['stop_reason']} after "
        f"{metrics['epochs_run']} epochs"
        + ("" if metrics["convergence"]["converged"] else " (not converged)"),
        config.quiet,
    )
    return metrics


def _pixels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} px"
