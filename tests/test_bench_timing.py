"""The timed measurements, checked exactly with a fake clock: no timing thresholds."""

from __future__ import annotations

import numpy as np
import torch
from bench_factory import fake_clock

from fkdbench.bench import BenchOptions, flops_per_image, measure_machine_peak, time_backend
from fkdbench.bench.timing import (
    MAX_PASSES_PER_SAMPLE,
    MIN_SAMPLE_SECONDS,
    best_rate,
    passes_for,
    torch_threads,
)

STEP = 0.0625  # fake_clock's default step


class CountingModel:
    """A predictor (n, 1, 4, 4) -> (n, 3, 2) that records the batch size of each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        return images[:, 0, :3, :2]


def test_passes_and_latencies_from_a_fake_clock() -> None:
    images = np.random.default_rng(0).random((10, 1, 4, 4), dtype=np.float32)
    options = BenchOptions(
        batch_size=4, warmup_passes=2, repeats=3, latency_samples=5, latency_warmup=2
    )
    predict = CountingModel()
    predictions, per_100, latencies = time_backend(predict, images, options, clock=fake_clock())

    # Each timed sample and call reads the clock twice, one step apart; a sample holds
    # passes_for(STEP) passes, as one clocked pass took a step.
    passes = passes_for(STEP)
    assert per_100 == [STEP / (10 * passes) * 100] * 3
    assert latencies == [STEP * 1000] * 5
    # Warm-up passes (2), the clocked pass and timed samples (3 x passes) in batches of
    # 4, 4, 2; then 2 untimed and 5 timed single images.
    assert predict.calls == [4, 4, 2] * (3 + 3 * passes) + [1] * 7
    # The first warm-up pass's predictions score the backend.
    np.testing.assert_array_equal(predictions, images[:, 0, :3, :2])


def test_best_rate_counts_products_until_a_round_is_long_enough() -> None:
    products = []
    rate = best_rate(lambda: products.append(1), flops=10**9, rounds=3, clock=fake_clock())
    # Per round: after one product 0.0625 s (too short), after two 0.125 s > 0.1 s.
    assert len(products) == 1 + 3 * 2  # one warm-up product, then two per round
    assert rate == 2 * 10**9 / 0.125 / 1e9 == 16.0


def test_machine_peak_takes_the_faster_engine() -> None:
    calibration = measure_machine_peak(threads=1, matrix_sizes=(64,), clock=fake_clock())
    assert calibration.peak_gflops == max(calibration.torch_gflops, calibration.onnxruntime_gflops)
    # Same clock, same products per round: both engines measure the same fake rate.
    assert calibration.torch_gflops == calibration.onnxruntime_gflops == 2 * 2 * 64**3 / 0.125 / 1e9
    assert calibration.matrix_sizes == [64] and calibration.threads == 1
    assert calibration.seconds > 0


def test_flops_per_image_and_threads_restored() -> None:
    # A 16 -> 3 linear layer: 16 * 3 multiply-adds = 96 FLOPs per image.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    assert flops_per_image(model, in_chans=1, image_size=4) == 96
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_sample_lasts_at_least_the_minimum_in_whole_passes() -> None:
    assert passes_for(MIN_SAMPLE_SECONDS) == 1 and passes_for(3.0) == 1
    assert passes_for(MIN_SAMPLE_SECONDS / 4) == 4
    assert passes_for(MIN_SAMPLE_SECONDS / 4.5) == 5  # rounded up: never shorter
    assert passes_for(0.0) == passes_for(1e-12) == MAX_PASSES_PER_SAMPLE
