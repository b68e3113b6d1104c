"""The synthetic face generator (``fkdbench.data.synthetic``): the faces of a seed, their
bytes whatever the workers, Kaggle's label pattern."""

from __future__ import annotations

import hashlib

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


# generate_faces(8, seed, size, workers=1) before the dense schemes existed: sha256 of the
# images' and the keypoints' bytes. Kaggle data sets and committed results depend on them.
KAGGLE15_CHECKSUMS = {
    (0, 96): (
        "160a034029afe31c8515c05652c62c4c6b73d7d2b3f30179acd24b7ac86a22b6",
        "3f1e321a8696cac0a762527abe7e0a380cd43ecedbc0fcfb19a04b173fa28751",
    ),
    (11, 64): (
        "33577d4d59acf3fc2b3303de1136fd88b5f4454c93582dd01a7bf0a7eddba0b9",
        "d17c9bd3d41c54a5edcb54252ebe1e007a6adc602490cba3ad01c06df5588ec5",
    ),
}
# The same for the dense schemes, taken before synthetic.py was split into modules
# (issue 12): a reordered drawing stage or random draw changes them.
DENSE_CHECKSUMS = {
    ("ibug68", 0, 96): (
        "377a7c029abd3bebdc306b9fe00cda229c34927745dfbb005d89a3224a6faeeb",
        "739b3835a2f820de53572a6ab14ea07ed48b7ea02a38d68e2d89ab7dfe9e5823",
    ),
    ("wflw98", 5, 64): (
        "d792925751b10b821d4ae39f7c05e072dc4eb51a4984107f4d9b9c8c984e2a31",
        "87ccd2c7d8236c89b0df4301453a2355d923f7c91eaf07c5a0d63cb59ce26d32",
    ),
}


def _digests(result: tuple[np.ndarray, np.ndarray]) -> tuple[str, str]:
    return tuple(hashlib.sha256(array.tobytes()).hexdigest() for array in result)


@pytest.mark.parametrize("seed, size", sorted(KAGGLE15_CHECKSUMS))
def test_kaggle15_output_is_unchanged(seed: int, size: int) -> None:
    for result in (
        synthetic.generate_faces(8, seed=seed, size=size, workers=1),
        synthetic.generate_faces(8, seed=seed, size=size, workers=1, scheme="kaggle15"),
    ):
        assert _digests(result) == KAGGLE15_CHECKSUMS[(seed, size)]


@pytest.mark.parametrize("scheme, seed, size", sorted(DENSE_CHECKSUMS))
def test_dense_output_is_unchanged(scheme: str, seed: int, size: int) -> None:
    result = synthetic.generate_faces(8, seed=seed, size=size, workers=1, scheme=scheme)
    assert _digests(result) == DENSE_CHECKSUMS[(scheme, seed, size)]


def test_dense_same_seed_same_bytes_whatever_the_workers() -> None:
    one = synthetic.generate_faces(70, seed=6, workers=1, scheme="ibug68")
    two = synthetic.generate_faces(70, seed=6, workers=2, scheme="ibug68")
    assert one[0].tobytes() == two[0].tobytes()
    assert one[1].tobytes() == two[1].tobytes()


@pytest.mark.parametrize("size", [96, 64])
@pytest.mark.parametrize("scheme", ["kaggle15", "ibug68", "wflw98"])
def test_points_inside_the_image(scheme: str, size: int) -> None:
    """Poses are redrawn until every point, the dense jaw included, lies inside the
    image with a margin."""
    _, keypoints = synthetic.generate_faces(30, seed=8, size=size, workers=1, scheme=scheme)
    margin = size / synthetic.REFERENCE_SIZE
    assert (keypoints >= margin).all() and (keypoints <= size - 1 - margin).all()


def test_render_face_is_one_face_of_generate_faces() -> None:
    images, keypoints = synthetic.generate_faces(3, seed=5, size=64, workers=1, first_index=2)
    image, points = synthetic.render_face(5, 3, size=64)
    np.testing.assert_array_equal(image, images[1])
    np.testing.assert_array_equal(points, keypoints[1])
