"""Procedurally drawn gray faces with exact keypoints: the embedded default data set.

No data set can be downloaded at run time, so fkdbench draws its own. Each face is
rendered pixel by pixel from soft signed-distance shapes, in three coordinate frames:

- *image* (x, y): pixels, the pixel-centre convention of :mod:`fkdbench.data.schemes`;
- *posed* (p, q): image coordinates with the head's in-plane rotation, scale and
  shift undone; the head outline, hair, ears and neck are drawn here;
- *face* (u, v): posed coordinates with the head's yaw undone by a cylinder model
  (a point at angle ``phi = asin(u / R)`` on a cylinder of radius ``R`` turns to
  ``R * sin(phi + yaw)``); eyes, brows, nose and mouth are drawn here, so that a turned
  head shows its features shifted and foreshortened while its silhouette stays put.

Keypoints are defined in face coordinates by the same numbers that draw the features
and mapped forward through the same transforms, so they are exact to float precision.
Besides Kaggle's 15 points, the generator gives the dense 300-W/iBUG (68) and WFLW (98)
landmarks of the same faces: denser points on the same curves (eye openings, brow
strokes, lip parabolas, the head outline for the jaw), sharing the Kaggle points where
both schemes name the same spot (:data:`KAGGLE15_IN_DENSE`). Their faces are drawn
smaller so that the whole jaw fits (:attr:`DenseLayout.framing`).
The variation (identity, expression, pose, hair, lighting, occluders, blur, noise) is
sized so that the mean-shape predictor errs by 3-6 px RMSE, like the real Kaggle data
(about 4 px), while the features stay visible enough for a CNN to learn them.

Every face ``i`` of a data set with seed ``s`` draws from its own random stream
``SeedSequence(s, spawn_key=(i,))``, so the result is byte-identical whatever the
number of worker processes.
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fkdbench.data.schemes import (
    KAGGLE15,
    KAGGLE15_SPARSE_KEYPOINTS,
    SCHEMES,
    KeypointScheme,
)

# The face geometry below is drawn for a 96-pixel image and scaled for other sizes.
REFERENCE_SIZE = 96
# Shares of the real Kaggle training.csv: 2140 of 7049 rows are complete; nearly all
# others keep only the four "sparse" keypoints.
COMPLETE_ROW_FRACTION = 0.3036
SPARSE_EXACT_FRACTION = 0.97  # of incomplete rows: exactly the sparse four
SPARSE_PLUS_FRACTION = 0.02  # the sparse four plus some others; the rest lose one of the four
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
    """The draws that :meth:`_FaceRenderer.render` makes before the head is drawn."""

    background_level: float
    background_field: np.ndarray  # (5, 5) coarse values of the smooth background field
    stripes: tuple[float, float, float] | None  # angle, period in pixels, amplitude
    skin: float
    hair_tone: float
    head: HeadOutline


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1]: ``cells`` x ``cells`` values, cubic upsampled."""
    return _upsample(rng.uniform(-1.0, 1.0, (cells, cells)), size)


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    field = ndimage.zoom(coarse, size / len(coarse), order=3, mode="reflect", prefilter=False)
    return field[:size, :size]


def _soft(distance: np.ndarray, edge: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape from its signed distance (negative inside)."""
    return np.clip(0.5 - distance / edge, 0.0, 1.0)


def _ellipse_distance(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> np.ndarray:
    """Approximate signed distance to an ellipse (exact for circles)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    rx, ry = c * dx + s * dy, -s * dx + c * dy
    radius = np.sqrt((rx / ax) ** 2 + (ry / ay) ** 2)
    return (radius - 1.0) * min(ax, ay)


def _polyline_distance(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unsigned distance from every pixel to a polyline through ``points`` (M, 2)."""
    start, end = points[:-1, :, None, None], points[1:, :, None, None]  # (M-1, 2, 1, 1)
    ex, ey = end[:, 0] - start[:, 0], end[:, 1] - start[:, 1]
    dx, dy = x - start[:, 0], y - start[:, 1]  # (M-1, H, W): all segments at once
    t = np.clip((dx * ex + dy * ey) / (ex * ex + ey * ey + 1e-9), 0.0, 1.0)
    return np.sqrt(((dx - t * ex) ** 2 + (dy - t * ey) ** 2).min(axis=0))


def _quadratic_curve(start, control, end, samples: int = 9) -> np.ndarray:
    t = np.linspace(0.0, 1.0, samples)[:, None]
    start, control, end = (np.asarray(p, dtype=float) for p in (start, control, end))
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def _blend(image: np.ndarray, value, alpha: np.ndarray) -> np.ndarray:
    return image + (value - image) * alpha


class _FaceRenderer:
    """Draws one face; a class only to share the coordinate grids between the steps."""

    def __init__(
        self, rng: np.random.Generator, size: int, pose: PoseRanges, framing: float = 1.0
    ) -> None:
        self.rng = rng
        self.size = size
        self.k = size / REFERENCE_SIZE * framing  # pixels per reference pixel
        self.pose = pose

    # -- geometry -------------------------------------------------------------------
    def sample_pose(self) -> None:
        rng, pose = self.rng, self.pose
        self.roll = math.radians(float(np.clip(rng.normal(0, pose.roll_degrees), -22, 22)))
        self.scale = float(np.clip(rng.normal(1.0, pose.scale), 0.84, 1.16))
        self.shift = np.clip(rng.normal(0, pose.shift_pixels, 2), -7, 7)
        self.yaw = math.radians(float(np.clip(rng.normal(0, pose.yaw_degrees), -32, 32)))
        self.cylinder_radius = float(rng.uniform(40.0, 46.0))
        # A face detector centres the crop on the features, not on the skull: move the
        # turned head back by most of the shift its yaw gave the features.
        self.shift[0] -= YAW_RECENTRING * self.cylinder_radius * math.sin(self.yaw)

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

    def build_grids(self) -> None:
        """Posed and face coordinates of every pixel (inverse of the maps above)."""
        centre = (self.size - 1) / 2.0
        ys, xs = np.mgrid[0 : self.size, 0 : self.size].astype(np.float64)
        dx = (xs - centre) / self.k - self.shift[0]
        dy = (ys - centre) / self.k - self.shift[1]
        c, s = math.cos(self.roll), math.sin(self.roll)
        self.p = (c * dx + s * dy) / self.scale
        self.q = (-s * dx + c * dy) / self.scale
        self.u = self._unturn(self.p)
        self.v = self.q
        radius = self.cylinder_radius
        # Surface normal of the cylinder, for Lambertian shading.
        self.normal_x = np.clip(self.p / radius, -1.0, 1.0)
        self.edge = 1.0 / (self.k * self.scale)  # one image pixel in posed units

    def _unturn(self, p: np.ndarray) -> np.ndarray:
        """Face u of posed p: the inverse of the cylinder yaw in :meth:`face_to_image`."""
        radius = self.cylinder_radius
        phi = np.arcsin(np.clip(p / radius, -1.0, 1.0)) - self.yaw
        return radius * np.sin(np.clip(phi, -math.pi / 2, math.pi / 2))

    def nose_grid(self, depth: float, window) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates for shapes lifted by ``depth`` (they shift more with yaw)."""
        return self._unturn(self.p[window] - depth * math.sin(self.yaw)), self.v[window]

    def window(self, points: np.ndarray, margin: float, depth: float = 0.0):
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

    # -- the face ---------------------------------------------------------------------
    def sample_face(self) -> Face:
        rng = self.rng
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
        top_lip_v = mouth_v - upper_lip - 0.4 * mouth_open
        bottom_lip_v = mouth_v + lower_lip + mouth_open
        gaze = np.array([rng.normal(0.0, 1.0), rng.normal(0.0, 0.4)])

        keypoints = np.zeros((KAGGLE15.num_keypoints, 2))
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
            "mouth_center_top_lip": (0.0, top_lip_v),
            "mouth_center_bottom_lip": (0.0, bottom_lip_v),
        }
        for name, point in named.items():
            keypoints[KAGGLE15.index(name)] = point
        # Faces are not perfectly symmetric: jitter each point a little.
        keypoints += rng.normal(0.0, 0.45, keypoints.shape)
        parameters = {
            "eye_half_width": eye_half_width,
            "eye_open": float(np.clip(rng.normal(2.8, 0.7), 0.6, 4.2)),
            "gaze": gaze,
            "brow_thickness": float(np.clip(rng.normal(2.4, 0.6), 1.3, 4.0)),
            "brow_arch": float(rng.normal(2.2, 0.8)),
            "nose_depth": float(rng.uniform(5.0, 9.0)),
            "nose_width": float(rng.normal(5.0, 0.6)),
            "mouth_open": mouth_open,
            "upper_lip": upper_lip,
            "lower_lip": lower_lip,
            "mouth_v": mouth_v,
        }
        return Face(keypoints_face=keypoints, parameters=parameters)

    def sample_scene(self, rng: np.random.Generator) -> Scene:
        """The first draws of :meth:`render`, up to the head outline. ``rng`` is the
        face's stream, or a copy of it to learn the head outline before rendering."""
        background_level = rng.uniform(0.05, 0.95)
        background_field = rng.uniform(-1.0, 1.0, (5, 5))
        stripes = None
        if rng.random() < 0.3:
            angle = rng.uniform(0, math.pi)
            period = rng.uniform(4, 14) * self.k
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

    def render(self, face: Face, scene: Scene) -> np.ndarray:
        rng, size = self.rng, self.size
        kp = face.keypoints_face
        par = face.parameters
        edge = self.edge
        p, q, u, v = self.p, self.q, self.u, self.v

        # Background: base gray, a smooth random field, sometimes a texture of stripes.
        background = scene.background_level + 0.18 * _upsample(scene.background_field, size)
        if scene.stripes is not None:
            angle, period, amplitude = scene.stripes
            phase = (
                np.cos(angle) * np.arange(size)[None, :] + np.sin(angle) * np.arange(size)[:, None]
            )
            background = background + amplitude * np.sin(2 * math.pi * phase / period)
        image = background

        skin = scene.skin
        hair_tone = scene.hair_tone
        head_half_width = scene.head.half_width
        head_half_height = scene.head.half_height
        head_centre_v = scene.head.centre_v
        jaw = scene.head.jaw

        # Hair behind the head (long hair falls beside the face).
        hair_length = rng.uniform(-10.0, 45.0)
        hair_texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), (2.2, 0.6))
        hair_texture = hair_texture / (hair_texture.std() + 1e-6)
        hair_value = np.clip(hair_tone + 0.06 * hair_texture, 0, 1)
        has_hair = rng.random() > 0.08  # some heads are bald
        if has_hair:
            back_hair = _ellipse_distance(
                p, q, 0, head_centre_v - 6, head_half_width + 5, head_half_height + 2
            )
            back_hair = np.maximum(back_hair, q - hair_length)
            image = _blend(image, hair_value, _soft(back_hair, edge))

        # Neck, then ears, then the head.
        neck = np.maximum(np.abs(p) - head_half_width * 0.55, -(q - 20))
        image = _blend(image, skin * 0.75, _soft(neck, edge))
        for side in (-1.0, 1.0):
            ear = _ellipse_distance(p, q, side * (head_half_width - 1), 4, 5.5, 10)
            image = _blend(image, skin * 0.85, _soft(ear, edge))
        widening = head_half_width * (
            1 - jaw * np.clip((q - head_centre_v) / head_half_height, 0, 1) ** 2
        )
        head = (
            np.sqrt((p / widening) ** 2 + ((q - head_centre_v) / head_half_height) ** 2) - 1
        ) * head_half_width
        head_alpha = _soft(head, edge)

        # Lambertian shading on the cylinder plus an overall gradient.
        light_angle = rng.normal(0.0, 0.6)
        diffuse = np.clip(
            np.cos(light_angle) * np.sqrt(1 - self.normal_x**2)
            + np.sin(light_angle) * self.normal_x,
            0,
            1,
        )
        shade = 0.55 + 0.45 * diffuse - 0.12 * np.clip((q + 10) / 60, 0, 1)
        skin_texture = 0.04 * _smooth_noise(rng, size, 12)
        skin_value = skin * shade + skin_texture
        image = _blend(image, skin_value, head_alpha)

        # Features are drawn relative to the local skin value so contrast follows light,
        # each only inside a window around it (most of the image never needs the maths).
        local = skin_value
        image = np.array(image)

        def region(points: np.ndarray, margin: float, depth: float = 0.0):
            window = self.window(points, margin, depth)
            return window, local[window], head_alpha[window]

        # Eye sockets, then eyes.
        opening = par["eye_open"]
        for centre_i, inner_i, outer_i in ((0, 2, 3), (1, 4, 5)):
            inner, outer, centre = kp[inner_i], kp[outer_i], kp[centre_i]
            window, skin_here, alpha = region(kp[[inner_i, outer_i, centre_i]], 9.0)
            uu, vv, patch = u[window], v[window], image[window]
            mid = (inner + outer) / 2
            axis = outer - inner
            angle = math.atan2(axis[1], axis[0])
            half_length = np.hypot(*axis) / 2
            socket = _ellipse_distance(uu, vv, mid[0], mid[1] - 1.0, half_length + 3.0, 6.5, angle)
            patch = _blend(patch, skin_here * 0.78, _soft(socket, 4.0) * alpha)
            sclera = _ellipse_distance(uu, vv, mid[0], mid[1], half_length, opening, angle)
            sclera_alpha = _soft(sclera, edge) * alpha
            # The white of the eye stays bright on dark skin and in shadow.
            patch = _blend(patch, np.clip(0.35 + 0.65 * skin_here, 0, 0.95), sclera_alpha)
            iris_radius = min(2.9, opening + 0.9)
            iris = _ellipse_distance(uu, vv, centre[0], centre[1], iris_radius, iris_radius)
            patch = _blend(patch, rng.uniform(0.08, 0.4), _soft(iris, edge) * sclera_alpha)
            pupil = _ellipse_distance(uu, vv, centre[0], centre[1], 1.2, 1.2)
            patch = _blend(patch, 0.03, _soft(pupil, edge) * sclera_alpha)
            glint = _ellipse_distance(uu, vv, centre[0] + 0.8, centre[1] - 0.8, 0.6, 0.6)
            patch = _blend(patch, 0.95, _soft(glint, edge) * sclera_alpha * 0.8)
            # Upper lid: a dark line along the top of the opening (a quadratic Bezier
            # peaks halfway to its control point).
            lid = _quadratic_curve(inner, mid + np.array([0.0, -2.0 * (opening + 0.3)]), outer)
            lid_distance = _polyline_distance(uu, vv, lid) - 0.7
            image[window] = _blend(patch, skin_here * 0.35, _soft(lid_distance, edge) * alpha)

        # Brows: tapered arched strokes from the inner to the outer end.
        brow_value = min(hair_tone, local.mean() * 0.5) if has_hair else local.mean() * 0.55
        for inner_i, outer_i in ((6, 7), (8, 9)):
            inner, outer = kp[inner_i], kp[outer_i]
            window, _skin_here, alpha = region(kp[[inner_i, outer_i]], 6.0)
            uu, vv = u[window], v[window]
            control = (inner + outer) / 2 + np.array([0.0, -par["brow_arch"]])
            distance = _polyline_distance(uu, vv, _quadratic_curve(inner, control, outer))
            along = np.clip(np.abs(uu - inner[0]) / (abs(outer[0] - inner[0]) + 1e-6), 0, 1)
            thickness = par["brow_thickness"] * (1.0 - 0.5 * along)
            image[window] = _blend(
                image[window], brow_value, _soft(distance - thickness / 2, edge) * alpha
            )

        # Nose: bridge shading, a lit tip, nostrils and the shadow under them; it stands
        # off the face, so it is drawn in coordinates lifted by its depth.
        depth = par["nose_depth"]
        tip = kp[10]
        nose_box = np.array([[tip[0] - 9, kp[0, 1] + 2], [tip[0] + 9, tip[1] + 8]])
        window, skin_here, alpha = region(nose_box, 2.0, depth)
        nu, nv = self.nose_grid(depth, window)
        patch = image[window]
        bridge_side = 1.0 if light_angle < 0 else -1.0
        bridge = _polyline_distance(
            nu, nv, np.array([[bridge_side * 2.5, kp[0, 1] + 3], [bridge_side * 3.5, tip[1] - 3]])
        )
        patch = _blend(patch, skin_here * 0.8, _soft(bridge - 1.0, 2.5) * alpha)
        tip_shape = _ellipse_distance(
            nu, nv, tip[0], tip[1], par["nose_width"] * 0.7, TIP_HALF_HEIGHT
        )
        patch = _blend(patch, np.clip(skin_here * 1.15, 0, 1), _soft(tip_shape, 2.0) * alpha)
        for side in (-1.0, 1.0):
            nostril = _ellipse_distance(
                nu,
                nv,
                tip[0] + side * par["nose_width"] * 0.7,
                tip[1] + NOSTRIL_DROP,
                NOSTRIL_HALF_WIDTH,
                NOSTRIL_HALF_HEIGHT,
            )
            patch = _blend(patch, skin_here * 0.35, _soft(nostril, edge) * alpha)
        under = _ellipse_distance(nu, nv, tip[0], tip[1] + 4.5, par["nose_width"], 1.5)
        image[window] = _blend(patch, skin_here * 0.7, _soft(under, 2.0) * alpha)

        # Mouth: lips bounded by parabolas through the corners and the lip centres.
        left, right, top, bottom = kp[11], kp[12], kp[13], kp[14]
        line_v = par["mouth_v"]
        mouth_opening = par["mouth_open"]
        half_width = (left[0] - right[0]) / 2
        window, skin_here, alpha = region(kp[11:15], 4.0)
        uu, vv, patch = u[window], v[window], image[window]
        centre_u = (left[0] + right[0]) / 2
        t = np.clip((uu - centre_u) / max(half_width, 1.0), -1.2, 1.2)
        corner_v = (left[1] + right[1]) / 2 + (left[1] - right[1]) / 2 * t
        upper_top = top[1] + (corner_v - top[1]) * t**2
        upper_bottom = line_v - mouth_opening / 2 + (corner_v - line_v + mouth_opening / 2) * t**2
        lower_top = line_v + mouth_opening / 2 + (corner_v - line_v - mouth_opening / 2) * t**2
        lower_bottom = bottom[1] + (corner_v - bottom[1]) * t**2
        band_edge = edge * 1.2
        lip_tone = skin_here * rng.uniform(0.55, 0.85)
        width_limit = np.abs(uu - centre_u) - half_width
        for lip_top, lip_bottom, tone in (
            (upper_top, upper_bottom, lip_tone),
            (lower_top, lower_bottom, lip_tone * 1.05),
        ):
            lip = np.maximum(np.maximum(lip_top - vv, vv - lip_bottom), width_limit)
            patch = _blend(patch, tone, _soft(lip, band_edge) * alpha)
        if mouth_opening > 0.4:
            gap = np.maximum(np.maximum(upper_bottom - vv, vv - lower_top), width_limit)
            gap_value = 0.85 if rng.random() < 0.5 else 0.08  # teeth or a dark mouth
            patch = _blend(patch, gap_value, _soft(gap, band_edge) * alpha)
        line_t = np.linspace(-1, 1, 9)
        mouth_line = np.stack(
            [
                centre_u + line_t * half_width,
                line_v + line_t**2 * ((left[1] + right[1]) / 2 - line_v),
            ],
            axis=1,
        )
        line_alpha = _soft(_polyline_distance(uu, vv, mouth_line) - 0.5, edge) * alpha
        image[window] = _blend(patch, lip_tone * 0.5, line_alpha * (np.abs(t) < 1.0))

        # Front hair: a hairline across the forehead, sometimes a fringe to the brows.
        if has_hair:
            hairline_v = rng.uniform(-44.0, -26.0)
            if rng.random() < 0.12:
                hairline_v = min(kp[[6, 8], 1]) - rng.uniform(0.5, 4.0)  # fringe
            wave = 2.5 * np.sin(p / rng.uniform(5, 12) + rng.uniform(0, 6))
            side_burn = np.clip(np.abs(p) - head_half_width * 0.82, 0, None) * -1.5
            front = (q - (hairline_v + wave + side_burn)) * np.ones_like(p)
            front = np.maximum(front, head)
            image = _blend(image, hair_value, _soft(front, edge))

        # Facial hair now and then.
        if rng.random() < 0.08:
            beard = np.maximum(
                _ellipse_distance(u, v, 0, line_v + 4, half_width + 6, 10),
                -(_ellipse_distance(u, v, 0, line_v, half_width + 1, 4.5)),
            )
            image = _blend(image, hair_value * 0.9, _soft(beard, 2.0) * head_alpha * 0.85)

        image = self.occlude(image, kp, local)

        # Lighting gradient, blur, gamma, sensor noise.
        direction = rng.uniform(0, 2 * math.pi)
        ramp = (
            np.cos(direction) * (np.arange(size)[None, :] - size / 2)
            + np.sin(direction) * (np.arange(size)[:, None] - size / 2)
        ) / size
        image = image * (1.0 + rng.uniform(0.0, 0.5) * ramp)
        blur = rng.uniform(0.0, 1.3) * self.k
        if blur > 0.3:
            image = ndimage.gaussian_filter(image, blur, mode="nearest")
        image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.75, 1.35)
        image = image + rng.normal(0, rng.uniform(0.004, 0.035), image.shape)
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    def occlude(self, image: np.ndarray, kp: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Glasses, a hand or an object over part of the face, now and then."""
        rng, u, v, edge = self.rng, self.u, self.v, self.edge
        roll = rng.random()
        if roll < 0.16:  # glasses: two rims, a bridge, temples
            frame = rng.choice([0.05, 0.12, 0.9])
            rim_width = rng.uniform(0.6, 1.4)
            lens_half = rng.uniform(8.5, 11.0), rng.uniform(5.5, 7.5)
            distance = np.full(u.shape, np.inf)
            lens_alpha = np.zeros(u.shape)
            for centre in (kp[0], kp[1]):
                ring = _ellipse_distance(u, v, centre[0], centre[1] + 0.5, *lens_half)
                distance = np.minimum(distance, np.abs(ring) - rim_width)
                lens_alpha = np.maximum(lens_alpha, _soft(ring, edge))
            inner_u = abs(kp[0, 0] - kp[1, 0]) / 2 - lens_half[0]
            eye_v = (kp[0, 1] + kp[1, 1]) / 2
            bridge = _polyline_distance(
                u, v, np.array([[-inner_u, eye_v - 1], [inner_u, eye_v - 1]])
            )
            distance = np.minimum(distance, bridge - rim_width * 0.8)
            tint = rng.uniform(0.0, 0.35)
            image = image * (1 - tint * lens_alpha)
            image = _blend(image, frame, _soft(distance, edge))
        elif roll < 0.21:  # a hand across the lower face or a cheek
            skin = float(np.clip(local.mean() * rng.uniform(0.85, 1.2), 0.1, 0.95))
            centre = np.array([rng.uniform(-30, 30), rng.uniform(10, 45)])
            angle = rng.uniform(-0.6, 0.6)
            palm = _ellipse_distance(u, v, centre[0], centre[1], 13, 10, angle)
            fingers = palm
            for index in range(4):
                offset = np.array([-7.5 + index * 5.0, -13.0])
                c, s = math.cos(angle), math.sin(angle)
                finger_centre = centre + np.array(
                    [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]]
                )
                finger = _ellipse_distance(u, v, *finger_centre, 2.3, 8.0, angle)
                fingers = np.minimum(fingers, finger)
            shade = skin * (0.9 + 0.1 * _smooth_noise(rng, self.size, 6))
            image = _blend(image, shade, _soft(fingers, edge))
        elif roll < 0.24:  # an object: a microphone, a cup, a bar
            centre = np.array([rng.uniform(-35, 35), rng.uniform(0, 45)])
            box = np.maximum(
                np.abs(u - centre[0]) - rng.uniform(3, 9),
                np.abs(v - centre[1]) - rng.uniform(4, 14),
            )
            image = _blend(image, rng.uniform(0.0, 1.0), _soft(box, edge))
        return image


# -- dense landmarks ----------------------------------------------------------------
# The dense schemes trace the drawn features with more points. Every part runs from its
# image-left end; closed parts (eyes, lips, WFLW's brows) go clockwise in the image, the
# upper edge first. Points that Kaggle also names are the Kaggle points themselves.


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


def _dense_keypoints(
    renderer: _FaceRenderer, face: Face, head: HeadOutline, layout: DenseLayout
) -> np.ndarray:
    """Image coordinates (K, 2) of ``layout``'s points for a posed face."""
    kp, par = face.keypoints_face, face.parameters
    eye_line_v = kp[2:6, 1].mean()
    jaw = renderer.posed_to_image(_jaw(head, eye_line_v, layout.jaw))

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
            renderer.face_to_image(np.concatenate(brows)),
            renderer.face_to_image(np.concatenate([bridge, lower_nose]), par["nose_depth"]),
            renderer.face_to_image(np.concatenate([*eyes, outer_lips, inner_lips, pupils])),
        ]
    )


def _fits(points: np.ndarray, size: int, margin: float) -> bool:
    return bool(np.all(points >= margin) and np.all(points <= size - 1 - margin))


def _layout(scheme: str) -> DenseLayout | None:
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
    layout = _layout(scheme)
    return KAGGLE15.num_keypoints if layout is None else layout.num_keypoints


def _draw_face(
    seed: int, index: int, size: int, pose: PoseRanges, scheme: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face ``index``: (uint8 image, its Kaggle 15 points, its points in ``scheme``)."""
    layout = _layout(scheme)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    renderer = _FaceRenderer(rng, size, pose, 1.0 if layout is None else layout.framing)
    face = renderer.sample_face()
    nose_index = KAGGLE15.index("nose_tip")
    depth = np.zeros(KAGGLE15.num_keypoints)
    depth[nose_index] = face.parameters["nose_depth"]
    margin = size / REFERENCE_SIZE
    # Redraw the pose until every keypoint lies inside the image with a margin. The jaw
    # follows the head outline, which render() draws after the pose: a copy of the
    # stream tells it without drawing anything from the stream itself.
    for _attempt in range(50):
        renderer.sample_pose()
        keypoints = renderer.face_to_image(face.keypoints_face, depth)
        if layout is None:
            dense = keypoints
        else:
            head = renderer.sample_scene(copy.deepcopy(rng)).head
            dense = _dense_keypoints(renderer, face, head, layout)
        if _fits(keypoints, size, margin) and _fits(dense, size, margin):
            break
    renderer.build_grids()
    image = renderer.render(face, renderer.sample_scene(rng))
    return image, keypoints.astype(np.float32), dense.astype(np.float32)


def render_face(
    seed: int,
    index: int,
    size: int = REFERENCE_SIZE,
    pose: PoseRanges = PoseRanges(),
    scheme: str = KAGGLE15.name,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw face ``index`` of the data set with ``seed``: (uint8 image, (K, 2) keypoints)
    in ``scheme``: ``kaggle15`` (15), ``ibug68`` (68) or ``wflw98`` (98).

    The dense schemes draw the same face (same random draws) smaller, so that the whole
    jaw fits; see :attr:`DenseLayout.framing`.
    """
    image, _kaggle, keypoints = _draw_face(seed, index, size, pose, scheme)
    return image, keypoints


def _render_range(
    seed: int, start: int, stop: int, size: int, scheme: str
) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((stop - start, size, size), dtype=np.uint8)
    keypoints = np.empty((stop - start, num_keypoints(scheme), 2), dtype=np.float32)
    for offset, index in enumerate(range(start, stop)):
        images[offset], keypoints[offset] = render_face(seed, index, size, scheme=scheme)
    return images, keypoints


def generate_faces(
    count: int,
    seed: int,
    size: int = REFERENCE_SIZE,
    workers: int | None = None,
    first_index: int = 0,
    on_progress: Callable[[int], None] | None = None,
    scheme: str = KAGGLE15.name,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` faces: uint8 images (N, size, size) and float32 keypoints (N, K, 2)
    in ``scheme`` (see :func:`render_face`).

    ``first_index`` offsets the per-face streams, so two calls with different offsets
    (training and test faces) never repeat a face. ``workers`` processes share the work
    (default: the machine's cores); the output does not depend on it.
    """
    workers = workers or os.cpu_count() or 1
    chunk = 64
    ranges = [
        (first_index + start, first_index + min(start + chunk, count))
        for start in range(0, count, chunk)
    ]
    images = np.empty((count, size, size), dtype=np.uint8)
    keypoints = np.empty((count, num_keypoints(scheme), 2), dtype=np.float32)

    def store(start: int, result: tuple[np.ndarray, np.ndarray]) -> None:
        offset = start - first_index
        images[offset : offset + len(result[0])], keypoints[offset : offset + len(result[0])] = (
            result
        )
        if on_progress:
            on_progress(len(result[0]))

    if workers <= 1 or count <= chunk:
        for start, stop in ranges:
            store(start, _render_range(seed, start, stop, size, scheme))
        return images, keypoints
    # forkserver: safe even when the parent process has started library threads.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(_render_range, seed, start, stop, size, scheme): start
            for start, stop in ranges
        }
        for future, start in futures.items():
            store(start, future.result())
    return images, keypoints


def kaggle_missing_mask(count: int, seed: int, scheme: KeypointScheme = KAGGLE15) -> np.ndarray:
    """bool (N, K), True where a label is kept, following the real Kaggle pattern."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
    sparse = np.array([scheme.index(name) for name in KAGGLE15_SPARSE_KEYPOINTS])
    others = np.setdiff1d(np.arange(scheme.num_keypoints), sparse)
    kept = np.zeros((count, scheme.num_keypoints), dtype=bool)
    kind = rng.random(count)
    complete = kind < COMPLETE_ROW_FRACTION
    kept[complete] = True
    incomplete = np.flatnonzero(~complete)
    draw = rng.random(len(incomplete))
    for row, value in zip(incomplete, draw, strict=True):
        kept[row, sparse] = True
        if value >= SPARSE_EXACT_FRACTION + SPARSE_PLUS_FRACTION:
            kept[row, rng.choice(sparse)] = False
        elif value >= SPARSE_EXACT_FRACTION:
            extra = rng.choice(others, size=rng.integers(1, len(others)), replace=False)
            kept[row, extra] = True
    return kept
