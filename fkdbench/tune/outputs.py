"""The study's outputs, rewritten from the database after every call: study.json,
best.json, pareto.json, trials.csv and the figures (file names in :mod:`fkdbench.runs`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from fkdbench import runs
from fkdbench.io import write_json_atomic, write_text_atomic
from fkdbench.plotting import pareto_front
from fkdbench.progress import say
from fkdbench.provenance import environment_record
from fkdbench.tune.figures import draw_figures
from fkdbench.tune.options import DEFAULT_OBJECTIVE, OBJECTIVES, TuneOptions
from fkdbench.tune.storage import shown_url
from fkdbench.tune.study import counts

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


def write_outputs(
    study: optuna.Study, options: TuneOptions, quiet: bool
) -> tuple[list[Path], dict[str, Any] | None, list[dict[str, Any]]]:
    """Write every output; returns ``(files written, best.json's record or None, the
    Pareto front's records)``."""
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
    best = None
    if complete:
        chosen = min(complete, key=lambda t: (t.user_attrs["val_rmse"], t.number))
        best = {**header, "variant": settings.get("variant"), **trial_record(chosen, epochs)}
    pareto = [trial_record(t, epochs) for t in pareto_trials(complete)] if complete else []

    written = [folder / runs.TUNE_STUDY_FILE]
    write_json_atomic(written[0], {**header, **study_record(study, options, frame)})
    if best is None:
        (folder / runs.TUNE_BEST_FILE).unlink(missing_ok=True)
    else:
        write_json_atomic(folder / runs.TUNE_BEST_FILE, best)
        written.append(folder / runs.TUNE_BEST_FILE)
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


def study_record(study: optuna.Study, options: TuneOptions, frame: pd.DataFrame) -> dict:
    """study.json (after its header): the settings, the trials by state, and the times."""
    settings = study.user_attrs.get("fkdbench", {})
    states = frame["state"]
    durations = frame[states.isin(["complete", "pruned", "fail"])]["duration_seconds"].dropna()
    return {
        "storage": shown_url(options.storage_url),
        "objective": settings.get("objective"),
        "variant": settings.get("variant"),
        "data_dir": str(options.data_dir),
        "epochs_per_trial": settings.get("epochs_per_trial", options.epochs_per_trial),
        "max_params": settings.get("max_params"),
        "trials": {
            "complete": int((states == "complete").sum()),
            "pruned": int((states == "pruned").sum()),
            # Of the pruned: rejected by a budget before any training.
            "rejected": counts(study)["rejected"],
            "failed": int((states == "fail").sum()),
            "running": int((states == "running").sum()),
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


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of the study (every state), by number."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return pd.DataFrame([_trial_row(trial) for trial in trials], columns=list(TRIAL_COLUMNS))


def _trial_row(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    duration = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return {
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
        "spec": json.dumps(attrs["spec"], separators=(",", ":")) if "spec" in attrs else None,
    }


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
    points = [(t.user_attrs["seconds_per_100_images"], t.user_attrs["val_rmse"]) for t in trials]
    return [trials[index] for index in pareto_front(points)]


def _edge(study: optuna.Study, attribute: str, pick: Callable) -> str | None:
    times = [getattr(t, attribute) for t in study.get_trials(deepcopy=False)]
    times = [value for value in times if value is not None]
    return pick(times).isoformat() if times else None


def _span_seconds(study: optuna.Study) -> float | None:
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else None
