"""The dense 68- and 98-point landmarks of the synthetic faces
(``fkdbench.data.synthetic_dense``): the published order and flip pairs, the Kaggle
points among them, the layouts' sizes."""

from __future__ import annotations

import numpy as np
import pytest

from fkdbench.data import synthetic, synthetic_dense
from fkdbench.data.schemes import KAGGLE15, SCHEMES, KeypointScheme
from fkdbench.data.synthetic_geometry import PoseRanges

# Horizontal-flip pairs written out from the published 300-W and WFLW diagrams, not from
# the generator, so that the mirror test checks the generator's order independently.
IBUG68_FLIP_PAIRS = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # lower nose
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    + [(60, 64), (61, 63), (65, 67)]  # inner lips
)
WFLW98_FLIP_PAIRS = (
    [(i, 32 - i) for i in range(16)]  # contour
    + [(33 + i, 46 - i) for i in range(5)]  # brows, upper edges
    + [(38 + i, 50 - i) for i in range(4)]  # brows, lower edges
    + [(55, 59), (56, 58)]  # lower nose
    + [(60 + i, 72 - i) for i in range(5)]  # eyes: corners and upper lids
    + [(65 + i, 75 - i) for i in range(3)]  # lower lids
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]  # outer lips
    + [(88, 92), (89, 91), (93, 95)]  # inner lips
    + [(96, 97)]  # pupils
)
FLIP_PAIRS = {"ibug68": IBUG68_FLIP_PAIRS, "wflw98": WFLW98_FLIP_PAIRS}
# Pairs (a, b) where a lies left of b in the image (smaller x) for every face: parts run
# from image left to right, and closed parts (eyes, lips, WFLW brows) run clockwise.
LEFT_OF = {
    "ibug68": [(0, 16), (0, 8), (8, 16), (17, 21), (21, 22), (22, 26), (31, 33), (33, 35)]
    + [(36, 39), (39, 42), (42, 45), (48, 51), (51, 54), (60, 64), (36, 45), (48, 54)]
    + [(37, 38), (41, 40), (43, 44), (47, 46), (49, 50), (59, 58), (61, 63), (67, 65)],
    "wflw98": [(0, 16), (16, 32), (33, 37), (37, 42), (42, 46), (55, 57), (57, 59)]
    + [(60, 64), (64, 68), (68, 72), (76, 79), (79, 82), (88, 92), (96, 97)]
    + [(34, 36), (41, 38), (43, 45), (50, 47), (61, 63), (67, 65), (69, 71), (75, 73)]
    + [(77, 78), (87, 86), (89, 91), (95, 93)],
}
# Pairs (a, b) where a lies above b (smaller y): upper lids and lips, upper brow edges.
ABOVE = {
    "ibug68": [(37, 41), (38, 40), (43, 47), (44, 46), (50, 58), (52, 56), (27, 30), (30, 33)],
    "wflw98": [(61, 67), (62, 66), (70, 74), (35, 39), (44, 48), (78, 86), (80, 84), (51, 54)],
}
DENSE = ("ibug68", "wflw98")
FRONTAL = PoseRanges(roll_degrees=0.0, yaw_degrees=0.0, shift_pixels=0.0)


def _flip_permutation(count: int, pairs) -> np.ndarray:
    permutation = np.arange(count)
    for a, b in pairs:
        permutation[a], permutation[b] = b, a
    return permutation


@pytest.fixture(scope="module", params=DENSE)
def dense_faces(request) -> tuple[str, np.ndarray, np.ndarray]:
    images, keypoints = synthetic.generate_faces(40, seed=4, workers=1, scheme=request.param)
    return request.param, images, keypoints


def test_dense_shapes_and_types(dense_faces) -> None:
    scheme, images, keypoints = dense_faces
    count = {"ibug68": 68, "wflw98": 98}[scheme]
    assert synthetic_dense.num_keypoints(scheme) == count
    assert images.shape == (40, 96, 96) and images.dtype == np.uint8
    assert keypoints.shape == (40, count, 2) and keypoints.dtype == np.float32
    assert np.isfinite(keypoints).all()
    image, points = synthetic.render_face(4, 0, size=64, scheme=scheme)
    assert image.shape == (64, 64) and points.shape == (count, 2)


def test_dense_left_right_structure(dense_faces) -> None:
    """Image-left parts come first: 300-W 36 (outer corner of the eye on the image's left)
    is left of 45, jaw 0 is left of jaw 16, mouth corner 48 is left of 54, and so on."""
    scheme, _, keypoints = dense_faces
    for a, b in LEFT_OF[scheme]:
        assert (keypoints[:, a, 0] < keypoints[:, b, 0]).all(), (a, b)
    for a, b in ABOVE[scheme]:
        assert (keypoints[:, a, 1] < keypoints[:, b, 1]).all(), (a, b)
    # The lowest jaw point is near the middle one (the chin), the brows lie above the eyes.
    jaw_count = {"ibug68": 17, "wflw98": 33}[scheme]
    lowest = keypoints[:, :jaw_count, 1].argmax(axis=1)
    assert (np.abs(lowest - jaw_count // 2) <= jaw_count // 6).all()
    brow, eye = {"ibug68": (19, 37), "wflw98": (35, 62)}[scheme]
    assert (keypoints[:, brow, 1] < keypoints[:, eye, 1]).all()


@pytest.mark.parametrize("scheme", DENSE)
def test_mirror_image_swaps_the_published_pairs(scheme: str) -> None:
    """Flip a frontal face (image and x -> W - 1 - x), swap the published 300-W/WFLW
    left/right pairs: the points land where the unflipped face has them (faces are
    nearly symmetric), so the generator's order is the published order."""
    count = synthetic_dense.num_keypoints(scheme)
    # The published pairs, and the scheme in fkdbench.data.schemes, which must agree.
    permutations = [
        _flip_permutation(count, FLIP_PAIRS[scheme]),
        SCHEMES[scheme].flip_permutation(),
    ]
    errors, dark_pupils = [], 0
    for index in range(12):
        image, points = synthetic.render_face(9, index, pose=FRONTAL, scheme=scheme)
        flipped_image = image[:, ::-1]
        mirrored = points.copy()
        mirrored[:, 0] = image.shape[1] - 1 - mirrored[:, 0]
        errors.append([np.hypot(*(mirrored[p] - points).T) for p in permutations])
        swapped = mirrored[permutations[0]]
        for a, b in LEFT_OF[scheme]:  # the flipped labels keep the left/right structure
            assert swapped[a, 0] < swapped[b, 0], (index, a, b)
        if scheme == "wflw98":  # the flipped pupil labels sit on the flipped pupils
            x, y = np.rint(swapped[96]).astype(int)
            pupil = flipped_image[y - 1 : y + 2, x - 1 : x + 2].astype(float).mean()
            dark_pupils += pupil < flipped_image[y - 6 : y + 7, x - 6 : x + 7].mean()
    assert scheme != "wflw98" or dark_pupils >= 10
    errors = np.array(errors)  # (face, permutation, point)
    per_point = np.median(errors, axis=0)
    assert per_point.max() < 1.5  # pupils move with the gaze: about 1 px
    assert errors.mean() < 0.6
    unpaired = np.median(np.hypot(*(mirrored - points).T))
    assert unpaired > 10  # without the swap the mirror is far off


@pytest.mark.parametrize("scheme", DENSE)
def test_kaggle_points_are_dense_points(scheme: str) -> None:
    """Kaggle's eye corners, brow ends, nose tip, mouth corners and lip centres (and the
    eye centres in WFLW's pupils) are the dense points of KAGGLE15_IN_DENSE."""
    same_pose = 0
    for index in range(20):
        _, kaggle, dense = synthetic._draw_face(3, index, 96, PoseRanges(), scheme)
        for name, dense_index in synthetic_dense.KAGGLE15_IN_DENSE[scheme].items():
            distance = np.hypot(*(kaggle[KAGGLE15.index(name)] - dense[dense_index]))
            assert distance < 0.5, (name, dense_index, distance)
        # The dense faces are the Kaggle faces drawn smaller about the image centre
        # (unless the pose had to be drawn again to fit the jaw).
        _, kaggle_face = synthetic.render_face(3, index)
        framing = synthetic_dense.DENSE_LAYOUTS[scheme].framing
        same_pose += np.allclose((kaggle_face - 47.5) * framing, kaggle - 47.5, atol=1e-3)
    assert same_pose >= 16
    mapped = set(synthetic_dense.KAGGLE15_IN_DENSE[scheme])
    expected = set(KAGGLE15.keypoints) - ({"left_eye_center", "right_eye_center"})
    assert mapped >= expected


def test_unknown_or_mismatched_scheme_fails(monkeypatch) -> None:
    with pytest.raises(ValueError, match="known: kaggle15, ibug68, wflw98"):
        synthetic.render_face(0, 0, scheme="helen194")
    wrong = KeypointScheme(
        name="ibug68", keypoints=("a", "b"), flip_pairs=(), normalising_pair=(0, 1)
    )
    monkeypatch.setitem(SCHEMES, "ibug68", wrong)
    with pytest.raises(ValueError, match="2 keypoints"):
        synthetic.generate_faces(2, seed=0, workers=1, scheme="ibug68")


@pytest.mark.parametrize("scheme", DENSE)
def test_layout_counts_match_the_registered_schemes(scheme: str) -> None:
    layout = synthetic_dense.DENSE_LAYOUTS[scheme]
    assert layout.num_keypoints == SCHEMES[scheme].num_keypoints
    assert synthetic_dense.dense_layout(scheme) is layout
    assert synthetic_dense.dense_layout("kaggle15") is None
    assert synthetic_dense.num_keypoints("kaggle15") == 15
