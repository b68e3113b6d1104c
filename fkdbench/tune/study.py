"""The study: created or joined (only with the same settings), its sampler and pruner,
and its trials counted by state."""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fkdbench import runs
from fkdbench.tune.options import ARCH, OBJECTIVES, TuneError, TuneOptions
from fkdbench.tune.storage import open_storage, shown_url


def study_settings(options: TuneOptions, manifest_sha256: str, image_size: int) -> dict[str, Any]:
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


def open_study(options: TuneOptions, settings: dict[str, Any]) -> optuna.Study:
    """Create the study, or join it when its settings are the same as ours."""
    # Only the default location (<runs>/tune/) is created; a typo in --storage is refused.
    storage = open_storage(options.storage_url, create_folder=options.storage is None)
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
                f"study {name!r} in {shown} was not made by fkdbench tune; use another --study name"
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


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; "rejected" counts the pruned ones that never trained."""
    by_state = {"complete": 0, "pruned": 0, "rejected": 0, "fail": 0, "running": 0, "waiting": 0}
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        by_state[state] = by_state.get(state, 0) + 1
        if rejected(trial):
            by_state["rejected"] += 1
    return by_state


def rejected(trial: FrozenTrial) -> bool:
    """A trial pruned before it trained (its spec over --max-params, --max-latency or
    the input size)."""
    return trial.state == TrialState.PRUNED and "val_rmse_by_epoch" not in trial.user_attrs


def trials_counted(by_state: dict[str, int]) -> int:
    """Trials that count toward ``--trials``: those that trained or are training. A
    rejection costs milliseconds, and failed trials (crashed, interrupted) are redone."""
    return by_state["complete"] + by_state["pruned"] - by_state["rejected"] + by_state["running"]


def finished_trials(study: optuna.Study) -> int:
    """Complete trials of the study, every worker's."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
