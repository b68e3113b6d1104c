"""Accuracy metrics on keypoints, all computed over labelled coordinates only.

Arrays are numpy, shape (N, K, 2) in pixels; ``NaN`` in the ground truth marks a
missing label and never counts. RMSE follows Kaggle's definition: the root of the mean
squared error over every labelled *coordinate* (x and y counted separately).
"""

from __future__ import annotations

import numpy as np

from fkdbench.data.schemes import KeypointScheme


def _labelled(truth: np.ndarray) -> np.ndarray:
    """bool (N, K): True where both coordinates of a keypoint are labelled."""
    return ~np.isnan(truth).any(axis=-1)


def rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error in pixels over labelled coordinates (Kaggle's metric)."""
    labelled = _labelled(truth)
    if not labelled.any():
        return float("nan")
    squared = (predicted - truth)[labelled] ** 2
    return float(np.sqrt(squared.mean()))


def per_keypoint_rmse(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RMSE per keypoint (K,), over the samples where that keypoint is labelled."""
    labelled = _labelled(truth)
    squared = ((predicted - truth) ** 2).mean(axis=-1)  # (N, K): mean of x and y
    squared = np.where(labelled, squared, 0.0)
    counts = labelled.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.sqrt(squared.sum(axis=0) / counts), np.nan)


def normalised_mean_error(
    predicted: np.ndarray, truth: np.ndarray, scheme: KeypointScheme
) -> float:
    """Mean point-to-point error divided by the distance between the scheme's two
    normalising keypoints (for Kaggle: inter-pupil distance), averaged over samples.

    Samples where either normalising keypoint is unlabelled are skipped.
    """
    per_sample = normalised_errors_per_sample(predicted, truth, scheme)
    per_sample = per_sample[~np.isnan(per_sample)]
    return float(per_sample.mean()) if per_sample.size else float("nan")


def normalised_errors_per_sample(
    predicted: np.ndarray, truth: np.ndarray, scheme: KeypointScheme
) -> np.ndarray:
    """(N,) normalised mean error per sample; NaN where it cannot be computed."""
    labelled = _labelled(truth)
    a, b = scheme.normalising_pair
    normaliser = np.linalg.norm(truth[:, a] - truth[:, b], axis=-1)
    distances = np.linalg.norm(predicted - truth, axis=-1)  # (N, K)
    distances = np.where(labelled, distances, 0.0)
    counts = labelled.sum(axis=1)
    usable = labelled[:, a] & labelled[:, b] & (counts > 0) & (normaliser > 0)
    per_sample = np.full(len(truth), np.nan)
    per_sample[usable] = distances[usable].sum(axis=1) / counts[usable] / normaliser[usable]
    return per_sample


def mean_shape(keypoints: np.ndarray) -> np.ndarray:
    """The mean position of each keypoint (K, 2) over the samples that label it."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(keypoints, axis=0)


def mean_shape_rmse(train_keypoints: np.ndarray, test_keypoints: np.ndarray) -> float:
    """RMSE of the trivial predictor that answers the training mean shape for every image.

    Every model must beat it; it measures how much the faces vary.
    """
    shape = mean_shape(train_keypoints)
    predicted = np.broadcast_to(shape, test_keypoints.shape)
    return rmse(predicted, test_keypoints)
