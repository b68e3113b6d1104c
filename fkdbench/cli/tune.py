"""``fkdbench tune`` (fkdbench.tune.tune)."""

from __future__ import annotations

from typing import Annotated

import typer

from fkdbench.cli.options import (
    DataOption,
    Objective,
    QuietOption,
    RunsDirOption,
    SeedOption,
    ThreadsOption,
    Variant,
    VariantOption,
    value,
)
from fkdbench.cli.output import user_errors
from fkdbench.tune import TuneOptions, TuneResult
from fkdbench.tune import tune as run_tune

# The defaults, read from the options dataclass (the one place they are set).
_TUNE = TuneOptions()


def tune(
    variant: VariantOption = Variant[_TUNE.variant],
    trials: Annotated[
        int,
        typer.Option(
            min=0,
            help="Trials the study should have trained in all, every worker's counted "
            "(specs rejected before training do not count); 0 rewrites the outputs only.",
        ),
    ] = _TUNE.trials,
    objective: Annotated[
        Objective,
        typer.Option(help="rmse+latency: Pareto front of val RMSE and CPU time; rmse alone."),
    ] = Objective[_TUNE.objective],
    study: Annotated[
        str | None,
        typer.Option(help="Study to create, resume or join [cnn-tuned-<variant>]."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Database URL (any Optuna supports, e.g. postgresql://user:pass@host/db) "
            "[sqlite:///<runs-dir>/tune/<study>.db]."
        ),
    ] = None,
    data: DataOption = _TUNE.data_dir,
    runs_dir: RunsDirOption = _TUNE.runs_dir,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs of every trial.")] = (
        _TUNE.epochs_per_trial
    ),
    max_params: Annotated[
        int, typer.Option(help="Reject specs over this many (Keras) parameters before training.")
    ] = _TUNE.max_params,
    max_latency: Annotated[
        float | None,
        typer.Option(
            help="Reject specs slower than this many ONNX Runtime s/100 images (timed before "
            "training) [no limit]."
        ),
    ] = None,
    trial_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock cap on each trial's training [none].")
    ] = None,
    max_train_rows: Annotated[
        int | None, typer.Option(help="Train each trial on at most this many rows [all].")
    ] = None,
    max_val_rows: Annotated[
        int | None, typer.Option(help="Validate on the first this-many rows [all].")
    ] = None,
    seed: SeedOption = _TUNE.seed,
    sampler_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the sampler [--seed]; give concurrent workers different ones."),
    ] = None,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Search cnn-tuned specs with Optuna for validation RMSE and ONNX Runtime CPU time."""
    with user_errors():
        options = TuneOptions(
            variant=value(variant),
            trials=trials,
            objective=value(objective),
            study=study,
            storage=storage,
            data_dir=data,
            runs_dir=runs_dir,
            epochs_per_trial=epochs,
            max_params=max_params,
            max_seconds_per_100_images=max_latency,
            trial_minutes=trial_minutes,
            max_train_rows=max_train_rows,
            max_val_rows=max_val_rows,
            seed=seed,
            sampler_seed=sampler_seed,
            threads=threads,
            quiet=quiet,
        )
        result = run_tune(options)
    _echo_tuned(result)


def _echo_tuned(result: TuneResult) -> None:
    counts = ", ".join(f"{count} {state}" for state, count in result.counts.items() if count)
    typer.echo(
        f"study {result.study} ({result.storage}): {counts or 'no trials'}; "
        f"{len(result.trials_here)} run here in {result.seconds / 60:.1f} min"
    )
    if result.best is not None:
        best = result.best
        typer.echo(
            f"best: trial {best['trial']}, val RMSE {best['val_rmse']:.3f} px, "
            f"{best['seconds_per_100_images']:.4f} s/100 images, "
            f"{best['parameters']['keras']:,} params; Pareto front: {result.pareto_size} trials"
        )
    for path in result.written:
        typer.echo(str(path))
