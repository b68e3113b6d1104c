"""Drawing a synthetic face (``fkdbench.data.synthetic_render``): the shapes, and the
stages drawing where the geometry says."""

from __future__ import annotations

import copy

import numpy as np

from fkdbench.data import synthetic_render as render_module
from fkdbench.data.synthetic_geometry import (
    PoseRanges,
    build_grids,
    sample_face,
    sample_pose,
    sample_scene,
)


def _posed(seed: int, size: int = 96):
    rng = np.random.default_rng(seed)
    face = sample_face(rng)
    pose = sample_pose(rng, size, PoseRanges())
    return rng, face, build_grids(pose), sample_scene(rng, pose.k)


def test_circle_distance_is_exact() -> None:
    x, y = np.array([3.0, 0.0, 1.0]), np.array([4.0, 0.0, 0.0])
    np.testing.assert_allclose(render_module._ellipse_distance(x, y, 0, 0, 2, 2), [3, -2, -1])


def test_polyline_distance() -> None:
    x, y = np.array([[0.0, 5.0, 12.0]]), np.array([[3.0, -2.0, 0.0]])
    line = np.array([[0.0, 0.0], [10.0, 0.0]])
    np.testing.assert_allclose(render_module._polyline_distance(x, y, line), [[3, 2, 2]])


def test_soft_edge_coverage() -> None:
    coverage = render_module._soft(np.array([-1.0, 0.0, 1.0]), edge=1.0)
    np.testing.assert_allclose(coverage, [1.0, 0.5, 0.0])


def test_render_is_a_function_of_the_stream() -> None:
    rng, face, grids, scene = _posed(7)
    again = copy.deepcopy(rng)
    image = render_module.render(rng, grids, face, scene)
    assert image.dtype == np.uint8 and image.shape == (96, 96)
    np.testing.assert_array_equal(render_module.render(again, grids, face, scene), image)


def test_pupils_are_drawn_at_the_eye_centres() -> None:
    """Before the camera stage, the eye centre keypoints sit on dark pupils (unless the
    eye is nearly shut: the pupil shows only inside the opening)."""
    dark = []
    for seed in range(12):
        rng, face, grids, scene = _posed(seed)
        image = render_module._background(scene, 96)
        image, head = render_module._draw_head(image, rng, grids, scene)
        image = np.array(image)
        render_module._draw_eyes(image, rng, grids, face, head)
        centres = grids.pose.face_to_image(face.keypoints_face[:2])  # left and right eye
        for x, y in np.rint(centres).astype(int):
            ring = image[y - 6 : y + 7, x - 6 : x + 7].mean()
            dark.append(image[y - 1 : y + 2, x - 1 : x + 2].min() < 0.5 * ring)
    assert np.mean(dark) > 0.8


def test_occluders_only_change_the_image_when_drawn() -> None:
    _, face, grids, _ = _posed(2)
    image = np.full((96, 96), 0.5)
    skin = np.full((96, 96), 0.5)
    kp = face.keypoints_face
    glasses = render_module._glasses(image, np.random.default_rng(0), grids, kp)
    eye = np.rint(grids.pose.face_to_image(kp[:1] + [0.0, -6.5])[0]).astype(int)
    assert not np.allclose(glasses, image) and glasses.shape == image.shape
    assert glasses[eye[1] - 2 : eye[1] + 3, eye[0] - 2 : eye[0] + 3].std() > 0  # a rim
    hand = render_module._hand(image, np.random.default_rng(0), grids, skin)
    assert not np.allclose(hand, image)
    # A draw of 0.9 or more (76% of faces) leaves the face unoccluded.
    unchanged = [
        np.array_equal(
            render_module.occlude(image, np.random.default_rng(s), grids, kp, skin), image
        )
        for s in range(40)
    ]
    assert 0.5 < np.mean(unchanged) < 0.95


def test_develop_quantises_to_8_bit() -> None:
    _, _, grids, _ = _posed(1)
    developed = render_module._develop(np.full((96, 96), 0.5), np.random.default_rng(0), grids.pose)
    assert developed.dtype == np.uint8 and 60 < developed.mean() < 200
