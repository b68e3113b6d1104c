"""Where a synthetic face is: its three coordinate frames, its pose, and the random
draws that shape the face and the scene (see :mod:`fkdbench.data.synthetic`).

- *image* (x, y): pixels, the pixel-centre convention of :mod:`fkdbench.data.schemes`;
- *posed* (p, q): image coordinates with the head's in-plane rotation, scale and
  shift undone; the head outline, hair, ears and neck are drawn here;
- *face* (u, v): posed coordinates with the head's yaw undone by a cylinder model
  (a point at angle ``phi = asin(u / R)`` on a cylinder of radius ``R`` turns to
  ``R * sin(phi + yaw)``); eyes, brows, nose and mouth are drawn here, so that a turned
  head shows its features shifted and foreshortened while its silhouette stays put.

Every ``sample_*`` function draws from the face's own random stream, in a fixed order:
changing what is drawn, or when, changes every face of the default data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fkdbench.data.schemes import KAGGLE15

# The face geometry is drawn for a 96-pixel image and scaled for other sizes.
REFERENCE_SIZE = 96
# Share of the yaw-induced feature shift that the crop takes back (see sample_pose).
YAW_RECENTRING = 0.8
# The nose, in face units: nostril ellipses below and beside the tip, and the lit tip's
# half height (the dense schemes put the lower nose on these shapes).
NOSTRIL_DROP = 2.6  # nostril centres below the tip
NOSTRIL_HALF_WIDTH, NOSTRIL_HALF_HEIGHT = 1.7, 1.1
TIP_HALF_HEIGHT = 3.2


@dataclass(frozen=True)
class PoseRanges:
    """How much heads move; standard deviations unless said otherwise."""

    # In-plane rotation, degrees.
    roll_degrees: float = 6.5
    # Relative scale around 1.
    scale: float = 0.055
    # Shift of the face centre, pixels at 96.
    shift_pixels: float = 2.2
    # Yaw, degrees (mostly frontal faces, as in Kaggle).
    yaw_degrees: float = 14.0


@dataclass(frozen=True)
class Face:
    """Everything random about one face, in face coordinates at the reference size."""

    keypoints_face: np.ndarray  # (15, 2) in face coordinates (u, v)
    parameters: dict


@dataclass(frozen=True)
class HeadOutline:
    """The head's silhouette in posed coordinates, at the reference size: an ellipse
    whose lower half narrows towards the chin."""

    half_width: float
    half_height: float
    centre_v: float
    # How much the lower half narrows: the half width at depth s (0 at the centre,
    # 1 at the chin) is ``half_width * (1 - jaw * s**2)``.
    jaw: float


@dataclass(frozen=True)
class Scene:
    """The draws that :func:`fkdbench.data.synthetic_render.render` makes before the
    head is drawn."""

    background_level: float
    background_field: np.ndarray  # (5, 5) coarse values of the smooth background field
    stripes: tuple[float, float, float] | None  # angle, period in pixels, amplitude
    skin: float
    hair_tone: float
    head: HeadOutline


@dataclass(frozen=True)
class FacePose:
    """One head's pose in an image of ``size`` pixels, and the maps between the frames."""

    size: int
    # Image pixels per reference pixel (the size and the framing of the face).
    k: float
    roll: float  # radians
    scale: float
    shift: np.ndarray  # (2,) reference pixels
    yaw: float  # radians
    cylinder_radius: float

    def face_to_image(self, points: np.ndarray, depth: np.ndarray | float = 0.0) -> np.ndarray:
        """Map face coordinates (M, 2) to image pixels; ``depth`` lifts a point off the
        cylinder (the nose), so it moves further under yaw."""
        radius = self.cylinder_radius
        u, v = points[:, 0], points[:, 1]
        phi = np.arcsin(np.clip(u / radius, -1.0, 1.0))
        p = radius * np.sin(phi + self.yaw) + np.asarray(depth) * math.sin(self.yaw)
        return self.posed_to_image(np.stack([p, v], axis=1))

    def posed_to_image(self, points: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.roll), math.sin(self.roll)
        p, q = points[:, 0] * self.scale, points[:, 1] * self.scale
        centre = (self.size - 1) / 2.0
        x = centre + self.k * (c * p - s * q + self.shift[0])
        y = centre + self.k * (s * p + c * q + self.shift[1])
        return np.stack([x, y], axis=1)

    def unturn(self, p: np.ndarray) -> np.ndarray:
        """Face u of posed p: the inverse of the cylinder yaw in :meth:`face_to_image`."""
        radius = self.cylinder_radius
        phi = np.arcsin(np.clip(p / radius, -1.0, 1.0)) - self.yaw
        return radius * np.sin(np.clip(phi, -math.pi / 2, math.pi / 2))

    def window(self, points: np.ndarray, margin: float, depth: float = 0.0) -> tuple[slice, slice]:
        """Image slices covering face-coordinate ``points`` (M, 2) with a margin."""
        low, high = points.min(axis=0) - margin, points.max(axis=0) + margin
        corners = np.array(
            [[low[0], low[1]], [low[0], high[1]], [high[0], low[1]], [high[0], high[1]]]
        )
        image_corners = self.face_to_image(corners, depth)
        x0, y0 = np.floor(image_corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(image_corners.max(axis=0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(max(x1, x0 + 1), self.size), min(max(y1, y0 + 1), self.size)
        return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class PixelGrids:
    """Posed (p, q) and face (u, v) coordinates of every pixel of one posed face."""

    pose: FacePose
    p: np.ndarray
    q: np.ndarray
    u: np.ndarray
    v: np.ndarray
    # Surface normal of the cylinder (its x part), for Lambertian shading.
    normal_x: np.ndarray
    # One image pixel in posed units: the soft edge of every drawn shape.
    edge: float

    def nose_grid(self, depth: float, window) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates for shapes lifted by ``depth`` (they shift more with yaw)."""
        yaw = self.pose.yaw
        return self.pose.unturn(self.p[window] - depth * math.sin(yaw)), self.v[window]


def sample_pose(
    rng: np.random.Generator, size: int, ranges: PoseRanges, framing: float = 1.0
) -> FacePose:
    """Draw a head pose; ``framing`` < 1 draws the face smaller (the dense schemes)."""
    roll = math.radians(float(np.clip(rng.normal(0, ranges.roll_degrees), -22, 22)))
    scale = float(np.clip(rng.normal(1.0, ranges.scale), 0.84, 1.16))
    shift = np.clip(rng.normal(0, ranges.shift_pixels, 2), -7, 7)
    yaw = math.radians(float(np.clip(rng.normal(0, ranges.yaw_degrees), -32, 32)))
    cylinder_radius = float(rng.uniform(40.0, 46.0))
    # A face detector centres the crop on the features, not on the skull: move the
    # turned head back by most of the shift its yaw gave the features.
    shift[0] -= YAW_RECENTRING * cylinder_radius * math.sin(yaw)
    k = size / REFERENCE_SIZE * framing
    return FacePose(size, k, roll, scale, shift, yaw, cylinder_radius)


def build_grids(pose: FacePose) -> PixelGrids:
    """Posed and face coordinates of every pixel (the inverse of the pose's maps)."""
    centre = (pose.size - 1) / 2.0
    ys, xs = np.mgrid[0 : pose.size, 0 : pose.size].astype(np.float64)
    dx = (xs - centre) / pose.k - pose.shift[0]
    dy = (ys - centre) / pose.k - pose.shift[1]
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    p = (c * dx + s * dy) / pose.scale
    q = (-s * dx + c * dy) / pose.scale
    normal_x = np.clip(p / pose.cylinder_radius, -1.0, 1.0)
    edge = 1.0 / (pose.k * pose.scale)
    return PixelGrids(pose, p, q, pose.unturn(p), q, normal_x, edge)


def _kaggle_points(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The 15 Kaggle points in face coordinates (before the jitter), and the draws that
    the drawing needs as well."""
    eye_half_gap = rng.normal(18.0, 1.3)
    eye_v = rng.normal(-10.0, 1.4)
    eye_half_width = np.clip(rng.normal(6.8, 0.7), 5.2, 8.5)
    eye_tilt = rng.normal(0.0, 0.8)  # outer corners up (+) or down, px
    brow_raise = max(0.0, rng.normal(0.0, 2.2))  # surprise raises the brows
    brow_gap = rng.normal(8.0, 1.5)  # above the eye centre
    brow_inner_u = eye_half_gap - rng.normal(9.5, 1.2)
    brow_outer_u = eye_half_gap + rng.normal(13.0, 1.6)
    nose_v = rng.normal(15.0, 1.8)
    mouth_v = nose_v + rng.normal(13.0, 1.5)
    mouth_half_width = np.clip(rng.normal(15.0, 1.6), 10.5, 20.0)
    smile = rng.normal(0.0, 1.6)  # corners up (+)
    mouth_open = max(0.0, rng.normal(-1.0, 3.0))
    upper_lip = np.clip(rng.normal(3.0, 0.6), 1.8, 4.5)
    lower_lip = np.clip(rng.normal(3.6, 0.7), 2.2, 5.5)

    brow_inner_v = eye_v - brow_gap - brow_raise - rng.normal(0.0, 0.8)
    brow_outer_v = eye_v - brow_gap + 1.0 - 0.6 * brow_raise + rng.normal(0.0, 1.0)
    corner_v = mouth_v - smile
    gaze = np.array([rng.normal(0.0, 1.0), rng.normal(0.0, 0.4)])
    named = {
        "left_eye_center": (eye_half_gap + gaze[0], eye_v + gaze[1]),
        "right_eye_center": (-eye_half_gap + gaze[0], eye_v + gaze[1]),
        "left_eye_inner_corner": (eye_half_gap - eye_half_width, eye_v),
        "left_eye_outer_corner": (eye_half_gap + eye_half_width, eye_v - eye_tilt),
        "right_eye_inner_corner": (-eye_half_gap + eye_half_width, eye_v),
        "right_eye_outer_corner": (-eye_half_gap - eye_half_width, eye_v - eye_tilt),
        "left_eyebrow_inner_end": (brow_inner_u, brow_inner_v),
        "left_eyebrow_outer_end": (brow_outer_u, brow_outer_v),
        "right_eyebrow_inner_end": (-brow_inner_u, brow_inner_v),
        "right_eyebrow_outer_end": (-brow_outer_u, brow_outer_v),
        "nose_tip": (0.0, nose_v),
        "mouth_left_corner": (mouth_half_width, corner_v),
        "mouth_right_corner": (-mouth_half_width, corner_v),
        "mouth_center_top_lip": (0.0, mouth_v - upper_lip - 0.4 * mouth_open),
        "mouth_center_bottom_lip": (0.0, mouth_v + lower_lip + mouth_open),
    }
    keypoints = np.zeros((KAGGLE15.num_keypoints, 2))
    for name, point in named.items():
        keypoints[KAGGLE15.index(name)] = point
    shared = {
        "eye_half_width": eye_half_width,
        "gaze": gaze,
        "mouth_open": mouth_open,
        "upper_lip": upper_lip,
        "lower_lip": lower_lip,
        "mouth_v": mouth_v,
    }
    return keypoints, shared


def sample_face(rng: np.random.Generator) -> Face:
    """Draw one face: its Kaggle points and the shape parameters of its features."""
    keypoints, shared = _kaggle_points(rng)
    # Faces are not perfectly symmetric: jitter each point a little.
    keypoints += rng.normal(0.0, 0.45, keypoints.shape)
    parameters = {
        "eye_half_width": shared["eye_half_width"],
        "eye_open": float(np.clip(rng.normal(2.8, 0.7), 0.6, 4.2)),
        "gaze": shared["gaze"],
        "brow_thickness": float(np.clip(rng.normal(2.4, 0.6), 1.3, 4.0)),
        "brow_arch": float(rng.normal(2.2, 0.8)),
        "nose_depth": float(rng.uniform(5.0, 9.0)),
        "nose_width": float(rng.normal(5.0, 0.6)),
        **{key: shared[key] for key in ("mouth_open", "upper_lip", "lower_lip", "mouth_v")},
    }
    return Face(keypoints_face=keypoints, parameters=parameters)


def sample_scene(rng: np.random.Generator, k: float) -> Scene:
    """The first draws of the rendering, up to the head outline. ``rng`` is the face's
    stream, or a copy of it to learn the head outline before rendering; ``k`` is
    :attr:`FacePose.k`."""
    background_level = rng.uniform(0.05, 0.95)
    background_field = rng.uniform(-1.0, 1.0, (5, 5))
    stripes = None
    if rng.random() < 0.3:
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(4, 14) * k
        stripes = (angle, period, rng.uniform(0.03, 0.1))
    return Scene(
        background_level=background_level,
        background_field=background_field,
        stripes=stripes,
        skin=rng.uniform(0.28, 0.85),
        hair_tone=float(np.clip(rng.normal(0.22, 0.17), 0.02, 0.9)),
        head=HeadOutline(
            half_width=rng.uniform(36.0, 42.0),
            half_height=rng.uniform(47.0, 55.0),
            centre_v=rng.uniform(0.0, 5.0),
            jaw=rng.uniform(0.15, 0.4),
        ),
    )
