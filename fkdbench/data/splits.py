"""Processed splits on disk: ``data/<name>/{train,val,test}.npz`` plus ``manifest.json``.

Each split file holds three arrays:

- ``images``: uint8, shape (N, H, W), gray values 0-255;
- ``keypoints``: float32, shape (N, K, 2), pixel coordinates (x, y), NaN where missing;
- ``ids``: int64, shape (N,), the 0-based row of the sample in the source file.

The manifest (JSON) says where the data came from and how it was split; see
:func:`fkdbench.data.prepare.prepare` for its fields.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"
# Bumped whenever the layout of the processed files changes.
DATA_FORMAT_VERSION = 1


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
