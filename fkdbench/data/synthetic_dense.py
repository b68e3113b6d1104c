"""The dense 300-W/iBUG (68) and WFLW (98) landmarks of a synthetic face.

The dense schemes trace the drawn features with more points: the eye openings, the brow
strokes, the lip parabolas of :mod:`fkdbench.data.synthetic_render`, and the head
outline for the jaw. Every part runs from its image-left end; closed parts (eyes, lips,
WFLW's brows) go clockwise in the image, the upper edge first. Points that Kaggle also
names are the Kaggle points themselves (:data:`KAGGLE15_IN_DENSE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fkdbench.data.schemes import KAGGLE15, SCHEMES
from fkdbench.data.synthetic_geometry import (
    NOSTRIL_DROP,
    NOSTRIL_HALF_HEIGHT,
    NOSTRIL_HALF_WIDTH,
    TIP_HALF_HEIGHT,
    Face,
    FacePose,
    HeadOutline,
)


@dataclass(frozen=True)
class DenseLayout:
    """How many points each part of a dense scheme gets. Output order: jaw, brows
    (image-left, image-right), nose bridge (4), lower nose (5), eyes (image-left,
    image-right), outer lips (12), inner lips (8), pupils (image-left, image-right)."""

    name: str
    # Points along the head outline, ear to ear through the chin.
    jaw: int
    # Points on each brow's upper edge, ends included (iBUG: on its centre line).
    brow_upper: int
    # Points on each brow's lower edge, ends excluded (0: none).
    brow_lower: int
    # Points around each eye, corners included.
    eye: int
    # Whether the eye centres (pupils) end the list.
    pupils: bool
    # Size of the head relative to the Kaggle faces. Kaggle's crops cut the chin off
    # (it lies near y = 100 of 96 for most faces); the whole jaw must be in the picture,
    # so the face is drawn smaller, like the enlarged face boxes of 300-W and WFLW.
    framing: float = 0.75

    @property
    def num_keypoints(self) -> int:
        brows = 2 * (self.brow_upper + self.brow_lower)
        return self.jaw + brows + 4 + 5 + 2 * self.eye + 12 + 8 + 2 * self.pupils


DENSE_LAYOUTS: dict[str, DenseLayout] = {
    # 300-W / iBUG: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
    "ibug68": DenseLayout("ibug68", jaw=17, brow_upper=5, brow_lower=0, eye=6, pupils=False),
    # WFLW: contour 0-32, brows 33-50, nose 51-59, eyes 60-75, mouth 76-95, pupils 96-97.
    "wflw98": DenseLayout("wflw98", jaw=33, brow_upper=5, brow_lower=4, eye=8, pupils=True),
}
SYNTHETIC_SCHEMES = (KAGGLE15.name, *DENSE_LAYOUTS)

# The dense index of each Kaggle keypoint that a dense scheme places at exactly the same
# spot (the same numbers, mapped the same way). The subject's right is the image's left.
KAGGLE15_IN_DENSE: dict[str, dict[str, int]] = {
    "ibug68": {
        "left_eye_inner_corner": 42,
        "left_eye_outer_corner": 45,
        "right_eye_inner_corner": 39,
        "right_eye_outer_corner": 36,
        "left_eyebrow_inner_end": 22,
        "left_eyebrow_outer_end": 26,
        "right_eyebrow_inner_end": 21,
        "right_eyebrow_outer_end": 17,
        "nose_tip": 30,
        "mouth_left_corner": 54,
        "mouth_right_corner": 48,
        "mouth_center_top_lip": 51,
        "mouth_center_bottom_lip": 57,
    },
    "wflw98": {
        "left_eye_center": 97,
        "right_eye_center": 96,
        "left_eye_inner_corner": 68,
        "left_eye_outer_corner": 72,
        "right_eye_inner_corner": 64,
        "right_eye_outer_corner": 60,
        "left_eyebrow_inner_end": 42,
        "left_eyebrow_outer_end": 46,
        "right_eyebrow_inner_end": 37,
        "right_eyebrow_outer_end": 33,
        "nose_tip": 54,
        "mouth_left_corner": 82,
        "mouth_right_corner": 76,
        "mouth_center_top_lip": 79,
        "mouth_center_bottom_lip": 85,
    },
}

# The inner lip corners sit this far along the half mouth, on the line between the lips.
INNER_CORNER_T = 0.9


def _bezier(start: np.ndarray, control: np.ndarray, end: np.ndarray, t: np.ndarray):
    """Points (M, 2) and unit normals (M, 2) pointing up (-v) of a quadratic Bezier."""
    t = np.asarray(t, dtype=float)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    tangent = 2 * (1 - t) * (control - start) + 2 * t * (end - control)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal *= np.where(normal[:, 1:] > 0, -1.0, 1.0) / np.linalg.norm(normal, axis=1)[:, None]
    return points, normal


def _brow(inner: np.ndarray, outer: np.ndarray, par: dict, layout: DenseLayout) -> np.ndarray:
    """One brow, image-left end first; the stroke the renderer draws (an arched centre
    line whose thickness tapers to half at the outer end)."""
    control = (inner + outer) / 2 + np.array([0.0, -par["brow_arch"]])
    reverse = outer[0] < inner[0]  # the outer end is on the image's left

    def along(share: np.ndarray, side: float) -> np.ndarray:
        t = 1.0 - share if reverse else share  # share: 0 image-left end, 1 image-right
        points, normal = _bezier(inner, control, outer, t)
        half = par["brow_thickness"] * (1.0 - 0.5 * t) / 2
        keep = (share > 0) & (share < 1)  # the ends stay on the centre line
        return points + side * (half * keep)[:, None] * normal

    upper_share = np.linspace(0.0, 1.0, layout.brow_upper)
    if not layout.brow_lower:  # iBUG: the centre line
        return along(upper_share, 0.0)
    lower_share = np.linspace(1.0, 0.0, layout.brow_lower + 2)[1:-1]
    return np.concatenate([along(upper_share, 1.0), along(lower_share, -1.0)])


def _eye(left: np.ndarray, right: np.ndarray, opening: float, count: int) -> np.ndarray:
    """``count`` points on the drawn opening (an ellipse through the corners), from the
    image-left corner clockwise; the lid points split the corner-to-corner line evenly."""
    mid, half_axis = (left + right) / 2, (right - left) / 2
    half_length = np.hypot(*half_axis)
    direction = half_axis / half_length
    up = np.array([direction[1], -direction[0]])  # image-left to right, so this is up
    lid = np.linspace(-1.0, 1.0, count // 2 + 1)[1:-1]  # along the axis, -1 at the left
    rise = np.sqrt(1 - lid**2) * opening
    upper = mid + (lid * half_length)[:, None] * direction + rise[:, None] * up
    lower = mid + (lid[::-1] * half_length)[:, None] * direction - rise[::-1, None] * up
    return np.concatenate([[left], upper, [right], lower])


def _lips(kp: np.ndarray, par: dict) -> tuple[np.ndarray, np.ndarray]:
    """Outer (12) and inner (8) lip contours on the renderer's parabolas, from the
    image-left corner clockwise."""
    left, right, top, bottom = kp[12], kp[11], kp[13], kp[14]  # image-left: subject's right
    line_v, opening = par["mouth_v"], par["mouth_open"]
    centre_u, half_width = (left[0] + right[0]) / 2, (right[0] - left[0]) / 2

    def point(t: float, rim: str) -> tuple[float, float]:
        corner_v = (left[1] + right[1]) / 2 + (right[1] - left[1]) / 2 * t
        level = {
            "upper_top": top[1],
            "upper_bottom": line_v - opening / 2,
            "lower_top": line_v + opening / 2,
            "lower_bottom": bottom[1],
            "line": line_v,
        }[rim]
        return centre_u + t * half_width, level + (corner_v - level) * t**2

    third = 1 / 3
    outer = np.array(
        [point(t, "upper_top") for t in (-1, -2 * third, -third, 0, third, 2 * third)]
        + [point(t, "lower_bottom") for t in (1, 2 * third, third, 0, -third, -2 * third)]
    )
    outer[[0, 6]] = left, right  # exactly the Kaggle points
    outer[3], outer[9] = top, bottom
    inner = np.array(
        [point(-INNER_CORNER_T, "line")]
        + [point(t, "upper_bottom") for t in (-0.5, 0, 0.5)]
        + [point(INNER_CORNER_T, "line")]
        + [point(t, "lower_top") for t in (0.5, 0, -0.5)]
    )
    return outer, inner


def _jaw(head: HeadOutline, top_v: float, count: int) -> np.ndarray:
    """``count`` points evenly spaced along the head outline (posed coordinates) from
    the image-left side at height ``top_v``, round the chin, to the image-right side."""
    start = math.asin(np.clip((top_v - head.centre_v) / head.half_height, -1.0, 1.0))
    angle = np.linspace(start, math.pi - start, 241)
    q = head.centre_v + head.half_height * np.sin(angle)
    depth = np.clip((q - head.centre_v) / head.half_height, 0, 1)
    p = -head.half_width * (1 - head.jaw * depth**2) * np.cos(angle)
    curve = np.stack([p, q], axis=1)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(curve, axis=0).T))])
    spots = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(spots, arc, p), np.interp(spots, arc, q)], axis=1)


def dense_keypoints(
    pose: FacePose, face: Face, head: HeadOutline, layout: DenseLayout
) -> np.ndarray:
    """Image coordinates (K, 2) of ``layout``'s points for a posed face."""
    kp, par = face.keypoints_face, face.parameters
    eye_line_v = kp[2:6, 1].mean()
    jaw = pose.posed_to_image(_jaw(head, eye_line_v, layout.jaw))

    # Image-left first: the subject's right brow and eye, then the left ones.
    brows = [_brow(kp[8], kp[9], par, layout), _brow(kp[6], kp[7], par, layout)]
    eyes = [
        _eye(kp[5], kp[4], par["eye_open"], layout.eye),
        _eye(kp[2], kp[3], par["eye_open"], layout.eye),
    ]
    outer_lips, inner_lips = _lips(kp, par)
    pupils = kp[[1, 0]] if layout.pupils else np.empty((0, 2))

    # The nose stands off the face by its depth, like the drawn nose: a bridge from
    # between the inner eye corners to the tip, then nostrils and the tip's lower edge.
    tip, nostril_u = kp[10], 0.7 * par["nose_width"]
    nasion = (kp[2] + kp[4]) / 2
    bridge = nasion + np.linspace(0.0, 1.0, 4)[:, None] * (tip - nasion)
    bridge[-1] = tip
    lower_nose = tip + np.array(
        [
            [-(nostril_u + NOSTRIL_HALF_WIDTH), NOSTRIL_DROP],
            [-nostril_u, NOSTRIL_DROP + NOSTRIL_HALF_HEIGHT],
            [0.0, TIP_HALF_HEIGHT],
            [nostril_u, NOSTRIL_DROP + NOSTRIL_HALF_HEIGHT],
            [nostril_u + NOSTRIL_HALF_WIDTH, NOSTRIL_DROP],
        ]
    )
    return np.concatenate(
        [
            jaw,
            pose.face_to_image(np.concatenate(brows)),
            pose.face_to_image(np.concatenate([bridge, lower_nose]), par["nose_depth"]),
            pose.face_to_image(np.concatenate([*eyes, outer_lips, inner_lips, pupils])),
        ]
    )


def dense_layout(scheme: str) -> DenseLayout | None:
    """The dense layout of ``scheme`` (None for Kaggle's 15 points); unknown names fail."""
    if scheme == KAGGLE15.name:
        return None
    try:
        layout = DENSE_LAYOUTS[scheme]
    except KeyError:
        known = ", ".join(SYNTHETIC_SCHEMES)
        raise ValueError(f"the synthetic faces have no scheme {scheme!r}; known: {known}") from None
    registered = SCHEMES.get(scheme)
    if registered is not None and registered.num_keypoints != layout.num_keypoints:
        raise ValueError(
            f"scheme {scheme!r} has {registered.num_keypoints} keypoints in "
            f"fkdbench.data.schemes but the generator draws {layout.num_keypoints}"
        )
    return layout


def num_keypoints(scheme: str) -> int:
    """How many keypoints the generator gives for ``scheme``."""
    layout = dense_layout(scheme)
    return KAGGLE15.num_keypoints if layout is None else layout.num_keypoints
