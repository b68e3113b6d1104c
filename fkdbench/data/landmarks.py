"""Readers for the common facial-landmark formats: WFLW annotation lists, 300-W / iBUG
``.pts`` folders and landmark CSVs. Each returns a :class:`LandmarkSet`: square gray
crops of one size with their keypoints, and the crop boxes that map them back.

Coordinates
-----------
Keypoints are pixels, x to the right and y down, with the centre of pixel ``i`` at
``i`` (the convention of :mod:`fkdbench.data.schemes`). An image ``W`` pixels wide
therefore covers ``-0.5 <= x <= W - 0.5``. WFLW coordinates and face boxes are used as
published (0-based). 300-W ``.pts`` files are 1-based (Matlab): the reader subtracts 1.
CSV coordinates are taken as 0-based. Images are read as stored: EXIF orientation is
not applied, because the annotations refer to the stored pixels.

Crop policy
-----------
(The geometry, :func:`crop_box`, :func:`crop_image`, :func:`to_crop` and
:func:`to_original`, lives in :mod:`fkdbench.faces.crop`, the one crop policy; it is
re-exported here.)

1. Centre: the centre of the bounding box of the *present* landmarks (missing, NaN,
   points do not count) or, for WFLW with ``use_face_box=True``, the centre of the
   published face box.
2. Side: ``max(width, height) * (1 + 2 * margin)`` of that box, so ``margin`` is the
   fraction of the face's larger side added on each side. With the face box, the side
   is then grown (never shifted) just enough to contain every landmark, since WFLW
   points may stray outside the face box.
3. The box is never shifted or shrunk to fit the image: where it extends past the
   image, the outside is filled with zeros (black). That keeps the mapping simple and
   honest: a model sees that there is no image there.
4. A keypoint outside the *original image* is kept (it still lies in the crop) and
   reported in :attr:`LandmarkSet.outside_image`. A keypoint outside the *crop* cannot
   happen by construction; the readers check it and fail loudly if it ever does.
5. A record whose landmarks span no area (no point, one point, or all equal) cannot
   define a box: it is a bad record. So is one whose box is under a pixel, or over
   :data:`MAX_CROP_FACTOR` times the image's larger side (a coordinate far off the
   image: cutting such a box would fill memory with zeros).

The crop box is stored per sample as ``(x0, y0, side, scale)`` (float64); its mapping
(:func:`to_crop`, :func:`to_original`) and Pillow's convention behind :func:`crop_image`
are stated, and tested, in :mod:`fkdbench.faces.crop`.

Bad input
---------
Every problem is a :class:`LandmarkError` with one line, ``path: line N: reason``
(``path: reason`` when the problem concerns a whole file, such as an image beside a
``.pts`` file). With ``skip_bad_rows=True`` a bad record is listed in
:attr:`LandmarkSet.skipped` instead and reading goes on; a result with no sample at all
is still an error.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fkdbench.data.schemes import SCHEMES, get_scheme
from fkdbench.data.splits import DataError
from fkdbench.faces.crop import (  # noqa: F401 - the readers' public geometry, kept here
    DEFAULT_MARGIN,
    DEFAULT_SIZE,
    crop_box,
    crop_image,
    to_crop,
    to_original,
)

ATTRIBUTE_NAMES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
WFLW_SCHEME = "wflw98"
WFLW_POINTS = 98
# 196 coordinates, 4 face-box values, 6 attribute flags, the image path.
WFLW_FIELDS = 2 * WFLW_POINTS + 4 + len(ATTRIBUTE_NAMES) + 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
# The largest crop side, in multiples of the image's larger side (see the crop policy).
MAX_CROP_FACTOR = 4
# UTF-8, with or without a leading byte-order mark (spreadsheet and Windows exports put
# one first; read as plain UTF-8 it sticks to the first cell).
TEXT_ENCODING = "utf-8-sig"


class LandmarkError(DataError):
    """A landmark file, or an image it names, is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be read: which file, which line (None: the whole file),
    and why."""

    file: str
    line: int | None
    reason: str

    def message(self) -> str:
        where = self.file if self.line is None else f"{self.file}: line {self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class OutsideImage:
    """A record with keypoints outside its original image (kept: they lie in the crop)."""

    file: str
    line: int | None
    points: tuple[int, ...]  # keypoint indices outside the image

    @property
    def count(self) -> int:
        return len(self.points)


@dataclass
class LandmarkSet:
    """Square gray crops with keypoints in crop pixels, and how to map them back."""

    images: np.ndarray  # uint8 (N, size, size)
    keypoints: np.ndarray  # float32 (N, K, 2), crop pixels, NaN where missing
    ids: np.ndarray  # int64 (N,): line number in the source (1-based; .pts: position)
    names: list[str]  # image file per sample, as named by the source
    scheme: str  # keypoint scheme name (fkdbench.data.schemes)
    crops: np.ndarray  # float64 (N, 4): (x0, y0, side, scale), see the module docstring
    attributes: np.ndarray | None = None  # bool (N, 6) in ATTRIBUTE_NAMES order (WFLW)
    skipped: list[BadRecord] = field(default_factory=list)
    outside_image: list[OutsideImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])


# -- geometry: fkdbench.faces.crop (re-exported here for the readers' users) -------------


def _outside_image(points: np.ndarray, width: int, height: int) -> tuple[int, ...]:
    with np.errstate(invalid="ignore"):
        outside = (
            (points[:, 0] < -0.5)
            | (points[:, 0] > width - 0.5)
            | (points[:, 1] < -0.5)
            | (points[:, 1] > height - 0.5)
        )
    return tuple(int(i) for i in np.flatnonzero(outside))


# -- shared record handling ---------------------------------------------------------------
class _RecordError(Exception):
    """A bad record: the reason, one line; the caller adds file and line."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _load_gray(path: Path, shown: str) -> Image.Image:
    if not path.is_file():
        raise _RecordError(f"image {shown} not found ({path})")
    try:
        with Image.open(path) as image:
            return image.convert("L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise _RecordError(f"cannot open image {shown}: {_one_line(error)}") from None


def _parse_number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RecordError(f"{what} is not a number: {text[:20]!r}") from None
    if not math.isfinite(value):
        raise _RecordError(f"{what} is not finite: {text[:20]!r}")
    return value


def _num_points(scheme: str) -> int:
    return get_scheme(scheme).num_keypoints


def _check_points(count: int, scheme: str, needed: int) -> None:
    if count != needed:
        raise _RecordError(f"has {count} points, scheme {scheme} needs {needed}")


@dataclass
class _Sample:
    image: np.ndarray
    keypoints: np.ndarray
    crop: np.ndarray
    outside: tuple[int, ...]


def _check_crop_side(side: float, image: Image.Image) -> None:
    largest = MAX_CROP_FACTOR * max(image.width, image.height)
    if side < 1.0:
        raise _RecordError(f"the landmarks span less than a pixel (crop side {side:.3g})")
    if not side <= largest:  # also inf and NaN
        raise _RecordError(
            f"the crop box ({side:.3g} px) is over {MAX_CROP_FACTOR}x the "
            f"{image.width}x{image.height} image: a coordinate far outside it?"
        )


def _make_sample(
    image: Image.Image,
    points: np.ndarray,
    size: int,
    margin: float,
    face_box: tuple[float, float, float, float] | None = None,
) -> _Sample:
    try:
        crop = crop_box(points, size, margin, face_box)
    except ValueError as error:
        raise _RecordError(str(error)) from None
    _check_crop_side(float(crop[2]), image)
    keypoints = to_crop(points, crop)
    present = keypoints[~np.isnan(keypoints).any(axis=1)]
    slack = 1e-6 * size
    if present.size and (present.min() < -0.5 - slack or present.max() > size - 0.5 + slack):
        raise AssertionError(f"crop policy bug: a keypoint left the crop {crop.tolist()}")
    pixels = np.asarray(crop_image(image, crop, size), dtype=np.uint8)
    outside = _outside_image(points, image.width, image.height)
    return _Sample(pixels, keypoints.astype(np.float32), crop, outside)


class _Collector:
    """Gathers samples, and raises or lists bad records."""

    def __init__(self, scheme: str, skip_bad_rows: bool, with_attributes: bool = False):
        self.scheme = scheme
        self.skip = skip_bad_rows
        self.samples: list[_Sample] = []
        self.ids: list[int] = []
        self.names: list[str] = []
        self.attributes: list[np.ndarray] | None = [] if with_attributes else None
        self.skipped: list[BadRecord] = []
        self.outside: list[OutsideImage] = []

    def bad(self, file: object, line: int | None, reason: str) -> None:
        record = BadRecord(str(file), line, _one_line(reason))
        if not self.skip:
            raise LandmarkError(record.message())
        self.skipped.append(record)

    def add(
        self,
        file: object,
        line: int | None,
        sample_id: int,
        name: str,
        sample: _Sample,
        attributes: np.ndarray | None = None,
    ) -> None:
        self.samples.append(sample)
        self.ids.append(sample_id)
        self.names.append(name)
        if self.attributes is not None:
            self.attributes.append(attributes)
        if sample.outside:
            self.outside.append(OutsideImage(str(file), line, sample.outside))

    def result(self, source: object) -> LandmarkSet:
        if not self.samples:
            detail = f" ({len(self.skipped)} skipped)" if self.skipped else ""
            raise LandmarkError(f"{source}: no usable landmark record{detail}")
        return LandmarkSet(
            images=np.stack([sample.image for sample in self.samples]),
            keypoints=np.stack([sample.keypoints for sample in self.samples]).astype(np.float32),
            ids=np.asarray(self.ids, dtype=np.int64),
            names=self.names,
            scheme=self.scheme,
            crops=np.stack([sample.crop for sample in self.samples]).astype(np.float64),
            attributes=None if self.attributes is None else np.stack(self.attributes),
            skipped=self.skipped,
            outside_image=self.outside,
        )


def _check_options(size: int, margin: float) -> None:
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding=TEXT_ENCODING) as handle:
            yield from enumerate(handle, start=1)
    except FileNotFoundError:
        raise LandmarkError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LandmarkError(f"{path}: cannot read: {_one_line(error)}") from None


# -- WFLW ---------------------------------------------------------------------------------
def _parse_wflw_line(
    fields: list[str],
) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray, str]:
    if len(fields) != WFLW_FIELDS:
        raise _RecordError(
            f"has {len(fields)} fields, a WFLW line needs {WFLW_FIELDS} "
            f"({2 * WFLW_POINTS} coordinates, 4 face-box values, "
            f"{len(ATTRIBUTE_NAMES)} attribute flags, the image path)"
        )
    values = [
        _parse_number(text, f"field {i + 1}") for i, text in enumerate(fields[: 2 * WFLW_POINTS])
    ]
    points = np.asarray(values, dtype=np.float64).reshape(WFLW_POINTS, 2)
    box_fields = fields[2 * WFLW_POINTS : 2 * WFLW_POINTS + 4]
    box = tuple(_parse_number(text, f"face box field {i + 1}") for i, text in enumerate(box_fields))
    flags = fields[2 * WFLW_POINTS + 4 : -1]
    for name, text in zip(ATTRIBUTE_NAMES, flags, strict=True):
        if text not in ("0", "1"):
            raise _RecordError(f"attribute {name} must be 0 or 1, got {text[:20]!r}")
    attributes = np.array([text == "1" for text in flags], dtype=bool)
    return points, box, attributes, fields[-1]


def read_wflw(
    annotation_file: Path,
    images_dir: Path,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    skip_bad_rows: bool = False,
    use_face_box: bool = False,
) -> LandmarkSet:
    """Read a WFLW annotation list (``list_98pt_rect_attr_train.txt`` / ``_test.txt``).

    Each line has 207 whitespace-separated fields: x0 y0 ... x97 y97 (0-based pixels),
    the face box x_min y_min x_max y_max, six 0/1 flags in :data:`ATTRIBUTE_NAMES`
    order, and the image path relative to ``images_dir``. Crops are centred on the
    landmarks, or on the face box with ``use_face_box`` (see the module docstring).
    ``ids`` are 1-based line numbers; blank lines are ignored."""
    _check_options(size, margin)
    if WFLW_SCHEME in SCHEMES:
        needed = _num_points(WFLW_SCHEME)
        if needed != WFLW_POINTS:
            raise ValueError(f"scheme {WFLW_SCHEME} has {needed} points, WFLW has {WFLW_POINTS}")
    annotation_file, images_dir = Path(annotation_file), Path(images_dir)
    collector = _Collector(WFLW_SCHEME, skip_bad_rows, with_attributes=True)
    for line, text in _text_lines(annotation_file):
        fields = text.split()
        if not fields:
            continue
        try:
            points, box, attributes, name = _parse_wflw_line(fields)
            image = _load_gray(images_dir / name, name)
            sample = _make_sample(image, points, size, margin, box if use_face_box else None)
        except _RecordError as error:
            collector.bad(annotation_file, line, str(error))
            continue
        collector.add(annotation_file, line, line, name, sample, attributes)
    return collector.result(annotation_file)


# -- 300-W / iBUG .pts --------------------------------------------------------------------
def read_pts(path: Path, scheme: str = "ibug68") -> np.ndarray:
    """Read one ``.pts`` file as float64 (K, 2) **0-based** pixels: 300-W files are
    1-based (Matlab), so 1 is subtracted from every coordinate. Raises LandmarkError."""
    path = Path(path)
    try:
        return _parse_pts(path, scheme)
    except _PtsError as error:
        raise LandmarkError(BadRecord(str(path), error.line, str(error)).message()) from None


class _PtsError(_RecordError):
    def __init__(self, line: int | None, reason: str):
        super().__init__(reason)
        self.line = line


def _parse_pts(path: Path, scheme: str) -> np.ndarray:
    needed = _num_points(scheme)
    try:
        lines = path.read_text(encoding=TEXT_ENCODING).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise _PtsError(None, f"cannot read: {_one_line(error)}") from None
    numbered = [(i, text.strip()) for i, text in enumerate(lines, start=1) if text.strip()]
    declared: int | None = None
    position = 0
    while position < len(numbered) and numbered[position][1] != "{":
        line, text = numbered[position]
        key, colon, value = text.partition(":")
        if not colon:
            raise _PtsError(line, f"expected 'key: value' or '{{', got {text[:30]!r}")
        if key.strip() == "n_points":
            try:
                declared = int(value)
            except ValueError:
                raise _PtsError(
                    line, f"n_points is not an integer: {value.strip()[:20]!r}"
                ) from None
            try:
                _check_points(declared, scheme, needed)
            except _RecordError as error:
                raise _PtsError(line, str(error)) from None
        position += 1
    if declared is None:
        line = numbered[position][0] if position < len(numbered) else None
        raise _PtsError(line, "no 'n_points:' header")
    if position == len(numbered):
        raise _PtsError(None, "no '{' opening the points")
    points = []
    position += 1
    while position < len(numbered) and numbered[position][1] != "}":
        line, text = numbered[position]
        parts = text.split()
        if len(parts) != 2:
            raise _PtsError(line, f"expected 'x y', got {text[:30]!r}")
        try:
            points.append(
                [_parse_number(part, axis) for part, axis in zip(parts, "xy", strict=True)]
            )
        except _RecordError as error:
            raise _PtsError(line, str(error)) from None
        position += 1
    if position == len(numbered):
        raise _PtsError(numbered[-1][0], f"no '}}' closing the points ({len(points)} read)")
    if len(points) != declared:
        raise _PtsError(
            numbered[position][0], f"has {len(points)} point lines, n_points says {declared}"
        )
    if position + 1 < len(numbered):
        line, text = numbered[position + 1]
        raise _PtsError(line, f"unexpected text after '}}': {text[:30]!r}")
    return np.asarray(points, dtype=np.float64) - 1.0  # 1-based (Matlab) -> 0-based


def _image_beside(pts_path: Path, listing: dict[Path, dict[str, list[Path]]]) -> Path:
    """The one image file with the stem of ``pts_path`` in its folder."""
    folder = pts_path.parent
    if folder not in listing:
        by_stem: dict[str, list[Path]] = {}
        for candidate in sorted(folder.iterdir()):
            if candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.is_file():
                by_stem.setdefault(candidate.stem, []).append(candidate)
        listing[folder] = by_stem
    candidates = listing[folder].get(pts_path.stem, [])
    if not candidates:
        raise _PtsError(None, f"no image beside it (looked for {pts_path.stem}.jpg, .png, ...)")
    if len(candidates) > 1:
        shown = ", ".join(candidate.name for candidate in candidates)
        raise _PtsError(None, f"several images beside it: {shown}")
    return candidates[0]


def read_pts_folder(
    folder: Path,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    scheme: str = "ibug68",
    skip_bad_rows: bool = False,
) -> LandmarkSet:
    """Read a 300-W / iBUG style folder: every ``*.pts`` under ``folder`` (recursively,
    in sorted order) with the image of the same stem beside it (``.jpg``, ``.png``, ...).

    ``.pts`` coordinates are 1-based (Matlab); they are converted to 0-based by
    subtracting 1. ``ids`` are 1-based positions in the sorted list of ``.pts`` files;
    ``names`` are the image paths relative to ``folder``. Images without a ``.pts`` are
    not annotated and are ignored; a ``.pts`` without an image is a bad record."""
    _check_options(size, margin)
    folder = Path(folder)
    if not folder.is_dir():
        raise LandmarkError(f"{folder}: not a folder")
    _num_points(scheme)  # unknown schemes fail before any file is read
    collector = _Collector(scheme, skip_bad_rows)
    listing: dict[Path, dict[str, list[Path]]] = {}
    pts_files = sorted(folder.rglob("*.pts"), key=lambda p: p.relative_to(folder).as_posix())
    if not pts_files:
        raise LandmarkError(f"{folder}: no .pts file found")
    for position, pts_path in enumerate(pts_files, start=1):
        file: Path = pts_path
        try:
            points = _parse_pts(pts_path, scheme)
            image_path = _image_beside(pts_path, listing)
            file = image_path  # an image problem names the image
            image = _load_gray(image_path, image_path.name)
            file = pts_path
            sample = _make_sample(image, points, size, margin)
        except _PtsError as error:
            collector.bad(file, error.line, str(error))
            continue
        except _RecordError as error:
            collector.bad(file, None, str(error))
            continue
        name = image_path.relative_to(folder).as_posix()
        collector.add(pts_path, None, position, name, sample)
    return collector.result(folder)


# -- landmark CSV -------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_csv_points(cells: list[str], scheme: str, needed: int) -> np.ndarray:
    coordinates = cells[1:]
    if len(coordinates) % 2:
        raise _RecordError(
            f"has {len(coordinates)} coordinate values, an odd number "
            f"(scheme {scheme} needs {2 * needed}: x,y per point)"
        )
    _check_points(len(coordinates) // 2, scheme, needed)
    points = np.full((needed, 2), np.nan)
    for i in range(needed):
        x_text, y_text = coordinates[2 * i].strip(), coordinates[2 * i + 1].strip()
        x_missing = x_text == "" or x_text.lower() == "nan"
        y_missing = y_text == "" or y_text.lower() == "nan"
        if x_missing and y_missing:
            continue
        if x_missing != y_missing:
            raise _RecordError(f"point {i} has only one of x and y")
        points[i] = (_parse_number(x_text, f"x{i}"), _parse_number(y_text, f"y{i}"))
    return points


def _csv_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    try:
        with open(path, newline="", encoding=TEXT_ENCODING) as handle:
            reader = csv.reader(handle)
            line = 0
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise LandmarkError(f"{path}: line {line + 1}: {_one_line(error)}") from None
                line = reader.line_num
                yield line, cells
    except FileNotFoundError:
        raise LandmarkError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LandmarkError(f"{path}: cannot read: {_one_line(error)}") from None


def read_landmark_csv(
    csv_file: Path,
    images_dir: Path,
    scheme: str,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    skip_bad_rows: bool = False,
) -> LandmarkSet:
    """Read a landmark CSV: one row per image, the image file name (relative to
    ``images_dir``) then x0,y0,x1,y1,... in ``scheme`` order (0-based pixels; an empty
    cell, or ``nan``, is a missing coordinate). The first row is a header, and skipped,
    when none of its coordinate cells is a number. ``ids`` are 1-based line numbers."""
    _check_options(size, margin)
    csv_file, images_dir = Path(csv_file), Path(images_dir)
    needed = _num_points(scheme)
    collector = _Collector(scheme, skip_bad_rows)
    first = True
    for line, cells in _csv_rows(csv_file):
        if not cells or all(not cell.strip() for cell in cells):
            continue
        if first:
            first = False
            coordinates = [cell.strip() for cell in cells[1:] if cell.strip()]
            if coordinates and not any(_is_number(cell) for cell in coordinates):
                continue  # a header row: no coordinate cell is a number
        try:
            points = _parse_csv_points(cells, scheme, needed)
            name = cells[0].strip()
            if not name:
                raise _RecordError("the image name (first cell) is empty")
            image = _load_gray(images_dir / name, name)
            sample = _make_sample(image, points, size, margin)
        except _RecordError as error:
            collector.bad(csv_file, line, str(error))
            continue
        collector.add(csv_file, line, line, name, sample)
    return collector.result(csv_file)
