"""dlib-ert68: dlib's 68-point shape predictor on its HOG face detector, on face crops.

The predictor is the ensemble of regression trees of Kazemi & Sullivan (2014) that dlib
fitted to iBUG 300-W (``shape_predictor_68_face_landmarks.dat``, shipped in the
``face-recognition-models`` package, found with ``find_spec`` because that package's
``__init__`` needs ``pkg_resources``). It needs a face box; on a prepared data set's crops
(96x96 here) the box comes from dlib's HOG detector run on the crop upscaled
:data:`UPSCALE` times (HOG's smallest face is 80 px: at 96 px it misses most faces), and
where the detector finds nothing, from the median of the boxes it found on the split's
other faces (a data set frames all its crops alike, so that is where a face sits in its
crops, whatever the framing), counted apart; with no face found at all, from the box that
detector gives on average for a training crop
(:func:`fkdbench.faces.crop.box_for_training_crop`).

Coordinates: the predictor runs on the upscaled image, whose pixel centres sit at
``x' = (x + 0.5) * UPSCALE - 0.5`` for a crop pixel centre ``x``; dlib returns whole
pixels of that image, so the points come back at 1/UPSCALE crop pixel.

The 68 points are mapped to the data set's scheme by a stated table
(:data:`IBUG68_TO_KAGGLE15`); ``ibug68`` data is scored directly; ``wflw98`` is not mapped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fkdbench.data.schemes import IBUG68, KAGGLE15, get_scheme
from fkdbench.io import sha256_file
from fkdbench.peers import PeerError

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
DETECTOR = "dlib-hog"
# The crop is enlarged this many times (bilinear) before detection and shape prediction:
# the measurement (HOG found 741 of 797 real Kaggle crops at 3x).
UPSCALE = 3
# HOG's own pyramid upsampling on top of UPSCALE: none (the crop is already enlarged).
HOG_UPSAMPLE = 0

# Kaggle's 15 points from iBUG's 68 (0-based), each the mean of the listed points. Sides
# are the subject's in both schemes (fkdbench.data.schemes): Kaggle's left eye is iBUG's
# left eye 42-47, on the image's right. Eye centres: the mean of the eye's six contour
# points (iBUG has no pupil). Brows: iBUG's right brow runs outer 17 to inner 21, the left
# brow inner 22 to outer 26. Nose tip: 30, the end of the bridge. Mouth corners: the outer
# lip corners 48 (image left: the subject's right) and 54; lip centres: 51 (top of the
# upper lip) and 57 (bottom of the lower lip), Kaggle's outer lip centres.
IBUG68_TO_KAGGLE15: dict[str, tuple[int, ...]] = {
    "left_eye_center": (42, 43, 44, 45, 46, 47),
    "right_eye_center": (36, 37, 38, 39, 40, 41),
    "left_eye_inner_corner": (42,),
    "left_eye_outer_corner": (45,),
    "right_eye_inner_corner": (39,),
    "right_eye_outer_corner": (36,),
    "left_eyebrow_inner_end": (22,),
    "left_eyebrow_outer_end": (26,),
    "right_eyebrow_inner_end": (21,),
    "right_eyebrow_outer_end": (17,),
    "nose_tip": (30,),
    "mouth_left_corner": (54,),
    "mouth_right_corner": (48,),
    "mouth_center_top_lip": (51,),
    "mouth_center_bottom_lip": (57,),
}


def map_points(points68: np.ndarray, scheme: str) -> np.ndarray:
    """iBUG-68 points (..., 68, 2) as the keypoints of ``scheme`` (..., K, 2).

    ``ibug68``: as they are; ``kaggle15``: by :data:`IBUG68_TO_KAGGLE15`, in Kaggle's
    order; any other scheme is a :class:`PeerError` (no stated mapping).
    """
    points68 = np.asarray(points68, dtype=np.float64)
    if points68.shape[-2:] != (IBUG68.num_keypoints, 2):
        raise ValueError(f"expected (..., 68, 2) points, got {points68.shape}")
    if scheme == IBUG68.name:
        return points68.copy()
    if scheme == KAGGLE15.name:
        return np.stack(
            [points68[..., list(IBUG68_TO_KAGGLE15[name]), :].mean(axis=-2) for name in
             KAGGLE15.keypoints],
            axis=-2,
        )  # fmt: skip
    get_scheme(scheme)  # an unknown name says which are known
    raise PeerError(f"dlib-ert68 predicts iBUG's 68 points: no stated mapping to {scheme}")


def model_path() -> Path:
    """The 68-point model file inside ``face_recognition_models`` (not imported)."""
    from fkdbench.faces.detect import recognition_model_file

    try:
        return recognition_model_file(MODEL_FILE)
    except ModuleNotFoundError as error:
        raise PeerError(f"dlib-ert68: {error} (uv sync --extra peers)") from None


def upscale_box(box: object, factor: int) -> tuple[int, int, int, int]:
    """A FaceBox in crop pixels as dlib's rectangle (left, top, right, bottom: the
    first and last pixel inside) in the image enlarged ``factor`` times."""

    def inside(edge: float, last: bool) -> int:
        # Pixel edges e map to e' = (e + 0.5) * factor - 0.5; the pixels inside start half
        # a pixel after the first edge and end half a pixel before the last.
        scaled = (edge + 0.5) * factor - 0.5
        return round(scaled - 0.5) if last else round(scaled + 0.5)

    return (
        inside(box.x_min, False),
        inside(box.y_min, False),
        inside(box.x_max, True),
        inside(box.y_max, True),
    )


@dataclass(frozen=True)
class FacePrediction:
    """The peer on one face: 68 points in crop pixels, how its box was found, and what
    each stage cost (seconds, one thread)."""

    points68: np.ndarray  # float64 (68, 2)
    detected: bool  # False: the detector found nothing (or a box was given)
    detect_seconds: float  # upscale + HOG detection
    shape_seconds: float  # the shape predictor and reading its points
    # The box the shape predictor was given, in the enlarged crop's pixels (dlib's
    # inclusive left, top, right, bottom).
    box: tuple[int, int, int, int] | None = None


class DlibErt68:
    """dlib's HOG detector and 68-point shape predictor, on one gray face crop at a time."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        import dlib

        self._dlib = dlib
        self.model_file = model_path()
        # Loaded on the first face (a 100 MB model, seconds), so that settings() and a
        # reused record cost no load.
        self._predictor: Any = None
        self._detector = dlib.get_frontal_face_detector()
        self._clock = clock
        self._fallback: dict[int, tuple[int, int, int, int]] = {}

    def _fallback_box(self, size: int) -> tuple[int, int, int, int]:
        """Where HOG's box sits, on average, in a training crop of side ``size``."""
        if size not in self._fallback:
            from fkdbench.faces.crop import box_for_training_crop

            self._fallback[size] = upscale_box(box_for_training_crop(DETECTOR, size), UPSCALE)
        return self._fallback[size]

    def _shape_predictor(self) -> Any:
        if self._predictor is None:
            self._predictor = self._dlib.shape_predictor(str(self.model_file))
        return self._predictor

    def _detect(self, big: np.ndarray) -> tuple[int, int, int, int] | None:
        rects, scores, _ = self._detector.run(big, HOG_UPSAMPLE, 0.0)
        if not rects:
            return None
        best = rects[int(np.argmax(scores))]
        return best.left(), best.top(), best.right(), best.bottom()

    def predict(
        self, crop: np.ndarray, box: tuple[int, int, int, int] | None = None
    ) -> FacePrediction:
        """The 68 points on ``crop`` (uint8, H x W), in its pixels (pixel centres); with
        ``box`` (enlarged pixels), on that box, without detecting."""
        if crop.ndim != 2 or crop.dtype != np.uint8:
            raise ValueError(f"expected a gray uint8 (H, W) crop, got {crop.dtype} {crop.shape}")
        predictor = self._shape_predictor()
        started = self._clock()
        big = cv2.resize(crop, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_LINEAR)
        detected = False
        if box is None:
            box = self._detect(big)
            detected = box is not None
        detect_end = self._clock()
        if box is None:
            box = self._fallback_box(int(crop.shape[1]))
        shape = predictor(big, self._dlib.rectangle(*box))
        points = np.array([(part.x, part.y) for part in shape.parts()], dtype=np.float64)
        shape_end = self._clock()
        return FacePrediction(
            points68=(points + 0.5) / UPSCALE - 0.5,
            detected=detected,
            detect_seconds=detect_end - started,
            shape_seconds=shape_end - detect_end,
            box=tuple(int(value) for value in box),
        )

    def map_points(self, points68: np.ndarray, scheme: str) -> np.ndarray:
        """The peer's points as ``scheme``'s keypoints (:func:`map_points`)."""
        return map_points(points68, scheme)

    def check_scheme(self, scheme: str) -> None:
        """:class:`PeerError` when the points cannot be mapped to ``scheme``."""
        map_points(np.zeros((0, IBUG68.num_keypoints, 2)), scheme)

    def settings(self) -> dict[str, object]:
        """What the record says of how the peer was run."""
        return {
            "detector": DETECTOR,
            "upscale": UPSCALE,
            "upscale_interpolation": "bilinear (cv2.INTER_LINEAR)",
            "hog_upsample": HOG_UPSAMPLE,
            "box_when_not_detected": "the median of the boxes the detector found on the "
            "split's other faces (fkdbench.peers.score.median_box); with none found, "
            f"fkdbench.faces.crop.box_for_training_crop({DETECTOR!r})",
            "model_file": self.model_file.name,
            "model_sha256": sha256_file(self.model_file),
            "kaggle15_mapping": {name: list(points) for name, points in
                                 IBUG68_TO_KAGGLE15.items()},
            "versions": {package: _version(package) for package in
                         ("dlib-bin", "dlib", "face-recognition-models", "opencv-python-headless")},
        }  # fmt: skip


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
