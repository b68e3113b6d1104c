"""``fkdbench bench`` (fkdbench.bench.bench_and_gate) and its regression gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.bench import (
    BenchOptions,
    BenchResult,
    bench_and_gate,
    bench_targets,
    bench_video,
    gate_report,
    summary_table,
    video_results_path,
    video_summary,
)
from fkdbench.cli.options import (
    RUNS_DIR,
    Backend,
    DataOverrideOption,
    DetectorChoice,
    Int8SearchOption,
    QuietOption,
    RunNamesArgument,
    RunsDirOption,
    ThreadsOption,
    parameter_default,
    value,
    values,
)
from fkdbench.cli.output import user_errors
from fkdbench.faces.detect import DEFAULT_DETECTOR
from fkdbench.faces.track import REDETECT_EVERY
from fkdbench.progress import console

# The defaults, read from the options dataclass (the one place they are set).
_BENCH = BenchOptions()
_TOLERANCE = parameter_default(bench_and_gate, "tolerance")


BatchSizeOption = Annotated[int, typer.Option(min=1, help="Images per call when timing.")]
RepeatsOption = Annotated[int, typer.Option(min=1, help="Timed passes over the test split.")]
WarmupOption = Annotated[int, typer.Option(min=0, help="Untimed passes first.")]
LatencySamplesOption = Annotated[int, typer.Option(min=1, help="Batch-1 calls timed.")]
ResultsOption = Annotated[Path, typer.Option(help="JSON-lines file records are appended to.")]
SkipExistingOption = Annotated[
    bool, typer.Option(help="Skip run/backend pairs already in --results (same settings).")
]
BaselineOption = Annotated[
    Path | None, typer.Option(help="Regression gate: compare with this baseline file.")
]
ToleranceOption = Annotated[
    float,
    typer.Option(
        min=0, help="Gate: allowed slow-down, 0.25 = 25% (a regression must also be significant)."
    ),
]
SaveBaselineOption = Annotated[
    Path | None, typer.Option(help="Write this run's times as a baseline file.")
]
VideoOption = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="Time the end-to-end video pipeline on this file instead (FPS, ms per stage; "
        "records to video.jsonl beside --results; --repeats passes).",
    ),
]
VideoDetectorOption = Annotated[
    DetectorChoice, typer.Option(help="With --video: the face detector.")
]
RedetectEveryOption = Annotated[
    int, typer.Option(min=1, help="With --video: detect again every N frames.")
]


def bench(
    run_names: RunNamesArgument = None,
    all_models: Annotated[
        bool,
        typer.Option("--all", help="Every finished run, plus every other architecture untrained."),
    ] = False,
    runs_dir: RunsDirOption = RUNS_DIR,
    data: DataOverrideOption = None,
    backend: Annotated[
        list[Backend] | None,
        typer.Option(
            help="Backend to time; repeat for several [torch, onnxruntime, onnxruntime-int8; "
            "the edge runtimes when named: uv sync --extra edge]."
        ),
    ] = None,
    threads: ThreadsOption = _BENCH.threads,
    batch_size: BatchSizeOption = _BENCH.batch_size,
    repeats: RepeatsOption = _BENCH.repeats,
    warmup: WarmupOption = _BENCH.warmup_passes,
    latency_samples: LatencySamplesOption = _BENCH.latency_samples,
    results: ResultsOption = _BENCH.results,
    skip_existing: SkipExistingOption = False,
    int8_search: Int8SearchOption = False,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = _TOLERANCE,
    save_baseline: SaveBaselineOption = None,
    video: VideoOption = None,
    detector: VideoDetectorOption = DetectorChoice[DEFAULT_DETECTOR],
    redetect_every: RedetectEveryOption = REDETECT_EVERY,
    quiet: QuietOption = False,
) -> None:
    """Time models on CPU (seconds per 100 images, batch-1 latency) on every backend."""
    with user_errors():
        options = BenchOptions(
            backends=values(backend) or _BENCH.backends,
            threads=threads,
            batch_size=batch_size,
            warmup_passes=warmup,
            repeats=repeats,
            latency_samples=latency_samples,
            data_dir=data,
            results=results,
            skip_existing=skip_existing,
            int8_search=int8_search,
            quiet=quiet,
        )
        folders = bench_targets(runs_dir, run_names or [], all_models, data)
        if video is not None:
            _bench_video(folders, video, options, value(detector), redetect_every)
            return
        result = bench_and_gate(folders, options, baseline, tolerance, save_baseline)
    _echo_bench(result, results, save_baseline)


def _echo_bench(result: BenchResult, results: Path, save_baseline: Path | None) -> None:
    """The records' table, where they went, the gate's verdict; exit 1 on a failed target
    (a row of the table and a record: the sweep went on) or a failed gate."""
    if result.records:
        typer.echo(summary_table(result.records).to_markdown(index=False, floatfmt=".4g"))
    typer.echo(f"{len(result.records)} record(s) appended to {results}")
    if save_baseline is not None:
        typer.echo(f"baseline written to {save_baseline}")
    if result.gate is not None:
        for line in gate_report(result.gate):
            typer.echo(line)
    failed = result.failure_summary()
    if failed:
        console.print(f"[red]error[/red]: {failed}", highlight=False, soft_wrap=True)
    if failed or (result.gate is not None and not result.gate.passed):
        raise typer.Exit(1)


def _bench_video(
    folders: list[Path], video: Path, options: BenchOptions, detector: str, redetect_every: int
) -> None:
    """``bench --video``: the records' table, where they went, and exit 1 if any failed."""
    import pandas as pd

    records = bench_video(folders, video, options, detector, redetect_every)
    typer.echo(pd.DataFrame(video_summary(records)).to_markdown(index=False, floatfmt=".4g"))
    typer.echo(f"{len(records)} record(s) appended to {video_results_path(options.results)}")
    failed = sum(record.failed for record in records)
    if failed:
        console.print(
            f"[red]error[/red]: {failed} of {len(records)} targets failed", highlight=False
        )
        raise typer.Exit(1)
