"""Keypoint schemes: names, flip pairs and drawing runs agree with each other, with the
published mirror tables, and with the geometry of a drawn symmetric face."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fkdbench.data.schemes import (
    IBUG68,
    KAGGLE15,
    SCHEMES,
    WFLW98,
    KeypointScheme,
    get_scheme,
)

ALL = pytest.mark.parametrize("scheme", list(SCHEMES.values()), ids=list(SCHEMES))
WIDTH = 200
CENTRE = (WIDTH - 1) / 2  # a flip maps x to WIDTH - 1 - x, so this column stays put


# A symmetric face per scheme, drawn from the layout each scheme documents (which point
# is an outer corner, which way an outline runs), never from its flip pairs. Offsets are
# in pixels from the face's midline, u to the image's right, v down.


def _row(u0: float, u1: float, v: float, n: int) -> np.ndarray:
    return np.stack([np.linspace(u0, u1, n), np.full(n, float(v))], axis=1)


def _ring(cu: float, cv: float, ru: float, rv: float, n: int) -> np.ndarray:
    """n points round an ellipse, clockwise on screen, from its image-left end."""
    t = 2 * np.pi * np.arange(n) / n
    return np.stack([cu - ru * np.cos(t), cv - rv * np.sin(t)], axis=1)


def _jaw(n: int) -> np.ndarray:
    """n points from the image-left ear down round the chin to the image-right ear."""
    t = np.linspace(0, np.pi, n)
    return np.stack([-70 * np.cos(t), 20 + 70 * np.sin(t)], axis=1)


def _lower_nose(n: int) -> np.ndarray:
    u = np.linspace(-12, 12, n)
    return np.stack([u, 30 + 4 * (1 - (u / 12) ** 2)], axis=1)


def _ibug68_face() -> np.ndarray:
    return np.concatenate(
        [
            _jaw(17),
            _row(-50, -10, -25, 5),  # right brow, outer end to inner end
            _row(10, 50, -25, 5),  # left brow, inner end to outer end
            _row(0, 0, 0, 4) + [[0, 0], [0, 8], [0, 16], [0, 24]],  # bridge, top down
            _lower_nose(5),
            _ring(-30, -5, 12, 5, 6),  # right eye from its outer corner
            _ring(30, -5, 12, 5, 6),  # left eye from its inner corner
            _ring(0, 55, 25, 10, 12),  # outer lips from the image-left corner
            _ring(0, 55, 15, 4, 8),  # inner lips
        ]
    )


def _wflw98_face() -> np.ndarray:
    return np.concatenate(
        [
            _jaw(33),
            _row(-50, -10, -25, 5),  # right brow: upper edge outer to inner ...
            _row(-15, -45, -20, 4),  # ... lower edge back from inner to outer
            _row(10, 50, -25, 5),  # left brow: upper edge inner to outer ...
            _row(45, 15, -20, 4),  # ... lower edge back from outer to inner
            _row(0, 0, 0, 4) + [[0, 0], [0, 8], [0, 16], [0, 24]],
            _lower_nose(5),
            _ring(-30, -5, 12, 5, 8),  # right eye from its outer corner
            _ring(30, -5, 12, 5, 8),  # left eye from its inner corner
            _ring(0, 55, 25, 10, 12),
            _ring(0, 55, 15, 4, 8),
            [[-30, -5], [30, -5]],  # right pupil, left pupil
        ]
    )


def _kaggle15_face() -> np.ndarray:
    by_name = {
        "left_eye_center": (30, -5),
        "right_eye_center": (-30, -5),
        "left_eye_inner_corner": (18, -5),
        "left_eye_outer_corner": (42, -5),
        "right_eye_inner_corner": (-18, -5),
        "right_eye_outer_corner": (-42, -5),
        "left_eyebrow_inner_end": (10, -25),
        "left_eyebrow_outer_end": (50, -25),
        "right_eyebrow_inner_end": (-10, -25),
        "right_eyebrow_outer_end": (-50, -25),
        "nose_tip": (0, 30),
        "mouth_left_corner": (25, 55),
        "mouth_right_corner": (-25, 55),
        "mouth_center_top_lip": (0, 45),
        "mouth_center_bottom_lip": (0, 65),
    }
    return np.array([by_name[name] for name in KAGGLE15.keypoints], dtype=np.float64)


FACES = {"kaggle15": _kaggle15_face, "ibug68": _ibug68_face, "wflw98": _wflw98_face}


def symmetric_face(scheme: KeypointScheme) -> np.ndarray:
    """(K, 2) image coordinates of a frontal face centred in a WIDTH-wide image."""
    face = np.asarray(FACES[scheme.name](), dtype=np.float64) + [CENTRE, 100.0]
    assert face.shape == (scheme.num_keypoints, 2)
    return face


def mirror(points: np.ndarray, scheme: KeypointScheme) -> np.ndarray:
    """Flip the image horizontally and relabel, as augmentation does."""
    flipped = points.copy()
    flipped[..., 0] = WIDTH - 1 - flipped[..., 0]
    return flipped[..., scheme.flip_permutation(), :]


def test_every_scheme_has_a_test_face() -> None:
    assert set(FACES) == set(SCHEMES)


@ALL
def test_names_are_unique_and_outputs_are_two_per_keypoint(scheme: KeypointScheme) -> None:
    assert len(set(scheme.keypoints)) == scheme.num_keypoints
    assert scheme.num_outputs == 2 * scheme.num_keypoints
    assert len(scheme.coordinate_columns()) == scheme.num_outputs
    scheme.validate()


def test_sizes() -> None:
    assert (KAGGLE15.num_keypoints, IBUG68.num_keypoints, WFLW98.num_keypoints) == (15, 68, 98)


@ALL
def test_flip_pairs_are_disjoint_and_the_permutation_an_involution(
    scheme: KeypointScheme,
) -> None:
    paired = [i for pair in scheme.flip_pairs for i in pair]
    assert len(paired) == len(set(paired))
    assert all(a != b for a, b in scheme.flip_pairs)
    permutation = scheme.flip_permutation()
    assert sorted(permutation) == list(range(scheme.num_keypoints))
    np.testing.assert_array_equal(permutation[permutation], np.arange(scheme.num_keypoints))


@ALL
def test_flipping_a_symmetric_face_gives_it_back(scheme: KeypointScheme) -> None:
    face = symmetric_face(scheme)
    np.testing.assert_allclose(mirror(face, scheme), face, atol=1e-9)


@ALL
def test_flipping_twice_is_the_identity(scheme: KeypointScheme) -> None:
    points = np.random.default_rng(0).uniform(0, WIDTH - 1, (3, scheme.num_keypoints, 2))
    np.testing.assert_allclose(mirror(mirror(points, scheme), scheme), points)


@ALL
def test_names_say_the_subjects_side(scheme: KeypointScheme) -> None:
    """The subject's right is on the image's left (smaller x), in every scheme."""
    face = symmetric_face(scheme)
    for i, name in enumerate(scheme.keypoints):
        if re.search(r"(^|_)right(_|$)", name):
            assert face[i, 0] < CENTRE, name
        elif re.search(r"(^|_)left(_|$)", name):
            assert face[i, 0] > CENTRE, name


@pytest.mark.parametrize(
    ("scheme", "pair", "names"),
    [
        (IBUG68, (36, 45), ("right_eye_0", "left_eye_3")),
        (WFLW98, (60, 72), ("right_eye_0", "left_eye_4")),
        (KAGGLE15, (0, 1), ("left_eye_center", "right_eye_center")),
    ],
    ids=["ibug68", "wflw98", "kaggle15"],
)
def test_normalising_pairs(scheme: KeypointScheme, pair: tuple, names: tuple) -> None:
    assert scheme.normalising_pair == pair
    assert tuple(scheme.keypoints[i] for i in pair) == names


@pytest.mark.parametrize("scheme", [IBUG68, WFLW98], ids=["ibug68", "wflw98"])
def test_normaliser_is_the_outer_eye_corners(scheme: KeypointScheme) -> None:
    """In the drawn face the normalising points are the outermost eye points."""
    face = symmetric_face(scheme)
    eyes = list(scheme.groups["eyes"])
    a, b = scheme.normalising_pair
    assert face[a, 0] == face[eyes, 0].min()
    assert face[b, 0] == face[eyes, 0].max()


# Published mirror tables, transcribed independently of fkdbench/data/schemes.py:
# HRNet-Facial-Landmark-Detection, lib/utils/transforms.py, MATCHED_PARTS (300W is
# 1-based there, WFLW 0-based); mmpose configs/_base_/datasets/{300w,wflw}.py agree.
HRNET_300W_1BASED = (
    [1, 17], [2, 16], [3, 15], [4, 14], [5, 13], [6, 12], [7, 11], [8, 10],
    [18, 27], [19, 26], [20, 25], [21, 24], [22, 23],
    [32, 36], [33, 35],
    [37, 46], [38, 45], [39, 44], [40, 43], [41, 48], [42, 47],
    [49, 55], [50, 54], [51, 53], [62, 64], [61, 65], [68, 66], [59, 57], [60, 56],
)  # fmt: skip
HRNET_WFLW = (
    [0, 32], [1, 31], [2, 30], [3, 29], [4, 28], [5, 27], [6, 26], [7, 25], [8, 24],
    [9, 23], [10, 22], [11, 21], [12, 20], [13, 19], [14, 18], [15, 17],
    [33, 46], [34, 45], [35, 44], [36, 43], [37, 42], [38, 50], [39, 49], [40, 48], [41, 47],
    [60, 72], [61, 71], [62, 70], [63, 69], [64, 68], [65, 75], [66, 74], [67, 73],
    [55, 59], [56, 58],
    [76, 82], [77, 81], [78, 80], [87, 83], [86, 84],
    [88, 92], [89, 91], [95, 93], [96, 97],
)  # fmt: skip


def _pair_set(pairs) -> set[frozenset[int]]:
    return {frozenset(pair) for pair in pairs}


def test_ibug68_pairs_match_the_published_table() -> None:
    published = [(a - 1, b - 1) for a, b in HRNET_300W_1BASED]
    assert _pair_set(IBUG68.flip_pairs) == _pair_set(published)


def test_wflw98_pairs_match_the_published_table() -> None:
    assert _pair_set(WFLW98.flip_pairs) == _pair_set(HRNET_WFLW)


def test_kaggle15_pairs_still_come_from_names() -> None:
    for a, b in KAGGLE15.flip_pairs:
        name_a, name_b = KAGGLE15.keypoints[a], KAGGLE15.keypoints[b]
        assert "left" in name_a
        assert name_b == name_a.replace("left", "right")
    assert len(KAGGLE15.flip_pairs) == 6


@ALL
def test_groups_cover_every_keypoint(scheme: KeypointScheme) -> None:
    covered = {i for indices in scheme.groups.values() for i in indices}
    assert covered == set(range(scheme.num_keypoints))


def test_group_names() -> None:
    assert set(IBUG68.groups) == {"jaw", "brows", "nose", "eyes", "mouth"}
    assert set(WFLW98.groups) == {"contour", "brows", "nose", "eyes", "mouth", "pupils"}


def _edges(scheme: KeypointScheme) -> set[frozenset[int]]:
    return {frozenset(ab) for line in scheme.polylines for ab in zip(line, line[1:], strict=False)}


@pytest.mark.parametrize("scheme", [IBUG68, WFLW98], ids=["ibug68", "wflw98"])
def test_polylines_draw_every_point_but_the_pupils_once(scheme: KeypointScheme) -> None:
    drawn = []
    for line in scheme.polylines:
        closed = line[0] == line[-1]
        drawn.extend(line[:-1] if closed else line)
    pupils = set(scheme.groups.get("pupils", ()))
    assert len(drawn) == len(set(drawn))
    assert set(drawn) == set(range(scheme.num_keypoints)) - pupils
    assert len(scheme.polylines) == 9


@pytest.mark.parametrize("scheme", [IBUG68, WFLW98], ids=["ibug68", "wflw98"])
def test_polylines_are_mirror_symmetric(scheme: KeypointScheme) -> None:
    permutation = scheme.flip_permutation()
    edges = _edges(scheme)
    assert {frozenset(int(permutation[i]) for i in edge) for edge in edges} == edges


@pytest.mark.parametrize("scheme", [IBUG68, WFLW98], ids=["ibug68", "wflw98"])
def test_polyline_edges_are_short_on_the_drawn_face(scheme: KeypointScheme) -> None:
    """Neighbours in a run are neighbours on the face: no line jumps across it."""
    face = symmetric_face(scheme)
    for a, b in map(tuple, _edges(scheme)):
        assert np.linalg.norm(face[a] - face[b]) < 25, (a, b)


def test_get_scheme_finds_the_new_schemes() -> None:
    assert get_scheme("ibug68") is IBUG68
    assert get_scheme("wflw98") is WFLW98
    assert get_scheme("kaggle15") is KAGGLE15


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown keypoint scheme") as error:
        get_scheme("aflw19")
    for name in ("ibug68", "kaggle15", "wflw98"):
        assert name in str(error.value)


def test_validate_reports_every_problem() -> None:
    bad = KeypointScheme(
        name="bad",
        keypoints=("a", "a", "b"),
        flip_pairs=((0, 1), (1, 2), (2, 2)),
        normalising_pair=(0, 0),
        groups={"all": (0, 1, 5)},
    )
    with pytest.raises(ValueError) as error:
        bad.validate()
    message = str(error.value)
    expected = [
        "duplicate keypoint names ['a']",
        "keypoints [1, 2] are in more than one flip pair",
        "paired with itself",
        "normalising pair (0, 0)",
        "group 'all'",
    ]
    for part in expected:
        assert part in message
