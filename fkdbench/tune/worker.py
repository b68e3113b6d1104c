"""The worker loop: run trials of a study until it has enough, every worker's counted,
then write its outputs."""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import MANIFEST_NAME, DataError, SplitArrays, load_split, read_manifest
from fkdbench.io import sha256_file
from fkdbench.onnxrt import images_as_float
from fkdbench.progress import make_progress, say
from fkdbench.provenance import available_cores
from fkdbench.tune.objective import TrialContext, TrialFailed, recorded_objective
from fkdbench.tune.options import TuneOptions, TuneResult
from fkdbench.tune.outputs import write_outputs
from fkdbench.tune.storage import shown_url
from fkdbench.tune.study import (
    counts,
    finished_trials,
    open_study,
    rejected,
    study_settings,
    trials_counted,
)

# However many proposals the budgets reject, a worker stops after this many per trial asked.
MAX_PROPOSALS_PER_TRIAL = 20


def tune(options: TuneOptions) -> TuneResult:
    """Run trials of ``options.study_name`` until the study has ``options.trials`` of them
    (this worker's and any other's), then write its outputs to ``options.folder``.

    Ctrl-C marks the trial in progress FAIL (a later call redoes it), writes the outputs of
    the finished trials and re-raises ``KeyboardInterrupt`` with a one-line message.
    """
    started = time.monotonic()
    _quiet_optuna()
    scheme_outputs, test_split = _read_data(options)
    image_size = test_split.image_size
    settings = study_settings(options, _manifest_sha256(options.data_dir), image_size)
    study = open_study(options, settings)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with make_progress(options.quiet) as display:
        bar = _StudyBar(display, options, trials_counted(counts(study)))
        context = TrialContext(
            options,
            scheme_outputs,
            image_size,
            images_as_float(test_split.images[: options.latency_images]),
            options.threads or available_cores(),
            worker,
            bar.on_epoch,
        )
        say(
            f"tune {options.study_name}: {bar.already} of {options.trials} trials already in "
            f"{shown_url(options.storage_url)}; objective {options.objective}, "
            f"{options.epochs_per_trial} epochs each",
            options.quiet,
        )
        mine = _run_trials(study, context, bar)
    written, best, pareto = write_outputs(study, options, quiet=options.quiet)
    return TuneResult(
        study=options.study_name,
        storage=shown_url(options.storage_url),
        folder=options.folder,
        trials_here=[number for number, _ in mine],
        states_here=[state for _, state in mine],
        counts=counts(study),
        best=best,
        pareto_size=len(pareto),
        written=written,
        seconds=time.monotonic() - started,
    )


def _read_data(options: TuneOptions) -> tuple[int, SplitArrays]:
    """The scheme's output count and the test split (the timing images). Every split is
    read once up front: bad data stops here, not in every trial."""
    manifest = read_manifest(options.data_dir)
    scheme = get_scheme(manifest.get("scheme", "kaggle15"))
    test_split = load_split(options.data_dir, "test")
    for split in ("train", "val"):
        load_split(options.data_dir, split)
    if len(test_split) == 0:
        raise DataError(f"{options.data_dir}: the test split is empty; nothing to time")
    return scheme.num_outputs, test_split


def _manifest_sha256(data_dir: Path) -> str:
    """Identifies the data set: workers on other machines must have prepared the same one."""
    return sha256_file(Path(data_dir) / MANIFEST_NAME)


def _quiet_optuna() -> None:
    # fkdbench prints its own line per trial, with the reason a trial failed or was pruned;
    # Optuna's lines (and its traceback of a failed trial) would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class _StudyBar:
    """One bar over the study's counted trials, its text naming the trial and epoch."""

    def __init__(self, display: Any, options: TuneOptions, already: int) -> None:
        self.display, self.options, self.already = display, options, already
        self.task = display.add_task(
            f"tune {options.study_name}", total=max(options.trials, already), completed=already
        )

    def on_epoch(self, number: int, row: dict[str, Any]) -> None:
        options = self.options
        self.display.update(
            self.task,
            description=f"tune {options.study_name}: trial {number} epoch {row['epoch']}/"
            f"{options.epochs_per_trial} val RMSE {row['val_rmse']:.3f}",
        )

    def show(self, counted: int) -> None:
        self.display.update(self.task, total=max(self.options.trials, counted), completed=counted)


def _run_trials(
    study: optuna.Study, context: TrialContext, bar: _StudyBar
) -> list[tuple[int, str]]:
    """Trials, one at a time, until the study has enough; returns the number and final
    state of each of this worker's, in order."""
    options = context.options
    mine: list[tuple[int, str]] = []
    while True:
        by_state = counts(study)
        counted = trials_counted(by_state)
        bar.show(counted)
        if counted >= options.trials:
            return mine
        if by_state["rejected"] >= MAX_PROPOSALS_PER_TRIAL * max(options.trials, 1):
            say(
                f"tune {options.study_name}: stopping: {by_state['rejected']} proposals "
                "rejected by --max-params / --max-latency; loosen them or the search space",
                options.quiet,
            )
            return mine
        _run_one_trial(study, context)
        last = _last_trial(study, context.worker)
        if last is None or not rejected(last):
            # What a trained trial left behind (its model, optimiser, tensors) is freed now.
            # A rejection built nothing, and a full collection in a process holding torch
            # costs ~0.25 s: 40 rejections took 10 s when optuna collected after each.
            gc.collect()
        if last is not None:
            mine.append((last.number, last.state.name.lower()))
            say(_trial_line(options.study_name, last), options.quiet)


def _run_one_trial(study: optuna.Study, context: TrialContext) -> None:
    """One trial; on Ctrl-C, the outputs of the finished trials first, then a one-line
    ``KeyboardInterrupt`` saying what was kept."""
    try:
        study.optimize(
            lambda trial: recorded_objective(trial, context),
            n_trials=1,
            catch=(TrialFailed,),
            gc_after_trial=False,  # _run_trials collects after the trials that trained
        )
    except KeyboardInterrupt:
        write_outputs(study, context.options, quiet=True)
        stopped = (
            f"trial {context.stopped_trial} stopped and marked failed"
            if context.stopped_trial is not None
            else "stopped between trials"
        )
        raise KeyboardInterrupt(
            f"{stopped}; the {finished_trials(study)} finished trials are kept in "
            f"{shown_url(context.options.storage_url)}: run the same command to continue"
        ) from None


def _last_trial(study: optuna.Study, worker: str) -> FrozenTrial | None:
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker]
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
