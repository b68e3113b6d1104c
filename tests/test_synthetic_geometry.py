"""The frames and random draws of a synthetic face (``fkdbench.data.synthetic_geometry``):
the pixel grids invert the maps that place the keypoints, poses stay in their ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fkdbench.data.schemes import KAGGLE15
from fkdbench.data.synthetic_geometry import (
    REFERENCE_SIZE,
    PoseRanges,
    build_grids,
    sample_face,
    sample_pose,
    sample_scene,
)


def _pose(seed: int, size: int = REFERENCE_SIZE, framing: float = 1.0):
    return sample_pose(np.random.default_rng(seed), size, PoseRanges(), framing)


@pytest.mark.parametrize("seed", range(5))
def test_grids_invert_the_posed_map(seed: int) -> None:
    """posed_to_image of every pixel's (p, q) is that pixel: the drawing and the
    keypoints use the same geometry."""
    pose = _pose(seed, size=64, framing=0.75)
    grids = build_grids(pose)
    posed = np.stack([grids.p.ravel(), grids.q.ravel()], axis=1)
    ys, xs = np.mgrid[0:64, 0:64]
    expected = np.stack([xs.ravel(), ys.ravel()], axis=1)
    np.testing.assert_allclose(pose.posed_to_image(posed), expected, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_unturn_inverts_the_yaw(seed: int) -> None:
    """A face point mapped to the image, read back from the grids at that spot, gives
    the point again (to the grid's resolution: bilinear reading)."""
    pose = _pose(seed)
    grids = build_grids(pose)
    face = sample_face(np.random.default_rng(seed))
    image_points = pose.face_to_image(face.keypoints_face[:10])  # the eyes and brows
    for (x, y), (u, v) in zip(image_points, face.keypoints_face[:10], strict=True):
        i, j = int(math.floor(y)), int(math.floor(x))
        fy, fx = y - i, x - j

        def at(grid: np.ndarray, i: int = i, j: int = j, fy: float = fy, fx: float = fx):
            top = grid[i, j] * (1 - fx) + grid[i, j + 1] * fx
            bottom = grid[i + 1, j] * (1 - fx) + grid[i + 1, j + 1] * fx
            return top * (1 - fy) + bottom * fy

        assert abs(at(grids.u) - u) < 0.05 and abs(at(grids.v) - v) < 1e-6


def test_window_covers_the_points_and_stays_in_the_image() -> None:
    pose = _pose(3)
    face = sample_face(np.random.default_rng(3))
    rows, columns = pose.window(face.keypoints_face, margin=2.0)
    image_points = pose.face_to_image(face.keypoints_face)
    assert 0 <= rows.start < rows.stop <= REFERENCE_SIZE
    assert 0 <= columns.start < columns.stop <= REFERENCE_SIZE
    inside = image_points[(image_points >= 0).all(axis=1) & (image_points < 96).all(axis=1)]
    assert (inside[:, 0] >= columns.start).all() and (inside[:, 0] < columns.stop).all()
    assert (inside[:, 1] >= rows.start).all() and (inside[:, 1] < rows.stop).all()


def test_poses_stay_in_their_clipped_ranges() -> None:
    rng = np.random.default_rng(0)
    wild = PoseRanges(roll_degrees=100.0, scale=1.0, shift_pixels=50.0, yaw_degrees=100.0)
    for _ in range(200):
        pose = sample_pose(rng, 96, wild)
        assert abs(pose.roll) <= math.radians(22) + 1e-12
        assert 0.84 <= pose.scale <= 1.16 and abs(pose.yaw) <= math.radians(32) + 1e-12
        assert 40.0 <= pose.cylinder_radius <= 46.0
        assert abs(pose.shift[1]) <= 7  # x is re-centred for the yaw after clipping


def test_frontal_pose_maps_face_units_to_pixels() -> None:
    still = PoseRanges(roll_degrees=0.0, scale=0.0, shift_pixels=0.0, yaw_degrees=0.0)
    pose = sample_pose(np.random.default_rng(1), 48, still)
    points = pose.face_to_image(np.array([[0.0, 0.0], [10.0, -20.0]]))
    np.testing.assert_allclose(points, [[23.5, 23.5], [28.5, 13.5]])


def test_face_and_scene_draws() -> None:
    face = sample_face(np.random.default_rng(2))
    kp = face.keypoints_face
    assert kp.shape == (KAGGLE15.num_keypoints, 2)
    left, right = KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")
    assert kp[left, 0] > 0 > kp[right, 0]  # the subject's left is +u
    assert kp[KAGGLE15.index("nose_tip"), 1] > kp[left, 1]  # the nose below the eyes
    assert 5.0 <= face.parameters["nose_depth"] <= 9.0
    one = sample_scene(np.random.default_rng(4), 1.0)
    two = sample_scene(np.random.default_rng(4), 1.0)
    assert one.head == two.head and 36.0 <= one.head.half_width <= 42.0
