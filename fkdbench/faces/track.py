"""Following one face through a video: detect, then track from the keypoints, by one rule.

The rule (:data:`RULE`), as real-time face trackers do it:

1. With no face tracked, the detector runs on the frame; the highest-scoring face is
   followed (one face only) and its crop comes from the detector's box
   (:func:`fkdbench.faces.crop.crop_from_box`). No face found: the frame is reported as
   "no face" and the next frame runs the detector again.
2. Between detections the next frame's crop is the one in which this frame's keypoints
   sit where the scheme's reference shape sits in a training crop
   (:func:`fkdbench.faces.crop.crop_from_keypoints`).
3. The detector runs again every :data:`REDETECT_EVERY` frames (it catches a track that
   slid onto something that is not a face, which keypoints alone cannot tell), first
   near the tracked face (:data:`ROI_GROWTH`, :data:`ROI_SIDE`) and on the whole frame
   only when nothing is found there, and at once, on the same frame, when the face is
   *lost*: :func:`lost_reason` says the
   tracked keypoints are not a face being followed when

   - a keypoint is not a number, or the keypoints are degenerate (no crop fits them);
   - more than :data:`MAX_OUTSIDE_CROP` of them fall outside the crop they were predicted
     in (the face moved out of it faster than the crop could follow);
   - fewer than :data:`MIN_IN_FRAME` of them lie inside the frame (the face is leaving);
   - the crop they give differs in side from the crop they came from by more than a
     factor :data:`MAX_SCALE_JUMP` (faces do not halve or double in size between two
     frames; a model on a non-face does jump).

   A face lost on a frame that already ran the detector is reported as found (that is
   the detector's word), and the next frame detects again.

With the detector ``none`` there is nothing to detect or follow: every frame is the
whole frame padded to a square (:func:`fkdbench.faces.crop.whole_image_crop`), as
``predict`` does with pictures that are already face crops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fkdbench.faces.crop import (
    crop_from_box,
    crop_from_keypoints,
    cut,
    to_original,
    whole_image_crop,
)
from fkdbench.faces.detect import Detector, FaceBox
from fkdbench.faces.stages import StageClock

# Once a second at 30 frames per second: a detector costs tens of ms at 640x480, the
# model a fraction of one, so tracking is what makes hundreds of frames per second.
REDETECT_EVERY = 30
# A detection while a face is tracked (the periodic one, or on a lost track) first looks
# only near it: in the square ROI_GROWTH times the crop's side around the crop, shrunk to
# ROI_SIDE px (the face then spans about a third to a half of it, well above a detector's
# smallest window), and searches the whole frame only when nothing is found there. On the
# 640x480 FPS clip this takes Haar from ~50 ms to a few ms per detection.
ROI_GROWTH = 2.0
ROI_SIDE = 160
MAX_OUTSIDE_CROP = 0.25
MIN_IN_FRAME = 0.5
MAX_SCALE_JUMP = 1.5
RULE = (
    f"track from the previous keypoints; detect (near the face first, then the whole "
    f"frame) every {REDETECT_EVERY} frames and when "
    f"lost (> {MAX_OUTSIDE_CROP:.0%} of keypoints outside their crop, < {MIN_IN_FRAME:.0%} "
    f"inside the frame, or the crop's side jumping by > {MAX_SCALE_JUMP}x)"
)

# What a frame's face is: how its crop was found, or that there is none.
DETECTED, TRACKED, REDETECTED, WHOLE_FRAME, NO_FACE = (
    "detected",
    "tracked",
    "redetected",
    "whole frame",
    "no face",
)

# Keypoints (K, 2) in frame pixels of the face in ``crop`` of the gray ``frame`` number
# ``index``: a model (fkdbench.faces.video.model_locator) or, in tests, the truth.
Locator = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass
class FrameFace:
    """One frame's face: how it was found, its crop, the detector's score (detection
    frames) and its keypoints (frame pixels); None of these for "no face"."""

    status: str
    crop: np.ndarray | None = None
    score: float | None = None
    points: np.ndarray | None = None
    # Why the track ended on this frame (then the detector ran again), else None.
    lost: str | None = None


def lost_reason(
    points: np.ndarray, crop: np.ndarray, width: int, height: int, scheme: str, size: int
) -> str | None:
    """Why ``points`` (predicted in ``crop`` of a ``width`` x ``height`` frame) are not a
    face being followed, by the module's rule; None when they are."""
    points = np.asarray(points, dtype=np.float64)
    if np.isnan(points).any():
        return "keypoints missing"
    x0, y0, side, _ = crop
    in_crop = (points >= (x0, y0)) & (points <= (x0 + side, y0 + side))
    if 1 - np.mean(in_crop.all(axis=1)) > MAX_OUTSIDE_CROP:
        return "keypoints left the crop"
    in_frame = (points >= -0.5) & (points <= (width - 0.5, height - 0.5))
    if np.mean(in_frame.all(axis=1)) < MIN_IN_FRAME:
        return "face left the frame"
    try:
        following = crop_from_keypoints(points, scheme, size)
    except ValueError:
        return "keypoints degenerate"
    ratio = following[2] / side
    if not 1 / MAX_SCALE_JUMP <= ratio <= MAX_SCALE_JUMP:
        return f"crop side jumped {ratio:.2f}x"
    return None


@dataclass
class FaceTracker:
    """The tracking state of one video: the crop for the next frame and when to detect.

    ``detect`` is the detector opened by name ``detector`` (its box-to-crop mapping);
    ``scheme`` and ``size`` are the model's keypoint scheme and input side.
    """

    detect: Detector
    detector: str
    scheme: str
    size: int
    redetect_every: int = REDETECT_EVERY
    _next_crop: np.ndarray | None = field(default=None, init=False)
    _since_detection: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1, got {self.redetect_every}")

    def step(
        self, gray: np.ndarray, index: int, locate: Locator, stages: StageClock | None = None
    ) -> FrameFace:
        """The face of frame ``index`` (gray uint8 (H, W)), by the module's rule."""
        height, width = gray.shape
        if self.detector == "none":
            crop = whole_image_crop(width, height, self.size)
            return FrameFace(WHOLE_FRAME, crop, None, locate(gray, crop, index))
        due = self._next_crop is None or self._since_detection >= self.redetect_every
        if not due:
            crop = self._next_crop
            points = locate(gray, crop, index)
            reason = lost_reason(points, crop, width, height, self.scheme, self.size)
            if reason is None:
                self._follow(points, stages)
                return FrameFace(TRACKED, crop, None, points)
            face = self._detect(gray, index, locate, stages)
            face.lost = reason
            if face.status == DETECTED:
                face.status = REDETECTED
            return face
        return self._detect(gray, index, locate, stages)

    def _detect(
        self, gray: np.ndarray, index: int, locate: Locator, stages: StageClock | None
    ) -> FrameFace:
        with _timed(stages, "detect"):
            faces = self._near(gray, self._next_crop) if self._next_crop is not None else []
            faces = faces or self.detect(gray)
        self._next_crop, self._since_detection = None, 0
        if not faces:
            return FrameFace(NO_FACE)
        box: FaceBox = faces[0]  # sorted by score: the highest-scoring face is followed
        with _timed(stages, "crop"):
            crop = crop_from_box(box, self.detector, self.size)
        points = locate(gray, crop, index)
        height, width = gray.shape
        if lost_reason(points, crop, width, height, self.scheme, self.size) is None:
            self._follow(points, stages)
        return FrameFace(DETECTED, crop, box.score, points)

    def _near(self, gray: np.ndarray, crop: np.ndarray) -> list[FaceBox]:
        """The detector's faces in the region around ``crop``, shrunk to ROI_SIDE px, as
        boxes in the frame's pixels (pixel edges map like keypoints: affinely)."""
        x0, y0, side, _ = crop
        grown = side * ROI_GROWTH
        region = np.array(
            [x0 - (grown - side) / 2, y0 - (grown - side) / 2, grown, ROI_SIDE / grown]
        )
        faces = []
        for box in self.detect(cut(gray, region, ROI_SIDE)):
            corners = to_original(
                np.array([[box.x_min, box.y_min], [box.x_max, box.y_max]]), region
            )
            faces.append(FaceBox(*corners.reshape(-1), box.score))
        return faces

    def _follow(self, points: np.ndarray, stages: StageClock | None) -> None:
        with _timed(stages, "crop"):
            self._next_crop = crop_from_keypoints(points, self.scheme, self.size)
        self._since_detection += 1


def _timed(stages: StageClock | None, name: str) -> contextlib.AbstractContextManager:
    return stages.stage(name) if stages is not None else contextlib.nullcontext()
