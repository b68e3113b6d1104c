"""Processed splits on disk: ``data/<name>/{train,val,test}.npz`` plus ``manifest.json``.

Each split file holds three arrays:

- ``images``: uint8, shape (N, H, W), gray values 0-255;
- ``keypoints``: float32, shape (N, K, 2), pixel coordinates (x, y), NaN where missing;
- ``ids``: int64, shape (N,), the 0-based row of the sample in the source file.

The manifest (JSON) says where the data came from and how it was split; see
:func:`fkdbench.data.prepare.prepare` for its fields. A manifest with a ``split`` block
was split by group (``--groups``); one without was split by row.

A groups file (``prepare --groups``) is a ``row,group`` CSV: for each row of the source
(0-based, in the source's order), the group (person) it shows. :func:`read_groups` reads
it, :meth:`GroupTable.of_faces` checks it against the rows the source has, and
:func:`group_split_indices` splits so that no group is in two splits.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"
# Bumped whenever the layout of the processed files changes.
DATA_FORMAT_VERSION = 1
# The columns a groups file must have.
GROUPS_COLUMNS = ("row", "group")
# What the manifest's ``split.rule`` says of a split by group.
GROUP_SPLIT_RULE = "by group"
# A row number: ASCII digits only (int() would also take "1_0", "+1" or other scripts' digits).
_ROW_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class SplitArrays:
    """One split in memory."""

    images: np.ndarray  # uint8 (N, H, W)
    keypoints: np.ndarray  # float32 (N, K, 2), NaN where missing
    ids: np.ndarray  # int64 (N,)
    # bool (N, F) per-sample subset flags (WFLW's six attributes); None when the source
    # has none. Stored only when present, so other data sets keep their bytes.
    attributes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def label_mask(self) -> np.ndarray:
        """bool (N, K): True where the keypoint is labelled."""
        return ~np.isnan(self.keypoints).any(axis=-1)


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


def split_path(data_dir: Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return Path(data_dir) / f"{split}.npz"


def save_split(path: Path, arrays: SplitArrays) -> None:
    """Write one split as an uncompressed npz with fixed zip timestamps, so the same
    arrays always give the same bytes (np.savez stamps the current time)."""
    members = {
        "images": arrays.images.astype(np.uint8, copy=False),
        "keypoints": arrays.keypoints.astype(np.float32, copy=False),
        "ids": arrays.ids.astype(np.int64, copy=False),
    }
    if arrays.attributes is not None:
        members["attributes"] = arrays.attributes.astype(bool, copy=False)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def load_split(data_dir: Path, split: str) -> SplitArrays:
    """Read ``<data_dir>/<split>.npz``; a missing or malformed file raises :class:`DataError`."""
    path = split_path(data_dir, split)
    if not path.is_file():
        raise DataError(f"{path}: no such split file (run `fkdbench prepare` first)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = SplitArrays(
                images=archive["images"],
                keypoints=archive["keypoints"],
                ids=archive["ids"],
                attributes=archive["attributes"] if "attributes" in archive.files else None,
            )
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path}: not a readable fkdbench split ({error})") from None
    if arrays.images.ndim != 3 or arrays.images.dtype != np.uint8:
        raise DataError(
            f"{path}: images must be uint8 (N, H, W), got {arrays.images.dtype} "
            f"{arrays.images.shape}"
        )
    if arrays.keypoints.ndim != 3 or arrays.keypoints.shape[0] != len(arrays.images):
        raise DataError(
            f"{path}: keypoints must be (N, K, 2) with N = {len(arrays.images)}, "
            f"got {arrays.keypoints.shape}"
        )
    return arrays


def read_manifest(data_dir: Path) -> dict:
    """Read ``<data_dir>/manifest.json``."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: no manifest (run `fkdbench prepare` first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON ({error})") from None


# -- groups ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupTable:
    """A groups file as read: each named source row and its group."""

    path: Path
    rows: np.ndarray  # int64 (M,): the source rows the file names, each once
    groups: np.ndarray  # str (M,): the group of each of ``rows``

    def of_faces(self, face_rows: np.ndarray, row_count: int) -> np.ndarray:
        """The group of each face (int codes), given each face's source row and how many
        rows the source has; a file that does not name exactly rows 0..row_count-1, or
        whose faces fall in fewer than three groups, raises :class:`DataError`."""
        outside = self.rows[self.rows >= row_count]
        if len(outside):
            raise DataError(
                f"{self.path}: row {int(outside[0])} is out of range: the source has "
                f"{row_count} rows (0 to {row_count - 1})"
            )
        unnamed = np.setdiff1d(np.arange(row_count), self.rows)
        if len(unnamed):
            shown = ", ".join(str(int(row)) for row in unnamed[:5])
            more = " ..." if len(unnamed) > 5 else ""
            raise DataError(
                f"{self.path}: names no group for {len(unnamed)} of the source's "
                f"{row_count} rows: {shown}{more}"
            )
        _names, codes = np.unique(self.groups, return_inverse=True)
        by_row = np.empty(row_count, dtype=np.int64)
        by_row[self.rows] = codes
        face_groups = by_row[np.asarray(face_rows, dtype=np.int64)]
        found = len(np.unique(face_groups))
        if found < len(SPLITS):
            raise DataError(
                f"{self.path}: the faces fall in {found} group(s); a split by group "
                f"needs at least {len(SPLITS)}, one per split"
            )
        return face_groups


def _groups_error(path: Path, line: int, problem: str) -> DataError:
    return DataError(f"{path}: line {line}: {problem}")


def _groups_header(path: Path, reader) -> tuple[int, int]:
    """The positions of the ``row`` and ``group`` columns in the first non-blank row."""
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        header = [cell.strip().lower() for cell in cells]
        if not all(column in header for column in GROUPS_COLUMNS):
            shown = ",".join(cells)[:60]
            raise _groups_error(path, reader.line_num, f"no `row,group` header (got {shown!r})")
        return header.index("row"), header.index("group")
    raise DataError(f"{path}: empty (no `row,group` header)")


def _groups_body(path: Path, reader, row_at: int, group_at: int) -> dict[int, tuple[str, int]]:
    """Each row number with its group and the line that names it."""
    named: dict[int, tuple[str, int]] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) <= max(row_at, group_at):
            raise _groups_error(
                path, line, f"has {len(cells)} field(s), expected a row and a group"
            )
        row_text, group = cells[row_at].strip(), cells[group_at].strip()
        if not _ROW_NUMBER.fullmatch(row_text):
            raise _groups_error(
                path, line, f"row {row_text[:20]!r} is not a row number (0, 1, ...)"
            )
        if len(row_text) > 18:  # past any source, and past int64
            raise _groups_error(path, line, f"row {row_text[:20]}... is out of range")
        if not group:
            raise _groups_error(path, line, "the group is empty")
        row = int(row_text)
        if row in named:
            raise _groups_error(
                path, line, f"row {row} listed twice (first on line {named[row][1]})"
            )
        named[row] = (group, line)
    return named


def read_groups(path: Path) -> GroupTable:
    """Read a ``row,group`` CSV; a missing or malformed file raises one
    :class:`DataError` line naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            row_at, group_at = _groups_header(path, reader)
            named = _groups_body(path, reader, row_at, group_at)
    except FileNotFoundError:
        raise DataError(f"{path}: no such groups file") from None
    except (csv.Error, UnicodeDecodeError, OSError) as error:
        raise DataError(f"{path}: unreadable ({' '.join(str(error).split())})") from None
    if not named:
        raise DataError(f"{path}: names no rows (only the `row,group` header)")
    rows = np.fromiter(named, dtype=np.int64, count=len(named))
    groups = np.asarray([group for group, _line in named.values()], dtype=str)
    return GroupTable(path, rows, groups)


def _closest_cut(faces_before: np.ndarray, target: float, low: int, high: int) -> int:
    """The number of groups k in [low, high] whose first k hold closest to ``target``
    faces (``faces_before[k]``: the faces of the first k groups); ties take the smaller."""
    candidates = np.arange(low, high + 1)
    return int(candidates[np.argmin(np.abs(faces_before[candidates] - target))])


def group_split_indices(
    groups: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Deterministic train/val/test indices with every group in one split (as
    scikit-learn's GroupShuffleSplit): the groups in a seeded random order, cut where
    the test and val shares of faces come closest to their fractions, at least one group
    per split."""
    names, codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < len(SPLITS):
        raise ValueError(f"a split by group needs at least {len(SPLITS)} groups, got {len(names)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31 + 3,)))
    order = rng.permutation(len(names))
    faces_before = np.concatenate([[0], np.cumsum(sizes[order])])
    total = faces_before[-1]
    test_cut = _closest_cut(faces_before, test_fraction * total, 1, len(names) - 2)
    val_target = (test_fraction + val_fraction) * total
    val_cut = _closest_cut(faces_before, val_target, test_cut + 1, len(names) - 1)
    chosen = {"train": order[val_cut:], "val": order[test_cut:val_cut], "test": order[:test_cut]}
    return {split: np.flatnonzero(np.isin(codes, chosen[split])) for split in SPLITS}
