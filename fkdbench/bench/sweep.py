"""Measuring run folders on every backend: the sweep, its stages, and its failures.

A target is one (run, backend). One that fails (a bad folder, a missing or corrupt ONNX
file, an ONNX Runtime error, a config that cannot be read) becomes an error record and
the sweep goes on, as timm's benchmark does; :class:`BenchResult` lists the failures so
the command line can exit non-zero at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fkdbench import runs
from fkdbench.allocator import keep_freed_memory
from fkdbench.bench.gate import GateResult, check_baseline, load_baseline, save_baseline
from fkdbench.bench.options import BACKEND_FILES, NEEDS_INT8, NEEDS_ONNX, BenchOptions
from fkdbench.bench.plan import graph_key, timing_sources
from fkdbench.bench.records import (
    BenchError,
    BenchRecord,
    Calibration,
    Identity,
    ModelFacts,
    RecordsTail,
    Samples,
    Scores,
    Settings,
    read_records,
)
from fkdbench.bench.steadiness import PeakMeter, mark_steadiness, unsteady_warning
from fkdbench.bench.timing import (
    Clock,
    Timings,
    backend_predictor,
    flops_per_image,
    measure_machine_peak,
    score_pass,
    time_interleaved,
    torch_threads,
)
from fkdbench.data.schemes import KeypointScheme, get_scheme
from fkdbench.data.splits import SplitArrays, load_split, read_manifest
from fkdbench.edge import (
    EDGE_BACKENDS,
    check_predictions,
    max_difference,
    prepare_backend,
)
from fkdbench.edge import int8_recipe as edge_int8_recipe
from fkdbench.export import (
    INT8_FILE,
    ONNX_FILE,
    PixelKeypoints,
    calibration_images,
    export_run,
    read_export_record,
    run_data_dir,
)
from fkdbench.io import sha256_file
from fkdbench.metrics import FAILURE_THRESHOLD, landmark_metrics, rmse
from fkdbench.models import count_parameters, list_models
from fkdbench.onnxrt import Predictor, images_as_float
from fkdbench.progress import make_progress, say
from fkdbench.provenance import available_cores, environment_record


@dataclass
class BenchResult:
    """What a sweep wrote: every record (error records included), the machine's
    calibration, and the gate's verdict when one was asked for."""

    records: list[BenchRecord]
    calibration: Calibration
    gate: GateResult | None = None

    @property
    def failures(self) -> list[BenchRecord]:
        return [record for record in self.records if record.failed]

    @property
    def measured(self) -> list[BenchRecord]:
        return [record for record in self.records if not record.failed]

    def failure_summary(self) -> str | None:
        """ "N of M targets failed", or None when none did."""
        failed = len(self.failures)
        return f"{failed} of {len(self.records)} targets failed" if failed else None


@dataclass
class _Target:
    """One run folder read for measuring: what every backend of it shares."""

    folder: Path
    config: dict[str, Any]
    model: torch.nn.Module
    trained: bool
    data_dir: Path
    test: SplitArrays
    images: np.ndarray
    scheme: KeypointScheme
    facts: ModelFacts
    manifest_sha256: str
    export_record: dict[str, Any]
    # PyTorch eager's predictions of the test split, made once when a backend is checked.
    reference: np.ndarray | None = None


@dataclass(frozen=True)
class _Context:
    """What every record of one bench call shares: how, and on which machine."""

    options: BenchOptions
    calibration: Calibration
    environment: dict[str, Any]


@dataclass
class _Slot:
    """One target (a run folder on one backend) on its way through a bench call."""

    folder: Path
    backend: str
    target: _Target | None = None  # None: the run could not be read
    error: BaseException | None = None
    predictions: np.ndarray | None = None  # from the untimed score pass
    graph_key: str | None = None
    timed_as: str | None = None  # the run whose timings these are, when not this one
    timings: Timings | None = None
    parity: float | None = None  # px from PyTorch eager's predictions (not for torch)


# -- stages of one run folder ---------------------------------------------------------------


def _ensure_exported(folder: Path, options: BenchOptions) -> None:
    """Export, or reuse, the ONNX files the chosen backends need, by the same rule as
    ``fkdbench export``: reused only while the weights, the INT8 settings and each graph's
    sha256 are what ``export.json`` recorded; a replaced or corrupt graph is made again,
    with a line saying why, rather than timed."""
    export_run(
        folder,
        options.data_dir,
        int8=any(backend in NEEDS_INT8 for backend in options.backends),
        int8_activations=options.int8_activations,
        int8_search=options.int8_search,
        quiet=True,
        note_stale=not options.quiet,
    )


def _load_target(folder: Path, options: BenchOptions) -> _Target:
    """Read a run's model and test split, and the facts every backend's record shares."""
    model, config = runs.load_model(folder)
    data = run_data_dir(folder, config, options.data_dir)
    test = load_split(data, "test")
    model_info = config["model"]
    in_chans, image_size = int(model_info["in_chans"]), int(model_info["input_size"])
    if test.image_size != image_size:
        raise BenchError(
            f"{folder}: the model takes {image_size}x{image_size} images but {data} has "
            f"{test.image_size}x{test.image_size}"
        )
    counts = count_parameters(model)
    facts = ModelFacts(
        input_size=image_size,
        in_chans=in_chans,
        flops_per_image=flops_per_image(model, in_chans, image_size),
        parameters_pytorch=counts.pytorch,
        parameters_keras=counts.keras,
        model_pt_bytes=(folder / runs.MODEL_FILE).stat().st_size,
        onnx_bytes=_size(folder / ONNX_FILE),
        int8_onnx_bytes=_size(folder / INT8_FILE),
    )
    return _Target(
        folder=folder,
        config=config,
        model=model,
        trained=runs.is_finished(folder),
        data_dir=Path(data),
        test=test,
        images=images_as_float(test.images, in_chans),
        scheme=get_scheme(model_info["scheme"]),
        facts=facts,
        manifest_sha256=sha256_file(Path(data) / "manifest.json"),
        export_record=read_export_record(folder) or {},
    )


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _identity(folder: Path, backend: str, target: _Target | None) -> Identity:
    """Who was measured; as much as is known when the run could not be read."""
    model_file = folder / BACKEND_FILES[backend]
    known = target is not None
    config = target.config if known else {}
    export_record = target.export_record if known else {}
    return Identity(
        run_name=config.get("run_name", folder.name) if known else _run_name(folder),
        backend=backend,
        arch=config["model"]["arch"] if known else None,
        variant=config.get("train", {}).get("variant"),
        weights_mode=config.get("weights_mode", "scratch") if known else None,
        recipe=tuple(runs.recipe_of(config)) if known else (),
        trained=target.trained if known else None,
        model_file=str(model_file),
        model_sha256=sha256_file(model_file) if model_file.is_file() else None,
        exporter=export_record.get("exporter") if backend in NEEDS_ONNX else None,
        data_dir=str(target.data_dir) if known else None,
        data_manifest_sha256=target.manifest_sha256 if known else None,
    )


def _run_name(folder: Path) -> str:
    try:
        return runs.read_config(folder).get("run_name", folder.name)
    except (ValueError, OSError):
        return folder.name


def _settings(
    options: BenchOptions, threads: int, backend: str, target: _Target | None
) -> Settings:
    int8_activations = int8_recipe = None
    if target is not None and backend in NEEDS_INT8:
        int8_activations = target.export_record.get("int8_activations")
        int8_recipe = target.export_record.get("int8_recipe")
    elif target is not None and backend in EDGE_BACKENDS:
        int8_recipe = edge_int8_recipe(target.folder, backend)[1]
    return Settings(
        batch_size=options.batch_size,
        threads=threads,
        repeats=options.repeats,
        warmup_passes=options.warmup_passes,
        latency_samples=options.latency_samples,
        latency_warmup=options.latency_warmup,
        images=len(target.images) if target is not None else None,
        int8_activations=int8_activations,
        int8_recipe=int8_recipe,
    )


def _scores(target: _Target, predictions: np.ndarray, parity: float | None) -> Scores:
    """Test-split scores of this backend's own predictions (untrained runs have none)."""
    if not target.trained:
        return Scores(parity_max_abs_diff_pixels=parity)
    keypoints = target.test.keypoints
    scores = landmark_metrics(predictions, keypoints, target.scheme, FAILURE_THRESHOLD)
    return Scores(
        test_rmse=rmse(predictions, keypoints),
        test_nme=scores["nme"],
        test_fr=scores["fr"],
        test_auc=scores["auc"],
        parity_max_abs_diff_pixels=parity,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record(slot: _Slot, context: _Context) -> BenchRecord:
    """The record of one slot: its timings and scores, or its error."""
    if slot.error is not None or slot.timings is None or slot.target is None:
        error = slot.error or BenchError(f"{slot.folder}: {slot.backend} was not timed")
        record = _failed_record(slot.folder, slot.backend, error, context, slot.target)
    else:
        target, options, calibration = slot.target, context.options, context.calibration
        timings = slot.timings
        record = BenchRecord(
            identity=_identity(slot.folder, slot.backend, target),
            settings=dataclasses.replace(
                _settings(options, calibration.threads, slot.backend, target),
                passes_per_sample=timings.passes_per_sample,
            ),
            samples=Samples(
                seconds_per_100_images=list(timings.seconds_per_100_images),
                latency_batch1_ms=list(timings.latency_batch1_ms),
            ),
            model=target.facts,
            scores=_scores(target, slot.predictions, slot.parity),
            calibration=calibration,
            environment=context.environment,
            timestamp=_now(),
        )
    identity = dataclasses.replace(
        record.identity, graph_key=slot.graph_key, timed_as=slot.timed_as
    )
    return dataclasses.replace(record, identity=identity)


def _error_line(error: BaseException) -> str:
    """One line for an error record: a user error as it reads, anything else with its type."""
    if isinstance(error, (ValueError, OSError)):
        text = str(error).strip()
        return text.splitlines()[0] if text else type(error).__name__
    return f"{type(error).__name__}: {runs.first_line(error)}"


def _failed_record(
    folder: Path,
    backend: str,
    error: BaseException,
    context: _Context,
    target: _Target | None,
) -> BenchRecord:
    """The record of a target that failed: what is known of it, no samples, the error."""
    calibration = context.calibration
    return BenchRecord(
        identity=_identity(folder, backend, target),
        settings=_settings(context.options, calibration.threads, backend, target),
        samples=Samples(seconds_per_100_images=[], latency_batch1_ms=[]),
        model=target.facts if target is not None else None,
        scores=Scores(),
        calibration=calibration,
        environment=context.environment,
        timestamp=_now(),
        error=_error_line(error),
    )


def _prepare_folder(folder: Path, backends: Sequence[str], options: BenchOptions) -> list[_Slot]:
    """Export (when needed) and read one run folder: one slot per backend, holding its
    error when the folder, its export or its model failed."""
    try:
        if not (folder / runs.CONFIG_FILE).is_file():
            raise BenchError(f"{folder}: no such run (no {runs.CONFIG_FILE})")
        failed = _export_failures(folder, dataclasses.replace(options, backends=backends))
        target = _load_target(folder, options)
    except Exception as error:  # noqa: BLE001 - a failed target is a record, not a crash
        return [_Slot(folder, backend, error=error) for backend in backends]
    for backend in backends:
        if backend in EDGE_BACKENDS and backend not in failed:
            error = _edge_failure(target, backend, options)
            if error is not None:
                failed[backend] = error
    return [_Slot(folder, backend, target, failed.get(backend)) for backend in backends]


def _edge_failure(target: _Target, backend: str, options: BenchOptions) -> Exception | None:
    """Make (or reuse) an edge backend's file for a run; the error when that fails (not
    installed, or the runtime's converter refused the model)."""
    example = torch.from_numpy(target.images[: options.batch_size])
    module = PixelKeypoints(target.model, target.facts.input_size).eval()

    def calibration() -> torch.Tensor:
        return torch.from_numpy(calibration_images(target.data_dir, target.facts.in_chans))

    def score(predict: Predictor) -> float:
        predictions = score_pass(predict, target.images, options.batch_size)
        return rmse(predictions, target.test.keypoints)

    try:
        prepare_backend(
            target.folder,
            backend,
            module,
            example,
            calibration,
            options.quiet,
            score=score if target.trained else None,
            threads=options.threads or available_cores(),
        )
    except Exception as error:  # noqa: BLE001 - a runtime that fails fails only its target
        return error
    return None


def _graph_key(slot: _Slot) -> str:
    target, backend = slot.target, slot.backend
    exporter = target.export_record.get("exporter") if backend in NEEDS_ONNX else None
    int8, choice = None, None
    if backend in NEEDS_INT8:
        int8 = target.export_record.get("int8_activations")
        choice = target.export_record.get("int8_choice")
    elif backend in EDGE_BACKENDS:
        choice = edge_int8_recipe(target.folder, backend)[0]
    return graph_key(target.config["model"], backend, exporter, int8, choice)


def _reference(target: _Target, options: BenchOptions) -> np.ndarray:
    """PyTorch eager's predictions of a run's test split, which every other backend's are
    checked against (made once per run and bench call)."""
    if target.reference is None:
        predict = backend_predictor(
            target.folder, "torch", target.model, target.facts.in_chans, target.facts.input_size
        )
        target.reference = score_pass(predict, target.images, options.batch_size)
    return target.reference


def _checked_parity(slot: _Slot, options: BenchOptions) -> float | None:
    """The slot's difference from PyTorch eager (px); an edge backend must also pass its
    check (fkdbench.edge.check_predictions) or it is not timed. The core ONNX graphs
    passed theirs at export."""
    if slot.backend == "torch":
        return None
    target = slot.target
    reference = _reference(target, options)
    if slot.backend not in EDGE_BACKENDS:
        return max_difference(slot.predictions, reference)
    keypoints = target.test.keypoints
    rmse_of = functools.partial(_rmse_against, keypoints) if target.trained else None
    return check_predictions(slot.backend, slot.predictions, reference, rmse_of)


def _rmse_against(keypoints: np.ndarray, predictions: np.ndarray) -> float:
    return rmse(predictions, keypoints)


def _score_all(slots: Sequence[_Slot], options: BenchOptions) -> list[tuple[_Slot, Predictor]]:
    """Open each slot's predictor and run its score pass (every run: weights differ);
    the slots that got this far, with their predictors."""
    ready = []
    for slot in slots:
        target = slot.target
        try:
            predict = backend_predictor(
                slot.folder,
                slot.backend,
                target.model,
                target.facts.in_chans,
                target.facts.input_size,
            )
            slot.predictions = score_pass(predict, target.images, options.batch_size)
            slot.parity = _checked_parity(slot, options)
            slot.graph_key = _graph_key(slot)
        except Exception as error:  # noqa: BLE001 - likewise, for one backend
            slot.error = error
            continue
        ready.append((slot, predict))
    return ready


def _time_round(slots: Sequence[_Slot], options: BenchOptions, clock: Clock) -> None:
    """One backend's round: score every slot, then time each distinct graph once, the
    graphs taking turns; a slot sharing an earlier one's graph copies its timings."""
    ready = _score_all(slots, options)
    sources = timing_sources([slot.graph_key for slot, _ in ready])
    timers = [index for index, source in enumerate(sources) if source is None]
    timings, errors = time_interleaved(
        [ready[index][1] for index in timers],
        [ready[index][0].target.images for index in timers],
        options,
        clock,
    )
    for position, index in enumerate(timers):
        ready[index][0].timings = timings[position]
        ready[index][0].error = errors.get(position)
    for (slot, _), source in zip(ready, sources, strict=True):
        if source is None:
            continue
        timer = ready[source][0]
        slot.timed_as = _identity(timer.folder, timer.backend, timer.target).run_name
        slot.timings = timer.timings
        if timer.error is not None:
            slot.error = BenchError(
                f"shares the graph of {slot.timed_as}, whose timing failed: "
                f"{_error_line(timer.error)}"
            )


def _measure_folders(
    pending: Sequence[tuple[Path, list[str]]],
    options: BenchOptions,
    meter: PeakMeter,
    clock: Clock,
    write: Callable[[list[BenchRecord]], None] | None = None,
) -> tuple[list[BenchRecord], Calibration]:
    """Every target of every folder, in stages: export and read them all, then per backend
    a round of interleaved timing followed by a peak measurement. After each round,
    ``write`` gets the records of the rounds finished so far, with the calibration measured
    so far (a bench cut off keeps them). Returns the records (in folder, then backend
    order) and the calibration of every peak measured."""
    environment = environment_record()

    def records_of(rounds: Sequence[str]) -> list[BenchRecord]:
        context = _Context(options, meter.calibration(), environment)
        return mark_steadiness([_record(s, context) for s in slots if s.backend in rounds])

    with make_progress(options.quiet) as progress:
        task = progress.add_task("bench", total=len(pending) + len(options.backends))
        slots: list[_Slot] = []
        for folder, backends in pending:
            progress.update(task, description=f"bench: read {folder.name}")
            slots += _prepare_folder(folder, backends, options)
            progress.advance(task)
        with torch_threads(meter.threads):
            for position, backend in enumerate(options.backends):
                progress.update(task, description=f"bench: time {backend}")
                round_slots = [s for s in slots if s.backend == backend and s.error is None]
                if round_slots:
                    _time_round(round_slots, options, clock)
                    meter.sample()
                if write is not None and position + 1 < len(options.backends):
                    finished = records_of(options.backends[: position + 1])
                    if finished:
                        write(finished)
                progress.advance(task)
    return records_of(options.backends), meter.calibration()


def bench_folder(
    folder: Path,
    options: BenchOptions,
    calibration: Calibration,
    clock: Clock = time.perf_counter,
) -> list[BenchRecord]:
    """Measure one run folder (trained or untrained) on every backend of ``options``.

    The ONNX files are made first when missing or stale (``fkdbench export``). A backend
    that fails is an error record; the others are still measured. Returns the records;
    writing them is the caller's job.
    """
    meter = PeakMeter(calibration.threads, reuse=calibration)
    records, _ = _measure_folders([(Path(folder), list(options.backends))], options, meter, clock)
    return records


def _export_failures(folder: Path, options: BenchOptions) -> dict[str, Exception]:
    """Export what the ONNX backends need; when that fails, the error of each of them
    (torch can still be measured)."""
    onnx_backends = [backend for backend in options.backends if backend in NEEDS_ONNX]
    if not onnx_backends:
        return {}
    try:
        _ensure_exported(folder, options)
    except Exception as error:  # noqa: BLE001 - a failed export fails only these targets
        return dict.fromkeys(onnx_backends, error)
    return {}


# -- many runs -------------------------------------------------------------------------------


def bench_targets(
    runs_dir: Path,
    names: Sequence[str] = (),
    all_models: bool = False,
    data_dir: Path | None = None,
) -> list[Path]:
    """The run folders to measure.

    ``names`` are run names (folders under ``runs_dir``) or paths to run folders. With
    ``all_models``: every finished run, plus every registered architecture that has no
    finished run, timed untrained (its folder is made from ``data_dir``, default
    ``data/synthetic``).
    """
    runs_dir = Path(runs_dir)
    folders = [runs.find_run(runs_dir, name) for name in names]
    if all_models:
        finished = runs.finished_runs(runs_dir)
        folders += [folder for folder in finished if folder not in folders]
        untrained_data = Path(data_dir) if data_dir is not None else Path("data/synthetic")
        folders += _untrained_targets(runs_dir, finished, untrained_data)
    if not folders:
        raise BenchError("nothing to measure: name a run or pass --all")
    return folders


def _untrained_targets(runs_dir: Path, finished: Sequence[Path], data_dir: Path) -> list[Path]:
    """An untrained run folder for each registered architecture with no finished run."""
    trained_archs = {runs.read_config(folder)["model"]["arch"] for folder in finished}
    missing = [arch for arch in list_models() if arch not in trained_archs]
    if missing:
        read_manifest(data_dir)  # a clear error when there is no data yet
    return [runs.create_untrained_run(runs_dir, arch, data_dir) for arch in missing]


def _already_recorded(results: Path, options: BenchOptions, threads: int) -> set[tuple]:
    """(run, backend, model sha) measured with these settings in ``results``; an error
    record is never a measurement."""
    keys = set()
    for record in read_records(results):
        settings = record.settings
        if (
            not record.failed
            and settings.batch_size == options.batch_size
            and settings.threads == threads
            and settings.repeats == options.repeats
        ):
            identity = record.identity
            keys.add((identity.run_name, identity.backend, identity.model_sha256))
    return keys


def _pending_backends(folder: Path, options: BenchOptions, done: set[tuple]) -> list[str]:
    if not done:
        return list(options.backends)
    name = _run_name(folder)
    pending = []
    for backend in options.backends:
        path = folder / BACKEND_FILES[backend]
        if not path.is_file() or (name, backend, sha256_file(path)) not in done:
            pending.append(backend)
    return pending


def _row_of(folder: Path) -> tuple[tuple, tuple | None] | None:
    """(arch, variant, weights mode, recipe, seed) of a run folder, and that of its twin
    (``runs.twin_recipe``: None for no lever); None when its config cannot be read."""
    try:
        config = runs.read_config(folder)
    except (ValueError, OSError):
        return None
    train = config.get("train") or {}
    arch = (config.get("model") or {}).get("arch")
    mode, recipe = config.get("weights_mode", "scratch"), tuple(runs.recipe_of(config))
    twin = runs.twin_recipe(mode, recipe)
    seed = train.get("seed")
    own = (arch, train.get("variant"), mode, recipe, seed)
    return own, (arch, train.get("variant"), *twin, seed) if twin else None


def _with_twins(
    pending: list[tuple[Path, list[str]]], folders: Sequence[Path], options: BenchOptions
) -> list[tuple[Path, list[str]]]:
    """``pending`` plus the twin of each lever in it (among ``folders``: the same run
    trained the papers' way, or from scratch for a backbone pretrained here) on the lever's
    backends: a lever's cost is read as a ratio to its twin's, and a ratio is fair only
    within one bench run (one state of the machine)."""
    rows = {folder: _row_of(folder) for folder in folders}
    by_row = {row[0]: folder for folder, row in rows.items() if row}
    chosen = dict(pending)
    for folder, backends in pending:
        row = rows.get(folder)
        twin = by_row.get(row[1]) if row and row[1] else None
        if twin is not None:
            wanted = set(chosen.get(twin, ())) | set(backends)
            chosen[twin] = [backend for backend in options.backends if backend in wanted]
    return [(folder, chosen[folder]) for folder in folders if folder in chosen]


def bench(
    folders: Sequence[Path],
    options: BenchOptions,
    on_done: Callable[[Path], None] | None = None,
    calibration: Calibration | None = None,
    clock: Clock = time.perf_counter,
    peak_meter: PeakMeter | None = None,
) -> BenchResult:
    """Measure every folder on every backend, appending the records to ``options.results``:
    those of each backend's round as soon as it is timed (a bench cut off keeps them, and
    ``--skip-existing`` goes on from there), rewritten at the end with the calibration of
    the whole call.

    Every target is exported and read first; then, backend by backend, each distinct graph
    is timed once, the graphs taking turns (see :mod:`fkdbench.bench.plan`). The machine's
    peak is measured before the first model and after each backend's round, in the same
    process (``peak_meter`` to measure otherwise; ``calibration`` to reuse one and measure
    none). ``on_done`` is called with each folder once its records are written
    (``reproduce``'s display).
    """
    check_writable(options.results, "results file")
    keep_freed_memory()  # timed as after a training in the same process (reproduce)
    if peak_meter is None:
        threads = calibration.threads if calibration else options.threads or available_cores()
        measure = functools.partial(measure_machine_peak, clock=clock)
        peak_meter = PeakMeter(threads, measure, reuse=calibration)
    peak_meter.sample()
    first = peak_meter.calibration()
    say(
        f"machine: {first.peak_gflops:.1f} GFLOP/s FP32 matmul peak with {first.threads} thread(s)",
        options.quiet,
    )
    done = set()
    if options.skip_existing:
        done = _already_recorded(options.results, options, peak_meter.threads)
    folders = [Path(folder) for folder in folders]
    pending = [(folder, _pending_backends(folder, options, done)) for folder in folders]
    pending = [(folder, backends) for folder, backends in pending if backends]
    if done:
        pending = _with_twins(pending, folders, options)
    tail = RecordsTail(options.results)
    records, calibration = _measure_folders(pending, options, peak_meter, clock, tail.write)
    if records:
        tail.write(records)
    _say_failures(records, options.quiet)
    warning = unsteady_warning(records, calibration)
    if warning:
        say(f"[yellow]warning[/yellow]: {warning}", options.quiet)
    for folder in folders:
        (on_done or (lambda _folder: None))(folder)
    return BenchResult(records, calibration)


def check_writable(path: Path, what: str) -> None:
    """Fail in a second, not after the timing: ``path`` must be a file fkdbench can read
    and replace (it is rewritten atomically, so its folder must take a new file)."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"{path}: the {what} is a folder")
    blocker = next((part for part in path.parents if part.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise BenchError(
            f"{path}: cannot write the {what} ({blocker} is a file); nothing was timed"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(handle)
        os.unlink(probe)
        if path.exists():
            with open(path, "rb"):
                pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise BenchError(f"{path}: cannot write the {what} ({reason}); nothing was timed") from None


def _say_failures(records: Sequence[BenchRecord], quiet: bool) -> None:
    for record in records:
        if record.failed:
            identity = record.identity
            say(f"[red]failed[/red] {identity.run_name} {identity.backend}: {record.error}", quiet)


def bench_and_gate(
    folders: Sequence[Path],
    options: BenchOptions,
    baseline: Path | None = None,
    tolerance: float = 0.25,
    save_baseline_to: Path | None = None,
) -> BenchResult:
    """``fkdbench bench``: measure, optionally write a baseline, optionally gate.

    The baseline is read before anything is timed, so a bad one fails in a second.
    """
    baseline_data = load_baseline(baseline) if baseline is not None else None
    if tolerance < 0:
        raise BenchError(f"tolerance must be >= 0, got {tolerance}")
    if save_baseline_to is not None:
        check_writable(save_baseline_to, "baseline file")
    result = bench(folders, options)
    if save_baseline_to is not None:
        save_baseline(result.records, save_baseline_to)
    if baseline_data is not None:
        result.gate = check_baseline(result.records, baseline_data, tolerance, baseline)
    return result


def summary_table(records: Sequence[BenchRecord]) -> pd.DataFrame:
    """The few columns a person reads after a bench run, one row per record (and, when any
    record has them, whose timing it shares, why it is unstable, and its error)."""
    rows = []
    for record in records:
        flat = record.flat()
        fraction = flat["fraction_of_peak"]
        row = {
            "run": flat["run_name"],
            "backend": flat["backend"],
            "s / 100 images": flat["seconds_per_100_images"],
            "IQR": flat["seconds_per_100_images_iqr"],
            "batch-1 p50 ms": flat["latency_batch1_p50_ms"],
            "batch-1 p99 ms": flat["latency_batch1_p99_ms"],
            "GFLOP/s": flat["achieved_gflops"],
            "% of peak": None if fraction is None else 100 * fraction,
            "test RMSE px": flat["test_rmse"],
        }
        if any(other.identity.timed_as for other in records):
            row["timed as"] = record.identity.timed_as or ""
        if any(other.unstable for other in records):
            row["unstable"] = "; ".join(record.unstable_reasons)
        if any(other.failed for other in records):
            row["error"] = record.error or ""
        rows.append(row)
    return pd.DataFrame(rows)
