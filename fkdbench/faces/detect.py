"""Face detectors: one registry (:data:`DETECTORS`), one constructor (:func:`open_detector`).

A detector is a callable that takes a gray uint8 ``(H, W)`` image and returns the faces
it finds as :class:`FaceBox` es, highest score first. Boxes are in the image's pixels with
the pixel-centre convention of :mod:`fkdbench.faces.crop` (the centre of column ``i`` is
``x = i``), and give the *edges* of the pixels a detector marks: a detector's rectangle
over columns ``l .. r`` (inclusive) is ``x_min = l - 0.5``, ``x_max = r + 0.5``.

The candidates ship their model files in their wheels (no download at run time):

- ``haar``: OpenCV's Viola-Jones cascade (``opencv-python-headless`` 4.x, ``cv2/data/``);
- ``dlib-hog``: dlib's HOG + linear SVM detector (``dlib-bin``, the ``peers`` extra);
- ``dlib-mmod``: dlib's MMOD CNN detector, its weights from ``face-recognition-models``
  (the ``peers`` extra);
- ``none``: no detector; callers take the whole image as the face
  (:func:`fkdbench.faces.crop.whole_image_crop`).

The settings and the default were chosen by measurement: see
:mod:`fkdbench.faces.evaluate` and the comments on the constants below.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """A face found in an image: pixel edges (pixel-centre convention) and the detector's
    score (its own scale; higher is surer; NaN where no detector gave it)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x_min + self.x_max) / 2, (self.y_min + self.y_max) / 2


Detector = Callable[[np.ndarray], list[FaceBox]]


class DetectorError(ValueError):
    """A detector that is unknown or cannot be opened here; one line saying why."""


@dataclass(frozen=True)
class DetectorInfo:
    """One registry row: what the detector is and what it needs."""

    name: str
    description: str
    module: str | None  # the Python module it needs beyond the core dependencies
    extra: str | None  # the optional dependency group that installs it


# -- settings (chosen by measurement: fkdbench.faces.evaluate) ----------------------------
# Recall (IoU >= 0.4 with the true box) / false positives, measured on: the 60 shared real
# photos; 100 shared real Kaggle-layout crops (every 34th row, 3x upscaled, framed by a
# quarter of their side); 40 synthetic faces of 160-240 px on textured 640x480 scenes:
#   haar default, minNeighbors 3:  60/60 2 | 97/100 3 | 22/40 12
#   haar default, minNeighbors 5:  59/60 1 | 95/100 3 | 19/40 6
#   haar default, n 5, scale 1.05: 59/60 2 | 97/100 4 | 25/40 19
#   haar alt2, minNeighbors 3:     60/60 0 | 99/100 1 | 25/40 1    <- chosen, then capped:
#   haar alt2, minNeighbors 5:     59/60 0 | 97/100 1 | 21/40 0
#   dlib-hog, upsample 0:          44/60 0 | 93/100 0 | 19/40 0
#   dlib-hog, upsample 1:          58/60 0 | 89/100 0 | 28/40 0    <- chosen
#   dlib-mmod, upsample 0:         42/60 1 | 99/100 0 | 36/40 0
# (upsample 1 would find the photos' small faces, at four times the cost per frame.)
# Haar's cost is its smallest windows over the whole picture: 184 ms per 640x480 frame
# (median, 2 cores, load 1.7), more than a 30 FPS camera's frame. Detecting on the picture
# shrunk to at most HAAR_MAX_SIDE px on its long side (boxes scaled back), on the same
# materials (another synthetic draw: 28/40 uncapped):
#   cap 480: 60/60 0 | 99/100 1 | 30/40 0, 100 ms;  cap 400: 60/60 0 | 98/100 1 | 28/40 0, 67 ms
#   cap 320: 60/60 0 | 99/100 0 | 27/40 0, 42 ms    <- chosen (faces under ~48 px in a
#   640x480 frame are missed; a camera's user is far larger)
HAAR_MAX_SIDE = 320
HAAR_CASCADE = "haarcascade_frontalface_alt2.xml"
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 3
HAAR_MIN_SIZE = 24  # px: the cascade's own window is 20x20
DLIB_HOG_UPSAMPLE = 1
DLIB_MMOD_UPSAMPLE = 0
MMOD_WEIGHTS = "mmod_human_face_detector.dat"

DETECTORS: dict[str, DetectorInfo] = {
    "none": DetectorInfo("none", "no detector: the whole image is the face", None, None),
    "haar": DetectorInfo("haar", "OpenCV Haar cascade (frontal faces)", "cv2", None),
    "dlib-hog": DetectorInfo("dlib-hog", "dlib HOG + linear SVM", "dlib", "peers"),
    "dlib-mmod": DetectorInfo(
        "dlib-mmod", "dlib MMOD CNN (face-recognition-models)", "dlib", "peers"
    ),
}
# The best recall of the detectors that need no extra (the only one: haar), and also the
# best on both real materials of all three.
DEFAULT_DETECTOR = "haar"


def _info(name: str) -> DetectorInfo:
    if name not in DETECTORS:
        raise DetectorError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def recognition_model_file(name: str) -> Path:
    """Model file ``name`` inside ``face_recognition_models``, found without importing it
    (its ``__init__`` needs ``pkg_resources``, which new setuptools no longer has);
    ModuleNotFoundError when the package or the file is absent."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'face_recognition_models'")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModuleNotFoundError(f"face_recognition_models has no {name}")
    return path


def detector_available(name: str) -> str | None:
    """None when detector ``name`` can be opened here, else why not (one line)."""
    info = _info(name)
    missing = [
        module
        for module in (info.module, "face_recognition_models" if name == "dlib-mmod" else None)
        if module is not None and importlib.util.find_spec(module) is None
    ]
    if missing:
        return f"not installed (no module {missing[0]!r}; uv sync --extra {info.extra})"
    return None


def _check_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(
            f"a detector takes a gray uint8 (H, W) image, not {gray.dtype} {gray.shape}"
        )
    return np.ascontiguousarray(gray)


def _sorted(faces: list[FaceBox]) -> list[FaceBox]:
    return sorted(faces, key=lambda face: -face.score)


def _shrunk(gray: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """``gray`` resized (area-averaged) so its long side is at most ``max_side``, and the
    factor applied (1.0: untouched)."""
    import cv2

    height, width = gray.shape
    factor = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
    if factor == 1.0:
        return gray, factor
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), size[0] / width


def _grown(box: FaceBox, factor: float) -> FaceBox:
    """A box found on a picture shrunk by ``factor``, in the picture's own pixels (pixel
    edges e map back as (e + 0.5) / factor - 0.5)."""
    if factor == 1.0:
        return box
    back = [(edge + 0.5) / factor - 0.5 for edge in (box.x_min, box.y_min, box.x_max, box.y_max)]
    return FaceBox(*back, box.score)


def haar_detector(
    cascade: str = HAAR_CASCADE,
    scale_factor: float = HAAR_SCALE_FACTOR,
    min_neighbors: int = HAAR_MIN_NEIGHBORS,
    min_size: int = HAAR_MIN_SIZE,
    max_side: int | None = HAAR_MAX_SIDE,
) -> Detector:
    """OpenCV's cascade on the picture shrunk to at most ``max_side`` px (None: as it
    is); score = the last stage's level weight (detectMultiScale3)."""
    import cv2

    classifier = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / cascade))
    if classifier.empty():
        raise DetectorError(f"{cascade}: OpenCV could not load this cascade")

    def detect(gray: np.ndarray) -> list[FaceBox]:
        gray, shrink = _shrunk(_check_gray(gray), max_side)
        rects, _levels, weights = classifier.detectMultiScale3(
            gray,
            scaleFactor=scale_factor,
            minNeighbors=min_neighbors,
            minSize=(min_size, min_size),
            outputRejectLevels=True,
        )
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        return _sorted(
            [
                _grown(FaceBox(x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5, float(score)), shrink)
                for (x, y, w, h), score in zip(
                    np.asarray(rects, dtype=np.float64).reshape(-1, 4), scores, strict=True
                )
            ]
        )

    return detect


def _dlib_box(rect: object, score: float) -> FaceBox:
    return FaceBox(
        rect.left() - 0.5, rect.top() - 0.5, rect.right() + 0.5, rect.bottom() + 0.5, float(score)
    )


def dlib_hog_detector(upsample: int = DLIB_HOG_UPSAMPLE) -> Detector:
    """dlib's frontal HOG detector; score = the SVM's margin."""
    import dlib

    detector = dlib.get_frontal_face_detector()

    def detect(gray: np.ndarray) -> list[FaceBox]:
        rects, scores, _kinds = detector.run(_check_gray(gray), upsample, 0.0)
        return _sorted([_dlib_box(rect, score) for rect, score in zip(rects, scores, strict=True)])

    return detect


def dlib_mmod_detector(upsample: int = DLIB_MMOD_UPSAMPLE) -> Detector:
    """dlib's MMOD CNN detector; score = its confidence."""
    import dlib

    detector = dlib.cnn_face_detection_model_v1(str(recognition_model_file(MMOD_WEIGHTS)))

    def detect(gray: np.ndarray) -> list[FaceBox]:
        found = detector(_check_gray(gray), upsample)
        return _sorted([_dlib_box(item.rect, item.confidence) for item in found])

    return detect


def _no_detector() -> Detector:
    return lambda gray: []


_OPENERS: dict[str, Callable[[], Detector]] = {
    "none": _no_detector,
    "haar": haar_detector,
    "dlib-hog": dlib_hog_detector,
    "dlib-mmod": dlib_mmod_detector,
}


def open_detector(name: str) -> Detector:
    """Detector ``name`` with its measured settings; DetectorError (one line) when it is
    unknown or its library is not installed."""
    info = _info(name)
    try:
        return _OPENERS[name]()
    except ModuleNotFoundError as error:
        raise DetectorError(
            f"detector {name} needs the {info.extra} extra (uv sync --extra {info.extra}): {error}"
        ) from None
