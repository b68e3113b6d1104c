"""The crop policy, in one place: where in a picture the model's square input is cut.

A crop is ``np.ndarray`` (4,) float64 ``(x0, y0, side, scale)``: the box covers
``x0 <= x <= x0 + side`` and ``y0 <= y <= y0 + side`` in the picture's keypoint
coordinates (pixel centres: the centre of column ``i`` is ``x = i``, so an image ``W``
pixels wide covers ``-0.5 <= x <= W - 0.5``), and ``scale = size / side`` crop pixels per
picture pixel. The crop's ``size`` pixels cover the same box, ``-0.5 <= u <= size - 0.5``:

    u = (x - x0) * scale - 0.5        (:func:`to_crop`)
    x = (u + 0.5) / scale + x0        (:func:`to_original`)

Outside the picture the crop is black (zeros): the box is never shifted or shrunk to fit.

Four ways to choose the box, one per situation:

- :func:`crop_box`: around known landmarks with a margin (the data readers, training);
- :func:`whole_image_crop`: the whole picture padded to a square (``--detector none``);
- :func:`crop_from_box`: around a detector's box, framed like the training crops (the
  mapping per detector is measured on real Kaggle-layout crops and brought to the
  training data's framing: see :data:`BOX_TO_CROP`);
- :func:`crop_from_keypoints`: where the previous frame's keypoints sit as the scheme's
  mean shape sits in a training crop (video tracking; :data:`REFERENCE_SHAPES`).

Two ways to cut it: :func:`crop_image` (Pillow, anti-aliased; the readers and ``predict``
on photos) and :func:`cut` (OpenCV, fast; video), which agree to about a gray level on
smooth images.

Pillow's convention (derived and tested)
----------------------------------------
``Image.resize(size, BILINEAR, box=(l, t, r, b))`` works in *corner* coordinates (pixel
``i`` spans ``[i, i + 1)``): output pixel ``j`` samples the input at corner coordinate
``l + (j + 0.5) * (r - l) / size``, i.e. at centre coordinate
``l - 0.5 + (j + 0.5) * (r - l) / size``. So the box above is passed as
``l = x0 + 0.5``, ``r = l + side`` (same for y), which gives exactly the mapping
above. ``resize`` filters with a triangle scaled to the reduction when shrinking
(anti-aliased), unlike ``transform(AFFINE, BILINEAR)`` which point-samples; on a linear
ramp its output matches the mapping to 1e-4 px when enlarging and to about 0.05 px when
shrinking 3x (the discrete filter is slightly asymmetric). ``resize`` refuses a box
past the image, so :func:`crop_image` first takes ``Image.crop`` of the box plus the
filter's reach, which Pillow fills with zeros outside the image.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from fkdbench.faces.detect import FaceBox

DEFAULT_SIZE = 96
DEFAULT_MARGIN = 0.25
# The side of the training crops the reference shapes are stated in.
REFERENCE_SIDE = 96
REFERENCE_FILE = Path(__file__).with_name("reference_shapes.json")

# Detector box -> training crop: the crop's side is ``scale`` times the box's side (the
# mean of its width and height) and its centre is the box's centre moved by
# ``(dx, dy)`` box sides.
#
# Measured (fkdbench.faces.evaluate.fit_box_to_crop: the median over the faces found) on
# the shared real Kaggle-layout crops (real-faces-kaggle15: all 68 points framed with a
# 12% margin, 96 px), 3x upscaled and framed by a quarter of their side, the true crop
# being the crop itself: every 17th row (200 crops) for haar (198 found) and dlib-hog
# (upsample 1, 182 found), every 34th (100) for dlib-mmod (99 found). The boxes sit high
# on the face (brows to lower lip), hence dy > 0 there:
REAL_KAGGLE15_BOX_TO_CROP: dict[str, tuple[float, float, float]] = {
    "haar": (1.0511, -0.0062, 0.1654),
    "dlib-hog": (1.0726, 0.0, 0.1097),
    "dlib-mmod": (1.2152, 0.0527, 0.1414),
}
# Those crops are tighter than the training data's (the synthetic default, built to look
# like Kaggle's own crops): in a real crop, the crop in which the real mean shape sits as
# the synthetic mean shape (REFERENCE_SHAPES' kaggle15) sits in its own is
# (x0, y0, side) = (-0.648, -16.600, 98.673) (least squares, 1.8 px RMS residual). The
# mapping used, composed of the two, frames a detected face like the training faces:
BOX_TO_CROP: dict[str, tuple[float, float, float]] = {
    "haar": (1.0804, 0.0068, 0.0038),
    "dlib-hog": (1.1025, 0.0133, -0.0552),
    "dlib-mmod": (1.2490, 0.0677, -0.0455),
}
# ``framing`` of crop_from_box / box_for_training_crop: the training data's (default) or
# the shared real sample's (a model trained on it, or a peer scored on its crops).
FRAMINGS = {"training": BOX_TO_CROP, "real-kaggle15": REAL_KAGGLE15_BOX_TO_CROP}


# -- the mapping ----------------------------------------------------------------------------
def to_crop(keypoints: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Original-image pixels -> crop pixels. ``keypoints`` (..., K, 2) with ``crop``
    (4,) or one crop per sample (N, 4) for (N, K, 2); NaN stays NaN. Float64."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    crop = np.asarray(crop, dtype=np.float64)
    return (keypoints - crop[..., None, 0:2]) * crop[..., None, 3:4] - 0.5


def to_original(keypoints: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Crop pixels -> original-image pixels; the exact inverse of :func:`to_crop`."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    crop = np.asarray(crop, dtype=np.float64)
    return (keypoints + 0.5) / crop[..., None, 3:4] + crop[..., None, 0:2]


def _square(centre_x: float, centre_y: float, side: float, size: int) -> np.ndarray:
    return np.array([centre_x - side / 2, centre_y - side / 2, side, size / side])


# -- choosing the box -----------------------------------------------------------------------
def crop_box(
    points: np.ndarray,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    face_box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """The readers' policy: ``(x0, y0, side, scale)`` for (K, 2) keypoints (NaN =
    missing), optionally centred on a face box ``(x_min, y_min, x_max, y_max)``.

    Raises ValueError (the reason, without a file) when no box can be made."""
    points = np.asarray(points, dtype=np.float64)
    present = points[~np.isnan(points).any(axis=1)]
    if len(present) == 0:
        raise ValueError("no landmark is present")
    if face_box is None:
        low, high = present.min(axis=0), present.max(axis=0)
    else:
        low = np.array(face_box[:2], dtype=np.float64)
        high = np.array(face_box[2:], dtype=np.float64)
        if not np.all(high > low):
            raise ValueError(f"face box {tuple(float(v) for v in face_box)} is empty")
    # Coordinates near float's limits overflow to inf here: the readers reject such a box
    # by its size, so numpy need not warn.
    with np.errstate(over="ignore", invalid="ignore"):
        centre = (low + high) / 2
        side = float((high - low).max()) * (1 + 2 * margin)
        if face_box is not None:  # grow (never shift) so every landmark lies in the crop
            side = max(side, 2 * float(np.abs(present - centre).max()))
    if not side > 0:
        raise ValueError("the landmarks span no area (one point, or all points equal)")
    x0, y0 = centre - side / 2
    return np.array([x0, y0, side, size / side], dtype=np.float64)


def whole_image_crop(width: int, height: int, size: int) -> np.ndarray:
    """The whole image padded to a centred square: its pixel edges run from -0.5 to
    width - 0.5 (what ``predict`` does without a detector)."""
    side = float(max(width, height))
    return np.array([-0.5 - (side - width) / 2, -0.5 - (side - height) / 2, side, size / side])


def _box_mapping(detector: str, framing: str) -> tuple[float, float, float]:
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; known: {', '.join(FRAMINGS)}")
    mapping = FRAMINGS[framing]
    if detector not in mapping:
        known = ", ".join(mapping)
        raise ValueError(f"no box-to-crop mapping for detector {detector!r}; known: {known}")
    return mapping[detector]


def crop_from_box(box: FaceBox, detector: str, size: int, framing: str = "training") -> np.ndarray:
    """The crop that frames the face in ``box`` (found by ``detector``) the way the
    training crops frame their faces (:data:`BOX_TO_CROP`; :data:`FRAMINGS`)."""
    scale, dx, dy = _box_mapping(detector, framing)
    box_side = (box.width + box.height) / 2
    centre_x, centre_y = box.centre
    return _square(centre_x + dx * box_side, centre_y + dy * box_side, scale * box_side, size)


def box_for_training_crop(detector: str, size: int, framing: str = "training") -> FaceBox:
    """The box ``detector`` gives, on average, for a training crop of side ``size`` (the
    whole crop image): the inverse of :func:`crop_from_box`. Its score is NaN."""
    from fkdbench.faces.detect import FaceBox

    scale, dx, dy = _box_mapping(detector, framing)
    box_side = size / scale
    centre = (size - 1) / 2  # the crop's pixel edges run from -0.5 to size - 0.5
    centre_x, centre_y = centre - dx * box_side, centre - dy * box_side
    half = box_side / 2
    return FaceBox(centre_x - half, centre_y - half, centre_x + half, centre_y + half, math.nan)


@cache
def _reference_shapes() -> dict[str, np.ndarray]:
    payload = json.loads(REFERENCE_FILE.read_text())
    return {
        scheme: np.asarray(entry["points"], dtype=np.float64)
        for scheme, entry in payload["schemes"].items()
    }


def reference_shape(scheme: str) -> np.ndarray:
    """The mean keypoint placement (K, 2) of ``scheme`` in a training crop of side
    :data:`REFERENCE_SIDE` (``reference_shapes.json`` says where each came from)."""
    shapes = _reference_shapes()
    if scheme not in shapes:
        raise ValueError(f"no reference shape for scheme {scheme!r}; known: {', '.join(shapes)}")
    return shapes[scheme].copy()


def crop_from_keypoints(points: np.ndarray, scheme: str, size: int) -> np.ndarray:
    """The tracking rule: the crop in which ``points`` (K, 2 image pixels; NaN allowed)
    sit where the scheme's reference shape sits in a training crop, by a least-squares
    fit of one scale and a translation. ValueError when under two points are present."""
    points = np.asarray(points, dtype=np.float64)
    reference = reference_shape(scheme) + 0.5  # corner coordinates: 0 .. REFERENCE_SIDE
    if points.shape != reference.shape:
        raise ValueError(f"scheme {scheme} has {len(reference)} points, got {points.shape}")
    present = ~np.isnan(points).any(axis=1)
    if np.count_nonzero(present) < 2:
        raise ValueError("under two keypoints present: no crop can be fitted")
    source, target = reference[present], points[present]
    source_centred = source - source.mean(axis=0)
    target_centred = target - target.mean(axis=0)
    spread = float((source_centred**2).sum())
    ratio = float((source_centred * target_centred).sum()) / spread  # picture px per crop px
    if not ratio > 0:
        raise ValueError("the keypoints are degenerate (no positive scale fits)")
    x0, y0 = target.mean(axis=0) - ratio * source.mean(axis=0)
    side = ratio * REFERENCE_SIDE
    return np.array([x0, y0, side, size / side], dtype=np.float64)


# -- cutting it -----------------------------------------------------------------------------
def crop_image(image: Image.Image, crop: np.ndarray, size: int) -> Image.Image:
    """Cut ``crop`` out of ``image`` (zeros outside it) and resize it to ``size`` square
    with Pillow's bilinear filter; keeps the image mode (tests use "F")."""
    x0, y0, side, _ = (float(value) for value in crop)
    left, top = x0 + 0.5, y0 + 0.5  # keypoint coordinates -> Pillow's corner coordinates
    # The filter reaches max(1, side / size) input pixels around each sample; take a
    # little more, so Pillow never clips (and renormalises) the filter at the piece's edge.
    reach = math.ceil(max(1.0, side / size)) + 2
    piece_left = math.floor(left) - reach
    piece_top = math.floor(top) - reach
    piece = image.crop(
        (
            piece_left,
            piece_top,
            math.ceil(left + side) + reach,
            math.ceil(top + side) + reach,
        )
    )
    box = (left - piece_left, top - piece_top, left - piece_left + side, top - piece_top + side)
    return piece.resize((size, size), Image.Resampling.BILINEAR, box=box)


def _shrunk_piece(
    gray: np.ndarray, crop: np.ndarray, factor: int
) -> tuple[np.ndarray, float, float, int]:
    """The part of ``gray`` under ``crop`` (plus a margin), averaged over ``factor`` x
    ``factor`` blocks (anti-aliasing, like Pillow's filter); with where its pixel (0, 0)
    sits in picture coordinates and its pixel pitch."""
    import cv2

    x0, y0, side, _ = (float(value) for value in crop)
    height, width = gray.shape
    reach = 2 * factor
    left = min(max(0, math.floor(x0) - reach), width)
    top = min(max(0, math.floor(y0) - reach), height)
    right = max(min(width, math.ceil(x0 + side) + reach), left)
    bottom = max(min(height, math.ceil(y0 + side) + reach), top)
    piece = gray[top:bottom, left:right]
    pad_x, pad_y = -piece.shape[1] % factor, -piece.shape[0] % factor
    if pad_x or pad_y:
        piece = cv2.copyMakeBorder(piece, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
    if piece.size == 0:
        return piece, 0.0, 0.0, factor
    small = cv2.resize(
        piece, (piece.shape[1] // factor, piece.shape[0] // factor), interpolation=cv2.INTER_AREA
    )
    # Block i averages picture pixels left + k*i .. left + k*i + k - 1: its centre.
    return small, left + (factor - 1) / 2, top + (factor - 1) / 2, factor


def cut(gray: np.ndarray, crop: np.ndarray, size: int) -> np.ndarray:
    """``crop`` out of a gray uint8 (H, W) picture as uint8 (size, size), zeros outside:
    :func:`crop_image`'s result by OpenCV, fast enough for video (bilinear; shrinking by
    two or more first averages whole blocks of pixels, so it does not alias)."""
    import cv2

    gray = np.asarray(gray, dtype=np.uint8)
    x0, y0, side, _ = (float(value) for value in crop)
    factor = max(1, int(side / size))
    origin_x, origin_y, pitch = 0.0, 0.0, 1.0
    if factor > 1:
        gray, origin_x, origin_y, pitch = _shrunk_piece(gray, crop, factor)
    if gray.size == 0:
        return np.zeros((size, size), dtype=np.uint8)
    step = side / size  # picture pixels per crop pixel
    # Crop pixel j samples the picture at x = x0 + (j + 0.5) * step; in the piece's pixels.
    matrix = np.array(
        [
            [step / pitch, 0.0, (x0 + 0.5 * step - origin_x) / pitch],
            [0.0, step / pitch, (y0 + 0.5 * step - origin_y) / pitch],
        ]
    )
    return cv2.warpAffine(
        gray,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
