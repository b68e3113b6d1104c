"""``fkdbench predict``: a trained model on the user's own images, and Kaggle submissions.

The model is an exported ONNX graph (``model.onnx``, ``model.int8.onnx``), a run folder
(its ``model.onnx`` when exported, else its checkpoint), or a checkpoint ``model.pt`` with
its ``config.json`` beside it. Images of any size and colour are read with Pillow and
converted to gray.

Crop policy: there is no face detector here, so each image is taken as a face crop the way
the training data are: the image is padded to a square (centred, zeros outside) and
resized to the model's input size. Predictions are mapped back through the same box, so
the CSV holds coordinates in the *original* image's pixels (pixel centre convention: the
centre of column ``i`` is ``x = i``). Faces much smaller than the image need cropping first.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fkdbench import runs
from fkdbench.data import landmarks
from fkdbench.data.kaggle import LOOKUP_NAME, TEST_NAME, read_lookup_csv, read_test_csv
from fkdbench.data.schemes import SCHEMES
from fkdbench.export import ONNX_FILE, PixelKeypoints
from fkdbench.io import write_bytes_atomic, write_text_atomic
from fkdbench.onnxrt import images_as_float, onnx_predict, open_session
from fkdbench.progress import make_progress

KEYPOINTS_FILE = "keypoints.csv"
OVERLAY_DIR = "overlays"
SUBMISSION_FILE = "submission.csv"


class PredictError(ValueError):
    """A model or image that cannot be used; the message names the file."""


@dataclass
class KeypointPredictor:
    """Something that maps float images (N, C, S, S) in [0, 1] to (N, K, 2) pixels."""

    source: Path
    kind: str  # "onnx" | "checkpoint"
    input_size: int
    in_chans: int
    keypoint_names: tuple[str, ...]
    _run: Any = field(repr=False, default=None)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._run(images)


def load_predictor(model: Path, threads: int | None = None) -> KeypointPredictor:
    """Open ``model`` (ONNX file, run folder or checkpoint); one-line errors name the file."""
    model = Path(model)
    if model.is_dir():
        onnx = model / ONNX_FILE
        return load_predictor(onnx if onnx.is_file() else model / runs.MODEL_FILE, threads)
    if not model.is_file():
        raise PredictError(f"{model}: no such model file or run folder")
    config_path = model.parent / runs.CONFIG_FILE
    config = runs.read_config(model.parent) if config_path.is_file() else None
    if model.suffix == ".onnx":
        session = open_session(model, threads)
        shape = session.get_inputs()[0].shape
        if len(shape) != 4 or not all(isinstance(size, int) for size in shape[1:]):
            raise PredictError(f"{model}: input shape {shape} is not (N, C, S, S)")
        in_chans, input_size = int(shape[1]), int(shape[2])
        names = _keypoint_names(config, model, session)
        return KeypointPredictor(
            model, "onnx", input_size, in_chans, names, lambda images: onnx_predict(session, images)
        )
    if config is None:
        raise PredictError(f"{model}: a checkpoint needs its {runs.CONFIG_FILE} beside it")
    network, config = runs.load_model(model.parent)
    input_size = int(config["model"]["input_size"])
    module = PixelKeypoints(network, input_size).eval()
    if threads:
        torch.set_num_threads(threads)

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(images)).double().numpy()

    return KeypointPredictor(
        model,
        "checkpoint",
        input_size,
        int(config["model"]["in_chans"]),
        tuple(config["model"]["keypoints"]),
        run,
    )


def _keypoint_names(config: dict | None, model: Path, session: Any) -> tuple[str, ...]:
    if config is not None:
        return tuple(config["model"]["keypoints"])
    count = session.get_outputs()[0].shape[1]
    for scheme in SCHEMES.values():
        if isinstance(count, int) and scheme.num_keypoints == count:
            return scheme.keypoints
    if not isinstance(count, int):
        raise PredictError(f"{model}: cannot tell how many keypoints it predicts")
    return tuple(f"point_{index}" for index in range(count))


# -- images -----------------------------------------------------------------------------------


def find_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files named, or found (recursively, sorted) in the folders named."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(
                path
                for path in item.rglob("*")
                if path.is_file() and path.suffix.lower() in landmarks.IMAGE_SUFFIXES
            )
        elif item.is_file():
            found.append(item)
        else:
            raise PredictError(f"{item}: no such image file or folder")
    if not found:
        raise PredictError(f"no image files in {', '.join(map(str, inputs))}")
    return found


def whole_image_crop(width: int, height: int, size: int) -> np.ndarray:
    """The crop (``fkdbench.data.landmarks`` convention: x0, y0, side, scale) of the whole
    image padded to a centred square: its pixel edges run from -0.5 to width - 0.5."""
    side = float(max(width, height))
    return np.array([-0.5 - (side - width) / 2, -0.5 - (side - height) / 2, side, size / side])


def crop_to_model(image: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A Pillow image -> (uint8 gray (size, size), its crop) by the module's crop policy."""
    crop = whole_image_crop(image.width, image.height, size)
    resized = landmarks.crop_image(image.convert("L"), crop, size)
    return np.asarray(resized, dtype=np.uint8), crop


def _open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise PredictError(f"{path}: not a readable image ({error.__class__.__name__})") from None
    return image


@dataclass
class PredictResult:
    keypoints_csv: Path
    overlays: list[Path]
    images: int
    skipped: list[str]
    seconds: float


def _open_or_skip(path: Path, skip_bad_images: bool, skipped: list[str]) -> Any:
    """The image at ``path``; None (and the reason in ``skipped``) for an unreadable one
    when ``skip_bad_images``, else the PredictError."""
    try:
        return _open_image(path)
    except PredictError as error:
        if not skip_bad_images:
            raise
        skipped.append(str(error))
        return None


def _predict_points(predictor: KeypointPredictor, image: Any) -> np.ndarray:
    """Keypoints (K, 2) of one Pillow image, in its own pixels (the module's crop policy)."""
    face, crop = crop_to_model(image, predictor.input_size)
    pixels = predictor(images_as_float(face[None], predictor.in_chans))[0]
    return landmarks.to_original(pixels, crop)


def _predict_row(
    predictor: KeypointPredictor,
    path: Path,
    image: Any,
    overlay_dir: Path | None,
    written: list[Path],
) -> list[str]:
    """One CSV row of an image's keypoints; with ``overlay_dir``, its overlay PNG too."""
    points = _predict_points(predictor, image)
    if overlay_dir is not None:
        target = overlay_dir / f"{len(written):05d}-{path.stem}.png"
        write_bytes_atomic(target, _overlay_png(image, points))
        written.append(target)
    values = [f"{value:.3f}" for value in points.reshape(-1)]
    return [str(path), str(image.width), str(image.height), *values]


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def predict_images(
    model: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    threads: int | None = None,
    overlays: bool = True,
    skip_bad_images: bool = False,
    quiet: bool = False,
) -> PredictResult:
    """Predict keypoints for every image; write ``keypoints.csv`` (original-image pixels)
    and, with ``overlays``, one PNG per image with the points drawn."""
    started = time.perf_counter()
    predictor = load_predictor(model, threads)
    paths = find_images(inputs)
    out_dir = Path(out_dir)
    rows: list[list[str]] = []
    written: list[Path] = []
    skipped: list[str] = []
    header = ["image", "width", "height"] + [
        f"{name}_{axis}" for name in predictor.keypoint_names for axis in ("x", "y")
    ]
    overlay_dir = out_dir / OVERLAY_DIR if overlays else None
    with make_progress(quiet) as progress:
        task = progress.add_task("predict", total=len(paths))
        for path in paths:
            image = _open_or_skip(path, skip_bad_images, skipped)
            if image is not None:
                rows.append(_predict_row(predictor, path, image, overlay_dir, written))
            progress.advance(task)
    if not rows:
        raise PredictError("no image could be read: " + "; ".join(skipped[:3]))
    csv_path = out_dir / KEYPOINTS_FILE
    write_text_atomic(csv_path, _csv_text(header, rows))
    return PredictResult(csv_path, written, len(rows), skipped, time.perf_counter() - started)


def _overlay_png(image: Any, points: np.ndarray) -> bytes:
    """The image (RGB) with each keypoint as a small red disc, as PNG bytes."""
    from PIL import ImageDraw

    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    radius = max(1.0, max(canvas.size) / 150)
    for x, y in points:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 40, 40))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


# -- Kaggle submission ----------------------------------------------------------------------


def write_submission(
    model: Path, kaggle_dir: Path, out_path: Path, threads: int | None = None
) -> Path:
    """A Kaggle submission (``RowId,Location``) for ``test.csv`` and ``IdLookupTable.csv``.

    Locations are the model's pixels clipped to the image ([0, 96] for Kaggle).
    """
    predictor = load_predictor(model, threads)
    test = read_test_csv(kaggle_dir, image_size=predictor.input_size)
    lookup = read_lookup_csv(kaggle_dir)
    if test is None or lookup is None:
        missing = TEST_NAME if test is None else LOOKUP_NAME
        raise PredictError(f"{kaggle_dir}: no {missing} (a Kaggle folder or zip is needed)")
    predictions = predictor(images_as_float(test.images, predictor.in_chans))
    row_of_image = {int(image_id): row for row, image_id in enumerate(test.image_ids)}
    column = {
        f"{name}_{axis}": (index, axis_index)
        for index, name in enumerate(predictor.keypoint_names)
        for axis_index, axis in enumerate(("x", "y"))
    }
    limit = float(predictor.input_size)
    rows = []
    for number, request in enumerate(lookup, start=2):
        feature, image_id = request["FeatureName"], int(request["ImageId"])
        if feature not in column:
            raise PredictError(
                f"{kaggle_dir}/{LOOKUP_NAME}: line {number}: the model has no {feature!r}"
            )
        if image_id not in row_of_image:
            raise PredictError(
                f"{kaggle_dir}/{LOOKUP_NAME}: line {number}: ImageId {image_id} not in test.csv"
            )
        point, axis = column[feature]
        value = float(np.clip(predictions[row_of_image[image_id], point, axis], 0.0, limit))
        rows.append([request["RowId"], f"{value:.4f}"])
    write_text_atomic(Path(out_path), _csv_text(["RowId", "Location"], rows))
    return Path(out_path)


def predict(
    model: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    submission: Path | None = None,
    threads: int | None = None,
    overlays: bool = True,
    skip_bad_images: bool = False,
    quiet: bool = False,
) -> PredictResult | Path:
    """``fkdbench predict``: keypoints for ``inputs`` (:func:`predict_images`), or, with
    ``submission`` (a Kaggle folder or zip), ``out_dir/submission.csv``; returns its path."""
    if submission is not None:
        return write_submission(model, submission, Path(out_dir) / SUBMISSION_FILE, threads)
    if not inputs:
        raise PredictError("name image files or folders (or use --submission)")
    return predict_images(model, inputs, out_dir, threads, overlays, skip_bad_images, quiet)
