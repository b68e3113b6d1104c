"""Accuracy metrics on keypoints, all computed over labelled coordinates only.

Arrays are numpy, shape (N, K, 2) in pixels; ``NaN`` in the ground truth marks a
missing label and never counts. RMSE follows Kaggle's definition: the root of the mean
squared error over every labelled *coordinate* (x and y counted separately).

The face-alignment summary (300-W, WFLW papers) works on per-sample normalised errors
(:func:`normalised_errors_per_sample`): their mean (NME), the failure rate above a
threshold (FR@0.1) and the area under the cumulative error distribution up to that
threshold (AUC@0.1). Samples whose error is NaN (no usable normaliser) are left out of
all three, so they describe the same samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from fkdbench.data.schemes import KeypointScheme

# NME above which a face counts as a failure (FR@0.1, AUC@0.1: the field's convention).
FAILURE_THRESHOLD = 0.1
# Points of the CED that run records keep (steps from 0 to the threshold).
CED_STEPS = 100


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


def per_sample_squared_errors(
    predicted: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the sum of squared errors over its labelled coordinates (N,) float64,
    and how many coordinates those are (N,) int; :func:`rmse` is
    ``sqrt(sums.sum() / counts.sum())``. The raw material of bootstrap intervals and
    paired tests over test faces."""
    labelled = _labelled(truth)
    squared = np.where(labelled[..., None], (predicted - truth) ** 2, 0.0)
    return squared.sum(axis=(1, 2)).astype(np.float64), 2 * labelled.sum(axis=1)


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
    """The mean position of each keypoint (K, 2) over the samples that label it; NaN for a
    keypoint no sample labels."""
    with warnings.catch_warnings():
        # nanmean warns "Mean of empty slice" for such a keypoint; NaN says it already.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(keypoints, axis=0)


def mean_shape_rmse(train_keypoints: np.ndarray, test_keypoints: np.ndarray) -> float:
    """RMSE of the trivial predictor that answers the training mean shape for every image.

    Every model must beat it; it measures how much the faces vary.
    """
    shape = mean_shape(train_keypoints)
    predicted = np.broadcast_to(shape, test_keypoints.shape)
    return rmse(predicted, test_keypoints)


def _known(errors_per_sample: np.ndarray) -> np.ndarray:
    """The per-sample errors as a flat array, NaN (not computable) samples removed."""
    errors = np.asarray(errors_per_sample, dtype=np.float64).ravel()
    return errors[~np.isnan(errors)]


def _check_threshold(threshold: float) -> None:
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")


def failure_rate(errors_per_sample: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> float:
    """Fraction of samples whose normalised error exceeds ``threshold`` (FR@0.1).

    NaN samples are ignored; NaN when no sample is left.
    """
    _check_threshold(threshold)
    errors = _known(errors_per_sample)
    return float((errors > threshold).mean()) if errors.size else float("nan")


def cumulative_error_distribution(
    errors_per_sample: np.ndarray, threshold: float = FAILURE_THRESHOLD, steps: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """The CED sampled on ``steps + 1`` evenly spaced errors from 0 to ``threshold``.

    Returns ``(thresholds, fraction)``: ``fraction[i]`` is the share of samples whose
    error is at most ``thresholds[i]`` (NaN samples ignored; all NaN when none is left).
    Its trapezoid integral divided by ``threshold`` approaches :func:`area_under_ced`,
    within ``0.5 / steps``.
    """
    _check_threshold(threshold)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    thresholds = np.linspace(0.0, threshold, steps + 1)
    errors = np.sort(_known(errors_per_sample))
    if not errors.size:
        return thresholds, np.full(thresholds.shape, np.nan)
    fraction = np.searchsorted(errors, thresholds, side="right") / errors.size
    return thresholds, fraction


def area_under_ced(errors_per_sample: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (AUC@0.1).

    1 for a perfect model, 0 when every error reaches the threshold. Exact: the CED is
    a step function, and the area it leaves is, sample by sample,
    ``max(0, threshold - error) / threshold``, averaged here. NaN samples are ignored;
    NaN when no sample is left.
    """
    _check_threshold(threshold)
    errors = _known(errors_per_sample)
    if not errors.size:
        return float("nan")
    clipped = np.clip(errors, 0.0, threshold)
    return float(((threshold - clipped) / threshold).mean())


def landmark_metrics(
    predicted: np.ndarray,
    truth: np.ndarray,
    scheme: KeypointScheme,
    threshold: float = FAILURE_THRESHOLD,
) -> dict[str, float | str]:
    """NME, FR and AUC at ``threshold`` over the same samples, as face-alignment papers
    report them, with the normaliser spelled out::

        {"nme": ..., "fr": ..., "auc": ..., "threshold": 0.1,
         "normaliser": "distance right_eye_0 - left_eye_3"}
    """
    errors = normalised_errors_per_sample(predicted, truth, scheme)
    known = _known(errors)
    a, b = scheme.normalising_pair
    return {
        "nme": float(known.mean()) if known.size else float("nan"),
        "fr": failure_rate(errors, threshold),
        "auc": area_under_ced(errors, threshold),
        "threshold": float(threshold),
        "normaliser": f"distance {scheme.keypoints[a]} - {scheme.keypoints[b]}",
    }


def nme_per_subset(
    errors_per_sample: np.ndarray, flags: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """Mean normalised error over the samples in each subset, e.g. WFLW's six attribute
    subsets (:data:`fkdbench.data.schemes.WFLW_ATTRIBUTES`).

    ``flags`` is bool (N, F), column ``j`` marking the members of subset ``names[j]``.
    NaN samples are ignored; a subset with no sample left is NaN.
    """
    errors = np.asarray(errors_per_sample, dtype=np.float64)
    flags = np.asarray(flags, dtype=bool)
    if flags.shape != (len(errors), len(names)):
        raise ValueError(
            f"flags must have shape (samples, subsets) = ({len(errors)}, {len(names)}), "
            f"got {flags.shape}"
        )
    known = ~np.isnan(errors)
    result = {}
    for column, name in enumerate(names):
        members = flags[:, column] & known
        result[name] = float(errors[members].mean()) if members.any() else float("nan")
    return result
