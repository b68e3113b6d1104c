"""Measuring: the machine's calibration workload, a model's work, and timed passes.

Every timing function takes ``clock`` (default :func:`time.perf_counter`), so tests check
the pass and latency arithmetic exactly with a fake clock, without timing anything.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import fkdbench.bench.stats as stats
from fkdbench.bench.options import BACKEND_FILES, BenchOptions
from fkdbench.bench.plan import LATENCY_CHUNK, round_robin
from fkdbench.bench.records import Calibration
from fkdbench.edge import EDGE_BACKENDS, edge_predictor
from fkdbench.export import PixelKeypoints
from fkdbench.onnxrt import Predictor, check_session_input, open_session, session_predictor

Clock = Callable[[], float]
# Sides of the square FP32 matrices of the calibration workload.
CALIBRATION_MATRICES = (512, 1024)
# Each calibration round runs products for at least this long.
CALIBRATION_ROUND_SECONDS = 0.1


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op threads for a block and restore them after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- the machine --------------------------------------------------------------------------------


def _round(multiply: Callable[[], object], clock: Clock) -> tuple[int, float]:
    """(products, seconds) of one calibration round: products until it lasts long enough."""
    products = 0
    started = clock()
    while True:
        multiply()
        products += 1
        elapsed = clock() - started
        if elapsed > CALIBRATION_ROUND_SECONDS:
            return products, elapsed


def best_rate(
    multiply: Callable[[], object],
    flops: int,
    rounds: int = 5,
    clock: Clock = time.perf_counter,
) -> float:
    """GFLOP/s of the fastest of ``rounds`` ~0.1 s rounds of ``multiply``.

    The peak is what the machine *can* do, so the fastest round is the estimate least
    disturbed by other work on the machine.
    """
    multiply()  # warm-up: thread pool start, page faults
    best = 0.0
    for _ in range(rounds):
        products, elapsed = _round(multiply, clock)
        best = max(best, products * flops / elapsed / 1e9)
    return best


def _onnx_matmul_session(matrix_size: int, threads: int) -> Any:
    import onnxruntime as ort  # heavy: only when calibrating
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
    threads: int,
    matrix_sizes: Sequence[int] = CALIBRATION_MATRICES,
    clock: Clock = time.perf_counter,
) -> Calibration:
    """FP32 GFLOP/s of square matrix products with ``threads`` threads, torch and ORT.

    Several sizes, because the fastest size differs by engine and machine (ONNX Runtime
    was ~10% faster at 512 than at 1024 on the development machine); the best of all is
    the peak.
    """
    started = clock()
    generator = torch.Generator().manual_seed(0)
    torch_rate = onnx_rate = 0.0
    for size in matrix_sizes:
        flops = 2 * size**3
        a = torch.rand(size, size, generator=generator)
        b = torch.rand(size, size, generator=generator)
        with torch_threads(threads):
            multiply = functools.partial(torch.mm, a, b)
            torch_rate = max(torch_rate, best_rate(multiply, flops, clock=clock))
        session = _onnx_matmul_session(size, threads)
        run = functools.partial(session.run, None, {"a": a.numpy(), "b": b.numpy()})
        onnx_rate = max(onnx_rate, best_rate(run, flops, clock=clock))
    return Calibration(
        peak_gflops=max(torch_rate, onnx_rate),
        torch_gflops=torch_rate,
        onnxruntime_gflops=onnx_rate,
        threads=threads,
        matrix_sizes=list(matrix_sizes),
        seconds=clock() - started,
    )


def flops_per_image(model: torch.nn.Module, in_chans: int, image_size: int) -> int:
    """FLOPs of one forward pass on one image, as PyTorch's FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, in_chans, image_size, image_size))
    return int(counter.get_total_flops())


# -- the model ------------------------------------------------------------------------------------


def backend_predictor(
    folder: Path, backend: str, model: torch.nn.Module, in_chans: int, image_size: int
) -> Predictor:
    """A function float32 (n, C, H, W) -> (n, K, 2) pixels for one backend of a run.

    ONNX Runtime sessions take torch's current thread count, so callers set it once
    (:func:`torch_threads`) for every backend.
    """
    if backend == "torch":
        module = PixelKeypoints(model, image_size).eval()

        def predict_torch(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(images)).numpy()

        return predict_torch
    if backend in EDGE_BACKENDS:
        module = PixelKeypoints(model, image_size).eval()
        return edge_predictor(folder, backend, module, torch.get_num_threads())
    path = folder / BACKEND_FILES[backend]
    session = open_session(path, threads=torch.get_num_threads())
    check_session_input(session, path, in_chans, image_size)
    return session_predictor(session)


def _full_pass(predict: Predictor, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate(
        [predict(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    )


@dataclass
class Timings:
    """The timed samples of one graph."""

    seconds_per_100_images: list[float] = field(default_factory=list)
    latency_batch1_ms: list[float] = field(default_factory=list)
    # Full passes in each timed sample (see MIN_SAMPLE_SECONDS).
    passes_per_sample: int = 1


# A timed sample lasts at least this long: as many whole passes as that takes (pyperf's
# loops). A pass of a small model over a small test split takes ~0.1 s, where one
# scheduler tick or page fault moves it by tens of per cent; measured here, such passes
# of the same graph spread 30-70% in one bench.
MIN_SAMPLE_SECONDS = 0.5
# ... but never more passes than this per sample (a clock that says 0 s, e.g. a fake one).
MAX_PASSES_PER_SAMPLE = 64


def passes_for(pass_seconds: float) -> int:
    """Whole passes per sample so that a sample lasts at least MIN_SAMPLE_SECONDS."""
    if pass_seconds >= MIN_SAMPLE_SECONDS:
        return 1
    if pass_seconds <= 0:
        return MAX_PASSES_PER_SAMPLE
    return min(MAX_PASSES_PER_SAMPLE, math.ceil(MIN_SAMPLE_SECONDS / pass_seconds))


def score_pass(predict: Predictor, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The first, untimed pass: it warms the backend up and its predictions score it."""
    return _full_pass(predict, images, batch_size)


def time_interleaved(
    predictors: Sequence[Predictor],
    images: Sequence[np.ndarray],
    options: BenchOptions,
    clock: Clock = time.perf_counter,
) -> tuple[list[Timings], dict[int, Exception]]:
    """Timed full passes, then batch-1 latencies, of several graphs taking turns.

    Each graph has had its :func:`score_pass`; ``warmup_passes - 1`` more untimed passes
    follow, and one clocked pass that sets its passes per sample (:func:`passes_for`),
    then ``repeats`` turns of one timed sample per graph, then ``latency_warmup``
    untimed single images per graph and turns of :data:`~fkdbench.bench.plan.LATENCY_CHUNK`
    timed ones. Returns each graph's samples, and the errors of graphs that failed.
    """
    count, batch = len(predictors), options.batch_size
    timings = [Timings() for _ in predictors]
    errors: dict[int, Exception] = {}

    def singles(index: int) -> list[np.ndarray]:
        own = images[index]
        return [own[n % len(own)][None] for n in range(options.latency_samples)]

    def warm_up(index: int) -> None:
        for _ in range(options.warmup_passes - 1):
            _full_pass(predictors[index], images[index], batch)
        # One more untimed pass, clocked, sets how many passes make a sample.
        started = clock()
        _full_pass(predictors[index], images[index], batch)
        timings[index].passes_per_sample = passes_for(clock() - started)

    def timed_pass(index: int) -> None:
        passes = timings[index].passes_per_sample
        started = clock()
        for _ in range(passes):
            _full_pass(predictors[index], images[index], batch)
        elapsed = clock() - started
        per_100 = stats.seconds_per_100_images(elapsed, passes * len(images[index]))
        timings[index].seconds_per_100_images.append(per_100)

    def warm_up_singles(index: int) -> None:
        for single in singles(index)[: options.latency_warmup]:
            predictors[index](single)

    def timed_chunk(index: int) -> None:
        latencies = timings[index].latency_batch1_ms
        done = len(latencies)
        for single in singles(index)[done : done + LATENCY_CHUNK]:
            started = clock()
            predictors[index](single)
            latencies.append((clock() - started) * 1000)

    round_robin(count, 1, warm_up, errors)
    round_robin(count, options.repeats, timed_pass, errors)
    round_robin(count, 1, warm_up_singles, errors)
    round_robin(count, -(-options.latency_samples // LATENCY_CHUNK), timed_chunk, errors)
    return timings, errors


def time_backend(
    predict: Predictor,
    images: np.ndarray,
    options: BenchOptions,
    clock: Clock = time.perf_counter,
) -> tuple[np.ndarray, list[float], list[float]]:
    """One graph alone: its score pass, warm-up pass(es), timed full passes, then batch-1
    latencies (:func:`time_interleaved` with one graph).

    Returns ``(warm-up predictions, seconds per 100 images of each timed pass, batch-1
    latencies in ms)``; an error while timing is raised.
    """
    predictions = score_pass(predict, images, options.batch_size)
    [timings], errors = time_interleaved([predict], [images], options, clock)
    if errors:
        raise errors[0]
    return predictions, timings.seconds_per_100_images, timings.latency_batch1_ms
