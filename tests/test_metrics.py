"""fkdbench.metrics against hand-computed values: Kaggle's RMSE (overall, per keypoint, the
mean-shape baseline) and the face-alignment metrics (NME, FR, AUC, CED, per-subset NME)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fkdbench.data.schemes import IBUG68, KAGGLE15, WFLW_ATTRIBUTES
from fkdbench.metrics import (
    CED_STEPS,
    FAILURE_THRESHOLD,
    area_under_ced,
    cumulative_error_distribution,
    failure_rate,
    landmark_metrics,
    mean_shape,
    mean_shape_rmse,
    nme_per_subset,
    normalised_errors_per_sample,
    normalised_mean_error,
    per_keypoint_rmse,
    rmse,
)

NAN = np.nan
# Four samples: two good, one failure at FR@0.1, one without a normaliser.
ERRORS = np.array([0.02, 0.05, 0.12, NAN])


def faces_with_errors(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ibug68 truth with outer eye corners 100 px apart and predictions shifted so that
    sample i has normalised error errors[i]; a NaN error drops the left outer corner."""
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 200, (len(errors), IBUG68.num_keypoints, 2))
    a, b = IBUG68.normalising_pair
    truth[:, a] = (50.0, 80.0)
    truth[:, b] = (150.0, 80.0)
    predicted = truth.copy()
    predicted[..., 0] += 100.0 * np.nan_to_num(errors)[:, None]
    truth[np.isnan(errors), b] = NAN
    return predicted, truth


# -- Kaggle's RMSE -------------------------------------------------------------------------

# Two faces, three keypoints. Face 0 misses keypoint 0 by (3, 4) and hits keypoint 1; face 1
# misses keypoint 0 by (0, 2) and lacks keypoint 1 (its prediction must not count); nobody
# labels keypoint 2.
TRUTH = np.array([[(0.0, 0.0), (10.0, 0.0), (NAN, NAN)], [(0.0, 0.0), (NAN, NAN), (NAN, NAN)]])
PREDICTED = np.array([[(3.0, 4.0), (10.0, 0.0), (5.0, 5.0)], [(0.0, 2.0), (99.0, 99.0), (1, 1)]])


def test_rmse_is_over_labelled_coordinates_only() -> None:
    # Squared coordinate errors 9, 16 | 0, 0 | 0, 4: six labelled coordinates.
    assert rmse(PREDICTED, TRUTH) == pytest.approx(np.sqrt(29 / 6), rel=1e-12)
    assert rmse(TRUTH, TRUTH) == 0.0
    assert np.isnan(rmse(PREDICTED, np.full_like(TRUTH, NAN)))


def test_a_keypoint_with_one_coordinate_missing_is_unlabelled() -> None:
    truth = TRUTH.copy()
    truth[1, 0, 1] = NAN  # face 1 keypoint 0: x known, y not
    assert rmse(PREDICTED, truth) == pytest.approx(np.sqrt(25 / 4), rel=1e-12)


def test_per_keypoint_rmse_averages_each_keypoint_over_the_faces_that_label_it() -> None:
    result = per_keypoint_rmse(PREDICTED, TRUTH)
    assert result.shape == (3,)
    # Keypoint 0: per-face means of x^2 and y^2 are 12.5 and 2.
    assert result[0] == pytest.approx(np.sqrt((12.5 + 2) / 2), rel=1e-12)
    assert result[1] == 0.0
    assert np.isnan(result[2])


def test_mean_shape_and_its_rmse() -> None:
    train = np.array([[(0.0, 0.0), (NAN, NAN)], [(2.0, 4.0), (7.0, 7.0)]])
    np.testing.assert_array_equal(mean_shape(train), [(1.0, 2.0), (7.0, 7.0)])
    test = np.array([[(1.0, 2.0), (7.0, 7.0)], [(4.0, 6.0), (NAN, NAN)]])
    # Errors (0, 0), (0, 0), (3, 4): squared sum 25 over 6 labelled coordinates.
    assert mean_shape_rmse(train, test) == pytest.approx(np.sqrt(25 / 6), rel=1e-12)
    never = np.full((2, 1, 2), NAN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN, and no "Mean of empty slice" for the user
        assert np.isnan(mean_shape(never)).all()


def test_normalised_mean_error_divides_by_the_inter_pupil_distance() -> None:
    truth = np.full((3, KAGGLE15.num_keypoints, 2), NAN)
    predicted = np.zeros_like(truth)
    a, b = KAGGLE15.normalising_pair  # left and right eye centres
    # Face 0: eyes 20 px apart; errors 5 (a), 0 (b), 6 (keypoint 2): mean 11 / 3.
    truth[0, [a, b, 2]] = [(0.0, 0.0), (20.0, 0.0), (10.0, 10.0)]
    predicted[0, [a, b, 2]] = [(3.0, 4.0), (20.0, 0.0), (10.0, 16.0)]
    # Face 1: no right eye, so no normaliser. Face 2: both eyes on one pixel.
    truth[1, [a, 2]] = [(0.0, 0.0), (5.0, 5.0)]
    truth[2, [a, b]] = [(1.0, 1.0), (1.0, 1.0)]
    errors = normalised_errors_per_sample(predicted, truth, KAGGLE15)
    assert errors[0] == pytest.approx(11 / 60, rel=1e-12)
    assert np.isnan(errors[1]) and np.isnan(errors[2])
    assert normalised_mean_error(predicted, truth, KAGGLE15) == pytest.approx(11 / 60, rel=1e-12)
    assert np.isnan(normalised_mean_error(predicted[1:], truth[1:], KAGGLE15))


# -- face-alignment summary ----------------------------------------------------------------


def test_the_fields_conventions() -> None:
    assert FAILURE_THRESHOLD == 0.1  # FR@0.1 and AUC@0.1
    assert CED_STEPS == 100
    assert failure_rate(ERRORS) == failure_rate(ERRORS, FAILURE_THRESHOLD)
    assert area_under_ced(ERRORS) == area_under_ced(ERRORS, FAILURE_THRESHOLD)


def test_hand_computed_failure_rate_and_auc() -> None:
    assert failure_rate(ERRORS, 0.1) == pytest.approx(1 / 3)
    # (0.1 - 0.02) / 0.1, (0.1 - 0.05) / 0.1, and 0 for the error past the threshold.
    assert area_under_ced(ERRORS, 0.1) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert area_under_ced(ERRORS, 0.1) == pytest.approx(0.4333333333)


def test_failure_is_strictly_above_the_threshold() -> None:
    assert failure_rate(np.array([0.1, 0.1000001]), 0.1) == 0.5


def test_perfect_and_hopeless_models() -> None:
    assert area_under_ced(np.zeros(5)) == 1.0
    assert failure_rate(np.zeros(5)) == 0.0
    assert area_under_ced(np.full(5, 0.3)) == 0.0
    assert failure_rate(np.full(5, 0.3)) == 1.0


def test_no_usable_sample_gives_nan() -> None:
    nothing = np.array([NAN, NAN])
    assert np.isnan(failure_rate(nothing))
    assert np.isnan(area_under_ced(nothing))
    thresholds, fraction = cumulative_error_distribution(nothing, steps=10)
    assert thresholds.shape == (11,)
    assert np.isnan(fraction).all()


def test_threshold_must_be_positive() -> None:
    for function in (failure_rate, area_under_ced, cumulative_error_distribution):
        with pytest.raises(ValueError, match="threshold must be positive, got 0.0"):
            function(ERRORS, 0.0)
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        cumulative_error_distribution(ERRORS, 0.1, steps=0)


def test_ced_samples_the_step_function() -> None:
    thresholds, fraction = cumulative_error_distribution(ERRORS, threshold=0.1, steps=20)
    assert thresholds[0] == 0.0
    assert thresholds[-1] == pytest.approx(0.1)
    assert len(thresholds) == len(fraction) == 21
    assert np.all(np.diff(fraction) >= 0)
    at = dict(zip(np.round(thresholds, 6), fraction, strict=True))
    assert at[0.0] == 0.0
    assert at[0.02] == pytest.approx(1 / 3)  # an error equal to x counts at x
    assert at[0.05] == pytest.approx(2 / 3)
    assert at[0.1] == pytest.approx(2 / 3)  # 0.12 never arrives before the threshold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ced_trapezoid_matches_exact_auc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    errors = rng.gamma(2.0, 0.03, 500)  # some past the threshold
    errors[rng.random(500) < 0.1] = NAN
    thresholds, fraction = cumulative_error_distribution(errors, 0.1, steps=1000)
    area = np.sum((fraction[1:] + fraction[:-1]) / 2 * np.diff(thresholds)) / 0.1
    assert area == pytest.approx(area_under_ced(errors, 0.1), abs=1e-3)


def test_landmark_metrics_hand_computed() -> None:
    predicted, truth = faces_with_errors(ERRORS)
    np.testing.assert_allclose(normalised_errors_per_sample(predicted, truth, IBUG68), ERRORS)
    result = landmark_metrics(predicted, truth, IBUG68, threshold=0.1)
    assert set(result) == {"nme", "fr", "auc", "threshold", "normaliser"}
    assert result["nme"] == pytest.approx((0.02 + 0.05 + 0.12) / 3)
    assert result["fr"] == pytest.approx(1 / 3)
    assert result["auc"] == pytest.approx(0.4333333333)
    assert result["threshold"] == 0.1
    assert result["normaliser"] == "distance right_eye_0 - left_eye_3"


def test_landmark_metrics_nme_equals_normalised_mean_error_on_kaggle15() -> None:
    rng = np.random.default_rng(7)
    truth = rng.uniform(20, 76, (40, KAGGLE15.num_keypoints, 2))
    predicted = truth + rng.normal(0, 2, truth.shape)
    truth[::3, 5:] = NAN  # sparse rows, normaliser kept
    truth[1::7, 1] = NAN  # rows without a right eye centre: no normaliser
    result = landmark_metrics(predicted, truth, KAGGLE15)
    assert result["nme"] == normalised_mean_error(predicted, truth, KAGGLE15)
    assert result["normaliser"] == "distance left_eye_center - right_eye_center"
    errors = normalised_errors_per_sample(predicted, truth, KAGGLE15)
    assert result["fr"] == failure_rate(errors)
    assert result["auc"] == area_under_ced(errors)


def test_nme_per_subset() -> None:
    errors = np.array([0.02, 0.05, 0.12, NAN, 0.04])
    flags = np.zeros((5, len(WFLW_ATTRIBUTES)), dtype=bool)
    flags[[0, 2], 0] = True  # pose
    flags[3, 1] = True  # expression: only the sample without an error
    flags[[1, 3, 4], 3] = True  # make-up
    flags[:, 5] = True  # blur: every sample
    result = nme_per_subset(errors, flags, WFLW_ATTRIBUTES)
    assert list(result) == list(WFLW_ATTRIBUTES)
    assert result["pose"] == pytest.approx(0.07)
    assert np.isnan(result["expression"])
    assert np.isnan(result["illumination"])
    assert result["make-up"] == pytest.approx(0.045)
    assert np.isnan(result["occlusion"])
    assert result["blur"] == pytest.approx((0.02 + 0.05 + 0.12 + 0.04) / 4)


def test_nme_per_subset_checks_the_flag_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        nme_per_subset(ERRORS, np.ones((4, 5), dtype=bool), WFLW_ATTRIBUTES)
    with pytest.raises(ValueError, match="shape"):
        nme_per_subset(ERRORS, np.ones((3, 6), dtype=bool), WFLW_ATTRIBUTES)
