"""Every statistic the report derives from raw samples: intervals over seeds and over test
faces, the paired comparison of two models on the same faces, and rank correlation.

Bootstraps draw from a generator seeded with :data:`BOOTSTRAP_SEED`, so the same inputs give
the same intervals and the report stays byte-stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A value and its 95% interval (low/high None: no interval could be made)."""

    value: float
    low: float | None
    high: float | None


def t_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` and its 95% Student-t interval (no interval for n < 2)."""
    samples = np.asarray(values, dtype=float)
    mean = float(samples.mean())
    if len(samples) < 2:
        return Interval(mean, None, None)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(samples) - 1) * stats.sem(samples)
    return Interval(mean, mean - float(half), mean + float(half))


def pooled_rmse(squared_error_sum: np.ndarray, coordinates: np.ndarray) -> float:
    """RMSE over every coordinate of the given faces (what ``test_rmse`` is)."""
    return float(np.sqrt(np.sum(squared_error_sum) / np.sum(coordinates)))


def _resampled_faces(faces: int) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES rows of face indices drawn with replacement, always the same."""
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    return generator.integers(0, faces, size=(BOOTSTRAP_RESAMPLES, faces))


def _resampled_rmse(squared: np.ndarray, coordinates: np.ndarray, draws: np.ndarray) -> np.ndarray:
    return np.sqrt(squared[draws].sum(axis=1) / np.maximum(coordinates[draws].sum(axis=1), 1))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_rmse(squared_error_sum: Sequence[float], coordinates: Sequence[int]) -> Interval:
    """The test RMSE and its 95% percentile bootstrap interval over test faces."""
    squared = np.asarray(squared_error_sum, dtype=float)
    counts = np.asarray(coordinates, dtype=float)
    value = pooled_rmse(squared, counts)
    if len(squared) < 2:
        return Interval(value, None, None)
    low, high = _percentiles(_resampled_rmse(squared, counts, _resampled_faces(len(squared))))
    return Interval(value, low, high)


# Below this Wilcoxon p the per-face errors' typical (median) difference is significant.
WILCOXON_ALPHA = 0.05


@dataclass(frozen=True)
class PairedDifference:
    """RMSE(other) - RMSE(best) on the same faces: its 95% paired-bootstrap interval and
    the Wilcoxon signed-rank p of the per-face RMSEs (1.0 when every face ties)."""

    difference: Interval
    wilcoxon_p: float

    @property
    def real(self) -> bool:
        """The interval excludes 0."""
        low, high = self.difference.low, self.difference.high
        return low is not None and high is not None and (low > 0 or high < 0)

    @property
    def tests_disagree(self) -> bool:
        """The RMSE interval and the Wilcoxon test give different verdicts."""
        return self.real != (self.wilcoxon_p < WILCOXON_ALPHA)


def paired_difference(
    best: Sequence[float], other: Sequence[float], coordinates: Sequence[int]
) -> PairedDifference:
    """Compare two models' per-face squared-error sums over the same test faces."""
    best_sq = np.asarray(best, dtype=float)
    other_sq = np.asarray(other, dtype=float)
    counts = np.asarray(coordinates, dtype=float)
    value = pooled_rmse(other_sq, counts) - pooled_rmse(best_sq, counts)
    draws = _resampled_faces(len(counts))
    resampled = _resampled_rmse(other_sq, counts, draws) - _resampled_rmse(best_sq, counts, draws)
    low, high = _percentiles(resampled)
    return PairedDifference(Interval(value, low, high), _wilcoxon_p(best_sq, other_sq, counts))


def _wilcoxon_p(best: np.ndarray, other: np.ndarray, counts: np.ndarray) -> float:
    labelled = counts > 0
    best_rmse = np.sqrt(best[labelled] / counts[labelled])
    other_rmse = np.sqrt(other[labelled] / counts[labelled])
    if np.allclose(best_rmse, other_rmse, rtol=0.0, atol=1e-12):
        return 1.0  # identical errors: scipy refuses a test with no non-zero difference
    return float(stats.wilcoxon(other_rmse, best_rmse).pvalue)


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between two rankings of the same n rows, and its p (None: n < 3 or
    a ranking with every value equal)."""

    n: int
    rho: float | None
    p: float | None


def spearman(first: Sequence[float], second: Sequence[float]) -> RankCorrelation:
    """Spearman rank correlation of two paired sequences."""
    n = len(first)
    if n < 3 or len(set(first)) < 2 or len(set(second)) < 2:
        return RankCorrelation(n, None, None)
    result = stats.spearmanr(first, second)
    return RankCorrelation(n, float(result.statistic), float(result.pvalue))
