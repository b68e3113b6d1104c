"""``fkdbench reproduce`` (fkdbench.reproduce.reproduce): the whole flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import (
    DataRootOption,
    Executor,
    ExecutorOption,
    ForceOption,
    NTestOption,
    NTrainOption,
    PresetOption,
    QuietOption,
    RayAddressOption,
    RunsDirOption,
    SeedOption,
    SeedsOption,
    parameter_default,
    value,
)
from fkdbench.cli.output import echo_runs, user_errors
from fkdbench.reproduce import reproduce as reproduce_flow

# An already prepared data folder instead of the synthetic default.
PreparedDataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="A prepared data folder (fkdbench prepare, e.g. real faces split by person) "
        "to use instead of preparing the synthetic default.",
    ),
]

# The defaults of the library function (the one place they are set).
_DEFAULTS = {
    name: parameter_default(reproduce_flow, name)
    for name in ("preset", "data_root", "runs_dir", "results_dir", "seed", "n_train", "n_test")
}


def reproduce(
    preset: PresetOption = _DEFAULTS["preset"],
    data_root: DataRootOption = _DEFAULTS["data_root"],
    runs_dir: RunsDirOption = _DEFAULTS["runs_dir"],
    results_dir: Annotated[
        Path, typer.Option(help="Where bench.jsonl, REPORT.md and figures go.")
    ] = _DEFAULTS["results_dir"],
    seed: SeedOption = _DEFAULTS["seed"],
    n_train: NTrainOption = _DEFAULTS["n_train"],
    n_test: NTestOption = _DEFAULTS["n_test"],
    data: PreparedDataOption = None,
    seeds: SeedsOption = None,
    executor: ExecutorOption = Executor.local,
    ray_address: RayAddressOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """The whole flow on the synthetic default (or --data): prepare, train, export, bench,
    report."""
    with user_errors():
        result = reproduce_flow(
            preset=preset,
            data_root=data_root,
            runs_dir=runs_dir,
            results_dir=results_dir,
            seed=seed,
            n_train=n_train,
            n_test=n_test,
            data_dir=data,
            seeds=seeds,
            executor=value(executor),
            ray_address=ray_address,
            force=force,
            quiet=quiet,
        )
    steps = ", ".join(f"{name} {seconds / 60:.1f}" for name, seconds in result.step_seconds.items())
    typer.echo(
        f"reproduce --preset {preset}: {len(result.runs)} runs, {result.bench_records} bench "
        f"records in {result.seconds / 60:.1f} min ({steps} min; data: {result.data_dir})"
    )
    echo_runs(result.runs, exit_on_failure=False)
    if result.report is not None:
        typer.echo(f"report: {result.report}")
    if any(run.status == "failed" for run in result.runs):
        raise typer.Exit(1)
