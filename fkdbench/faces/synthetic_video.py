"""A generated video clip with known keypoints in every frame: the video tests' material.

One synthetic face (:mod:`fkdbench.data.synthetic`: the same identity, hair, lighting and
noise in every frame) moves over a fixed textured background, turns a little (yaw and
roll), grows and shrinks, leaves the frame on the right and comes back (on the ``stays``
path it never leaves). Each frame's face is rendered as a square patch by the data set's
own renderer and blended into the background through a soft ellipse around the head, so
the face looks as it does in the training crops while its surroundings are the clip's.
The keypoints come from the same
pose, so they are exact (to the renderer's float precision) in frame pixels, also
while the face is off the frame (there they lie outside it).

:func:`clip_truth` gives the truth without drawing anything; :func:`render_clip` draws
the frames; :func:`write_clip` writes them as a video with PyAV
(:func:`fkdbench.faces.video.write_gray_video`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fkdbench.data.schemes import KAGGLE15
from fkdbench.data.synthetic_geometry import (
    REFERENCE_SIZE,
    FacePose,
    build_grids,
    sample_face,
    sample_scene,
)
from fkdbench.data.synthetic_render import render

WIDTH, HEIGHT = 640, 480
FRAMES = 120
FPS = 30
# The square each frame's face is drawn in, and the face's size in it: at scale 1 the
# face fills a training-style crop of PATCH * FRAMING pixels (141 px at 256).
PATCH = 256
FRAMING = 0.55
# The head's blend ellipse, in posed (reference) units: a little beyond the head
# outline (half width 36-42, half height 47-55), so hair and ears come along.
BLEND_HALF_WIDTH, BLEND_HALF_HEIGHT, BLEND_EDGE = 50.0, 62.0, 4.0
# A frame shows the face when every keypoint lies at least this share of the face's
# crop side inside the frame (a half-visible face is neither in view nor gone).
IN_VIEW_MARGIN = 0.1
# The identity drawn (the default data set's seed and a face index whose draws give a
# plain face: no hand or held object in front of it).
FACE_SEED, FACE_INDEX = 0, 7


@dataclass(frozen=True)
class ClipTruth:
    """What is true of each frame of the clip."""

    keypoints: np.ndarray  # float64 (frames, 15, 2) frame pixels (Kaggle 15 points)
    in_view: np.ndarray  # bool (frames,): the whole face inside the frame (IN_VIEW_MARGIN)
    gone: np.ndarray  # bool (frames,): no keypoint inside the frame
    crop_sides: np.ndarray  # float64 (frames,): side of the face's training-style crop
    fps: int = FPS

    @property
    def frames(self) -> int:
        return len(self.keypoints)


# The face centre's path, (frame, x, y) knots over FRAMES frames. "leaves" (the tests'
# clip): drifts, leaves on the right (about frames 40-55), stays out, comes back (about
# frames 78-90) and drifts again. "stays" (the FPS clip of reproduce's video bench: what
# a camera facing its user sees): the same drift, the face never leaving the frame.
PATHS: dict[str, tuple[list[int], list[int], list[int]]] = {
    "leaves": ([0, 30, 64, 74, 104, FRAMES - 1], [220, 400, 860, 860, 380, 300],
               [250, 215, 235, 235, 260, 240]),
    "stays": ([0, 30, 64, 74, 104, FRAMES - 1], [220, 400, 440, 420, 380, 300],
              [250, 215, 235, 235, 260, 240]),
}  # fmt: skip


def _path(t: np.ndarray, path: str = "leaves") -> tuple[np.ndarray, np.ndarray]:
    """The face centre (x, y) at frame ``t`` on ``path`` (:data:`PATHS`)."""
    if path not in PATHS:
        raise ValueError(f"unknown clip path {path!r}; known: {', '.join(PATHS)}")
    knots_t, knots_x, knots_y = PATHS[path]
    return np.interp(t, knots_t, knots_x), np.interp(t, knots_t, knots_y)


def _pose(frame: int, radius: float, path: str = "leaves") -> tuple[FacePose, float, float]:
    """The face's pose in its patch, and where the patch's centre sits in the frame."""
    phase = 2 * math.pi * frame / FRAMES
    roll = math.radians(8.0 * math.sin(1.5 * phase))
    yaw = math.radians(15.0 * math.sin(phase + 0.6))
    scale = 1.0 + 0.2 * math.sin(phase - 0.4)
    centre_x, centre_y = (float(value) for value in _path(np.array(frame), path))
    k = PATCH / REFERENCE_SIZE * FRAMING
    # As in sample_pose: the crop centres the features, not the skull, of a turned head.
    shift = np.array([-0.8 * radius * math.sin(yaw), 0.0])
    return FacePose(PATCH, k, roll, scale, shift, yaw, radius), centre_x, centre_y


def _identity() -> tuple[np.random.Generator, object, object, np.ndarray]:
    """The face's stream (after its shape and scene draws), face, scene and depths."""
    rng = np.random.default_rng(np.random.SeedSequence(FACE_SEED, spawn_key=(FACE_INDEX,)))
    face = sample_face(rng)
    scene = sample_scene(rng, PATCH / REFERENCE_SIZE * FRAMING)
    depth = np.zeros(KAGGLE15.num_keypoints)
    depth[KAGGLE15.index("nose_tip")] = face.parameters["nose_depth"]
    return rng, face, scene, depth


# The cylinder radius of the clip's head (sample_pose draws 40-46).
CYLINDER_RADIUS = 43.0


def _patch_origin(centre_x: float, centre_y: float) -> tuple[int, int]:
    """The frame pixel of the patch's pixel (0, 0): the patch centre nearest the path."""
    half = (PATCH - 1) / 2
    return round(centre_x - half), round(centre_y - half)


def clip_truth(path: str = "leaves") -> ClipTruth:
    """The keypoints of every frame, and which frames show the face, without drawing."""
    _rng, face, _scene, depth = _identity()
    points, sides = [], []
    for frame in range(FRAMES):
        pose, centre_x, centre_y = _pose(frame, CYLINDER_RADIUS, path)
        left, top = _patch_origin(centre_x, centre_y)
        points.append(pose.face_to_image(face.keypoints_face, depth) + (left, top))
        sides.append(REFERENCE_SIZE * pose.k * pose.scale)
    keypoints, crop_sides = np.asarray(points), np.asarray(sides)
    margin = (IN_VIEW_MARGIN * crop_sides)[:, None]
    x, y = keypoints[..., 0], keypoints[..., 1]
    inside = (x >= -0.5) & (x <= WIDTH - 0.5) & (y >= -0.5) & (y <= HEIGHT - 0.5)
    in_view = (x >= margin) & (x <= WIDTH - 1 - margin) & (y >= margin) & (y <= HEIGHT - 1 - margin)
    return ClipTruth(keypoints, in_view.all(axis=1), ~inside.any(axis=1), crop_sides)


def background(seed: int = 11) -> np.ndarray:
    """The clip's fixed backdrop (float, 0..1): a smooth field, stripes and a few boxes,
    so a detector and a tracker have texture to be fooled by."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.25, 0.75, (6, 8)).astype(np.float32)
    field = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    field += 0.06 * np.sin(2 * math.pi * (0.8 * xs + 0.6 * ys) / 23.0)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, WIDTH - 80)), int(rng.integers(0, HEIGHT - 80))
        w, h = (int(value) for value in rng.integers(30, 120, 2))
        field[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.1, 0.9)
    return np.clip(field, 0.0, 1.0)


def _blend_alpha(pose: FacePose, centre_v: float) -> np.ndarray:
    """The head's coverage (0..1) in the patch: a soft ellipse in posed units."""
    grids = build_grids(pose)
    radius = np.sqrt(
        (grids.p / BLEND_HALF_WIDTH) ** 2 + ((grids.q - centre_v) / BLEND_HALF_HEIGHT) ** 2
    )
    distance = (radius - 1.0) * BLEND_HALF_WIDTH
    return np.clip(0.5 - distance / BLEND_EDGE, 0.0, 1.0)


def _paste(canvas: np.ndarray, patch: np.ndarray, alpha: np.ndarray, left: int, top: int) -> None:
    """Blend ``patch`` into ``canvas`` at (left, top), clipped to the canvas."""
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + PATCH, WIDTH), min(top + PATCH, HEIGHT)
    if x1 <= x0 or y1 <= y0:
        return
    part = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    a = alpha[part]
    canvas[y0:y1, x0:x1] = a * patch[part] + (1 - a) * canvas[y0:y1, x0:x1]


def render_clip(frames: int = FRAMES, path: str = "leaves") -> tuple[np.ndarray, ClipTruth]:
    """The first ``frames`` frames, uint8 gray (frames, HEIGHT, WIDTH), and the truth."""
    rng, face, scene, _depth = _identity()
    truth = clip_truth(path)
    backdrop = background()
    out = np.empty((frames, HEIGHT, WIDTH), dtype=np.uint8)
    for frame in range(frames):
        canvas = backdrop.copy()
        pose, centre_x, centre_y = _pose(frame, CYLINDER_RADIUS, path)
        if not truth.gone[frame]:
            # The same draws every frame: one face, one lighting, one noise pattern.
            patch = render(copy.deepcopy(rng), build_grids(pose), face, scene)
            alpha = _blend_alpha(pose, scene.head.centre_v)
            left, top = _patch_origin(centre_x, centre_y)
            _paste(canvas, patch.astype(np.float64) / 255.0, alpha, left, top)
        out[frame] = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    keypoints = truth.keypoints[:frames]
    part = ClipTruth(
        keypoints, truth.in_view[:frames], truth.gone[:frames], truth.crop_sides[:frames]
    )
    return out, part


def write_clip(path: Path, frames: int = FRAMES, face_path: str = "leaves") -> ClipTruth:
    """Render the clip (the face on ``face_path``, :data:`PATHS`) and write it to ``path``
    (the suffix picks the container)."""
    from fkdbench.faces.video import write_gray_video

    images, truth = render_clip(frames, face_path)
    write_gray_video(Path(path), images, FPS)
    return truth


# Bump when the clip's drawing changes, so a clip written by an older version is not reused.
CLIP_VERSION = 1


def bench_clip(folder: Path) -> Path:
    """The FPS clip (``stays``: the face in view in every frame, 640x480, 120 frames)
    under ``folder``, written on first use and reused after (its name carries
    :data:`CLIP_VERSION`; the bench records its sha256)."""
    path = Path(folder) / f"synthetic-stays-{WIDTH}x{HEIGHT}-v{CLIP_VERSION}.mp4"
    if not path.is_file():
        write_clip(path, face_path="stays")
    return path
