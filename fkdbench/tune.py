"""``fkdbench tune``: search ``cnn-tuned`` specs with Optuna, for accuracy and CPU speed.

Paper 003 tuned its custom CNN once per data variant with the Keras tuner, on validation
loss alone. Here each trial samples a :class:`~fkdbench.models.cnn.CNNSpec` plus a learning
rate and batch size, and is scored on two objectives:

* **validation RMSE** (pixels) after a short, fixed training budget (``epochs_per_trial``),
  trained by :func:`fkdbench.train.train_run` exactly as ``fkdbench train`` would;
* **ONNX Runtime CPU seconds per 100 images**, timed by the bench code
  (:func:`fkdbench.bench.time_backend`) on the exported ONNX graph. Latency does not depend
  on the weights' values, so it is measured *before* training, on the freshly built model:
  a trial knows its speed from the start, which is what lets multi-objective trials stop
  early (below).

Trials are stopped before or during training in three ways:

* over ``max_params`` (Keras count) or a spec the input size cannot hold: rejected before
  any training, recorded as PRUNED with the reason;
* ``objective="rmse"``: Optuna's median pruner on the per-epoch validation RMSE;
* ``objective="rmse+latency"``: Optuna's pruners are single-objective, so this module
  stops a trial whose validation RMSE at epoch *e* is worse than a finished trial's at the
  same epoch while that trial is also at least as fast: already dominated on both axes.

The study lives in any database Optuna supports (default SQLite under ``runs/tune``); many
workers, on one machine or many, may run the same study at once. Finished trials are in the
database the moment they end, so Ctrl-C or a crash loses at most the trial in progress.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, Trial, TrialState

from fkdbench import runs
from fkdbench.bench import BenchOptions, session_predictor, time_backend
from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import MANIFEST_NAME, DataError, load_split, read_manifest
from fkdbench.export import export_onnx, images_as_float, open_session
from fkdbench.io import sha256_file, write_json_atomic, write_text_atomic
from fkdbench.models.cnn import CNNSpec, ConvBlockSpec, SpecError, build_cnn
from fkdbench.models.params import count_parameters
from fkdbench.progress import make_progress, say
from fkdbench.provenance import available_cores, environment_record
from fkdbench.report import new_figure, pareto_front, save_figure
from fkdbench.train import TrainConfig, TrainingDiverged, train_run

ARCH = "cnn-tuned"
# Per-trial run folders, under the study's folder.
TRIALS_DIR = "trials"

# The objectives, by --objective; the study's directions follow (both minimised).
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "rmse": ("val_rmse",),
    "rmse+latency": ("val_rmse", "seconds_per_100_images"),
}
DEFAULT_OBJECTIVE = "rmse+latency"
# The tuned spec must not outgrow the paper's untuned baseline CNN (1.89M Keras params).
DEFAULT_MAX_PARAMS = 2_000_000
# Heartbeats mark a crashed worker's trial FAIL so the study does not wait for it forever.
HEARTBEAT_SECONDS = 60
HEARTBEAT_GRACE_SECONDS = 240
# Tries at opening a storage whose tables another worker is creating at the same moment.
STORAGE_ATTEMPTS = 5
# Seconds to wait for a database server before saying it cannot be reached.
CONNECT_TIMEOUT_SECONDS = 10


class TuneError(ValueError):
    """A study that cannot run as asked; the message names the study, storage or file."""


# -- the search space ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """What a trial may choose. Stored with the study: a study is only joined by a worker
    with the same space, so that its trials stay comparable."""

    # Conv blocks (conv -> optional BatchNorm -> ReLU -> optional 2x2 pool), inclusive range.
    conv_blocks: tuple[int, int] = (2, 6)
    filters: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 96, 128)
    kernel_sizes: tuple[int, ...] = (3, 5)
    # "none" keeps the feature map size (no pooling after that block).
    pools: tuple[str, ...] = ("max", "avg", "none")
    # Hidden dense layers between the flattened features and the output, inclusive range.
    dense_layers: tuple[int, int] = (0, 2)
    dense_units: tuple[int, ...] = (64, 128, 256, 512)
    # (low, high, step) of the dropout after each hidden dense layer.
    dropout: tuple[float, float, float] = (0.0, 0.5, 0.05)
    # Peak learning rate, sampled log-uniformly.
    lr: tuple[float, float] = (3e-4, 5e-3)
    batch_sizes: tuple[int, ...] = (32, 64, 128)

    def suggest(self, trial: Trial) -> tuple[CNNSpec, dict[str, Any]]:
        """Sample a spec and its training settings (``lr``, ``batch_size``) for ``trial``.

        Per-block settings are named ``block<i>_...`` and exist only for the blocks the
        trial has: Optuna's samplers handle such conditional parameters.
        """
        blocks = []
        for index in range(trial.suggest_int("conv_blocks", *self.conv_blocks)):
            pool = trial.suggest_categorical(f"block{index}_pool", self.pools)
            blocks.append(
                ConvBlockSpec(
                    filters=trial.suggest_categorical(f"block{index}_filters", self.filters),
                    kernel_size=trial.suggest_categorical(
                        f"block{index}_kernel_size", self.kernel_sizes
                    ),
                    batch_norm=trial.suggest_categorical(f"block{index}_batch_norm", (True, False)),
                    pool=None if pool == "none" else pool,
                )
            )
        dense = tuple(
            trial.suggest_categorical(f"dense{index}_units", self.dense_units)
            for index in range(trial.suggest_int("dense_layers", *self.dense_layers))
        )
        low, high, step = self.dropout
        dropout = trial.suggest_float("dropout", low, high, step=step) if dense else 0.0
        spec = CNNSpec(conv_blocks=tuple(blocks), dense_units=dense, dropout=dropout)
        training = {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "batch_size": trial.suggest_categorical("batch_size", self.batch_sizes),
        }
        return spec, training

    def record(self) -> dict[str, Any]:
        """JSON-ready form, stored in the study."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# -- options and result ---------------------------------------------------------------------------


@dataclass
class TuneOptions:
    """One worker's part in a study: what to search, on what data, for how long."""

    # Data variant of the training split (as ``fkdbench train --variant``).
    variant: str = "none"
    # Trials the study should have trained in all, every worker's (complete, pruned while
    # training, running); specs rejected before training do not count.
    trials: int = 20
    # "rmse" (validation RMSE alone) or "rmse+latency" (both: a Pareto front).
    objective: str = DEFAULT_OBJECTIVE
    # Study name; default ``cnn-tuned-<variant>``, the study ``train cnn-tuned`` looks for.
    study: str | None = None
    # Any database URL Optuna supports; default ``sqlite:///<runs_dir>/tune/<study>.db``.
    storage: str | None = None
    data_dir: Path = Path("data/synthetic")
    runs_dir: Path = Path("runs")
    # Training budget of every trial: epochs, all run (no early stopping on patience).
    epochs_per_trial: int = 4
    # Specs above this many parameters (Keras count) are rejected before training.
    max_params: int | None = DEFAULT_MAX_PARAMS
    # Specs slower than this (ONNX Runtime s/100 images, timed before training) are
    # rejected before training; None: no limit.
    max_seconds_per_100_images: float | None = None
    # Wall-clock cap on each trial's training, minutes; None: none.
    trial_minutes: float | None = None
    # Train each trial on a seeded subset of at most this many rows; None: all.
    max_train_rows: int | None = None
    # Validate each trial on the first this-many validation rows; None: all.
    max_val_rows: int | None = None
    # Seed of every trial's training (the same for all: trials differ only in settings).
    seed: int = 0
    # Seed of the sampler; None: ``seed``. Concurrent workers need different ones, or they
    # propose the same settings.
    sampler_seed: int | None = None
    # Trials sampled at random before the TPE model, and finished before pruning starts.
    startup_trials: int = 5
    # Epochs every trial trains before it may be stopped early.
    prune_warmup_epochs: int = 2
    # Threads for training and for timing; None: every core this process may use.
    threads: int | None = None
    # Test images timed per trial (whole passes in batches of 32) and timed passes.
    latency_images: int = 512
    latency_repeats: int = 5
    search_space: SearchSpace = field(default_factory=SearchSpace)
    quiet: bool = False

    def __post_init__(self) -> None:
        self.data_dir, self.runs_dir = Path(self.data_dir), Path(self.runs_dir)
        if self.objective not in OBJECTIVES:
            raise TuneError(
                f"unknown objective {self.objective!r}; known: {', '.join(OBJECTIVES)}"
            )
        for name in ("trials", "epochs_per_trial", "latency_images", "latency_repeats"):
            value = getattr(self, name)
            minimum = 0 if name == "trials" else 1
            if value < minimum:
                raise TuneError(f"{name} must be at least {minimum}, got {value}")
        if self.max_params is not None and self.max_params < 1:
            raise TuneError(f"max_params must be at least 1, got {self.max_params}")

    @property
    def study_name(self) -> str:
        return self.study or runs.tuned_study_name(self.variant)

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{self.runs_dir / runs.TUNE_DIR / self.study_name}.db"

    @property
    def folder(self) -> Path:
        """``<runs_dir>/tune/<study>/``: outputs, figures and this worker's trial runs."""
        return study_folder(self.runs_dir, self.study_name)


@dataclass
class TuneResult:
    """What one ``tune`` call did, and where the study's outputs are."""

    study: str
    storage: str  # password hidden
    folder: Path
    # Trial numbers this worker finished, in order, and each one's state.
    trials_here: list[int]
    states_here: list[str]
    # Trials of the whole study by state ("complete", "pruned", "fail", "running").
    counts: dict[str, int]
    best: dict[str, Any] | None
    pareto_size: int
    written: list[Path]
    seconds: float


def study_folder(runs_dir: Path, study: str) -> Path:
    """``<runs_dir>/tune/<study>/``."""
    return Path(runs_dir) / runs.TUNE_DIR / study


# -- storage --------------------------------------------------------------------------------------


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and records."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL too broken to parse has no password to find
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna storage for ``url``, connected; a bad or unreachable URL raises
    :class:`TuneError` with one line naming it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError

    shown = shown_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise TuneError(
            f"--storage {shown}: not a database URL "
            "(e.g. sqlite:///runs/tune/study.db or postgresql://user@host/db)"
        ) from None
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers share one file: wait for its lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif parsed.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=HEARTBEAT_GRACE_SECONDS,
                )
        except (IntegrityError, ProgrammingError) as error:
            # Workers starting together on a new database race to create Optuna's tables;
            # the loser's CREATE fails, and on retry it finds them made.
            attempt += 1
            if attempt < STORAGE_ATTEMPTS:
                time.sleep(0.5 * attempt)
                continue
            problem = runs.first_line(error, 160)
        except ImportError as error:
            # Optuna re-raises SQLAlchemy's failed driver import with its own words.
            driver = getattr(error.__cause__, "name", None) or error.name or "for this URL"
            raise TuneError(
                f"--storage {shown}: the database driver {driver} is not installed "
                "(PostgreSQL's, psycopg, comes with fkdbench; install others with uv add)"
            ) from None
        except Exception as error:  # noqa: BLE001 - SQLAlchemy/driver errors vary by database
            problem = runs.first_line(error, 160)
        raise TuneError(f"--storage {shown}: cannot open the database ({problem})")


def _study_settings(options: TuneOptions, manifest_sha256: str, image_size: int) -> dict:
    """What every trial of a study must share; a worker with other settings is refused."""
    return {
        "format_version": runs.TUNE_FORMAT_VERSION,
        "arch": ARCH,
        "objective": options.objective,
        "objectives": list(OBJECTIVES[options.objective]),
        "variant": options.variant,
        "data_manifest_sha256": manifest_sha256,
        "image_size": image_size,
        "epochs_per_trial": options.epochs_per_trial,
        "max_params": options.max_params,
        "max_seconds_per_100_images": options.max_seconds_per_100_images,
        "trial_minutes": options.trial_minutes,
        "max_train_rows": options.max_train_rows,
        "max_val_rows": options.max_val_rows,
        "seed": options.seed,
        "latency_images": options.latency_images,
        "search_space": options.search_space.record(),
    }


def _sampler(options: TuneOptions, trials_before: int) -> optuna.samplers.BaseSampler:
    """TPE, seeded by the sampler seed and the trials already in the study: a resumed study
    gets a new random stream, not the first trials' settings again."""
    seed = options.seed if options.sampler_seed is None else options.sampler_seed
    with warnings.catch_warnings():
        # multivariate/group/constant_liar are marked experimental; they are what conditional
        # parameters and concurrent workers need.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed * 1_000_003 + trials_before,
            n_startup_trials=options.startup_trials,
            multivariate=True,
            group=True,
            constant_liar=True,
        )


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    keys = sorted(set(ours) | set(theirs))
    return [
        f"{key} {json.dumps(ours.get(key))} here, {json.dumps(theirs.get(key))} in the study"
        for key in keys
        if ours.get(key) != theirs.get(key)
    ]


def _open_study(options: TuneOptions, settings: dict[str, Any]) -> optuna.Study:
    """Create the study, or join it when its settings are the same as ours."""
    storage = open_storage(options.storage_url)
    directions = ["minimize"] * len(OBJECTIVES[options.objective])
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=options.startup_trials, n_warmup_steps=options.prune_warmup_epochs - 1
    )
    name, shown = options.study_name, shown_url(options.storage_url)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=directions,
            pruner=pruner,
            load_if_exists=True,
        )
    except Exception as error:  # noqa: BLE001 - database errors vary by backend
        raise TuneError(f"study {name!r} in {shown}: {runs.first_line(error)}") from None
    study.sampler = _sampler(options, len(study.get_trials(deepcopy=False)))
    stored = study.user_attrs.get("fkdbench")
    if stored is None:
        # New (or created by another worker a moment ago, before it stored its settings).
        if study.get_trials(deepcopy=False):
            raise TuneError(
                f"study {name!r} in {shown} was not made by fkdbench tune; "
                "use another --study name"
            )
        study.set_user_attr("fkdbench", settings)
        return study
    differences = _differences(settings, stored)
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise TuneError(
            f"study {name!r} in {shown} was made with other settings: "
            f"{differences[0]}{more}; use the same options or another --study name"
        )
    return study


# -- one trial ------------------------------------------------------------------------------------


class _TrialFailed(Exception):
    """A trial that cannot finish (diverged, unexportable): recorded FAIL, the study goes on."""


@dataclass
class _Context:
    """What every trial of this worker shares."""

    options: TuneOptions
    num_outputs: int
    image_size: int
    timing_images: np.ndarray  # float32 (N, 1, H, W)
    threads: int
    worker: str
    on_epoch: Callable[[int, dict[str, Any]], None]
    # The trial this worker was running when one ended other than complete.
    stopped_trial: int | None = None


def _measure_latency(model: Any, path: Path, context: _Context) -> dict[str, Any]:
    """Export ``model`` to ONNX at ``path`` and time it as ``fkdbench bench`` does."""
    _, parity, _ = export_onnx(
        model, context.image_size, 1, path, context.timing_images[:8], exporter="auto"
    )
    session = open_session(path, threads=context.threads)
    timing = BenchOptions(
        backends=("onnxruntime",),
        threads=context.threads,
        repeats=context.options.latency_repeats,
        latency_samples=20,
        latency_warmup=5,
        quiet=True,
    )
    _, per_100, latencies = time_backend(session_predictor(session), context.timing_images, timing)
    return {
        "seconds_per_100_images": float(np.median(per_100)),
        "seconds_per_100_images_passes": [float(value) for value in per_100],
        "batch1_p50_ms": float(np.median(latencies)),
        "onnx_bytes": path.stat().st_size,
        "parity_max_abs_diff_pixels": float(parity),
    }


def _dominated_now(study: optuna.Study, epoch: int, val_rmse: float, seconds: float) -> int | None:
    """The number of a finished trial that, at ``epoch``, was both at least as fast and more
    accurate than this one is now, or None. (The multi-objective early stop.)"""
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        curve = other.user_attrs.get("val_rmse_by_epoch") or []
        other_seconds = other.user_attrs.get("seconds_per_100_images")
        if (
            len(curve) >= epoch
            and other_seconds is not None
            and curve[epoch - 1] < val_rmse
            and other_seconds <= seconds
        ):
            return other.number
    return None


def _objective(trial: Trial, context: _Context) -> tuple[float, ...]:
    options = context.options
    trial.set_user_attr("worker", context.worker)
    trial.set_user_attr("threads", context.threads)
    try:
        spec, training = options.search_space.suggest(trial)
        trial.set_user_attr("spec", spec.to_dict())
        model = build_cnn(spec, context.num_outputs, 1, context.image_size)
    except SpecError as error:
        _reject(trial, f"spec does not fit the input: {error}")
    params = count_parameters(model)
    trial.set_user_attr("params_keras", int(params.keras))
    trial.set_user_attr("params_pytorch", int(params.pytorch))
    if options.max_params is not None and params.keras > options.max_params:
        _reject(trial, f"{params.keras:,} parameters > max_params {options.max_params:,}")

    folder = _trial_folder(options, trial.number)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        latency = _measure_latency(model, folder / "untrained.onnx", context)
    except ValueError as error:
        raise _TrialFailed(f"export or timing failed: {runs.first_line(error)}") from None
    finally:
        (folder / "untrained.onnx").unlink(missing_ok=True)
    for key, value in latency.items():
        trial.set_user_attr(key, value)
    seconds = latency["seconds_per_100_images"]
    limit = options.max_seconds_per_100_images
    if limit is not None and seconds > limit:
        _reject(trial, f"{seconds:.4f} s/100 images > max {limit:g}")

    curve: list[float] = []
    multi_objective = len(OBJECTIVES[options.objective]) > 1

    def after_epoch(row: dict[str, Any]) -> None:
        epoch, val_rmse = int(row["epoch"]), float(row["val_rmse"])
        curve.append(val_rmse)
        trial.set_user_attr("val_rmse_by_epoch", curve)
        context.on_epoch(trial.number, row)
        if not multi_objective:
            trial.report(val_rmse, epoch)
        if epoch < options.prune_warmup_epochs or epoch >= options.epochs_per_trial:
            return  # too early to judge, or nothing left to save
        if not multi_objective:
            if trial.should_prune():
                _prune(trial, f"median pruner at epoch {epoch} (val RMSE {val_rmse:.3f} px)")
            return
        if _finished_trials(trial.study) < options.startup_trials:
            return
        beaten_by = _dominated_now(trial.study, epoch, val_rmse, seconds)
        if beaten_by is not None:
            _prune(
                trial,
                f"dominated at epoch {epoch} by trial {beaten_by} "
                "(as fast or faster, lower val RMSE at that epoch)",
            )

    config = TrainConfig(
        arch=ARCH,
        variant=options.variant,
        data_dir=options.data_dir,
        runs_dir=folder,
        model_kwargs={"spec": spec.to_dict()},
        epochs=options.epochs_per_trial,
        batch_size=training["batch_size"],
        lr=training["lr"],
        seed=options.seed,
        patience=None,
        max_minutes=options.trial_minutes,
        max_train_rows=options.max_train_rows,
        max_val_rows=options.max_val_rows,
        num_threads=context.threads,
        device="cpu",
        quiet=True,
        force=True,
    )
    try:
        result = train_run(config, on_epoch_end=after_epoch)
    except TrainingDiverged as error:
        raise _TrialFailed(runs.first_line(error)) from None
    metrics = result.metrics or {}
    val_rmse = metrics.get("best_val_rmse")
    if val_rmse is None or not math.isfinite(val_rmse):
        raise _TrialFailed("no finite validation RMSE")
    trial.set_user_attr("val_rmse", float(val_rmse))
    trial.set_user_attr("best_epoch", metrics.get("best_epoch"))
    trial.set_user_attr("training_seconds", metrics.get("training_seconds"))
    trial.set_user_attr("run_dir", str(result.run_dir))
    return (float(val_rmse), seconds) if multi_objective else (float(val_rmse),)


def _reject(trial: Trial, reason: str) -> None:
    """Prune a trial before any training (over a budget, or a spec that cannot be built);
    it has no ``val_rmse_by_epoch``, which is how it is counted as rejected."""
    _prune(trial, reason)


def _prune(trial: Trial, reason: str) -> None:
    trial.set_user_attr("pruned_reason", reason)
    raise optuna.TrialPruned(reason)


def _trial_folder(options: TuneOptions, number: int) -> Path:
    return options.folder / TRIALS_DIR / f"{number:04d}"


def _recorded_objective(trial: Trial, context: _Context) -> tuple[float, ...]:
    """:func:`_objective`, keeping a run folder only for a trial that completes."""
    try:
        return _objective(trial, context)
    except BaseException as error:  # pruned, failed, interrupted: Optuna records the state
        if isinstance(error, _TrialFailed):
            trial.set_user_attr("fail_reason", str(error))
        shutil.rmtree(_trial_folder(context.options, trial.number), ignore_errors=True)
        context.stopped_trial = trial.number
        raise


def _finished_trials(study: optuna.Study) -> int:
    """Complete trials of the study, every worker's."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


# -- the worker loop ------------------------------------------------------------------------------


def _counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; "rejected" counts the pruned ones that never trained."""
    counts = {"complete": 0, "pruned": 0, "rejected": 0, "fail": 0, "running": 0, "waiting": 0}
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        counts[state] = counts.get(state, 0) + 1
        if trial.state == TrialState.PRUNED and "val_rmse_by_epoch" not in trial.user_attrs:
            counts["rejected"] += 1
    return counts


def _trials_counted(counts: dict[str, int]) -> int:
    """Trials that count toward ``--trials``: those that trained or are training. A
    rejection costs milliseconds, and failed trials (crashed, interrupted) are redone."""
    return counts["complete"] + counts["pruned"] - counts["rejected"] + counts["running"]


# However many proposals the budgets reject, a worker stops after this many per trial asked.
MAX_PROPOSALS_PER_TRIAL = 20


def _quiet_optuna() -> None:
    # fkdbench prints its own line per trial, with the reason a trial failed or was pruned;
    # Optuna's lines (and its traceback of a failed trial) would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def tune(options: TuneOptions) -> TuneResult:
    """Run trials of ``options.study_name`` until the study has ``options.trials`` of them
    (this worker's and any other's), then write its outputs to ``options.folder``.

    Ctrl-C marks the trial in progress FAIL (a later call redoes it), writes the outputs of
    the finished trials and re-raises ``KeyboardInterrupt`` with a one-line message.
    """
    started = time.monotonic()
    _quiet_optuna()
    manifest = read_manifest(options.data_dir)
    scheme = get_scheme(manifest.get("scheme", "kaggle15"))
    # Read the splits once up front: bad data stops here, not in every trial.
    test_split = load_split(options.data_dir, "test")
    for split in ("train", "val"):
        load_split(options.data_dir, split)
    if len(test_split) == 0:
        raise DataError(f"{options.data_dir}: the test split is empty; nothing to time")
    image_size = test_split.image_size
    settings = _study_settings(options, _manifest_sha256(options.data_dir), image_size)
    study = _open_study(options, settings)
    shown = shown_url(options.storage_url)
    threads = options.threads or available_cores()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    timing_images = images_as_float(test_split.images[: options.latency_images])

    trials_here: list[int] = []
    states_here: list[str] = []
    with make_progress(options.quiet) as display:
        already = _trials_counted(_counts(study))
        bar = display.add_task(
            f"tune {options.study_name}", total=max(options.trials, already), completed=already
        )

        def on_epoch(number: int, row: dict[str, Any]) -> None:
            display.update(
                bar,
                description=f"tune {options.study_name}: trial {number} epoch {row['epoch']}/"
                f"{options.epochs_per_trial} val RMSE {row['val_rmse']:.3f}",
            )

        context = _Context(
            options,
            scheme.num_outputs,
            image_size,
            timing_images,
            threads,
            worker,
            on_epoch,
        )
        say(
            f"tune {options.study_name}: {already} of {options.trials} trials already in "
            f"{shown}; objective {options.objective}, {options.epochs_per_trial} epochs each",
            options.quiet,
        )
        while True:
            counts = _counts(study)
            counted = _trials_counted(counts)
            display.update(bar, total=max(options.trials, counted), completed=counted)
            if counted >= options.trials:
                break
            if counts["rejected"] >= MAX_PROPOSALS_PER_TRIAL * max(options.trials, 1):
                say(
                    f"tune {options.study_name}: stopping: {counts['rejected']} proposals "
                    "rejected by --max-params / --max-latency; loosen them or the search space",
                    options.quiet,
                )
                break
            try:
                study.optimize(
                    lambda trial: _recorded_objective(trial, context),
                    n_trials=1,
                    catch=(_TrialFailed,),
                    gc_after_trial=True,
                )
            except KeyboardInterrupt:
                _write_all(study, options, started, quiet=True)
                stopped = (
                    f"trial {context.stopped_trial} stopped and marked failed"
                    if context.stopped_trial is not None
                    else "stopped between trials"
                )
                raise KeyboardInterrupt(
                    f"{stopped}; the {_finished_trials(study)} finished trials are kept in "
                    f"{shown}: run the same command to continue"
                ) from None
            mine = _last_trial(study, worker)
            if mine is not None:
                trials_here.append(mine.number)
                states_here.append(mine.state.name.lower())
                say(_trial_line(options.study_name, mine), options.quiet)

    written, best, pareto = _write_all(study, options, started, quiet=options.quiet)
    counts = _counts(study)
    return TuneResult(
        study=options.study_name,
        storage=shown,
        folder=options.folder,
        trials_here=trials_here,
        states_here=states_here,
        counts=counts,
        best=best,
        pareto_size=len(pareto),
        written=written,
        seconds=time.monotonic() - started,
    )


def _manifest_sha256(data_dir: Path) -> str:
    """Identifies the data set: workers on other machines must have prepared the same one."""
    return sha256_file(Path(data_dir) / MANIFEST_NAME)


def _mine(study: optuna.Study, worker: str) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker]


def _last_trial(study: optuna.Study, worker: str) -> FrozenTrial | None:
    mine = _mine(study, worker)
    return max(mine, key=lambda t: t.number) if mine else None


def _trial_line(study: str, trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    params = attrs.get("params_keras")
    head = f"{study}: trial {trial.number} {trial.state.name.lower()}"
    if params is not None:
        head += f", {params:,} params"
    if trial.state == TrialState.COMPLETE:
        return (
            f"{head}, val RMSE {attrs['val_rmse']:.3f} px, "
            f"{attrs['seconds_per_100_images']:.4f} s/100 images"
        )
    reason = attrs.get("pruned_reason") or attrs.get("fail_reason")
    return f"{head}: {reason}" if reason else head


# -- outputs --------------------------------------------------------------------------------------


TRIAL_COLUMNS = (
    "number",
    "state",
    "val_rmse",
    "seconds_per_100_images",
    "batch1_p50_ms",
    "params_keras",
    "params_pytorch",
    "onnx_bytes",
    "epochs_run",
    "best_epoch",
    "lr",
    "batch_size",
    "conv_blocks",
    "dense_layers",
    "reason",
    "worker",
    "threads",
    "started",
    "duration_seconds",
    "spec",
)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of the study (every state), by number."""
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "val_rmse": attrs.get("val_rmse"),
                "seconds_per_100_images": attrs.get("seconds_per_100_images"),
                "batch1_p50_ms": attrs.get("batch1_p50_ms"),
                "params_keras": attrs.get("params_keras"),
                "params_pytorch": attrs.get("params_pytorch"),
                "onnx_bytes": attrs.get("onnx_bytes"),
                "epochs_run": len(attrs.get("val_rmse_by_epoch") or []),
                "best_epoch": attrs.get("best_epoch"),
                "lr": trial.params.get("lr"),
                "batch_size": trial.params.get("batch_size"),
                "conv_blocks": trial.params.get("conv_blocks"),
                "dense_layers": trial.params.get("dense_layers"),
                # Why the trial was pruned or failed.
                "reason": attrs.get("pruned_reason") or attrs.get("fail_reason"),
                "worker": attrs.get("worker"),
                "threads": attrs.get("threads"),
                "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
                "duration_seconds": duration,
                "spec": json.dumps(attrs["spec"], separators=(",", ":"))
                if "spec" in attrs
                else None,
            }
        )
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def trial_record(trial: FrozenTrial, epochs_per_trial: int) -> dict[str, Any]:
    """A finished trial as ``best.json``/``pareto.json`` hold it: spec, settings, scores."""
    attrs = trial.user_attrs
    return {
        "trial": trial.number,
        "val_rmse": attrs["val_rmse"],
        "seconds_per_100_images": attrs["seconds_per_100_images"],
        "batch1_p50_ms": attrs.get("batch1_p50_ms"),
        "parameters": {"pytorch": attrs["params_pytorch"], "keras": attrs["params_keras"]},
        "onnx_bytes": attrs.get("onnx_bytes"),
        "train": {
            "lr": trial.params["lr"],
            "batch_size": trial.params["batch_size"],
            "epochs": epochs_per_trial,
        },
        "spec": attrs["spec"],
        "worker": attrs.get("worker"),
        "threads": attrs.get("threads"),
    }


def pareto_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials no other finished trial beats on both RMSE and time, fastest first.

    Computed from the recorded scores (not Optuna's ``best_trials``), so that an ``rmse``
    study, which also times every trial, has a front too.
    """
    points = [
        (t.user_attrs["seconds_per_100_images"], t.user_attrs["val_rmse"]) for t in trials
    ]
    return [trials[index] for index in pareto_front(points)]


def _write_all(
    study: optuna.Study, options: TuneOptions, started: float, quiet: bool
) -> tuple[list[Path], dict[str, Any] | None, list[dict[str, Any]]]:
    """study.json, best.json, pareto.json, trials.csv and figures, from the database."""
    folder = options.folder
    folder.mkdir(parents=True, exist_ok=True)
    settings = study.user_attrs.get("fkdbench", {})
    epochs = settings.get("epochs_per_trial", options.epochs_per_trial)
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "val_rmse" in t.user_attrs and "seconds_per_100_images" in t.user_attrs
    ]
    frame = trials_frame(study)
    header = {"format_version": runs.TUNE_FORMAT_VERSION, "study": options.study_name}
    written: list[Path] = []

    best = None
    if complete:
        chosen = min(complete, key=lambda t: (t.user_attrs["val_rmse"], t.number))
        best = {**header, "variant": settings.get("variant"), **trial_record(chosen, epochs)}
    pareto = [trial_record(t, epochs) for t in pareto_trials(complete)] if complete else []

    finished = frame[frame["state"].isin(["complete", "pruned", "fail"])]
    durations = finished["duration_seconds"].dropna()
    study_record = {
        **header,
        "storage": shown_url(options.storage_url),
        "objective": settings.get("objective"),
        "variant": settings.get("variant"),
        "data_dir": str(options.data_dir),
        "epochs_per_trial": epochs,
        "max_params": settings.get("max_params"),
        "trials": {
            "complete": int((frame["state"] == "complete").sum()),
            "pruned": int((frame["state"] == "pruned").sum()),
            # Of the pruned: rejected by a budget before any training.
            "rejected": _counts(study)["rejected"],
            "failed": int((frame["state"] == "fail").sum()),
            "running": int((frame["state"] == "running").sum()),
        },
        # Trial time summed over every worker, and the study's span from its first trial's
        # start to its last trial's end (the tune's wall time, for one uninterrupted worker).
        "trial_seconds": float(durations.sum()),
        "wall_seconds": _span_seconds(study),
        "first_trial_start": _edge(study, "datetime_start", min),
        "last_trial_end": _edge(study, "datetime_complete", max),
        "settings": settings,
        "environment": environment_record(),
    }
    for name, payload in ((runs.TUNE_STUDY_FILE, study_record), (runs.TUNE_BEST_FILE, best)):
        if payload is not None:
            write_json_atomic(folder / name, payload)
            written.append(folder / name)
    if best is None:
        (folder / runs.TUNE_BEST_FILE).unlink(missing_ok=True)
    write_json_atomic(
        folder / runs.TUNE_PARETO_FILE,
        {**header, "objectives": list(OBJECTIVES[DEFAULT_OBJECTIVE]), "trials": pareto},
    )
    csv_text = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    write_text_atomic(folder / runs.TUNE_TRIALS_FILE, csv_text)
    written += [folder / runs.TUNE_PARETO_FILE, folder / runs.TUNE_TRIALS_FILE]
    written += draw_figures(study, frame, folder / runs.TUNE_FIGURES_DIR)
    say(f"tune {options.study_name}: wrote {len(written)} files to {folder}", quiet)
    return written, best, pareto


def _edge(study: optuna.Study, attribute: str, pick: Callable) -> str | None:
    times = [getattr(t, attribute) for t in study.get_trials(deepcopy=False)]
    times = [value for value in times if value is not None]
    return pick(times).isoformat() if times else None


def _span_seconds(study: optuna.Study) -> float | None:
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else None


# -- figures --------------------------------------------------------------------------------------


def draw_figures(study: optuna.Study, frame: pd.DataFrame, folder: Path) -> list[Path]:
    """history.png, pareto.png and importances.png; one that cannot be drawn yet (too few
    finished trials) is left out, and a stale one removed."""
    done = frame[(frame["state"] == "complete") & frame["val_rmse"].notna()]
    drawn: list[Path] = []
    folder.mkdir(parents=True, exist_ok=True)

    def keep(name: str, figure: Any | None) -> None:
        path = folder / f"{name}.png"
        if figure is None:
            path.unlink(missing_ok=True)
        else:
            drawn.append(save_figure(figure, path))

    figure = None
    if len(done):
        figure = new_figure(6.4, 4.0)
        axes = figure.add_subplot()
        axes.scatter(done["number"], done["val_rmse"], s=18, label="finished trial")
        axes.step(
            done["number"], done["val_rmse"].cummin(), where="post", color="C3", label="best so far"
        )
        axes.set_xlabel("trial")
        axes.set_ylabel("validation RMSE (px)")
        axes.set_title(f"{study.study_name}: optimisation history")
        axes.legend()
    keep("history", figure)

    figure = None
    timed = done[done["seconds_per_100_images"].notna()]
    if len(timed):
        figure = new_figure(6.4, 4.4)
        axes = figure.add_subplot()
        points = list(zip(timed["seconds_per_100_images"], timed["val_rmse"], strict=True))
        front = pareto_front(points)
        axes.scatter(timed["seconds_per_100_images"], timed["val_rmse"], s=18, alpha=0.6)
        front_points = [points[index] for index in front]
        axes.plot(*zip(*front_points, strict=True), color="C3", marker="o", label="Pareto front")
        for index in front:
            axes.annotate(
                str(int(timed["number"].iloc[index])),
                points[index],
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        axes.set_xlabel("ONNX Runtime seconds per 100 images")
        axes.set_ylabel("validation RMSE (px)")
        axes.set_title(f"{study.study_name}: accuracy vs CPU time")
        axes.legend()
    keep("pareto", figure)

    keep("importances", _importance_figure(study))
    return drawn


def _importance_figure(study: optuna.Study) -> Any | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(
                study,
                target=lambda t: t.user_attrs.get("val_rmse", math.inf),
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            )
    except (RuntimeError, ValueError):
        return None
    if not importances:
        return None
    names = list(importances)[::-1]
    figure = new_figure(6.4, 0.6 + 0.35 * len(names))
    axes = figure.add_subplot()
    axes.barh(names, [importances[name] for name in names])
    axes.set_xlabel("importance for validation RMSE (fANOVA)")
    axes.set_title(f"{study.study_name}: parameter importances")
    return figure
