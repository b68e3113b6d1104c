"""Predictions in pixels, and the test scores of a trained model (metrics.json's scores)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fkdbench.data.schemes import WFLW_ATTRIBUTES, KeypointScheme
from fkdbench.data.splits import SplitArrays
from fkdbench.metrics import (
    CED_STEPS,
    FAILURE_THRESHOLD,
    cumulative_error_distribution,
    landmark_metrics,
    mean_shape_rmse,
    nme_per_subset,
    normalised_errors_per_sample,
    normalised_mean_error,
    per_keypoint_rmse,
    per_sample_squared_errors,
    rmse,
)
from fkdbench.models import denormalise_keypoints
from fkdbench.runs import finite_or_none
from fkdbench.train.dataset import image_tensor

# Images per forward pass when predicting validation and test splits (no gradients).
EVAL_BATCH_SIZE = 256


@torch.no_grad()
def predict_pixels(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Predict keypoints in pixels, float64 (N, K, 2), for uint8 images (N, H, W)."""
    model.eval()
    image_size = images.shape[-1]
    predictions = []
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        batch = image_tensor(images[start : start + EVAL_BATCH_SIZE]).to(device)
        coords = model(batch.float().div_(255.0)).reshape(len(batch), -1, 2)
        predictions.append(denormalise_keypoints(coords, image_size).double().cpu().numpy())
    return np.concatenate(predictions)


def score_test_split(
    predicted: np.ndarray, test: SplitArrays, train: SplitArrays, scheme: KeypointScheme
) -> dict[str, Any]:
    """The scores of metrics.json (JSON-ready): RMSE overall and per keypoint, NME, the
    landmark scores, the mean-shape baseline (``train``'s mean shape) on the same rows, and
    the per-face errors (:func:`per_face_errors`)."""
    a, b = scheme.normalising_pair
    per_keypoint = per_keypoint_rmse(predicted, test.keypoints)
    return {
        "test_rmse": finite_or_none(rmse(predicted, test.keypoints)),
        "test_per_keypoint_rmse": {
            keypoint: finite_or_none(value)
            for keypoint, value in zip(scheme.keypoints, per_keypoint, strict=True)
        },
        "test_nme": finite_or_none(normalised_mean_error(predicted, test.keypoints, scheme)),
        "nme_normaliser": f"distance {scheme.keypoints[a]} - {scheme.keypoints[b]}",
        **landmark_scores(predicted, test, scheme),
        "mean_shape_rmse": finite_or_none(mean_shape_rmse(train.keypoints, test.keypoints)),
        "test_per_face": per_face_errors(predicted, test),
    }


# Significant digits of the per-face squared error sums: their total gives test_rmse to
# about 1e-6 relative, and the file stays small.
PER_FACE_DIGITS = 6


def per_face_errors(predicted: np.ndarray, test: SplitArrays) -> dict[str, list[Any]]:
    """metrics.json's ``test_per_face``: for each test face, in split order, the sum of
    squared pixel errors over its labelled coordinates and how many those are, so that
    ``sqrt(sum(squared_error_sum) / sum(coordinates)) == test_rmse`` and the report can
    resample faces (bootstrap intervals, paired tests) from the raw errors."""
    sums, counts = per_sample_squared_errors(predicted, test.keypoints)
    return {
        "squared_error_sum": [float(f"{value:.{PER_FACE_DIGITS}g}") for value in sums],
        "coordinates": [int(count) for count in counts],
    }


def landmark_scores(
    predicted: np.ndarray, split: SplitArrays, scheme: KeypointScheme
) -> dict[str, Any]:
    """FR@0.1 and AUC@0.1 of the NME, and NME per subset where the data has subsets."""
    scores = landmark_metrics(predicted, split.keypoints, scheme, FAILURE_THRESHOLD)
    errors = normalised_errors_per_sample(predicted, split.keypoints, scheme)
    _, fraction = cumulative_error_distribution(errors, FAILURE_THRESHOLD, CED_STEPS)
    record: dict[str, Any] = {
        "test_fr": finite_or_none(scores["fr"]),
        "test_auc": finite_or_none(scores["auc"]),
        "failure_threshold": FAILURE_THRESHOLD,
        # The CED at CED_STEPS + 1 even NMEs from 0 to the threshold: the report's figure.
        "test_ced": [finite_or_none(round(float(value), 6)) for value in fraction],
    }
    if split.attributes is not None:
        subsets = nme_per_subset(errors, split.attributes, WFLW_ATTRIBUTES)
        record["test_nme_per_subset"] = {
            name: finite_or_none(value) for name, value in subsets.items()
        }
    return record
