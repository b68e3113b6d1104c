"""How well each face detector finds faces, and the numbers the crop policy is fitted from.

Material (a *scene* is a gray picture with its true face boxes):

- :func:`photo_scenes`: the shared real photos (``real-faces-photos``: 60 video frames,
  68 points each); the true box is the bounding box of the 68 points;
- :func:`kaggle_scenes`: the shared real Kaggle-layout crops (``real-faces-kaggle15``),
  upscaled (3x by default: at 96 px a face is below most detectors' smallest window).
  Each crop is a square around all 68 points with a 12% margin (its README), so the true
  box is the centred square of side ``96 / 1.24`` (before upscaling);
- :func:`synthetic_scenes`: faces of the synthetic generator (68-point layout) pasted on a
  textured 640x480 background; the true box is the 68 points' bounding box.

:func:`recall` counts a true face as found when a detected box overlaps it with
IoU >= :data:`IOU_FOUND`, each box matched at most once (greedily, best IoU first);
unmatched boxes are false positives. :func:`survey` adds ms per 640x480 frame
(``python -m fkdbench.faces.evaluate``: the table behind the choice in ``detect``).

:func:`fit_box_to_crop` gives the median detector-box -> training-crop mapping behind
:data:`fkdbench.faces.crop.BOX_TO_CROP`, and :func:`kaggle_mean_shape` /
:func:`synthetic_mean_shape` / :func:`reader_mean_shape` the candidate reference shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fkdbench.faces.crop import crop_box, to_crop
from fkdbench.faces.detect import FaceBox, open_detector

IOU_FOUND = 0.4
# The shared Kaggle-layout crops frame all 68 points with this margin on each side.
KAGGLE_CROP_MARGIN = 0.12
SCENE_SIZE = (640, 480)


@dataclass(frozen=True)
class Scene:
    """A gray picture and its true face boxes (score NaN); ``crops``: the true training
    crop of each face where one is known (the whole picture, for Kaggle crops)."""

    name: str
    gray: np.ndarray
    faces: tuple[FaceBox, ...]
    crops: tuple[np.ndarray, ...] = ()
    keypoints: tuple[np.ndarray, ...] = ()  # (K, 2) picture pixels per face, where known


@dataclass
class Recall:
    """One detector on one material."""

    detector: str
    material: str
    images: int
    faces: int
    found: int
    false_positives: int
    # (scene index, face index, the detected box that found it)
    matches: list[tuple[int, int, FaceBox]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.faces if self.faces else math.nan

    def line(self) -> str:
        return (
            f"{self.detector:10s} {self.material:16s} recall {self.found}/{self.faces} "
            f"= {self.recall:.3f}, false positives {self.false_positives} in {self.images} images"
        )


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (0 when they do not meet)."""
    width = min(a.x_max, b.x_max) - max(a.x_min, b.x_min)
    height = min(a.y_max, b.y_max) - max(a.y_min, b.y_min)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.width * a.height + b.width * b.height - inter)


def match_boxes(
    truth: Sequence[FaceBox], found: Sequence[FaceBox], threshold: float = IOU_FOUND
) -> dict[int, int]:
    """Truth index -> found index, greedily by best IoU, each used once, IoU >= threshold."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    matched: dict[int, int] = {}
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def recall(
    detector: str | Callable[[np.ndarray], list[FaceBox]],
    scenes: Sequence[Scene],
    material: str = "",
    threshold: float = IOU_FOUND,
    name: str | None = None,
) -> Recall:
    """Run ``detector`` (a name or an opened detector, then called ``name``) on every
    scene and count."""
    name = name or (detector if isinstance(detector, str) else "custom")
    detect = open_detector(detector) if isinstance(detector, str) else detector
    result = Recall(name, material, len(scenes), 0, 0, 0)
    for index, scene in enumerate(scenes):
        found = detect(scene.gray)
        matched = match_boxes(scene.faces, found, threshold)
        result.faces += len(scene.faces)
        result.found += len(matched)
        result.false_positives += len(found) - len(matched)
        result.matches += [(index, face, found[box]) for face, box in matched.items()]
    return result


# -- material ---------------------------------------------------------------------------------
def points_box(points: np.ndarray) -> FaceBox:
    """The bounding box of the present points (the true box of a face)."""
    present = points[~np.isnan(points).any(axis=1)]
    low, high = present.min(axis=0), present.max(axis=0)
    return FaceBox(float(low[0]), float(low[1]), float(high[0]), float(high[1]), math.nan)


def photo_scenes(folder: Path) -> list[Scene]:
    """The shared real photos: ``landmarks.csv`` (name, x0, y0, ... x67, y67) and ``images/``."""
    folder = Path(folder)
    scenes = []
    for line in (folder / "landmarks.csv").read_text().splitlines():
        cells = line.split(",")
        if len(cells) < 3:
            continue
        points = np.asarray(cells[1:], dtype=np.float64).reshape(-1, 2)
        with Image.open(folder / "images" / cells[0]) as image:
            gray = np.asarray(image.convert("L"), dtype=np.uint8)
        box = points_box(points)
        scenes.append(Scene(cells[0], gray, (box,), keypoints=(points,)))
    return scenes


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    side = image.shape[0] * factor
    upscaled = Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(upscaled, dtype=np.uint8)


def kaggle_scenes(
    zip_path: Path, upscale: int = 3, limit: int | None = None, step: int = 1, pad: float = 0.25
) -> list[Scene]:
    """The shared Kaggle-layout crops, every ``step``-th row up to ``limit`` scenes, each
    upscaled ``upscale`` times and framed by ``pad`` of its side on each side in its own
    median gray (the crops are tight: without room around the face most detectors'
    windows never fit it). The true crop is the upscaled crop."""
    from fkdbench.data.kaggle import read_training_csv

    table = read_training_csv(Path(zip_path))
    scenes = []
    for row in list(range(0, len(table.images), step))[:limit]:
        image = _upscale(table.images[row], upscale)
        side = image.shape[0]
        border = int(round(pad * side))
        framed = np.pad(image, border, constant_values=int(np.median(image)))
        face_side = side / (1 + 2 * KAGGLE_CROP_MARGIN)
        low = border + (side - face_side) / 2 - 0.5
        truth = FaceBox(low, low, low + face_side, low + face_side, math.nan)
        crop = np.array([border - 0.5, border - 0.5, float(side), 96 / side])
        points = (table.keypoints[row].astype(np.float64) + 0.5) * upscale - 0.5 + border
        scenes.append(Scene(f"row{row}", framed, (truth,), (crop,), (points,)))
    return scenes


def textured_background(rng: np.random.Generator, size: tuple[int, int] = SCENE_SIZE) -> np.ndarray:
    """A gray picture of smooth blotches and fine noise: not flat, so a detector sees edges."""
    width, height = size
    coarse = rng.uniform(40, 200, size=(height // 40 + 2, width // 40 + 2)).astype(np.float32)
    smooth = np.asarray(
        Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    )
    noise = rng.normal(0, 12, size=(height, width))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def paste_faces(
    background: np.ndarray,
    faces: Sequence[tuple[np.ndarray, np.ndarray]],
    places: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``faces`` ((S, S) image, (K, 2) points) pasted with their top-left corners at
    ``places``: the picture and each face's points in its pixels."""
    picture = background.copy()
    moved = []
    for (image, points), (left, top) in zip(faces, places, strict=True):
        picture[top : top + image.shape[0], left : left + image.shape[1]] = image
        moved.append(np.asarray(points, dtype=np.float64) + (left, top))
    return picture, moved


def synthetic_scenes(
    count: int, seed: int = 0, sides: tuple[int, int] = (160, 240), scheme: str = "ibug68"
) -> list[Scene]:
    """``count`` scenes, one synthetic face each (side drawn in ``sides``) at a random
    place on a textured 640x480 background; true box = the points' bounding box."""
    from fkdbench.data.synthetic import render_face

    rng = np.random.default_rng(seed)
    scenes = []
    for index in range(count):
        side = int(rng.integers(sides[0], sides[1] + 1))
        image, points = render_face(seed, index, side, scheme=scheme)
        place = (
            int(rng.integers(0, SCENE_SIZE[0] - side)),
            int(rng.integers(0, SCENE_SIZE[1] - side)),
        )
        picture, (moved,) = paste_faces(textured_background(rng), [(image, points)], [place])
        scenes.append(Scene(f"synthetic{index}", picture, (points_box(moved),), keypoints=(moved,)))
    return scenes


# -- fitting the crop policy --------------------------------------------------------------
def fit_box_to_crop(result: Recall, scenes: Sequence[Scene]) -> tuple[float, float, float]:
    """Median (scale, dx, dy) taking each matched detector box to its scene's true crop
    (:data:`fkdbench.faces.crop.BOX_TO_CROP`'s form)."""
    values = []
    for scene_index, face, box in result.matches:
        crop = scenes[scene_index].crops[face]
        box_side = (box.width + box.height) / 2
        centre = crop[:2] + crop[2] / 2
        values.append(
            (
                crop[2] / box_side,
                (centre[0] - box.centre[0]) / box_side,
                (centre[1] - box.centre[1]) / box_side,
            )
        )
    if not values:
        raise ValueError(f"{result.detector} matched no face: nothing to fit")
    scale, dx, dy = np.median(np.asarray(values), axis=0)
    return float(scale), float(dx), float(dy)


def kaggle_mean_shape(zip_path: Path) -> np.ndarray:
    """Mean (15, 2) keypoint placement in the real 96x96 Kaggle-layout crops (NaN skipped)."""
    from fkdbench.data.kaggle import read_training_csv

    return np.nanmean(read_training_csv(Path(zip_path)).keypoints.astype(np.float64), axis=0)


def synthetic_mean_shape(scheme: str, count: int = 200, seed: int = 0) -> np.ndarray:
    """Mean keypoint placement in the synthetic generator's 96-pixel faces."""
    from fkdbench.data.synthetic import render_face

    return np.mean(
        [render_face(seed, index, 96, scheme=scheme)[1] for index in range(count)], axis=0
    )


def reader_mean_shape(points: Sequence[np.ndarray], size: int = 96) -> np.ndarray:
    """Mean placement of ``points`` (each (K, 2) picture pixels) in the readers' crops
    (:func:`fkdbench.faces.crop.crop_box`, margin 0.25)."""
    return np.mean([to_crop(p, crop_box(p, size)) for p in points], axis=0)


# -- the survey behind the choice of detector ---------------------------------------------
def seconds_per_frame(
    detector: str,
    scenes: Sequence[Scene],
    repeats: int = 3,
    clock: Callable[[], float] | None = None,
) -> list[float]:
    """Raw seconds of one detection per scene per pass (``repeats`` passes, after one
    untimed scene); the detector opened once, as in a video."""
    import time

    clock = clock or time.perf_counter
    detect = open_detector(detector)
    detect(scenes[0].gray)
    samples = []
    for _ in range(repeats):
        for scene in scenes:
            started = clock()
            detect(scene.gray)
            samples.append(clock() - started)
    return samples


def survey(
    detectors: Sequence[str],
    photos: Path | None = None,
    kaggle_zip: Path | None = None,
    synthetic_count: int = 40,
) -> list[dict[str, object]]:
    """Per detector: recall and false positives on each material present, and ms per
    640x480 frame (median and 90th percentile over the synthetic scenes, 3 passes)."""
    materials = {"synthetic 640x480": synthetic_scenes(synthetic_count)}
    if photos is not None and Path(photos).is_dir():
        materials["real photos"] = photo_scenes(Path(photos))
    if kaggle_zip is not None and Path(kaggle_zip).is_file():
        materials["real kaggle crops x3"] = kaggle_scenes(Path(kaggle_zip), step=34, limit=100)
    rows = []
    for name in detectors:
        row: dict[str, object] = {"detector": name}
        for material, scenes in materials.items():
            found = recall(name, scenes, material)
            row[f"{material}: found"] = f"{found.found}/{found.faces}"
            row[f"{material}: false +"] = found.false_positives
        milliseconds = 1e3 * np.asarray(seconds_per_frame(name, materials["synthetic 640x480"]))
        row["ms/frame 640x480 p50"] = round(float(np.median(milliseconds)), 2)
        row["ms/frame 640x480 p90"] = round(float(np.percentile(milliseconds, 90)), 2)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m fkdbench.faces.evaluate [--photos DIR] [--kaggle ZIP]``: the survey as
    a Markdown table, with the machine's load (timing wants a calm machine)."""
    import argparse
    import os

    import pandas as pd

    from fkdbench.faces.detect import DETECTORS, detector_available

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--kaggle", type=Path, default=None)
    parser.add_argument("--synthetic", type=int, default=40)
    args = parser.parse_args(argv)
    names = [name for name in DETECTORS if name != "none" and detector_available(name) is None]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rows = survey(names, args.photos, args.kaggle, args.synthetic)
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
