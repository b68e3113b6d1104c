"""``fkdbench bench``: CPU inference time as the papers measure it, done carefully.

Methodology (see ``docs/methodology.md``):

- **Seconds per 100 images** is the paper's Equation 1: the time to predict the whole test
  split in batches of ``batch_size``, divided by its size, times 100. One untimed pass warms
  up each backend (ONNX Runtime's first run can be 40x slower), then ``repeats`` timed
  passes give the median and the interquartile range. The warm-up pass's predictions score
  the backend (test RMSE from what *this* backend predicts, for trained runs).
- **Batch-1 latency** (the camera use case): single images, one call each, p50 and p99 over
  ``latency_samples`` calls after a few warm-up calls.
- **Threads** are fixed for every backend (``torch.set_num_threads``; ONNX Runtime's
  ``intra_op_num_threads`` with one inter-op thread) and recorded.
- **Work and the machine**: FLOPs per image come from PyTorch's ``FlopCounterMode`` (a
  multiply-add counts 2; convolutions and matrix products only). The same process measures
  the machine's FP32 matrix-multiply rate with the same threads (the *calibration
  workload*), so each record carries the fraction of this machine's peak it reached, and a
  time normalised by the machine's speed that the regression gate compares across
  machines.

Every record is one :class:`BenchRecord`, appended to ``results/bench.jsonl`` only once it
is complete.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fkdbench import runs
from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import load_split, read_manifest
from fkdbench.export import (
    DEFAULT_INT8_ACTIVATIONS,
    INT8_FILE,
    ONNX_FILE,
    PixelKeypoints,
    check_session_input,
    export_run,
    images_as_float,
    open_session,
    read_export_record,
    run_data_dir,
)
from fkdbench.io import (
    append_jsonl_atomic,
    plain,
    read_json,
    sha256_file,
    write_json_atomic,
)
from fkdbench.metrics import FAILURE_THRESHOLD, landmark_metrics, rmse
from fkdbench.models import count_parameters, list_models
from fkdbench.progress import make_progress, say
from fkdbench.provenance import available_cores, environment_record

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
BACKEND_FILES = {"torch": runs.MODEL_FILE, "onnxruntime": ONNX_FILE, "onnxruntime-int8": INT8_FILE}
BENCH_FORMAT_VERSION = 1
DEFAULT_RESULTS = Path("results/bench.jsonl")
# Keras' predict() batch, which the paper's timings used.
DEFAULT_BATCH_SIZE = 32
# Sides of the square FP32 matrices of the calibration workload.
CALIBRATION_MATRICES = (512, 1024)
BASELINE_FORMAT_VERSION = 1
NORMALISATION = (
    "seconds per 100 images x this machine's FP32 matmul peak GFLOP/s (the faster of torch "
    "and ONNX Runtime, measured in the same process with the same threads): the GFLOP of "
    "peak-rate work the same time buys"
)


class BenchError(ValueError):
    """A benchmark that cannot be run as asked; the message names the run or file."""


@dataclass
class BenchOptions:
    """How to measure. The defaults are the design's; ``quick`` presets shrink repeats."""

    backends: Sequence[str] = BACKENDS
    threads: int | None = None  # None: every core this process may use
    batch_size: int = DEFAULT_BATCH_SIZE
    warmup_passes: int = 1
    repeats: int = 5
    latency_samples: int = 200
    latency_warmup: int = 10
    data_dir: Path | None = None  # None: each run's own data set
    results: Path = DEFAULT_RESULTS
    # Used only when a run must be exported first (see fkdbench.export.INT8_ACTIVATIONS).
    int8_activations: str = DEFAULT_INT8_ACTIVATIONS
    # Skip (run, backend) pairs already recorded for the same model file and settings.
    skip_existing: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        unknown = [backend for backend in self.backends if backend not in BACKENDS]
        if unknown:
            raise BenchError(f"unknown backend {unknown[0]!r}; known: {', '.join(BACKENDS)}")
        for name in ("batch_size", "repeats", "latency_samples"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"threads must be at least 1, got {self.threads}")


@dataclass
class Calibration:
    """The machine's FP32 matrix-multiply rate, measured in this process.

    Both engines are measured because they differ by up to 2x on one machine (ONNX
    Runtime's MLAS kernels reach nearer the vector units' limit than torch's BLAS on some
    CPUs); the faster one is the machine's peak.
    """

    peak_gflops: float
    torch_gflops: float
    onnxruntime_gflops: float
    matrix_sizes: list[int]
    threads: int
    seconds: float


@dataclass
class BenchRecord:
    """One measurement: one model, one backend, one machine, one set of settings."""

    run_name: str
    arch: str
    variant: str | None
    weights_mode: str
    trained: bool
    backend: str
    model_file: str
    model_sha256: str
    batch_size: int
    input_size: int
    in_chans: int
    threads: int
    images: int
    warmup_passes: int
    repeats: int
    seconds_per_100_images: float
    seconds_per_100_images_q1: float
    seconds_per_100_images_q3: float
    seconds_per_100_images_iqr: float
    seconds_per_100_images_all: list[float]
    latency_batch1_p50_ms: float
    latency_batch1_p99_ms: float
    latency_samples: int
    flops_per_image: int
    achieved_gflops: float
    machine_peak_gflops: float
    machine_peak_torch_gflops: float
    machine_peak_onnxruntime_gflops: float
    fraction_of_peak: float
    normalised_time: float
    parameters_pytorch: int
    parameters_keras: int
    model_pt_bytes: int
    onnx_bytes: int | None
    int8_onnx_bytes: int | None
    test_rmse: float | None
    test_nme: float | None
    test_fr: float | None
    test_auc: float | None
    data_dir: str
    data_manifest_sha256: str
    exporter: str | None
    int8_activations: str | None
    cpu_model: str
    cpu_cores: int
    cpu_features: list[str]
    versions: dict[str, str]
    git_commit: str
    timestamp: str
    environment: dict[str, Any] = field(default_factory=dict)
    format_version: int = BENCH_FORMAT_VERSION


def _best_rate(multiply: Callable[[], object], flops: int, rounds: int = 5) -> float:
    """GFLOP/s of the fastest of ``rounds`` ~0.1 s rounds of ``multiply``.

    The peak is what the machine *can* do, so the fastest round is the estimate least
    disturbed by other work on the machine.
    """
    multiply()  # warm-up: thread pool start, page faults
    best = 0.0
    for _ in range(rounds):
        products = 0
        started = time.perf_counter()
        while True:
            multiply()
            products += 1
            elapsed = time.perf_counter() - started
            if elapsed > 0.1:
                break
        best = max(best, products * flops / elapsed / 1e9)
    return best


def _onnx_matmul_session(matrix_size: int, threads: int) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    shape = [matrix_size, matrix_size]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "calibration",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
    )
    # IR 8 / opset 17: old enough for every ONNX Runtime the project supports.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def measure_machine_peak(
    threads: int, matrix_sizes: Sequence[int] = CALIBRATION_MATRICES
) -> Calibration:
    """FP32 GFLOP/s of square matrix products with ``threads`` threads, torch and ORT.

    Several sizes, because the fastest size differs by engine and machine (ONNX Runtime
    was ~10% faster at 512 than at 1024 on the development machine); the best of all is
    the peak.
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    torch_rate = onnx_rate = 0.0
    for size in matrix_sizes:
        flops = 2 * size**3
        a = torch.rand(size, size, generator=generator)
        b = torch.rand(size, size, generator=generator)
        with _torch_threads(threads):
            torch_rate = max(torch_rate, _best_rate(functools.partial(torch.mm, a, b), flops))
        session = _onnx_matmul_session(size, threads)
        feeds = {"a": a.numpy(), "b": b.numpy()}
        onnx_rate = max(onnx_rate, _best_rate(functools.partial(session.run, None, feeds), flops))
    return Calibration(
        peak_gflops=max(torch_rate, onnx_rate),
        torch_gflops=torch_rate,
        onnxruntime_gflops=onnx_rate,
        matrix_sizes=list(matrix_sizes),
        threads=threads,
        seconds=time.perf_counter() - started,
    )


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op threads for a block and restore them after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def flops_per_image(model: torch.nn.Module, in_chans: int, image_size: int) -> int:
    """FLOPs of one forward pass on one image, as PyTorch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, in_chans, image_size, image_size))
    return int(counter.get_total_flops())


# -- timing -------------------------------------------------------------------------------------


Predictor = Callable[[np.ndarray], np.ndarray]


def _predictor(folder: Path, backend: str, model: torch.nn.Module, config: dict) -> Predictor:
    """A function float32 (n, C, H, W) -> (n, K, 2) pixels for one backend."""
    image_size = int(config["model"]["input_size"])
    if backend == "torch":
        module = PixelKeypoints(model, image_size).eval()

        def predict_torch(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(images)).numpy()

        return predict_torch
    path = folder / BACKEND_FILES[backend]
    session = open_session(path, threads=torch.get_num_threads())
    check_session_input(session, path, int(config["model"]["in_chans"]), image_size)
    return session_predictor(session)


def session_predictor(session: Any) -> Predictor:
    """``predict(images)`` for an ONNX Runtime session of an exported model."""
    output_name = session.get_outputs()[0].name

    def predict_onnx(images: np.ndarray) -> np.ndarray:
        return session.run([output_name], {"image": images})[0]

    return predict_onnx


def _full_pass(predict: Predictor, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate(
        [predict(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    )


def time_backend(
    predict: Predictor, images: np.ndarray, options: BenchOptions
) -> tuple[np.ndarray, list[float], list[float]]:
    """Warm-up pass(es), timed full passes, then batch-1 latencies.

    Returns ``(warm-up predictions, seconds per 100 images of each timed pass, batch-1
    latencies in ms)``.
    """
    predictions = _full_pass(predict, images, options.batch_size)
    for _ in range(options.warmup_passes - 1):
        _full_pass(predict, images, options.batch_size)
    per_100 = []
    for _ in range(options.repeats):
        started = time.perf_counter()
        _full_pass(predict, images, options.batch_size)
        per_100.append((time.perf_counter() - started) / len(images) * 100)
    singles = [images[index % len(images)][None] for index in range(options.latency_samples)]
    for single in singles[: options.latency_warmup]:
        predict(single)
    latencies = []
    for single in singles:
        started = time.perf_counter()
        predict(single)
        latencies.append((time.perf_counter() - started) * 1000)
    return predictions, per_100, latencies


# -- one run, every backend -----------------------------------------------------------------


def bench_folder(
    folder: Path, options: BenchOptions, calibration: Calibration
) -> list[BenchRecord]:
    """Measure one run folder (trained or untrained) on every backend of ``options``.

    The ONNX files are made first when missing or stale (``fkdbench export``). Returns the
    records; writing them is the caller's job, so a failure leaves nothing half-recorded.
    """
    folder = Path(folder)
    if not (folder / runs.CONFIG_FILE).is_file():
        raise BenchError(f"{folder}: no such run (no {runs.CONFIG_FILE})")
    threads = calibration.threads
    needs_onnx = any(backend != "torch" for backend in options.backends)
    if needs_onnx:
        _ensure_exported(folder, options)
    model, config = runs.load_model(folder)
    trained = runs.is_finished(folder)
    data = run_data_dir(folder, config, options.data_dir)
    test = load_split(data, "test")
    model_info = config["model"]
    in_chans, image_size = int(model_info["in_chans"]), int(model_info["input_size"])
    if test.image_size != image_size:
        raise BenchError(
            f"{folder}: the model takes {image_size}x{image_size} images but {data} has "
            f"{test.image_size}x{test.image_size}"
        )
    images = images_as_float(test.images, in_chans)
    scheme = get_scheme(model_info["scheme"])
    counts = count_parameters(model)
    work = flops_per_image(model, in_chans, image_size)
    export_record = read_export_record(folder) or {}
    environment = environment_record()
    manifest_sha = sha256_file(Path(data) / "manifest.json")
    records = []
    for backend in options.backends:
        model_file = folder / BACKEND_FILES[backend]
        with _torch_threads(threads):
            predict = _predictor(folder, backend, model, config)
            predictions, per_100, latencies = time_backend(predict, images, options)
        scores = landmark_metrics(predictions, test.keypoints, scheme, FAILURE_THRESHOLD)
        median = float(np.median(per_100))
        q1, q3 = (float(value) for value in np.percentile(per_100, [25, 75]))
        achieved = work * 100 / median / 1e9
        records.append(
            BenchRecord(
                run_name=config.get("run_name", folder.name),
                arch=model_info["arch"],
                variant=config.get("train", {}).get("variant"),
                weights_mode=config.get("weights_mode", "scratch"),
                trained=trained,
                backend=backend,
                model_file=str(model_file),
                model_sha256=sha256_file(model_file),
                batch_size=options.batch_size,
                input_size=image_size,
                in_chans=in_chans,
                threads=threads,
                images=len(images),
                warmup_passes=options.warmup_passes,
                repeats=options.repeats,
                seconds_per_100_images=median,
                seconds_per_100_images_q1=q1,
                seconds_per_100_images_q3=q3,
                seconds_per_100_images_iqr=q3 - q1,
                seconds_per_100_images_all=per_100,
                latency_batch1_p50_ms=float(np.percentile(latencies, 50)),
                latency_batch1_p99_ms=float(np.percentile(latencies, 99)),
                latency_samples=len(latencies),
                flops_per_image=work,
                achieved_gflops=achieved,
                machine_peak_gflops=calibration.peak_gflops,
                machine_peak_torch_gflops=calibration.torch_gflops,
                machine_peak_onnxruntime_gflops=calibration.onnxruntime_gflops,
                fraction_of_peak=achieved / calibration.peak_gflops,
                normalised_time=median * calibration.peak_gflops,
                parameters_pytorch=counts.pytorch,
                parameters_keras=counts.keras,
                model_pt_bytes=(folder / runs.MODEL_FILE).stat().st_size,
                onnx_bytes=_size(folder / ONNX_FILE),
                int8_onnx_bytes=_size(folder / INT8_FILE),
                test_rmse=rmse(predictions, test.keypoints) if trained else None,
                test_nme=scores["nme"] if trained else None,
                test_fr=scores["fr"] if trained else None,
                test_auc=scores["auc"] if trained else None,
                data_dir=str(data),
                data_manifest_sha256=manifest_sha,
                exporter=export_record.get("exporter") if backend != "torch" else None,
                int8_activations=export_record.get("int8_activations")
                if backend == "onnxruntime-int8"
                else None,
                cpu_model=str(environment["cpu_model"]),
                cpu_cores=int(environment["cpu_cores"]),
                cpu_features=list(environment["cpu_features"]),
                versions=dict(environment["versions"]),
                git_commit=str(environment["git_commit"]),
                timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                environment=environment,
            )
        )
    return records


def _ensure_exported(folder: Path, options: BenchOptions) -> None:
    """Export (or refresh) the ONNX files the chosen backends need."""
    record = read_export_record(folder)
    wants_int8 = "onnxruntime-int8" in options.backends
    current = (
        record is not None
        and record.get("model_sha256") == sha256_file(folder / runs.MODEL_FILE)
        and (folder / ONNX_FILE).is_file()
        and (not wants_int8 or (folder / INT8_FILE).is_file())
    )
    if not current:
        if (folder / ONNX_FILE).is_file() and record is None:
            # A model.onnx that export.json does not vouch for may be anything: check it.
            open_session(folder / ONNX_FILE, threads=1)
        export_run(
            folder,
            options.data_dir,
            int8=wants_int8,
            int8_activations=options.int8_activations,
            quiet=True,
        )


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


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
    folders: list[Path] = []
    folders += [runs.find_run(runs_dir, name) for name in names]
    if all_models:
        finished = runs.finished_runs(runs_dir)
        trained_archs = {runs.read_config(folder)["model"]["arch"] for folder in finished}
        folders += [folder for folder in finished if folder not in folders]
        untrained_data = Path(data_dir) if data_dir is not None else Path("data/synthetic")
        for arch in list_models():
            if arch not in trained_archs:
                read_manifest(untrained_data)  # a clear error when there is no data yet
                folders.append(runs.create_untrained_run(runs_dir, arch, untrained_data))
    if not folders:
        raise BenchError("nothing to measure: name a run or pass --all")
    return folders


def _already_recorded(results: Path, options: BenchOptions, threads: int) -> set[tuple]:
    """(run, backend, model sha) already measured with these settings in ``results``."""
    keys = set()
    for record in read_records(results):
        if (
            record.get("batch_size") == options.batch_size
            and record.get("threads") == threads
            and record.get("repeats") == options.repeats
        ):
            keys.add((record["run_name"], record["backend"], record["model_sha256"]))
    return keys


def bench(
    folders: Sequence[Path],
    options: BenchOptions,
    on_done: Callable[[Path], None] | None = None,
) -> tuple[list[BenchRecord], Calibration]:
    """Measure every folder on every backend; append each run's records when complete.

    The calibration workload runs once, before the models, in the same process.
    ``on_done`` is called with each folder once measured (``reproduce``'s display).
    """
    threads = options.threads or available_cores()
    calibration = measure_machine_peak(threads)
    say(
        f"machine: {calibration.peak_gflops:.1f} GFLOP/s FP32 matmul peak with {threads} thread(s)",
        options.quiet,
    )
    done = _already_recorded(options.results, options, threads) if options.skip_existing else set()
    measured: list[BenchRecord] = []
    with make_progress(options.quiet) as progress:
        task = progress.add_task("bench", total=len(folders))
        for folder in folders:
            progress.update(task, description=f"bench {Path(folder).name}")
            pending = _pending_backends(Path(folder), options, done)
            if pending:
                run_options = BenchOptions(**{**asdict(options), "backends": pending})
                records = bench_folder(Path(folder), run_options, calibration)
                append_jsonl_atomic(options.results, [plain(asdict(r)) for r in records])
                measured += records
            progress.advance(task)
            if on_done is not None:
                on_done(Path(folder))
    return measured, calibration


def _pending_backends(folder: Path, options: BenchOptions, done: set[tuple]) -> list[str]:
    if not done:
        return list(options.backends)
    name = runs.read_config(folder).get("run_name", folder.name)
    pending = []
    for backend in options.backends:
        path = folder / BACKEND_FILES[backend]
        if not path.is_file() or (name, backend, sha256_file(path)) not in done:
            pending.append(backend)
    return pending


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a bench JSON-lines file; a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise BenchError(f"{path}: line {number}: malformed JSON ({error.msg})") from None
    return records


# -- the regression gate ----------------------------------------------------------------------


def gate_key(record: dict[str, Any]) -> str:
    """What a baseline entry is matched on: the model, the backend, the batch size."""
    return f"{record['run_name']}|{record['backend']}|batch {record['batch_size']}"


def save_baseline(records: Sequence[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Write a baseline for :func:`check_baseline` from bench records (the last per key)."""
    if not records:
        raise BenchError("no bench records to save as a baseline")
    entries = {}
    for record in records:
        entries[gate_key(record)] = {
            "seconds_per_100_images": record["seconds_per_100_images"],
            "normalised_time": record["normalised_time"],
            "machine_peak_gflops": record["machine_peak_gflops"],
            "threads": record["threads"],
            "cpu_model": record["cpu_model"],
        }
    baseline = {
        "format_version": BASELINE_FORMAT_VERSION,
        "normalisation": NORMALISATION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment_record(),
        "entries": dict(sorted(entries.items())),
    }
    write_json_atomic(Path(path), baseline)
    return baseline


@dataclass
class GateComparison:
    key: str
    baseline_normalised: float
    current_normalised: float
    baseline_seconds: float
    current_seconds: float

    @property
    def ratio(self) -> float:
        return self.current_normalised / self.baseline_normalised


@dataclass
class GateResult:
    tolerance: float
    compared: list[GateComparison]
    regressions: list[GateComparison]
    not_measured: list[str]  # in the baseline, not in this run
    new: list[str]  # in this run, not in the baseline

    @property
    def passed(self) -> bool:
        return not self.regressions


def load_baseline(path: Path) -> dict[str, Any]:
    baseline = read_json(path, BenchError, "no such baseline (write one with --save-baseline)")
    if not isinstance(baseline, dict) or not isinstance(baseline.get("entries"), dict):
        raise BenchError(f"{path}: not a fkdbench baseline (no 'entries')")
    return baseline


def check_baseline(
    records: Sequence[dict[str, Any]], baseline: dict[str, Any], tolerance: float
) -> GateResult:
    """Compare machine-normalised times against a baseline.

    A model regresses when its normalised time exceeds the baseline's by more than
    ``tolerance`` (0.25: 25% slower). Raw seconds are kept for the message only: CI
    machines differ, normalised times travel between them.
    """
    if tolerance < 0:
        raise BenchError(f"tolerance must be >= 0, got {tolerance}")
    current = {gate_key(record): record for record in records}
    entries = baseline["entries"]
    compared, regressions = [], []
    for key, record in sorted(current.items()):
        if key not in entries:
            continue
        entry = entries[key]
        comparison = GateComparison(
            key,
            float(entry["normalised_time"]),
            float(record["normalised_time"]),
            float(entry["seconds_per_100_images"]),
            float(record["seconds_per_100_images"]),
        )
        compared.append(comparison)
        if comparison.ratio > 1 + tolerance:
            regressions.append(comparison)
    return GateResult(
        tolerance=tolerance,
        compared=compared,
        regressions=regressions,
        not_measured=sorted(set(entries) - set(current)),
        new=sorted(set(current) - set(entries)),
    )


def bench_and_gate(
    folders: Sequence[Path],
    options: BenchOptions,
    baseline: Path | None = None,
    tolerance: float = 0.25,
    save_baseline_to: Path | None = None,
) -> tuple[list[BenchRecord], GateResult | None]:
    """``fkdbench bench``: measure, optionally write a baseline, optionally gate.

    The baseline is read before anything is timed, so a bad one fails in a second.
    """
    baseline_data = load_baseline(baseline) if baseline is not None else None
    if tolerance < 0:
        raise BenchError(f"tolerance must be >= 0, got {tolerance}")
    records, _ = bench(folders, options)
    plain_records = [plain(asdict(record)) for record in records]
    if save_baseline_to is not None:
        save_baseline(plain_records, save_baseline_to)
    gate = None
    if baseline_data is not None:
        gate = check_baseline(plain_records, baseline_data, tolerance)
    return records, gate


def summary_table(records: Sequence[BenchRecord]) -> pd.DataFrame:
    """The few columns a person reads after a bench run, one row per record."""
    rows = [
        {
            "run": record.run_name,
            "backend": record.backend,
            "s / 100 images": record.seconds_per_100_images,
            "IQR": record.seconds_per_100_images_iqr,
            "batch-1 p50 ms": record.latency_batch1_p50_ms,
            "batch-1 p99 ms": record.latency_batch1_p99_ms,
            "GFLOP/s": record.achieved_gflops,
            "% of peak": 100 * record.fraction_of_peak,
            "test RMSE px": record.test_rmse,
        }
        for record in records
    ]
    return pd.DataFrame(rows)


def gate_report(result: GateResult) -> list[str]:
    """Lines explaining a gate verdict: each regression named, with both times."""
    lines = [
        f"gate: {len(result.compared)} model/backend pair(s) compared with the baseline, "
        f"tolerance {result.tolerance:.0%}, on times normalised by the machine's measured "
        "matmul peak (so machines of different speed compare)"
    ]
    for comparison in result.regressions:
        lines.append(
            f"REGRESSION {comparison.key}: {comparison.ratio - 1:+.0%} normalised "
            f"(baseline {comparison.baseline_seconds:.4f} s / 100 images, "
            f"now {comparison.current_seconds:.4f} s)"
        )
    if result.not_measured:
        lines.append(f"in the baseline but not measured now: {', '.join(result.not_measured)}")
    if result.new:
        lines.append(f"measured but not in the baseline: {', '.join(result.new)}")
    lines.append("gate: PASSED" if result.passed else "gate: FAILED")
    return lines
