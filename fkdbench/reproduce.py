"""``fkdbench reproduce``: the whole flow on the embedded default, one command.

``prepare -> train --all -> export --all -> bench --all -> report``, under one progress
display with an ETA over the whole flow. Every step is resumable: prepared data, finished
runs, up-to-date exports and (run, backend) pairs already in ``bench.jsonl`` with the same
settings are reused, so running it again after an interruption continues where it
stopped, and a finished flow only rewrites the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fkdbench import runs
from fkdbench.bench import BenchOptions, bench, bench_targets
from fkdbench.data.prepare import (
    KAGGLE_LABELLED_ROWS,
    KAGGLE_UNLABELLED_ROWS,
    PrepareOptions,
    prepare,
)
from fkdbench.export import export_all
from fkdbench.models import list_models
from fkdbench.presets import load_preset
from fkdbench.progress import flow_progress, say
from fkdbench.train import RunResult, train_matrix

STEPS = ("prepare", "train", "export", "bench", "report")


@dataclass
class ReproduceResult:
    data_dir: Path
    runs: list[RunResult]
    report: Path | None
    bench_records: int
    seconds: float
    step_seconds: dict[str, float]


def reproduce(
    preset: str | Path = "quick",
    data_root: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    results_dir: Path = Path("results"),
    seed: int = 0,
    n_train: int = KAGGLE_LABELLED_ROWS,
    n_test: int = KAGGLE_UNLABELLED_ROWS,
    force: bool = False,
    quiet: bool = False,
    bench_overrides: dict[str, Any] | None = None,
) -> ReproduceResult:
    """Prepare the synthetic default, train every run of ``preset``, export, bench, report.

    ``n_train``/``n_test`` shrink the data set (tests, trials); a data set prepared with
    other sizes is an error rather than silently reused. ``bench_overrides`` replaces the
    preset's bench settings (:class:`fkdbench.bench.BenchOptions` fields).
    """
    from fkdbench.report import build_report

    started = time.perf_counter()
    preset_data = load_preset(preset)
    step_seconds: dict[str, float] = {}
    results_dir = Path(results_dir)
    bench_settings = {**preset_data.bench, **(bench_overrides or {})}
    time_untrained = bool(bench_settings.pop("time_untrained", True))
    if "backends" in bench_settings:
        bench_settings["backends"] = tuple(bench_settings["backends"])
    options = BenchOptions(
        results=results_dir / "bench.jsonl", skip_existing=True, quiet=quiet, **bench_settings
    )
    n_runs = len(preset_data.runs)

    with flow_progress(quiet) as display:
        # Work items: prepare, each run trained, each run exported, each model benched (the
        # runs plus untrained architectures: counted as the registry's size), the report.
        estimate = 1 + n_runs + n_runs + max(n_runs, len(list_models())) + 1
        flow = display.add_task("reproduce", total=estimate)

        def step(number: int) -> float:
            display.update(flow, description=f"reproduce {number}/5: {STEPS[number - 1]}")
            say(f"[bold]step {number}/5[/]: {STEPS[number - 1]}", quiet)
            return time.perf_counter()

        def advance(*_: object) -> None:
            display.advance(flow)

        begun = step(1)
        prepared = prepare(
            PrepareOptions(
                data_root=data_root, seed=seed, n_train=n_train, n_test=n_test, quiet=quiet
            )
        )
        advance()
        step_seconds["prepare"] = time.perf_counter() - begun

        begun = step(2)
        trained = train_matrix(
            preset_data,
            data_dir=prepared.data_dir,
            runs_dir=runs_dir,
            force=force,
            quiet=quiet,
            on_run_end=advance,
        )
        step_seconds["train"] = time.perf_counter() - begun

        begun = step(3)
        finished = [
            result.run_dir
            for result in trained
            if result.status != "failed" and runs.is_finished(result.run_dir)
        ]
        export_all(finished, force=force, quiet=quiet, on_done=advance)
        step_seconds["export"] = time.perf_counter() - begun

        begun = step(4)
        if time_untrained:
            targets = bench_targets(runs_dir, all_models=True, data_dir=prepared.data_dir)
        else:
            targets = finished
        display.update(flow, total=1 + 2 * n_runs + len(targets) + 1)
        records, _ = bench(targets, options, on_done=advance)
        step_seconds["bench"] = time.perf_counter() - begun

        begun = step(5)
        report = build_report(runs_dir, options.results, results_dir, quiet=quiet)
        advance()
        step_seconds["report"] = time.perf_counter() - begun

    return ReproduceResult(
        data_dir=prepared.data_dir,
        runs=trained,
        report=report.markdown,
        bench_records=len(records),
        seconds=time.perf_counter() - started,
        step_seconds=step_seconds,
    )
