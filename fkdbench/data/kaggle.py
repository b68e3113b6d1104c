"""The Kaggle Facial Keypoints Detection files: ``training.csv``, ``test.csv``,
``IdLookupTable.csv``, read and written in the competition's exact layout.

``training.csv`` has the 30 coordinate columns in :data:`KAGGLE15` order, then
``Image``: the gray values of a 96x96 image, row-major, as space-separated integers.
Missing coordinates are empty cells. ``test.csv`` has ``ImageId`` and ``Image``;
``IdLookupTable.csv`` has ``RowId, ImageId, FeatureName, Location`` (Location empty:
the submission fills it). The competition ships the two CSVs as ``training.zip`` and
``test.zip``; the reader takes either form, or one zip holding them all.

Reading is strict: every problem names the file and the line (the header is line 1),
and with ``skip_bad_rows`` the bad rows are dropped and listed instead.
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fkdbench.data.schemes import KAGGLE15, KAGGLE15_SPARSE_KEYPOINTS, KeypointScheme
from fkdbench.data.splits import DataError

TRAINING_NAME = "training.csv"
TEST_NAME = "test.csv"
LOOKUP_NAME = "IdLookupTable.csv"
LOOKUP_HEADER = ("RowId", "ImageId", "FeatureName", "Location")
KAGGLE_IMAGE_SIZE = 96
# Kaggle rows hold 9216 values of ~3 characters: far past the csv module's default limit.
csv.field_size_limit(2**24)
# UTF-8, with or without the byte-order mark that spreadsheet exports put first (without
# "-sig" the mark sticks to the first column's name, which then looks missing).
CSV_ENCODING = "utf-8-sig"

_PIXEL_TEXT = [str(value) for value in range(256)]


def training_header(scheme: KeypointScheme = KAGGLE15) -> list[str]:
    """The exact header of Kaggle's training.csv."""
    return [*scheme.coordinate_columns(), "Image"]


# -- writing ------------------------------------------------------------------------------
def _image_text(image: np.ndarray) -> str:
    return " ".join([_PIXEL_TEXT[value] for value in image.reshape(-1).tolist()])


def _coordinate_text(value: float) -> str:
    """Shortest text that reads back to the same float32 (so round trips are exact)."""
    if np.isnan(value):
        return ""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def write_training_csv(
    path: Path, images: np.ndarray, keypoints: np.ndarray, scheme: KeypointScheme = KAGGLE15
) -> None:
    """Write labelled images: uint8 (N, H, W) and float32 (N, K, 2), NaN = missing."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(training_header(scheme))
        for image, points in zip(images, keypoints, strict=True):
            cells = [_coordinate_text(value) for value in points.reshape(-1)]
            writer.writerow([*cells, _image_text(image)])


def write_test_csv(path: Path, images: np.ndarray) -> None:
    """Write unlabelled images with 1-based ``ImageId`` as in the competition."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ImageId", "Image"])
        for image_id, image in enumerate(images, start=1):
            writer.writerow([image_id, _image_text(image)])


def write_lookup_csv(path: Path, requested: np.ndarray, scheme: KeypointScheme = KAGGLE15) -> None:
    """Write ``IdLookupTable.csv``: one row per (image, coordinate) the submission must
    give; ``requested`` is bool (N, K), True where a keypoint is asked for."""
    columns = scheme.coordinate_columns()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LOOKUP_HEADER)
        row_id = 1
        for image_id, wanted in enumerate(requested, start=1):
            for keypoint in np.flatnonzero(wanted):
                for axis in (0, 1):
                    writer.writerow([row_id, image_id, columns[2 * keypoint + axis], ""])
                    row_id += 1


def kaggle_lookup_request(count: int, seed: int, scheme: KeypointScheme = KAGGLE15) -> np.ndarray:
    """Which keypoints the lookup table asks for, per test image: like the real table,
    all of them for about a third of the images and the sparse four for the rest."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31 + 1,)))
    requested = np.zeros((count, scheme.num_keypoints), dtype=bool)
    sparse = [scheme.index(name) for name in KAGGLE15_SPARSE_KEYPOINTS]
    full = rng.random(count) < 0.34
    requested[full] = True
    requested[np.ix_(~full, sparse)] = True
    return requested


# -- reading ------------------------------------------------------------------------------
@dataclass
class BadRow:
    """A row that could not be read: where and why."""

    line: int
    reason: str


@dataclass
class TrainingTable:
    """Labelled images read from a training.csv."""

    images: np.ndarray  # uint8 (N, S, S)
    keypoints: np.ndarray  # float32 (N, K, 2), NaN = missing
    row_ids: np.ndarray  # int64 (N,): 0-based data row in the file
    source: str  # what was read, for messages and the manifest
    skipped: list[BadRow] = field(default_factory=list)


@dataclass
class TestTable:
    """Unlabelled images read from a test.csv."""

    images: np.ndarray  # uint8 (N, S, S)
    image_ids: np.ndarray  # int64 (N,)
    source: str
    skipped: list[BadRow] = field(default_factory=list)


def _parse_image(text: str, image_size: int) -> np.ndarray:
    """Gray values of one image; raises ValueError with the reason."""
    expected = image_size * image_size
    tokens = text.split()
    if len(tokens) != expected:
        raise ValueError(
            f"Image has {len(tokens)} pixel values, expected {expected} ({image_size}x{image_size})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        values = np.zeros(0, dtype=np.int64)
    if len(values) != expected:  # numpy stops (or fails) at the first non-integer token
        bad = next((token for token in tokens if not token.lstrip("-").isdigit()), "?")
        raise ValueError(f"Image has a non-integer pixel value {bad[:20]!r}")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"Image has a pixel value outside 0-255 ({values.min()}..{values.max()})")
    return values.astype(np.uint8).reshape(image_size, image_size)


def _parse_coordinate(text: str, column: str, image_size: int) -> float:
    if text.strip() == "":
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} is not a number: {text[:20]!r}") from None
    # Pixel centres run 0..S-1; a point may sit anywhere on a pixel, so allow half a pixel.
    if not -0.5 <= value <= image_size - 0.5:
        raise ValueError(f"{column} = {value} lies outside the {image_size}x{image_size} image")
    return value


def _parse_image_id(text: str) -> int:
    try:
        image_id = int(text)
    except ValueError:
        raise ValueError(f"ImageId is not an integer: {text[:20]!r}") from None
    if not -(2**63) <= image_id < 2**63:  # it is stored as int64
        raise ValueError(f"ImageId is out of range: {text[:20]!r}")
    return image_id


@dataclass
class _CsvSource:
    name: str  # for messages: "training.zip:training.csv" or a path
    text: io.TextIOBase


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


# What reading a damaged file or archive raises: the csv module's errors, undecodable
# text, and zipfile's and zlib's errors (a bad header, CRC or compressed stream, an
# encrypted member or an unknown compression method).
_UNREADABLE = (
    csv.Error,
    UnicodeDecodeError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    RuntimeError,
)


def _open_member(folder_or_zip: Path, member: str) -> _CsvSource | None:
    """Find ``member`` as a plain file, inside ``<stem>.zip``, or inside a zip given as
    the path itself; None when absent."""
    path = Path(folder_or_zip)
    if path.is_file():
        _check_zip_path(path)
        archive_path = path
    else:
        plain = path / member
        if plain.is_file():
            return _CsvSource(str(plain), open(plain, newline="", encoding=CSV_ENCODING))
        archive_path = path / (Path(member).stem + ".zip")
        if not archive_path.is_file():
            return None
    try:
        return _member_of(archive_path, member)
    except _UNREADABLE:
        raise DataError(f"{archive_path}: not a readable zip file") from None


def _check_zip_path(path: Path) -> None:
    """A file given as the path must be a zip: say what it is and what was expected."""
    if zipfile.is_zipfile(path):
        return
    if path.suffix.lower() == ".zip":
        raise DataError(f"{path}: not a readable zip file (damaged, or not a zip at all)")
    raise DataError(
        f"{path}: is a file, not a folder or a zip; expected a folder holding "
        f"{TRAINING_NAME} (or training.zip), or one zip holding them"
    )


def _member_of(archive_path: Path, member: str) -> _CsvSource | None:
    """``member`` inside the zip, or inside the zip of the same stem inside it (the
    competition's all-in-one zip holds training.zip etc.); None when absent."""
    archive = zipfile.ZipFile(archive_path)
    names = {Path(name).name: name for name in archive.namelist()}
    if member in names:
        stream = io.TextIOWrapper(archive.open(names[member]), encoding=CSV_ENCODING, newline="")
        return _CsvSource(f"{archive_path}:{member}", stream)
    nested = Path(member).stem + ".zip"
    if nested not in names:
        return None
    inner = zipfile.ZipFile(io.BytesIO(archive.read(names[nested])))
    inner_names = {Path(name).name: name for name in inner.namelist()}
    if member not in inner_names:
        return None
    stream = io.TextIOWrapper(inner.open(inner_names[member]), encoding=CSV_ENCODING, newline="")
    return _CsvSource(f"{archive_path}:{nested}:{member}", stream)


def _rows(source: _CsvSource, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) after checking the header; raises DataError."""
    reader = csv.reader(source.text)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{source.name}: the file is empty (no header)") from None
    except _UNREADABLE as error:
        raise DataError(f"{source.name}: line 1: unreadable ({_one_line(error)})") from None
    missing = [column for column in required if column not in header]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{source.name}: line 1: missing column(s) {shown}")
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _UNREADABLE as error:
            reason = _one_line(error)
            raise DataError(f"{source.name}: line {line + 1}: unreadable ({reason})") from None
        line = reader.line_num
        if not cells:
            continue
        if len(cells) != len(header):
            yield (
                line,
                {
                    "__error__": f"has {len(cells)} fields, expected {len(header)} "
                    "(truncated or malformed row)"
                },
            )
            continue
        yield line, dict(zip(header, cells, strict=True))


def _handle_bad(
    source: _CsvSource, line: int, reason: str, skip: bool, skipped: list[BadRow]
) -> None:
    if not skip:
        raise DataError(f"{source.name}: line {line}: {reason}")
    skipped.append(BadRow(line, reason))


def read_training_csv(
    folder_or_zip: Path,
    scheme: KeypointScheme = KAGGLE15,
    image_size: int = KAGGLE_IMAGE_SIZE,
    skip_bad_rows: bool = False,
) -> TrainingTable:
    """Read labelled images from ``training.csv`` (or ``training.zip``) in a folder."""
    source = _open_member(folder_or_zip, TRAINING_NAME)
    if source is None:
        raise DataError(f"{folder_or_zip}: no {TRAINING_NAME} or training.zip found")
    columns = scheme.coordinate_columns()
    images, keypoints, row_ids, skipped = [], [], [], []
    with source.text:
        for data_row, (line, row) in enumerate(_rows(source, [*columns, "Image"])):
            if "__error__" in row:
                _handle_bad(source, line, row["__error__"], skip_bad_rows, skipped)
                continue
            try:
                points = [_parse_coordinate(row[column], column, image_size) for column in columns]
                image = _parse_image(row["Image"], image_size)
            except ValueError as error:
                _handle_bad(source, line, str(error), skip_bad_rows, skipped)
                continue
            flat = np.asarray(points, dtype=np.float32).reshape(scheme.num_keypoints, 2)
            # A keypoint with only one of its two coordinates is not a label.
            flat[np.isnan(flat).any(axis=1)] = np.nan
            images.append(image)
            keypoints.append(flat)
            row_ids.append(data_row)
    if not images:
        raise DataError(f"{source.name}: no readable rows")
    return TrainingTable(
        images=np.stack(images),
        keypoints=np.stack(keypoints),
        row_ids=np.asarray(row_ids, dtype=np.int64),
        source=source.name,
        skipped=skipped,
    )


def read_test_csv(
    folder_or_zip: Path, image_size: int = KAGGLE_IMAGE_SIZE, skip_bad_rows: bool = False
) -> TestTable | None:
    """Read unlabelled images from ``test.csv`` (or ``test.zip``); None when absent."""
    source = _open_member(folder_or_zip, TEST_NAME)
    if source is None:
        return None
    images, image_ids, skipped = [], [], []
    with source.text:
        for line, row in _rows(source, ["ImageId", "Image"]):
            if "__error__" in row:
                _handle_bad(source, line, row["__error__"], skip_bad_rows, skipped)
                continue
            try:
                image_id = _parse_image_id(row["ImageId"])
                image = _parse_image(row["Image"], image_size)
            except ValueError as error:
                _handle_bad(source, line, str(error), skip_bad_rows, skipped)
                continue
            images.append(image)
            image_ids.append(image_id)
    empty = np.zeros((0, image_size, image_size), dtype=np.uint8)
    return TestTable(
        images=np.stack(images) if images else empty,
        image_ids=np.asarray(image_ids, dtype=np.int64),
        source=source.name,
        skipped=skipped,
    )


def read_lookup_csv(folder_or_zip: Path) -> list[dict[str, str]] | None:
    """Read ``IdLookupTable.csv`` rows as dicts; None when absent."""
    source = _open_member(folder_or_zip, LOOKUP_NAME)
    if source is None:
        return None
    with source.text:
        rows = []
        for line, row in _rows(source, list(LOOKUP_HEADER[:3])):
            if "__error__" in row:
                raise DataError(f"{source.name}: line {line}: {row['__error__']}")
            rows.append(row)
    return rows
