"""One trial: propose a spec, reject it if over a budget, time it untrained, train it with
``train_run`` (stopping it early when it cannot win), and record its scores.

Latency does not depend on the weights' values, so it is measured *before* training, on
the freshly built model: a trial knows its speed from the start, which is what lets
multi-objective trials stop early.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import Trial, TrialState

from fkdbench import runs
from fkdbench.bench import BenchOptions, time_backend
from fkdbench.config import TrainConfig
from fkdbench.export import export_onnx
from fkdbench.models.cnn import CNNSpec, SpecError, build_cnn
from fkdbench.models.params import count_parameters
from fkdbench.onnxrt import open_session, session_predictor
from fkdbench.train import RunResult, TrainingDiverged, train_run
from fkdbench.tune.options import ARCH, TRIALS_DIR, TuneOptions
from fkdbench.tune.study import finished_trials


class TrialFailed(Exception):
    """A trial that cannot finish (diverged, unexportable): recorded FAIL, the study goes on."""


@dataclass
class TrialContext:
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


def recorded_objective(trial: Trial, context: TrialContext) -> tuple[float, ...]:
    """:func:`objective`, keeping a run folder only for a trial that completes."""
    try:
        return objective(trial, context)
    except BaseException as error:  # pruned, failed, interrupted: Optuna records the state
        if isinstance(error, TrialFailed):
            trial.set_user_attr("fail_reason", str(error))
        shutil.rmtree(trial_folder(context.options, trial.number), ignore_errors=True)
        context.stopped_trial = trial.number
        raise


def objective(trial: Trial, context: TrialContext) -> tuple[float, ...]:
    """The trial's objectives: (validation RMSE,) or (validation RMSE, s/100 images)."""
    options = context.options
    trial.set_user_attr("worker", context.worker)
    trial.set_user_attr("threads", context.threads)
    spec, training, model = _propose(trial, context)
    folder = trial_folder(options, trial.number)
    folder.mkdir(parents=True, exist_ok=True)
    seconds = _time_untrained(trial, model, folder / "untrained.onnx", context)
    config = _trial_config(options, spec, training, folder, context.threads)
    try:
        result = train_run(config, on_epoch_end=_EpochJudge(trial, options, context, seconds))
    except TrainingDiverged as error:
        raise TrialFailed(runs.first_line(error)) from None
    val_rmse = _record_training(trial, result)
    return (val_rmse, seconds) if options.multi_objective else (val_rmse,)


def _propose(trial: Trial, context: TrialContext) -> tuple[CNNSpec, dict[str, Any], Any]:
    """Sample a spec and build it; reject one the input cannot hold or over max_params."""
    options = context.options
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
    return spec, training, model


def _time_untrained(trial: Trial, model: Any, path: Path, context: TrialContext) -> float:
    """Seconds per 100 images of the untrained model; reject one over the latency limit."""
    try:
        latency = measure_latency(model, path, context)
    except ValueError as error:
        raise TrialFailed(f"export or timing failed: {runs.first_line(error)}") from None
    finally:
        path.unlink(missing_ok=True)
    for key, value in latency.items():
        trial.set_user_attr(key, value)
    seconds = latency["seconds_per_100_images"]
    limit = context.options.max_seconds_per_100_images
    if limit is not None and seconds > limit:
        _reject(trial, f"{seconds:.4f} s/100 images > max {limit:g}")
    return seconds


def measure_latency(model: Any, path: Path, context: TrialContext) -> dict[str, Any]:
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


def _trial_config(
    options: TuneOptions, spec: CNNSpec, training: dict[str, Any], folder: Path, threads: int
) -> TrainConfig:
    """The trial's run, trained as ``fkdbench train`` would, in the trial's folder."""
    return TrainConfig(
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
        num_threads=threads,
        device="cpu",
        quiet=True,
        force=True,
    )


def _record_training(trial: Trial, result: RunResult) -> float:
    """Store the trained run's scores on the trial; returns its best validation RMSE."""
    metrics = result.metrics or {}
    val_rmse = metrics.get("best_val_rmse")
    if val_rmse is None or not math.isfinite(val_rmse):
        raise TrialFailed("no finite validation RMSE")
    trial.set_user_attr("val_rmse", float(val_rmse))
    trial.set_user_attr("best_epoch", metrics.get("best_epoch"))
    trial.set_user_attr("training_seconds", runs.read_training(result.run_dir)["training_seconds"])
    trial.set_user_attr("run_dir", str(result.run_dir))
    return float(val_rmse)


@dataclass
class _EpochJudge:
    """After each epoch: record the curve, and stop a trial that cannot win.

    ``objective="rmse"``: Optuna's median pruner on the per-epoch validation RMSE.
    ``objective="rmse+latency"``: Optuna's pruners are single-objective, so a trial whose
    validation RMSE at epoch *e* is worse than a finished trial's at the same epoch, while
    that trial is also at least as fast, stops: it is already dominated on both axes.
    """

    trial: Trial
    options: TuneOptions
    context: TrialContext
    seconds: float  # this trial's s/100 images
    curve: list[float] = field(default_factory=list)

    def __call__(self, row: dict[str, Any]) -> None:
        trial, options = self.trial, self.options
        epoch, val_rmse = int(row["epoch"]), float(row["val_rmse"])
        self.curve.append(val_rmse)
        trial.set_user_attr("val_rmse_by_epoch", self.curve)
        self.context.on_epoch(trial.number, row)
        if not options.multi_objective:
            trial.report(val_rmse, epoch)
        if epoch < options.prune_warmup_epochs or epoch >= options.epochs_per_trial:
            return  # too early to judge, or nothing left to save
        if not options.multi_objective:
            if trial.should_prune():
                _prune(trial, f"median pruner at epoch {epoch} (val RMSE {val_rmse:.3f} px)")
            return
        if finished_trials(trial.study) < options.startup_trials:
            return
        beaten_by = dominated_now(trial.study, epoch, val_rmse, self.seconds)
        if beaten_by is not None:
            _prune(
                trial,
                f"dominated at epoch {epoch} by trial {beaten_by} "
                "(as fast or faster, lower val RMSE at that epoch)",
            )


def dominated_now(study: optuna.Study, epoch: int, val_rmse: float, seconds: float) -> int | None:
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


def _reject(trial: Trial, reason: str) -> None:
    """Prune a trial before any training (over a budget, or a spec that cannot be built);
    it has no ``val_rmse_by_epoch``, which is how it is counted as rejected."""
    _prune(trial, reason)


def _prune(trial: Trial, reason: str) -> None:
    trial.set_user_attr("pruned_reason", reason)
    raise optuna.TrialPruned(reason)


def trial_folder(options: TuneOptions, number: int) -> Path:
    """``<study folder>/trials/<number>/``: the trial's run, kept once it completes."""
    return options.folder / TRIALS_DIR / f"{number:04d}"
