"""metrics.json's per-face test errors: the raw material of the report's intervals."""

from __future__ import annotations

import math

import numpy as np

from fkdbench.data.splits import SplitArrays
from fkdbench.metrics import per_sample_squared_errors, rmse
from fkdbench.train.scoring import per_face_errors


def _split(keypoints: np.ndarray) -> SplitArrays:
    images = np.zeros((len(keypoints), 4, 4), np.uint8)
    return SplitArrays(images=images, keypoints=keypoints, ids=np.arange(len(keypoints)))


def test_per_face_sums_count_only_labelled_coordinates() -> None:
    truth = np.array([[[1.0, 1.0], [2.0, 2.0]], [[1.0, 1.0], [np.nan, np.nan]], [[np.nan] * 2] * 2])
    predicted = np.array([[[2.0, 1.0], [2.0, 4.0]], [[1.0, 4.0], [9.0, 9.0]], [[0.0] * 2] * 2])
    sums, counts = per_sample_squared_errors(predicted, truth)
    assert sums.tolist() == [1.0 + 4.0, 9.0, 0.0] and counts.tolist() == [4, 2, 0]
    record = per_face_errors(predicted, _split(truth))
    assert record == {"squared_error_sum": [5.0, 9.0, 0.0], "coordinates": [4, 2, 0]}
    assert math.sqrt(14.0 / 6) == rmse(predicted, truth)


def test_rounding_keeps_the_rmse_to_a_millionth() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 96, size=(50, 15, 2))
    truth[::3, 4:] = np.nan
    predicted = truth + rng.normal(0, 1.7, size=truth.shape)
    record = per_face_errors(predicted, _split(truth))
    pooled = math.sqrt(sum(record["squared_error_sum"]) / sum(record["coordinates"]))
    assert abs(pooled / rmse(predicted, truth) - 1) < 1e-6
    exact, _ = per_sample_squared_errors(predicted, truth)
    assert record["squared_error_sum"] != exact.tolist(), "rounded, to keep the file small"
