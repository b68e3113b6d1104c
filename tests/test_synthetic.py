"""The synthetic face generator: exact keypoints, determinism, Kaggle's label pattern."""

from __future__ import annotations

import numpy as np
import pytest

from fkdbench.data import synthetic
from fkdbench.data.schemes import KAGGLE15, KAGGLE15_SPARSE_KEYPOINTS
from fkdbench.metrics import mean_shape_rmse


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    return synthetic.generate_faces(300, seed=11, workers=1)


def test_shapes_and_types(faces) -> None:
    images, keypoints = faces
    assert images.shape == (300, 96, 96) and images.dtype == np.uint8
    assert keypoints.shape == (300, 15, 2) and keypoints.dtype == np.float32
    assert np.isfinite(keypoints).all()
    assert (keypoints >= 0).all() and (keypoints <= 95).all()


def test_same_seed_same_bytes_whatever_the_workers() -> None:
    one = synthetic.generate_faces(130, seed=2, workers=1)
    two = synthetic.generate_faces(130, seed=2, workers=2)
    assert one[0].tobytes() == two[0].tobytes()
    assert one[1].tobytes() == two[1].tobytes()
    other = synthetic.generate_faces(130, seed=3, workers=1)
    assert one[0].tobytes() != other[0].tobytes()


def test_offsets_give_new_faces() -> None:
    first = synthetic.generate_faces(4, seed=2, workers=1)[0]
    later = synthetic.generate_faces(4, seed=2, workers=1, first_index=4)[0]
    assert not any(np.array_equal(a, b) for a in first for b in later)


def test_kaggle_left_right_convention(faces) -> None:
    """The subject's left eye, brow end and mouth corner sit on the image's right."""
    _, keypoints = faces
    for left, right in (
        ("left_eye_center", "right_eye_center"),
        ("left_eyebrow_outer_end", "right_eyebrow_outer_end"),
        ("mouth_left_corner", "mouth_right_corner"),
    ):
        assert (
            keypoints[:, KAGGLE15.index(left), 0] > keypoints[:, KAGGLE15.index(right), 0]
        ).all()


def test_difficulty_like_kaggle(faces) -> None:
    """Mean-shape RMSE in the issue's 3-6 px band (real Kaggle: about 3.96 px)."""
    _, keypoints = faces
    score = mean_shape_rmse(keypoints[:200], keypoints[200:])
    assert 3.0 <= score <= 6.0


def test_images_vary(faces) -> None:
    images, _ = faces
    means = images.reshape(len(images), -1).mean(axis=1)
    assert means.std() > 10  # lighting, skin and background differ
    assert images.reshape(len(images), -1).std(axis=1).min() > 5  # never a blank image


def test_eye_centre_is_drawn_dark(faces) -> None:
    """Keypoints sit on the features they name: pupils are darker than the face around."""
    images, keypoints = faces
    darker = 0
    for image, points in zip(images, keypoints, strict=True):
        x, y = np.rint(points[0]).astype(int)
        pupil = image[y - 1 : y + 2, x - 1 : x + 2].astype(float).mean()
        ring = image[y - 6 : y + 7, x - 6 : x + 7].astype(float).mean()
        darker += pupil < ring
    assert darker / len(images) > 0.8


def test_missing_pattern_like_kaggle() -> None:
    kept = synthetic.kaggle_missing_mask(7049, seed=0)
    complete = kept.all(axis=1)
    assert abs(complete.mean() - 0.3036) < 0.03
    sparse = np.zeros(15, dtype=bool)
    sparse[[KAGGLE15.index(name) for name in KAGGLE15_SPARSE_KEYPOINTS]] = True
    incomplete = kept[~complete]
    exactly_sparse = (incomplete == sparse).all(axis=1).mean()
    assert exactly_sparse > 0.9
    # Each of the four sparse keypoints is present in nearly every row, as in Kaggle.
    assert kept[:, sparse].mean(axis=0).min() > 0.99
