"""Drawing one synthetic face, pixel by pixel, from soft signed-distance shapes.

:func:`render` runs the stages in a fixed order: background, head (hair behind it,
neck, ears, shaded skin), eyes, brows, nose, mouth, front hair, beard, occluders, and
the camera (lighting gradient, blur, gamma, sensor noise). Most stages draw from the
face's random stream, so their order is part of the data set: reordering them, or a
draw inside one, changes every face (the tests compare against fixed checksums).

The head is drawn in posed coordinates (p, q), the features in face coordinates (u, v)
(see :mod:`fkdbench.data.synthetic_geometry`). Features are drawn relative to the
local skin value, so their contrast follows the light, and each only inside a window
around it (most of the image never needs the maths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fkdbench.data.synthetic_geometry import (
    NOSTRIL_DROP,
    NOSTRIL_HALF_HEIGHT,
    NOSTRIL_HALF_WIDTH,
    TIP_HALF_HEIGHT,
    Face,
    FacePose,
    HeadOutline,
    PixelGrids,
    Scene,
)


# -- shapes -------------------------------------------------------------------------------
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


# -- background and head ------------------------------------------------------------------
@dataclass(frozen=True)
class _Head:
    """What the head stage leaves for the later stages."""

    distance: np.ndarray  # signed distance to the head outline, posed units
    alpha: np.ndarray  # coverage of the head
    skin: np.ndarray  # shaded skin value of every pixel: features are drawn relative to it
    hair_value: np.ndarray  # gray of the (streaked) hair
    has_hair: bool
    light_angle: float  # of the Lambertian light, radians


def _background(scene: Scene, size: int) -> np.ndarray:
    """Base gray, a smooth random field, sometimes a texture of stripes."""
    background = scene.background_level + 0.18 * _upsample(scene.background_field, size)
    if scene.stripes is not None:
        angle, period, amplitude = scene.stripes
        phase = np.cos(angle) * np.arange(size)[None, :] + np.sin(angle) * np.arange(size)[:, None]
        background = background + amplitude * np.sin(2 * math.pi * phase / period)
    return background


def _draw_back_hair(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, scene: Scene
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Hair behind the head (long hair falls beside the face); some heads are bald."""
    size, head = grids.pose.size, scene.head
    hair_length = rng.uniform(-10.0, 45.0)
    hair_texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), (2.2, 0.6))
    hair_texture = hair_texture / (hair_texture.std() + 1e-6)
    hair_value = np.clip(scene.hair_tone + 0.06 * hair_texture, 0, 1)
    has_hair = rng.random() > 0.08
    if has_hair:
        back_hair = _ellipse_distance(
            grids.p, grids.q, 0, head.centre_v - 6, head.half_width + 5, head.half_height + 2
        )
        back_hair = np.maximum(back_hair, grids.q - hair_length)
        image = _blend(image, hair_value, _soft(back_hair, grids.edge))
    return image, hair_value, has_hair


def _head_distance(grids: PixelGrids, head: HeadOutline) -> np.ndarray:
    """Signed distance to the head outline, whose lower half narrows to the chin."""
    p, q = grids.p, grids.q
    widening = head.half_width * (
        1 - head.jaw * np.clip((q - head.centre_v) / head.half_height, 0, 1) ** 2
    )
    return (
        np.sqrt((p / widening) ** 2 + ((q - head.centre_v) / head.half_height) ** 2) - 1
    ) * head.half_width


def _draw_head(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, scene: Scene
) -> tuple[np.ndarray, _Head]:
    """Back hair, neck, ears, then the head with Lambertian shading on the cylinder."""
    image, hair_value, has_hair = _draw_back_hair(image, rng, grids, scene)
    p, q, edge, skin = grids.p, grids.q, grids.edge, scene.skin
    half_width = scene.head.half_width
    neck = np.maximum(np.abs(p) - half_width * 0.55, -(q - 20))
    image = _blend(image, skin * 0.75, _soft(neck, edge))
    for side in (-1.0, 1.0):
        ear = _ellipse_distance(p, q, side * (half_width - 1), 4, 5.5, 10)
        image = _blend(image, skin * 0.85, _soft(ear, edge))
    distance = _head_distance(grids, scene.head)
    alpha = _soft(distance, edge)
    # Lambertian shading on the cylinder plus an overall gradient.
    light_angle = rng.normal(0.0, 0.6)
    normal_x = grids.normal_x
    diffuse = np.clip(
        np.cos(light_angle) * np.sqrt(1 - normal_x**2) + np.sin(light_angle) * normal_x, 0, 1
    )
    shade = 0.55 + 0.45 * diffuse - 0.12 * np.clip((q + 10) / 60, 0, 1)
    skin_texture = 0.04 * _smooth_noise(rng, grids.pose.size, 12)
    skin_value = skin * shade + skin_texture
    image = _blend(image, skin_value, alpha)
    return image, _Head(distance, alpha, skin_value, hair_value, has_hair, light_angle)


def _region(grids: PixelGrids, head: _Head, points: np.ndarray, margin: float, depth=0.0):
    """The window around face-coordinate ``points``, and the skin and head alpha in it."""
    window = grids.pose.window(points, margin, depth)
    return window, head.skin[window], head.alpha[window]


# -- features (drawn in place, each in its window) ----------------------------------------
def _draw_eyes(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, face: Face, head: _Head
) -> None:
    """Eye sockets, then the eyes: sclera, iris, pupil, glint and the upper lid."""
    kp, opening, edge = face.keypoints_face, face.parameters["eye_open"], grids.edge
    for centre_i, inner_i, outer_i in ((0, 2, 3), (1, 4, 5)):
        inner, outer, centre = kp[inner_i], kp[outer_i], kp[centre_i]
        window, skin_here, alpha = _region(grids, head, kp[[inner_i, outer_i, centre_i]], 9.0)
        uu, vv, patch = grids.u[window], grids.v[window], image[window]
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
        # Upper lid: a dark line along the top of the opening (a quadratic Bezier peaks
        # halfway to its control point).
        lid = _quadratic_curve(inner, mid + np.array([0.0, -2.0 * (opening + 0.3)]), outer)
        lid_distance = _polyline_distance(uu, vv, lid) - 0.7
        image[window] = _blend(patch, skin_here * 0.35, _soft(lid_distance, edge) * alpha)


def _draw_brows(
    image: np.ndarray, grids: PixelGrids, face: Face, head: _Head, hair_tone: float
) -> None:
    """Tapered arched strokes from the inner to the outer end."""
    kp, par = face.keypoints_face, face.parameters
    local = head.skin
    brow_value = min(hair_tone, local.mean() * 0.5) if head.has_hair else local.mean() * 0.55
    for inner_i, outer_i in ((6, 7), (8, 9)):
        inner, outer = kp[inner_i], kp[outer_i]
        window, _skin_here, alpha = _region(grids, head, kp[[inner_i, outer_i]], 6.0)
        uu, vv = grids.u[window], grids.v[window]
        control = (inner + outer) / 2 + np.array([0.0, -par["brow_arch"]])
        distance = _polyline_distance(uu, vv, _quadratic_curve(inner, control, outer))
        along = np.clip(np.abs(uu - inner[0]) / (abs(outer[0] - inner[0]) + 1e-6), 0, 1)
        thickness = par["brow_thickness"] * (1.0 - 0.5 * along)
        image[window] = _blend(
            image[window], brow_value, _soft(distance - thickness / 2, grids.edge) * alpha
        )


def _draw_nose(image: np.ndarray, grids: PixelGrids, face: Face, head: _Head) -> None:
    """Bridge shading, a lit tip, nostrils and the shadow under them; the nose stands
    off the face, so it is drawn in coordinates lifted by its depth."""
    kp, par = face.keypoints_face, face.parameters
    depth, tip, width = par["nose_depth"], kp[10], par["nose_width"]
    nose_box = np.array([[tip[0] - 9, kp[0, 1] + 2], [tip[0] + 9, tip[1] + 8]])
    window, skin_here, alpha = _region(grids, head, nose_box, 2.0, depth)
    nu, nv = grids.nose_grid(depth, window)
    patch = image[window]
    bridge_side = 1.0 if head.light_angle < 0 else -1.0
    bridge = _polyline_distance(
        nu, nv, np.array([[bridge_side * 2.5, kp[0, 1] + 3], [bridge_side * 3.5, tip[1] - 3]])
    )
    patch = _blend(patch, skin_here * 0.8, _soft(bridge - 1.0, 2.5) * alpha)
    tip_shape = _ellipse_distance(nu, nv, tip[0], tip[1], width * 0.7, TIP_HALF_HEIGHT)
    patch = _blend(patch, np.clip(skin_here * 1.15, 0, 1), _soft(tip_shape, 2.0) * alpha)
    for side in (-1.0, 1.0):
        nostril = _ellipse_distance(
            nu,
            nv,
            tip[0] + side * width * 0.7,
            tip[1] + NOSTRIL_DROP,
            NOSTRIL_HALF_WIDTH,
            NOSTRIL_HALF_HEIGHT,
        )
        patch = _blend(patch, skin_here * 0.35, _soft(nostril, grids.edge) * alpha)
    under = _ellipse_distance(nu, nv, tip[0], tip[1] + 4.5, width, 1.5)
    image[window] = _blend(patch, skin_here * 0.7, _soft(under, 2.0) * alpha)


def _draw_mouth(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, face: Face, head: _Head
) -> None:
    """Lips bounded by parabolas through the corners and the lip centres, the gap of an
    open mouth (teeth or dark), and the line between the lips."""
    kp, par, edge = face.keypoints_face, face.parameters, grids.edge
    left, right, top, bottom = kp[11], kp[12], kp[13], kp[14]
    line_v, opening = par["mouth_v"], par["mouth_open"]
    half_width = (left[0] - right[0]) / 2
    window, skin_here, alpha = _region(grids, head, kp[11:15], 4.0)
    uu, vv, patch = grids.u[window], grids.v[window], image[window]
    centre_u = (left[0] + right[0]) / 2
    t = np.clip((uu - centre_u) / max(half_width, 1.0), -1.2, 1.2)
    corner_v = (left[1] + right[1]) / 2 + (left[1] - right[1]) / 2 * t
    upper_top = top[1] + (corner_v - top[1]) * t**2
    upper_bottom = line_v - opening / 2 + (corner_v - line_v + opening / 2) * t**2
    lower_top = line_v + opening / 2 + (corner_v - line_v - opening / 2) * t**2
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
    if opening > 0.4:
        gap = np.maximum(np.maximum(upper_bottom - vv, vv - lower_top), width_limit)
        gap_value = 0.85 if rng.random() < 0.5 else 0.08  # teeth or a dark mouth
        patch = _blend(patch, gap_value, _soft(gap, band_edge) * alpha)
    line_t = np.linspace(-1, 1, 9)
    mouth_line = np.stack(
        [centre_u + line_t * half_width, line_v + line_t**2 * ((left[1] + right[1]) / 2 - line_v)],
        axis=1,
    )
    line_alpha = _soft(_polyline_distance(uu, vv, mouth_line) - 0.5, edge) * alpha
    image[window] = _blend(patch, lip_tone * 0.5, line_alpha * (np.abs(t) < 1.0))


# -- hair over the face, occluders, camera ------------------------------------------------
def _draw_front_hair(
    image: np.ndarray,
    rng: np.random.Generator,
    grids: PixelGrids,
    face: Face,
    scene: Scene,
    head: _Head,
) -> np.ndarray:
    """A hairline across the forehead, sometimes a fringe down to the brows."""
    if not head.has_hair:
        return image
    p, q, kp = grids.p, grids.q, face.keypoints_face
    hairline_v = rng.uniform(-44.0, -26.0)
    if rng.random() < 0.12:
        hairline_v = min(kp[[6, 8], 1]) - rng.uniform(0.5, 4.0)  # fringe
    wave = 2.5 * np.sin(p / rng.uniform(5, 12) + rng.uniform(0, 6))
    side_burn = np.clip(np.abs(p) - scene.head.half_width * 0.82, 0, None) * -1.5
    front = (q - (hairline_v + wave + side_burn)) * np.ones_like(p)
    front = np.maximum(front, head.distance)
    return _blend(image, head.hair_value, _soft(front, grids.edge))


def _draw_beard(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, face: Face, head: _Head
) -> np.ndarray:
    """Facial hair now and then: a band round the mouth."""
    if not rng.random() < 0.08:
        return image
    u, v, kp = grids.u, grids.v, face.keypoints_face
    line_v, half_width = face.parameters["mouth_v"], (kp[11][0] - kp[12][0]) / 2
    beard = np.maximum(
        _ellipse_distance(u, v, 0, line_v + 4, half_width + 6, 10),
        -(_ellipse_distance(u, v, 0, line_v, half_width + 1, 4.5)),
    )
    return _blend(image, head.hair_value * 0.9, _soft(beard, 2.0) * head.alpha * 0.85)


def _glasses(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, kp: np.ndarray
) -> np.ndarray:
    """Two rims, a bridge, tinted lenses."""
    u, v, edge = grids.u, grids.v, grids.edge
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
    bridge = _polyline_distance(u, v, np.array([[-inner_u, eye_v - 1], [inner_u, eye_v - 1]]))
    distance = np.minimum(distance, bridge - rim_width * 0.8)
    tint = rng.uniform(0.0, 0.35)
    image = image * (1 - tint * lens_alpha)
    return _blend(image, frame, _soft(distance, edge))


def _hand(
    image: np.ndarray, rng: np.random.Generator, grids: PixelGrids, skin: np.ndarray
) -> np.ndarray:
    """A palm and four fingers across the lower face or a cheek."""
    u, v = grids.u, grids.v
    tone = float(np.clip(skin.mean() * rng.uniform(0.85, 1.2), 0.1, 0.95))
    centre = np.array([rng.uniform(-30, 30), rng.uniform(10, 45)])
    angle = rng.uniform(-0.6, 0.6)
    fingers = _ellipse_distance(u, v, centre[0], centre[1], 13, 10, angle)  # the palm
    c, s = math.cos(angle), math.sin(angle)
    for index in range(4):
        offset = np.array([-7.5 + index * 5.0, -13.0])
        finger_centre = centre + np.array(
            [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]]
        )
        fingers = np.minimum(fingers, _ellipse_distance(u, v, *finger_centre, 2.3, 8.0, angle))
    shade = tone * (0.9 + 0.1 * _smooth_noise(rng, grids.pose.size, 6))
    return _blend(image, shade, _soft(fingers, grids.edge))


def _held_object(image: np.ndarray, rng: np.random.Generator, grids: PixelGrids) -> np.ndarray:
    """A box: a microphone, a cup, a bar."""
    centre = np.array([rng.uniform(-35, 35), rng.uniform(0, 45)])
    box = np.maximum(
        np.abs(grids.u - centre[0]) - rng.uniform(3, 9),
        np.abs(grids.v - centre[1]) - rng.uniform(4, 14),
    )
    return _blend(image, rng.uniform(0.0, 1.0), _soft(box, grids.edge))


def occlude(
    image: np.ndarray,
    rng: np.random.Generator,
    grids: PixelGrids,
    kp: np.ndarray,
    skin: np.ndarray,
) -> np.ndarray:
    """Glasses (16%), a hand (5%) or an object (3%) over part of the face."""
    roll = rng.random()
    if roll < 0.16:
        return _glasses(image, rng, grids, kp)
    if roll < 0.21:
        return _hand(image, rng, grids, skin)
    if roll < 0.24:
        return _held_object(image, rng, grids)
    return image


def _develop(image: np.ndarray, rng: np.random.Generator, pose: FacePose) -> np.ndarray:
    """The camera: a lighting gradient, blur, gamma, sensor noise, 8-bit gray."""
    size = pose.size
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (
        np.cos(direction) * (np.arange(size)[None, :] - size / 2)
        + np.sin(direction) * (np.arange(size)[:, None] - size / 2)
    ) / size
    image = image * (1.0 + rng.uniform(0.0, 0.5) * ramp)
    blur = rng.uniform(0.0, 1.3) * pose.k
    if blur > 0.3:
        image = ndimage.gaussian_filter(image, blur, mode="nearest")
    image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.75, 1.35)
    image = image + rng.normal(0, rng.uniform(0.004, 0.035), image.shape)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def render(rng: np.random.Generator, grids: PixelGrids, face: Face, scene: Scene) -> np.ndarray:
    """Draw ``face`` posed as ``grids`` say, on ``scene``: a uint8 (size, size) image."""
    image = _background(scene, grids.pose.size)
    image, head = _draw_head(image, rng, grids, scene)
    image = np.array(image)  # the features below draw into it in place
    _draw_eyes(image, rng, grids, face, head)
    _draw_brows(image, grids, face, head, scene.hair_tone)
    _draw_nose(image, grids, face, head)
    _draw_mouth(image, rng, grids, face, head)
    image = _draw_front_hair(image, rng, grids, face, scene, head)
    image = _draw_beard(image, rng, grids, face, head)
    image = occlude(image, rng, grids, face.keypoints_face, head.skin)
    return _develop(image, rng, grids.pose)
