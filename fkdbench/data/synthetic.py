"""Procedurally drawn gray faces with exact keypoints: the embedded default data set.

No data set can be downloaded at run time, so fkdbench draws its own. Each face is
rendered pixel by pixel from soft signed-distance shapes in three coordinate frames
(image, posed, face: see :mod:`fkdbench.data.synthetic_geometry`): the head outline,
hair, ears and neck in the posed frame, the eyes, brows, nose and mouth in the face
frame, where a cylinder model undoes the head's yaw.

Keypoints are defined in face coordinates by the same numbers that draw the features
and mapped forward through the same transforms, so they are exact to float precision.
Besides Kaggle's 15 points, the generator gives the dense 300-W/iBUG (68) and WFLW (98)
landmarks of the same faces (:mod:`fkdbench.data.synthetic_dense`), drawn smaller so
that the whole jaw fits. The variation (identity, expression, pose, hair, lighting,
occluders, blur, noise) is sized so that the mean-shape predictor errs by 3-6 px RMSE,
like the real Kaggle data (about 4 px), while the features stay visible enough for a
CNN to learn them.

The modules, by concern:

- :mod:`fkdbench.data.synthetic_geometry`: the frames, the pose, the random face and
  scene parameters;
- :mod:`fkdbench.data.synthetic_render`: drawing a posed face, stage by stage;
- :mod:`fkdbench.data.synthetic_dense`: the 68- and 98-point layouts;
- this module: one face from its seed and index, many faces in worker processes, and
  Kaggle's missing-label pattern.

Every face ``i`` of a data set with seed ``s`` draws from its own random stream
``SeedSequence(s, spawn_key=(i,))``, so the result is byte-identical whatever the
number of worker processes.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fkdbench.data.schemes import KAGGLE15, KAGGLE15_SPARSE_KEYPOINTS, KeypointScheme
from fkdbench.data.synthetic_dense import dense_keypoints, dense_layout, num_keypoints
from fkdbench.data.synthetic_geometry import (
    REFERENCE_SIZE,
    PoseRanges,
    build_grids,
    sample_face,
    sample_pose,
    sample_scene,
)
from fkdbench.data.synthetic_render import render

# Shares of the real Kaggle training.csv: 2140 of 7049 rows are complete; nearly all
# others keep only the four "sparse" keypoints.
COMPLETE_ROW_FRACTION = 0.3036
SPARSE_EXACT_FRACTION = 0.97  # of incomplete rows: exactly the sparse four
SPARSE_PLUS_FRACTION = 0.02  # the sparse four plus some others; the rest lose one of the four
# Poses drawn at most for one face until every keypoint lies inside the image.
POSE_ATTEMPTS = 50


def _fits(points: np.ndarray, size: int, margin: float) -> bool:
    return bool(np.all(points >= margin) and np.all(points <= size - 1 - margin))


def _draw_face(
    seed: int, index: int, size: int, pose: PoseRanges, scheme: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face ``index``: (uint8 image, its Kaggle 15 points, its points in ``scheme``)."""
    layout = dense_layout(scheme)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    framing = 1.0 if layout is None else layout.framing
    face = sample_face(rng)
    depth = np.zeros(KAGGLE15.num_keypoints)
    depth[KAGGLE15.index("nose_tip")] = face.parameters["nose_depth"]
    margin = size / REFERENCE_SIZE
    # Redraw the pose until every keypoint lies inside the image with a margin. The jaw
    # follows the head outline, which the rendering draws after the pose: a copy of the
    # stream tells it without drawing anything from the stream itself.
    for _attempt in range(POSE_ATTEMPTS):
        posed = sample_pose(rng, size, pose, framing)
        keypoints = posed.face_to_image(face.keypoints_face, depth)
        if layout is None:
            dense = keypoints
        else:
            head = sample_scene(copy.deepcopy(rng), posed.k).head
            dense = dense_keypoints(posed, face, head, layout)
        if _fits(keypoints, size, margin) and _fits(dense, size, margin):
            break
    image = render(rng, build_grids(posed), face, sample_scene(rng, posed.k))
    return image, keypoints.astype(np.float32), dense.astype(np.float32)


def render_face(
    seed: int,
    index: int,
    size: int = REFERENCE_SIZE,
    pose: PoseRanges = PoseRanges(),  # noqa: B008 - frozen, so sharing is safe
    scheme: str = KAGGLE15.name,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw face ``index`` of the data set with ``seed``: (uint8 image, (K, 2) keypoints)
    in ``scheme``: ``kaggle15`` (15), ``ibug68`` (68) or ``wflw98`` (98).

    The dense schemes draw the same face (same random draws) smaller, so that the whole
    jaw fits; see :attr:`fkdbench.data.synthetic_dense.DenseLayout.framing`.
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


__all__ = [
    "PoseRanges",
    "REFERENCE_SIZE",
    "generate_faces",
    "kaggle_missing_mask",
    "num_keypoints",
    "render_face",
]
