"""``fkdbench reproduce``: the whole flow on the embedded default (or on a data set
already prepared, ``data_dir``), one command.

``prepare -> train --all -> export --all -> bench --all -> report``, under one progress
display with an ETA over the whole flow. Every step is resumable: prepared data, finished
runs, up-to-date exports and (run, backend) pairs already in ``bench.jsonl`` with the same
settings are reused, so running it again after an interruption continues where it
stopped, and a finished flow only rewrites the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fkdbench import runs
from fkdbench.bench import BenchOptions, bench, bench_targets, bench_video, video_targets
from fkdbench.data.prepare import (
    KAGGLE_LABELLED_ROWS,
    KAGGLE_UNLABELLED_ROWS,
    PrepareOptions,
    prepare,
)
from fkdbench.data.splits import read_manifest
from fkdbench.export import export_all
from fkdbench.models import list_models
from fkdbench.presets import Preset, load_preset
from fkdbench.progress import flow_progress, say
from fkdbench.report import build_report
from fkdbench.train import RunResult, train_matrix

STEPS = ("prepare", "train", "export", "bench", "report")
# The results of the same matrix on real faces (``reproduce --data <real faces>
# --results-dir results/real-faces``): the main report compares its ranking with theirs.
REAL_FACES_RESULTS = Path("real-faces")
RUN_RECORDS_FILE = "runs.jsonl"


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
    data_dir: Path | None = None,
    seeds: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> ReproduceResult:
    """Prepare the synthetic default, train every run of ``preset``, export, bench, report.

    ``n_train``/``n_test`` shrink the data set (tests, trials); a data set prepared with
    other sizes is an error rather than silently reused. ``data_dir``: a data folder
    already prepared (e.g. real faces split by person) to use instead of the synthetic
    default (``data_root``, ``seed``, ``n_train`` and ``n_test`` then do not apply).
    ``seeds``: seeds per run (None: the preset's). ``bench_overrides`` replaces the
    preset's bench settings (:class:`fkdbench.bench.BenchOptions` fields). ``executor`` and
    ``ray_address``: where the runs train (:func:`fkdbench.train.train_matrix`).
    """
    started = time.perf_counter()
    preset_data = load_preset(preset)
    results_dir = Path(results_dir)
    options, time_untrained, extras = bench_settings(
        preset_data, bench_overrides, results_dir, quiet
    )
    prepare_options = PrepareOptions(
        data_root=data_root, seed=seed, n_train=n_train, n_test=n_test, quiet=quiet
    )
    with flow_progress(quiet) as display:
        flow = _Flow(display, quiet, runs_to_train=preset_data.run_count(seeds))
        with flow.step("prepare"):
            prepared_dir = _prepared_data(prepare_options, data_dir, quiet)
            flow.advance()
        with flow.step("train"):
            trained = train_matrix(
                preset_data,
                data_dir=prepared_dir,
                runs_dir=runs_dir,
                force=force,
                quiet=quiet,
                on_run_end=flow.advance,
                seeds=seeds,
                executor=executor,
                ray_address=ray_address,
            )
        with flow.step("export"):
            finished = finished_folders(trained)
            export_all(finished, force=force, quiet=quiet, on_done=flow.advance)
        with flow.step("bench"):
            targets = _bench_step_targets(time_untrained, runs_dir, prepared_dir, finished)
            clip_targets = video_targets(targets) if extras.video_bench else []
            flow.count_bench_targets(len(targets) + len(clip_targets) + len(extras.peers))
            benched = bench(targets, options, on_done=flow.advance)
            _video_step(clip_targets, Path(data_root), options, flow)
            _peer_step(extras.peers, prepared_dir, runs_dir, quiet, flow)
        with flow.step("report"):
            report = _report_step(bool(targets), runs_dir, options.results, results_dir, quiet)
            flow.advance()
    return ReproduceResult(
        data_dir=prepared_dir,
        runs=trained,
        report=report,
        bench_records=len(benched.records),
        seconds=time.perf_counter() - started,
        step_seconds=flow.step_seconds,
    )


def _prepared_data(options: PrepareOptions, data_dir: Path | None, quiet: bool) -> Path:
    """The data folder to train on: ``data_dir`` when given (checked to be prepared:
    ``DataError`` naming its manifest otherwise), else the synthetic default, prepared."""
    if data_dir is None:
        return prepare(options).data_dir
    read_manifest(data_dir)
    say(f"prepare: using the data prepared in {data_dir}", quiet)
    return Path(data_dir)


def _report_step(
    any_runs: bool, runs_dir: Path, bench_file: Path, results_dir: Path, quiet: bool
) -> Path | None:
    """REPORT.md, or None when no run finished and none was timed: a report of nothing
    would replace the one in ``results_dir`` (the run lines say what failed).

    When ``<results_dir>/real-faces/runs.jsonl`` holds the same matrix trained on real
    faces, the report compares the two rankings (``compare_with``)."""
    if not any_runs:
        say(f"report: skipped, no run finished; {results_dir} left as it was", quiet)
        return None
    comparison = _real_faces_records(results_dir)
    extra = {} if comparison is None else {"compare_with": comparison}
    return build_report(runs_dir, bench_file, results_dir, quiet=quiet, **extra).markdown


def _real_faces_records(results_dir: Path) -> Path | None:
    """The real-faces run records under ``results_dir``; None when there are none (so a
    reproduce into ``results/real-faces`` itself compares with nothing)."""
    records = Path(results_dir) / REAL_FACES_RESULTS / RUN_RECORDS_FILE
    return records if records.is_file() else None


@dataclass(frozen=True)
class BenchExtras:
    """What the bench step measures beyond ``bench``: the end-to-end video bench on the
    generated clip (one model per architecture, ONNX Runtime) and the off-the-shelf peers
    scored on the test split (a peer not installed gets a record saying so)."""

    video_bench: bool = False
    peers: tuple[str, ...] = ()


def bench_settings(
    preset: Preset, overrides: dict[str, Any] | None, results_dir: Path, quiet: bool
) -> tuple[BenchOptions, bool, BenchExtras]:
    """The bench step's options (the preset's ``bench`` object under ``overrides``),
    whether to time the architectures the preset does not train (``time_untrained``),
    and the extra measurements (``video_bench``, ``peers``)."""
    settings = {**preset.bench, **(overrides or {})}
    time_untrained = bool(settings.pop("time_untrained", True))
    extras = BenchExtras(bool(settings.pop("video_bench", False)), tuple(settings.pop("peers", ())))
    if "backends" in settings:
        settings["backends"] = tuple(settings["backends"])
    options = BenchOptions(
        results=results_dir / "bench.jsonl", skip_existing=True, quiet=quiet, **settings
    )
    return options, time_untrained, extras


# The end-to-end video bench times the pipeline on this backend only: the one every
# trained run is exported to, and the one the FPS goal is stated for.
VIDEO_BACKEND = "onnxruntime"
VIDEO_DIR = "video"


def _video_step(folders: list[Path], data_root: Path, options: BenchOptions, flow: _Flow) -> None:
    """``bench --video`` on the generated FPS clip (``<data_root>/video/``), reusing
    measurements already in ``video.jsonl`` for the same model file and settings."""
    if not folders:
        return
    from fkdbench.faces.synthetic_video import bench_clip

    clip = bench_clip(data_root / VIDEO_DIR)
    video_options = dataclasses.replace(options, backends=(VIDEO_BACKEND,))
    bench_video(folders, clip, video_options)
    for _ in folders:
        flow.advance()


def _peer_step(
    names: Sequence[str], data_dir: Path, runs_dir: Path, quiet: bool, flow: _Flow
) -> None:
    """Each peer scored on ``data_dir``'s test split (its record reused when it scored
    the same data with the same library versions)."""
    from fkdbench.peers.score import score_peer

    for name in names:
        result = score_peer(name, data_dir=data_dir, runs_dir=runs_dir, quiet=quiet, reuse=True)
        say(result.line(), quiet)
        flow.advance()


def finished_folders(results: list[RunResult]) -> list[Path]:
    """The run folders the train step left finished (trained now or before)."""
    return [
        result.run_dir
        for result in results
        if result.status != "failed" and runs.is_finished(result.run_dir)
    ]


def _bench_step_targets(
    time_untrained: bool, runs_dir: Path, data_dir: Path, finished: list[Path]
) -> list[Path]:
    """The finished runs, plus the registry's other architectures timed untrained unless
    the preset says not."""
    if not time_untrained:
        return finished
    return bench_targets(runs_dir, all_models=True, data_dir=data_dir)


class _Flow:
    """One progress bar over the whole flow, and the seconds each step took.

    Work items: prepare, each run trained, each run exported, each model benched, the
    report. Until the bench step knows its targets, the models benched are counted as the
    runs or the registry's size, whichever is larger (untrained architectures are timed).
    """

    def __init__(self, display: Any, quiet: bool, runs_to_train: int) -> None:
        self.display, self.quiet, self.runs = display, quiet, runs_to_train
        total = 1 + 2 * runs_to_train + max(runs_to_train, len(list_models())) + 1
        self.task = display.add_task("reproduce", total=total)
        self.step_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        number = STEPS.index(name) + 1
        self.display.update(self.task, description=f"reproduce {number}/5: {name}")
        say(f"[bold]step {number}/5[/]: {name}", self.quiet)
        begun = time.perf_counter()
        yield
        self.step_seconds[name] = time.perf_counter() - begun

    def advance(self, *_: object) -> None:
        self.display.advance(self.task)

    def count_bench_targets(self, targets: int) -> None:
        self.display.update(self.task, total=1 + 2 * self.runs + targets + 1)
