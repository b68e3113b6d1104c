"""``fkdbench predict``: a trained model on the user's own images, and Kaggle submissions.

The model is an exported ONNX graph (``model.onnx``, ``model.int8.onnx``), a run folder
(its ``model.onnx`` when exported, else its checkpoint), or a checkpoint ``model.pt`` with
its ``config.json`` beside it. Images of any size and colour are read with Pillow and
converted to gray (:func:`gray_image`): EXIF orientation is applied first (keypoints are in
the image as it is displayed), 16-bit gray is scaled rather than clipped, palette and CMYK
go through RGB, and transparency is composited on black. Black because the crop policy
pads with zeros: a transparent pixel then means what the area beyond the image's edge
means, "nothing there", and an RGBA face gives the keypoints of the same face on black.

Faces: a detector (``detector``, :data:`fkdbench.faces.detect.DETECTORS`; the default
:data:`~fkdbench.faces.detect.DEFAULT_DETECTOR`) finds every face, and each is cropped the
way the training data were (:func:`fkdbench.faces.crop.crop_from_box`) and predicted; with
``"none"`` the image itself is taken as a face crop (padded to a centred square, zeros
outside, resized to the model's input), as for inputs that are already crops. Predictions
are mapped back through each face's crop, so ``keypoints.csv`` holds one row per face
(``image, face, x_min, y_min, x_max, y_max, score``, the keypoints, ``clipped``) in the
*original* image's pixels (pixel centre convention: the centre of column ``i`` is
``x = i``; the box gives pixel edges; ``face`` 0 is the surest; ``score`` is the
detector's, empty with ``none``, whose box is the whole image). An image in which no face
is found has no row and no overlay, and is named in :attr:`PredictResult.no_face` (the
CLI prints it); it is not an error. Each face gets one overlay: the whole image with every
face's box and points, that face's drawn brighter.

A keypoint predicted beyond the image's edge is clipped onto it, counted in the CSV's
``clipped`` column and warned about. Images whose shorter side is under
:func:`min_image_side` pixels are refused: upscaled that much, a face's eyes and mouth are a
pixel or two across and there is nothing to locate.

Nothing is written unless the whole call succeeds: every image is read and predicted
first, then ``overlays/`` is built in a temporary folder that replaces the old one and
``keypoints.csv`` is renamed into place.
"""

from __future__ import annotations

import csv
import io
import re
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
from fkdbench.faces.crop import crop_from_box, crop_image, to_original, whole_image_crop
from fkdbench.faces.detect import DEFAULT_DETECTOR, Detector, FaceBox, open_detector
from fkdbench.io import atomic_directory, write_bytes_atomic, write_text_atomic
from fkdbench.onnxrt import images_as_float, onnx_predict, open_session
from fkdbench.progress import make_progress, say
from fkdbench.provenance import check_threads

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
    check_threads(threads)
    if model.is_dir():
        onnx = model / ONNX_FILE
        return load_predictor(onnx if onnx.is_file() else model / runs.MODEL_FILE, threads)
    if not model.is_file():
        raise PredictError(f"{model}: no such model file or run folder")
    config = _run_config(model.parent)
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


def _run_config(folder: Path) -> dict | None:
    """The ``config.json`` beside a model, None when there is none; one line naming it
    when it cannot say what the model takes and predicts."""
    if not (folder / runs.CONFIG_FILE).is_file():
        return None
    return runs.read_model_config(folder)


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


def whole_image_box(width: int, height: int) -> FaceBox:
    """The whole image as a face box (``--detector none``): its pixel edges; no score."""
    return FaceBox(-0.5, -0.5, width - 0.5, height - 0.5, float("nan"))


def face_crops(
    gray: Any, detect: Detector, detector: str, size: int
) -> list[tuple[FaceBox, np.ndarray]]:
    """Every face in a gray Pillow image, best score first, as (box, crop) by the crop
    policy (:mod:`fkdbench.faces.crop`); ``detector`` "none": the whole image, once."""
    if detector == "none":
        return [(whole_image_box(gray.width, gray.height), whole_image_crop(*gray.size, size))]
    boxes = detect(np.asarray(gray, dtype=np.uint8))
    return [(box, crop_from_box(box, detector, size)) for box in boxes]


def crop_to_model(image: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A Pillow image -> (uint8 gray (size, size), its crop): the whole image, padded."""
    crop = whole_image_crop(image.width, image.height, size)
    resized = crop_image(gray_image(image), crop, size)
    return np.asarray(resized, dtype=np.uint8), crop


# Integer modes whose full scale is 16 bits: Pillow's convert("L") clips them at 255, which
# turns every 16-bit photo white. Pillow opens a 16-bit PNG as "I;16" (older ones as "I").
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def gray_image(image: Any) -> Any:
    """The image as 8-bit gray ("L"), whatever its mode (see the module's docstring)."""
    from PIL import Image

    if image.mode == "L":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
        return Image.fromarray(scaled, mode="L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        gray = np.asarray(Image.fromarray(rgba[..., :3].astype(np.uint8)).convert("L"))
        # Composited on black: value * alpha (why black: the module's docstring).
        blended = np.rint(gray.astype(np.float64) * rgba[..., 3] / 255.0).astype(np.uint8)
        return Image.fromarray(blended, mode="L")
    if image.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB").convert("L")
    return image.convert("L")


def min_image_side(input_size: int) -> int:
    """The shortest image side predicted on: a third of the model's input (32 px for 96).

    Smaller images are upscaled more than 3x, and a face's eyes and mouth become a pixel
    or two across: the model would return keypoints that mean nothing."""
    return max(8, input_size // 3)


def _open_image(path: Path, input_size: int) -> Any:
    """The image at ``path`` as displayed (EXIF orientation applied); PredictError naming
    the file when it is unreadable, a decompression bomb or too small."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        # Pillow refuses before decoding; its message holds the size ("(N pixels)").
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)):,} pixels, " if found else ""
        raise PredictError(
            f"{path}: refused: {size}more than {2 * Image.MAX_IMAGE_PIXELS:,} "
            "(Pillow's decompression-bomb limit); shrink or crop it first"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PredictError(f"{path}: not a readable image ({error.__class__.__name__})") from None
    least = min_image_side(input_size)
    if min(image.width, image.height) < least:
        raise PredictError(
            f"{path}: {image.width}x{image.height} pixels is too small: each side needs at "
            f"least {least} (a third of the model's {input_size}-pixel input; smaller, a "
            "face's eyes and mouth are a pixel or two across)"
        )
    return image


@dataclass
class PredictResult:
    keypoints_csv: Path
    overlays: list[Path]
    images: int
    skipped: list[str]
    seconds: float
    # One line per face with keypoints clipped onto its image's edge (also on stderr).
    warnings: list[str] = field(default_factory=list)
    # One line per image in which the detector found no face (no CSV row, no overlay).
    no_face: list[str] = field(default_factory=list)
    faces: int = 0  # CSV rows: faces found (one per image with detector "none")


def _open_or_skip(path: Path, input_size: int, skip_bad_images: bool, skipped: list[str]) -> Any:
    """The image at ``path``; None (and the reason in ``skipped``) for an unusable one
    when ``skip_bad_images``, else the PredictError."""
    try:
        return _open_image(path, input_size)
    except PredictError as error:
        if not skip_bad_images:
            raise
        skipped.append(str(error))
        return None


def _predict_faces(
    predictor: KeypointPredictor, path: Path, image: Any, detect: Detector, detector: str
) -> list[_Prediction]:
    """Every face of one Pillow image: its box and keypoints in the image's own pixels
    (clipped onto its edge), one model call for all of them."""
    gray = gray_image(image)
    found = face_crops(gray, detect, detector, predictor.input_size)
    if not found:
        return []
    size = predictor.input_size
    batch = np.stack(
        [np.asarray(crop_image(gray, crop, size), dtype=np.uint8) for _, crop in found]
    )
    pixels = predictor(images_as_float(batch, predictor.in_chans))
    predictions = []
    for face, ((box, crop), points) in enumerate(zip(found, pixels, strict=True)):
        mapped, clipped = clip_to_image(to_original(points, crop), image.width, image.height)
        predictions.append(_Prediction(path, image.width, image.height, face, box, mapped, clipped))
    return predictions


def clip_to_image(points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int]:
    """``points`` (K, 2) clipped to the image's pixel edges (-0.5 .. side - 0.5), and how
    many of them had to move."""
    low = np.array([-0.5, -0.5])
    high = np.array([width - 0.5, height - 0.5])
    clipped = np.clip(points, low, high)
    return clipped, int(np.count_nonzero(np.any(clipped != points, axis=1)))


def _number(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.3f}"


@dataclass
class _Prediction:
    """One face's box and keypoints, kept until every image has been predicted."""

    path: Path
    width: int
    height: int
    face: int  # 0 = the detector's surest face in this image
    box: FaceBox
    points: np.ndarray
    clipped: int

    def row(self) -> list[str]:
        box = self.box
        corners = [f"{value:.3f}" for value in (box.x_min, box.y_min, box.x_max, box.y_max)]
        values = [f"{value:.3f}" for value in self.points.reshape(-1)]
        return [
            str(self.path),
            str(self.face),
            *corners,
            _number(box.score),
            *values,
            str(self.clipped),
        ]


def csv_header(keypoint_names: Sequence[str]) -> list[str]:
    """``keypoints.csv``'s columns: the image, the face's index in it, its box (pixel
    edges) and detector score (empty without a detector), the keypoints, ``clipped``."""
    points = [f"{name}_{axis}" for name in keypoint_names for axis in ("x", "y")]
    return ["image", "face", "x_min", "y_min", "x_max", "y_max", "score", *points, "clipped"]


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def _clipping_warning(prediction: _Prediction, total: int) -> str:
    return (
        f"{prediction.path}: face {prediction.face}: {prediction.clipped} of {total} "
        "keypoints fell outside the "
        f"{prediction.width}x{prediction.height} image and were clipped to its edge (a face "
        "cut by the edge, or, with --detector none, an image that is not a face crop)"
    )


def _by_image(predictions: list[_Prediction]) -> dict[Path, list[_Prediction]]:
    faces: dict[Path, list[_Prediction]] = {}
    for prediction in predictions:
        faces.setdefault(prediction.path, []).append(prediction)
    return faces


def _write_outputs(
    predictions: list[_Prediction], header: list[str], out_dir: Path, input_size: int | None
) -> tuple[Path, list[Path]]:
    """``overlays/`` (built aside, then swapped in whole; none when ``input_size``, the
    model's, is None) and then ``keypoints.csv``: a failure here leaves the previous
    outputs as they were. One overlay per face: the whole image with every face's box
    and points, that face's drawn brighter."""
    written: list[Path] = []
    if input_size is not None:
        with atomic_directory(out_dir / OVERLAY_DIR) as folder:
            for index, (path, faces) in enumerate(_by_image(predictions).items()):
                # Read again rather than kept: a thousand photos do not fit in memory.
                image = _open_image(path, input_size)
                for face in faces:
                    name = f"{index:05d}-{path.stem}-face{face.face}.png"
                    write_bytes_atomic(folder / name, _overlay_png(image, faces, face.face))
                    written.append(out_dir / OVERLAY_DIR / name)
    csv_path = out_dir / KEYPOINTS_FILE
    write_text_atomic(csv_path, _csv_text(header, [p.row() for p in predictions]))
    return csv_path, written


def predict_images(
    model: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    threads: int | None = None,
    overlays: bool = True,
    skip_bad_images: bool = False,
    quiet: bool = False,
    detector: str = DEFAULT_DETECTOR,
) -> PredictResult:
    """Predict keypoints for every face ``detector`` finds in every image (with "none":
    the whole image, once); write ``keypoints.csv`` (one row per face, original-image
    pixels, and ``clipped``: how many points were moved onto the image's edge) and, with
    ``overlays``, one PNG per face. An image without a face gets no row and a line in
    ``no_face``. Nothing is written unless every image (but the skipped ones) was read."""
    started = time.perf_counter()
    detect = open_detector(detector)
    predictor = load_predictor(model, threads)
    paths = find_images(inputs)
    predictions: list[_Prediction] = []
    skipped: list[str] = []
    no_face: list[str] = []
    with make_progress(quiet) as progress:
        task = progress.add_task("predict", total=len(paths))
        for path in paths:
            image = _open_or_skip(path, predictor.input_size, skip_bad_images, skipped)
            if image is not None:
                faces = _predict_faces(predictor, path, image, detect, detector)
                predictions += faces
                if not faces:
                    no_face.append(f"{path}: no face found (detector {detector})")
            progress.advance(task)
    if len(skipped) == len(paths):
        raise PredictError("no image could be read: " + "; ".join(skipped[:3]))
    overlay_size = predictor.input_size if overlays else None
    header = csv_header(predictor.keypoint_names)
    csv_path, written = _write_outputs(predictions, header, Path(out_dir), overlay_size)
    total = len(predictor.keypoint_names)
    warnings = [_clipping_warning(item, total) for item in predictions if item.clipped]
    for line in warnings:
        # Not a progress line: printed even with quiet.
        say(f"warning: {line}")
    elapsed = time.perf_counter() - started
    images = len(paths) - len(skipped)
    return PredictResult(
        csv_path, written, images, skipped, elapsed, warnings, no_face, len(predictions)
    )


BOX_COLOUR = (40, 200, 255)  # the face an overlay is for
OTHER_COLOUR = (40, 110, 140)  # the other faces in the same image
POINT_COLOUR = (255, 40, 40)
OTHER_POINT_COLOUR = (150, 40, 40)


def _overlay_png(image: Any, faces: list[_Prediction], chosen: int) -> bytes:
    """The image (RGB) with every face's box (none without a detector: it would be the
    image's edge) and keypoints as small discs, face ``chosen`` brighter; PNG bytes."""
    from PIL import ImageDraw

    # Drawn on what the model saw when Pillow's own RGB would be wrong (16-bit, alpha).
    plain_colour = image.mode in ("RGB", "L", "1", "P", "CMYK", "YCbCr") and (
        "transparency" not in image.info
    )
    canvas = image.convert("RGB") if plain_colour else gray_image(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    radius = max(1.0, max(canvas.size) / 150)
    for face in sorted(faces, key=lambda item: item.face == chosen):  # chosen drawn last
        mine = face.face == chosen
        if not np.isnan(face.box.score):
            box = face.box
            corners = (box.x_min + 0.5, box.y_min + 0.5, box.x_max - 0.5, box.y_max - 0.5)
            draw.rectangle(corners, outline=BOX_COLOUR if mine else OTHER_COLOUR, width=2)
        fill = POINT_COLOUR if mine else OTHER_POINT_COLOUR
        for x, y in face.points:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
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


def _video_suffixes() -> tuple[str, ...]:
    from fkdbench.faces.video import VIDEO_SUFFIXES

    return VIDEO_SUFFIXES


def predict(
    model: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    submission: Path | None = None,
    threads: int | None = None,
    overlays: bool = True,
    skip_bad_images: bool = False,
    quiet: bool = False,
    detector: str = DEFAULT_DETECTOR,
    camera: int | None = None,
    out_video: Path | None = None,
    redetect_every: int | None = None,
) -> Any:
    """``fkdbench predict``: keypoints for ``inputs`` (:func:`predict_images`); for one
    video file or a ``camera`` index, :func:`fkdbench.faces.video.predict_video` (the
    overlay video to ``out_video``, by default ``out_dir/overlay.mp4`` for a file, or
    ``out_dir`` itself when it names a video: then ``<stem>.keypoints.csv`` beside it);
    with ``submission`` (a Kaggle folder or zip), ``out_dir/submission.csv`` (its path)."""
    if submission is not None:
        return write_submission(model, submission, Path(out_dir) / SUBMISSION_FILE, threads)
    videos = [Path(item) for item in inputs if Path(item).suffix.lower() in _video_suffixes()]
    if camera is not None or videos:
        return _predict_video(model, inputs, videos, out_dir, threads, quiet, detector, camera,
                              out_video, redetect_every, overlays)  # fmt: skip
    if not inputs:
        raise PredictError("name image files or folders (or use --submission)")
    return predict_images(
        model, inputs, out_dir, threads, overlays, skip_bad_images, quiet, detector
    )


def _predict_video(
    model: Path,
    inputs: Sequence[Path],
    videos: list[Path],
    out_dir: Path,
    threads: int | None,
    quiet: bool,
    detector: str,
    camera: int | None,
    out_video: Path | None,
    redetect_every: int | None,
    overlays: bool = True,
) -> Any:
    """One video source (a file, or a camera); refuses a mix with other inputs. Without
    ``overlays`` no overlay video is written unless ``out_video`` names one."""
    from fkdbench.faces import video

    if len(inputs) + (camera is not None) != 1:
        raise PredictError(
            "a video or --camera is predicted alone: name one video file, or --camera "
            f"without inputs (got {len(inputs)} input(s), {len(videos)} video(s))"
        )
    source: Path | int = camera if camera is not None else videos[0]
    keypoints_file = video.KEYPOINTS_FILE
    if Path(out_dir).suffix.lower() in video.CONTAINERS and out_video is None:
        # `--out overlay.mp4`: the overlay there, its keypoints beside it.
        out_video, keypoints_file = Path(out_dir), f"{Path(out_dir).stem}.keypoints.csv"
        out_dir = Path(out_dir).parent
    elif out_video is None and camera is None and overlays:
        out_video = Path(out_dir) / "overlay.mp4"
    open_detector(detector)  # an unknown or missing detector fails before the model loads
    predictor = load_predictor(model, threads)
    every = video.REDETECT_EVERY if redetect_every is None else redetect_every
    return video.predict_video(
        predictor, source, Path(out_dir), detector=detector, redetect_every=every,
        out_video=out_video, quiet=quiet, keypoints_file=keypoints_file,
    )  # fmt: skip
