"""Statistics from samples, checked exactly on samples whose answers are known."""

from __future__ import annotations

import numpy as np

from fkdbench.bench import stats


def test_median_and_quartiles_interpolate_linearly() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]  # order does not matter
    assert stats.median(samples) == 2.5
    # Linear interpolation between closest ranks: rank 0.75 and 2.25 of 1, 2, 3, 4.
    assert stats.quartiles(samples) == (1.75, 3.25)
    assert stats.interquartile_range(samples) == 1.5
    assert stats.median([7.0]) == 7.0 and stats.quartiles([7.0]) == (7.0, 7.0)
    assert stats.interquartile_range([7.0]) == 0.0


def test_percentiles_of_one_to_a_hundred() -> None:
    samples = [float(value) for value in range(1, 101)]
    assert stats.percentile(samples, 50) == 50.5
    assert stats.percentile(samples, 99) == 99.01
    assert stats.percentile(samples, 100) == 100.0
    assert stats.percentile([5.0, 1.0], 50) == 3.0


def test_results_are_python_floats() -> None:
    samples = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    values = [stats.median(samples), *stats.quartiles(samples), stats.percentile(samples, 99)]
    assert all(type(value) is float for value in values)


def test_equation_one_and_the_machine_ratios() -> None:
    # 0.5 s for 200 images is 0.25 s per 100 images.
    assert stats.seconds_per_100_images(0.5, 200) == 0.25
    # 2e8 FLOPs per image at 0.25 s per 100 images: 2e10 FLOPs in 0.25 s = 80 GFLOP/s.
    assert stats.achieved_gflops(200_000_000, 0.25) == 80.0
    assert stats.fraction_of_peak(80.0, 320.0) == 0.25
    # Twice the machine, half the seconds: the same normalised time.
    assert stats.normalised_time(0.25, 100.0) == stats.normalised_time(0.125, 200.0) == 25.0
