"""Statistics of a bench record, computed from its raw samples: pure functions, no I/O.

The record stores samples (pyperf's habit); every number a table or the gate reads is
derived here, so one definition serves the report, the gate and the command line. The
percentiles are NumPy's default (linear interpolation between closest ranks), the method
format-1 records were written with, so their stored summaries recompute bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def seconds_per_100_images(elapsed_seconds: float, images: int) -> float:
    """The paper's Equation 1: the time of one pass over ``images`` images, per 100."""
    return elapsed_seconds / images * 100


def median(samples: Sequence[float]) -> float:
    return float(np.median(samples))


def quartiles(samples: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles (25th and 75th percentiles)."""
    q1, q3 = np.percentile(samples, [25, 75])
    return float(q1), float(q3)


def interquartile_range(samples: Sequence[float]) -> float:
    q1, q3 = quartiles(samples)
    return q3 - q1


def spread(samples: Sequence[float]) -> float:
    """(max - min) / median: how far apart the repeats are, relative to the figure reported."""
    return (max(samples) - min(samples)) / median(samples)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``."""
    return float(np.percentile(samples, q))


def achieved_gflops(flops_per_image: int, seconds_per_100: float) -> float:
    """The arithmetic rate a time per 100 images means for a model of this work."""
    return flops_per_image * 100 / seconds_per_100 / 1e9


def fraction_of_peak(achieved: float, peak_gflops: float) -> float:
    return achieved / peak_gflops


def normalised_time(seconds_per_100: float, peak_gflops: float) -> float:
    """Seconds per 100 images times the machine's peak: the GFLOP of peak-rate work the
    same time buys, which stays put between machines of different speed (the gate's
    measure)."""
    return seconds_per_100 * peak_gflops
