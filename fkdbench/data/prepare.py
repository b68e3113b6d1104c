"""``fkdbench prepare``: make a data set ready to train on.

The synthetic source draws faces and writes them in the exact Kaggle layout under
``data/<name>/raw/``; every source is then read by the same Kaggle reader, so the
processed splits of synthetic and real data come out of one code path. Output:

    data/<name>/raw/{training.csv, test.csv, IdLookupTable.csv}   (synthetic only)
    data/<name>/{train,val,test}.npz     labelled splits (see fkdbench.data.splits)
    data/<name>/unlabelled.npz           test.csv images, when there are any
    data/<name>/manifest.json            what the data is (deterministic bytes)
    data/<name>/provenance.json          how and when it was made (machine, versions)

Everything is written into a temporary folder that replaces ``data/<name>`` only when
complete: an error or Ctrl-C leaves what was there before untouched.

Each source is one :class:`SourceReader` row of :data:`SOURCE_READERS`: the options it
needs, the scheme its labels are in, how its faces are read and which files they came
from. Adding a source is adding a row (and, for a new file format, a reader in
:mod:`fkdbench.data.landmarks` or :mod:`fkdbench.data.kaggle`).
"""

from __future__ import annotations

import glob
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from rich.progress import Progress

from fkdbench.data import kaggle, landmarks, synthetic
from fkdbench.data.preview import draw_preview
from fkdbench.data.schemes import KAGGLE15, KeypointScheme, get_scheme
from fkdbench.data.splits import (
    DATA_FORMAT_VERSION,
    GROUP_SPLIT_RULE,
    MANIFEST_NAME,
    SPLITS,
    DataError,
    GroupTable,
    SplitArrays,
    group_split_indices,
    read_groups,
    read_manifest,
    save_split,
    split_path,
)
from fkdbench.data.synthetic_dense import DENSE_LAYOUTS
from fkdbench.data.synthetic_geometry import PoseRanges
from fkdbench.io import (
    UNKNOWN_OWNER,
    ProcessOwner,
    atomic_directory,
    owner_json,
    read_owner,
    sha256_file,
    write_json_atomic,
)
from fkdbench.metrics import mean_shape_rmse
from fkdbench.progress import make_progress, say
from fkdbench.provenance import environment_record

CROP_POLICY = (
    "square box centred on the landmarks' bounding box, side = max(width, height) x "
    "(1 + 2 margin), zeros outside the image, resized to --size (fkdbench.data.landmarks)"
)
# What the manifest names as the maker of synthetic faces.
GENERATOR = "fkdbench.data.synthetic"
# Kaggle's sizes: 7049 labelled training images, 1783 unlabelled test images.
KAGGLE_LABELLED_ROWS = 7049
KAGGLE_UNLABELLED_ROWS = 1783
# Written first into a data set's temporary folder: which process fills it, so that a later
# prepare can tell a folder left by a killed one (removed) from one still being written.
OWNER_FILE = ".prepare-owner.json"
# A temporary folder without an owner file (made by an older fkdbench, or a process killed
# between creating it and claiming it) counts as abandoned after this long.
UNOWNED_STALE_SECONDS = 600


@dataclass(frozen=True)
class PrepareOptions:
    """What to prepare; every field is a ``fkdbench prepare`` option."""

    # One of SOURCES: "synthetic" draws faces; the others read ``path`` (and ``images``),
    # see SOURCE_READERS.
    source: str = "synthetic"
    # The source file or folder (see ``source``).
    path: Path | None = None
    # Image folder, for "wflw" and "csv".
    images: Path | None = None
    # Keypoint scheme: kaggle15 | ibug68 | wflw98 (synthetic and csv; fixed by the others).
    scheme: str = "kaggle15"
    # Crop margin around the landmarks, for the image sources (fraction of the box side).
    margin: float = 0.25
    # Folder name under data_root; default: the source name.
    name: str | None = None
    # Where data sets live.
    data_root: Path = Path("data")
    # Synthetic sizes: labelled rows (training.csv) and unlabelled rows (test.csv).
    n_train: int = KAGGLE_LABELLED_ROWS
    n_test: int = KAGGLE_UNLABELLED_ROWS
    # Image side in pixels (Kaggle's is 96).
    image_size: int = kaggle.KAGGLE_IMAGE_SIZE
    # Seed of the faces, the missing-label pattern and the split.
    seed: int = 0
    # Shares of the labelled rows held out for validation and test.
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # Drop malformed rows (and report them) instead of stopping at the first.
    skip_bad_rows: bool = False
    # A ``row,group`` CSV naming the group (person) of each source row: split by group,
    # no group in two splits (sources with a row order only; see SourceReader.row_order).
    groups: Path | None = None
    # Also save a PNG grid of training samples with keypoints drawn.
    preview: Path | None = None
    # Worker processes for drawing faces (default: all cores); never changes the output.
    workers: int | None = None
    # Redo even when the data set exists with the same options.
    force: bool = False
    # No progress display.
    quiet: bool = False

    @property
    def dataset_name(self) -> str:
        return self.name or self.source

    @property
    def data_dir(self) -> Path:
        return Path(self.data_root) / self.dataset_name

    def identity(self) -> dict:
        """The options that decide the content (not where, how fast or how loudly)."""
        keys = (
            "source",
            "n_train",
            "n_test",
            "image_size",
            "seed",
            "val_fraction",
            "test_fraction",
            "skip_bad_rows",
        )
        record = {key: getattr(self, key) for key in keys}
        record["path"] = str(self.path) if self.path else None
        reader = source_reader(self.source)
        # Only where they matter, so that existing kaggle15 manifests stay byte-identical.
        if self.scheme_name != "kaggle15":
            record["scheme"] = self.scheme_name
        if reader.crops:
            record["images"] = str(self.images) if self.images else None
            record["margin"] = self.margin
        if not reader.draws_faces:
            record.pop("n_train")
            record.pop("n_test")
        if self.groups is not None:  # its checksum too: an edited file is another split
            groups = Path(self.groups)
            digest = sha256_file(groups) if groups.is_file() else None
            record["groups"] = {"path": str(groups), "sha256": digest}
        return record

    @property
    def scheme_name(self) -> str:
        """The scheme of the labels: fixed by the source, else ``scheme``."""
        reader = SOURCE_READERS.get(self.source)
        return reader.scheme if reader is not None and reader.scheme else self.scheme


@dataclass
class PrepareResult:
    """What ``prepare`` did."""

    data_dir: Path
    manifest: dict
    seconds: float
    skipped_existing: bool = False
    # kaggle.BadRow or landmarks.BadRecord, by source.
    bad_rows: list = field(default_factory=list)
    preview: Path | None = None


@dataclass(frozen=True)
class SourceData:
    """Faces read from any source, before splitting."""

    images: np.ndarray  # uint8 (N, S, S)
    keypoints: np.ndarray  # float32 (N, K, 2), NaN = missing
    row_ids: np.ndarray  # int64 (N,): the row or record of each face in the source
    source: str  # what was read, for the manifest
    skipped: list = field(default_factory=list)
    attributes: np.ndarray | None = None  # bool (N, F) subset flags (WFLW)
    # Kaggle's test.csv images, for the sources that have them.
    unlabelled: kaggle.TestTable | None = None
    # Facts about the source for the manifest (generator, crop policy, ...).
    facts: dict = field(default_factory=dict)

    @property
    def bad_rows(self) -> list:
        return list(self.skipped) + (list(self.unlabelled.skipped) if self.unlabelled else [])


# read(options, staging, scheme, progress): the faces; staging is the data set's
# temporary folder, for files a source writes there (synthetic: raw/).
ReadSource = Callable[[PrepareOptions, Path, KeypointScheme, Progress], SourceData]
# raw_files(options, staging): sha256 of the files the faces came from, by name.
RawFiles = Callable[[PrepareOptions, Path], dict[str, str]]
# row_order(data): each face's 0-based row in the source and how many rows the source has
# (bad rows included), the numbering of a groups file.
RowOrder = Callable[[SourceData], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class SourceReader:
    """One ``--source`` of ``fkdbench prepare``."""

    read: ReadSource
    raw_files: RawFiles
    # What ``--path`` names (for help texts); "" when the source reads no path.
    path_help: str = ""
    # The scheme its labels are in; None: whatever --scheme names.
    scheme: str | None = None
    # Draws its faces (--n-train and --n-test apply) instead of reading --path.
    draws_faces: bool = False
    # Reads images from the --images folder.
    needs_images: bool = False
    # Crops faces out of larger images (--margin and --images are part of the data).
    crops: bool = False
    # How its faces are numbered in a groups file; None: it has no row order (no --groups).
    row_order: RowOrder | None = None


def source_reader(source: str) -> SourceReader:
    """The reader of ``source``; an unknown name fails with the known ones."""
    try:
        return SOURCE_READERS[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}") from None


def _validate(options: PrepareOptions) -> None:
    reader = source_reader(options.source)
    get_scheme(options.scheme)  # a clear error for an unknown scheme
    fixed = reader.scheme
    if fixed and options.scheme not in ("kaggle15", fixed):
        raise ValueError(f"--source {options.source} is labelled in {fixed}, not {options.scheme}")
    if not reader.draws_faces and options.path is None:
        raise ValueError(f"--source {options.source} needs --path (see `fkdbench prepare --help`)")
    if not reader.draws_faces and not Path(options.path).exists():
        raise DataError(f"{options.path}: no such file or folder")
    if reader.needs_images and options.images is None:
        raise ValueError(f"--source {options.source} needs --images DIR (the image folder)")
    if reader.draws_faces and options.n_train < 10:
        raise ValueError(f"--n-train must be at least 10, got {options.n_train}")
    if options.n_test < 0:
        raise ValueError(f"--n-test must not be negative, got {options.n_test}")
    if options.image_size < 32:
        raise ValueError(f"--size must be at least 32 pixels, got {options.image_size}")
    if not (0 < options.val_fraction < 0.5 and 0 < options.test_fraction < 0.5):
        raise ValueError("--val-fraction and --test-fraction must lie in (0, 0.5)")
    if options.groups is not None and reader.row_order is None:
        ordered = ", ".join(name for name, row in SOURCE_READERS.items() if row.row_order)
        raise ValueError(
            f"--groups needs a source with a row order ({ordered}); "
            f"--source {options.source} has none"
        )
    if options.groups is not None and not Path(options.groups).is_file():
        raise DataError(f"{options.groups}: no such groups file")


def split_indices(
    keypoints: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Deterministic train/val/test indices, stratified so that complete and incomplete
    rows keep their shares in every split (the ``none`` variant needs complete rows)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31 + 2,)))
    complete = ~np.isnan(keypoints).any(axis=(1, 2))
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for stratum in (np.flatnonzero(complete), np.flatnonzero(~complete)):
        shuffled = rng.permutation(stratum)
        n_test = int(round(len(shuffled) * test_fraction))
        n_val = int(round(len(shuffled) * val_fraction))
        parts["test"].append(shuffled[:n_test])
        parts["val"].append(shuffled[n_test : n_test + n_val])
        parts["train"].append(shuffled[n_test + n_val :])
    return {split: np.sort(np.concatenate(chunks)) for split, chunks in parts.items()}


def _write_synthetic_raw(raw_dir: Path, options: PrepareOptions, progress: Progress) -> dict:
    """Draw the faces and write the three Kaggle files; returns generator facts."""
    total = options.n_train + options.n_test
    task = progress.add_task("drawing faces", total=total)
    advance = lambda count: progress.advance(task, count)  # noqa: E731
    train_images, train_keypoints = synthetic.generate_faces(
        options.n_train, options.seed, options.image_size, options.workers, 0, advance
    )
    test_images, _test_keypoints = synthetic.generate_faces(
        options.n_test,
        options.seed,
        options.image_size,
        options.workers,
        options.n_train,
        advance,
    )
    kept = synthetic.kaggle_missing_mask(options.n_train, options.seed)
    train_keypoints = train_keypoints.copy()
    train_keypoints[~kept] = np.nan
    raw_dir.mkdir(parents=True)
    writing = progress.add_task("writing Kaggle CSVs", total=3)
    kaggle.write_training_csv(raw_dir / kaggle.TRAINING_NAME, train_images, train_keypoints)
    progress.advance(writing)
    kaggle.write_test_csv(raw_dir / kaggle.TEST_NAME, test_images)
    progress.advance(writing)
    requested = kaggle.kaggle_lookup_request(options.n_test, options.seed)
    kaggle.write_lookup_csv(raw_dir / kaggle.LOOKUP_NAME, requested)
    progress.advance(writing)
    return {"generator": GENERATOR, "pose": asdict(PoseRanges())}


# -- the sources --------------------------------------------------------------------------
def _read_kaggle_files(
    location: Path, options: PrepareOptions, scheme: KeypointScheme, progress: Progress
) -> SourceData:
    """training.csv (labelled) and test.csv (unlabelled, if any) in the Kaggle layout."""
    reading = progress.add_task("reading training.csv", total=None)
    table = kaggle.read_training_csv(location, scheme, options.image_size, options.skip_bad_rows)
    unlabelled = kaggle.read_test_csv(location, options.image_size, options.skip_bad_rows)
    progress.update(reading, total=1, completed=1)
    return SourceData(
        table.images,
        table.keypoints,
        table.row_ids,
        table.source,
        list(table.skipped),
        unlabelled=unlabelled,
    )


def _read_kaggle(
    options: PrepareOptions, staging: Path, scheme: KeypointScheme, progress: Progress
) -> SourceData:
    return _read_kaggle_files(Path(options.path), options, scheme, progress)


def _read_synthetic(
    options: PrepareOptions, staging: Path, scheme: KeypointScheme, progress: Progress
) -> SourceData:
    """Kaggle's 15 points: drawn, written as the Kaggle files, read back like Kaggle's."""
    if scheme.name != KAGGLE15.name:
        return _draw_dense_faces(options, scheme, progress)
    facts = _write_synthetic_raw(staging / "raw", options, progress)
    return replace(_read_kaggle_files(staging / "raw", options, scheme, progress), facts=facts)


def _draw_dense_faces(
    options: PrepareOptions, scheme: KeypointScheme, progress: Progress
) -> SourceData:
    """Synthetic faces in a dense scheme: every point labelled (as WFLW and 300-W are),
    no Kaggle files (their layout is Kaggle's 15 points)."""
    task = progress.add_task("drawing faces", total=options.n_train)
    images, keypoints = synthetic.generate_faces(
        options.n_train,
        options.seed,
        options.image_size,
        options.workers,
        0,
        lambda count: progress.advance(task, count),
        scheme=scheme.name,
    )
    facts = {
        "generator": GENERATOR,
        "pose": asdict(PoseRanges()),
        # Dense faces are drawn smaller than Kaggle's so that the whole jaw fits.
        "framing": DENSE_LAYOUTS[scheme.name].framing,
    }
    row_ids = np.arange(len(images), dtype=np.int64)
    return SourceData(images, keypoints, row_ids, GENERATOR, facts=facts)


def _wflw_faces(options: PrepareOptions, scheme: KeypointScheme) -> landmarks.LandmarkSet:
    return landmarks.read_wflw(
        options.path,
        options.images,
        size=options.image_size,
        margin=options.margin,
        skip_bad_rows=options.skip_bad_rows,
    )


def _pts_faces(options: PrepareOptions, scheme: KeypointScheme) -> landmarks.LandmarkSet:
    return landmarks.read_pts_folder(
        options.path,
        size=options.image_size,
        margin=options.margin,
        scheme=scheme.name,
        skip_bad_rows=options.skip_bad_rows,
    )


def _csv_faces(options: PrepareOptions, scheme: KeypointScheme) -> landmarks.LandmarkSet:
    return landmarks.read_landmark_csv(
        options.path,
        options.images,
        scheme.name,
        size=options.image_size,
        margin=options.margin,
        skip_bad_rows=options.skip_bad_rows,
    )


def _read_cropped(
    read_faces: Callable[[PrepareOptions, KeypointScheme], landmarks.LandmarkSet],
    options: PrepareOptions,
    staging: Path,
    scheme: KeypointScheme,
    progress: Progress,
) -> SourceData:
    """A landmark format (``read_faces``): faces cropped out of their images."""
    reading = progress.add_task(f"reading {options.source} faces", total=None)
    faces = read_faces(options, scheme)
    progress.update(reading, total=1, completed=1)
    facts: dict = {"crop": {"policy": CROP_POLICY, "margin": options.margin}}
    if faces.outside_image:
        facts["points_outside_image"] = sum(item.count for item in faces.outside_image)
    if faces.attributes is not None:
        facts["attributes"] = list(landmarks.ATTRIBUTE_NAMES)
    return SourceData(
        faces.images,
        faces.keypoints,
        faces.ids,
        str(options.path),
        list(faces.skipped),
        faces.attributes,
        facts=facts,
    )


def _data_rows(data: SourceData) -> tuple[np.ndarray, int]:
    """Kaggle: ``row_ids`` are already the 0-based data rows, bad ones counted."""
    return data.row_ids, len(data.row_ids) + len(data.skipped)


def _line_rows(data: SourceData) -> tuple[np.ndarray, int]:
    """Landmark CSV: ``row_ids`` are line numbers; a face's row is its rank among the
    lines that held a record, read or skipped (blank lines and the header hold none)."""
    lines = np.union1d(data.row_ids, [record.line for record in data.skipped])
    return np.searchsorted(lines, data.row_ids).astype(np.int64), len(lines)


def _split(
    options: PrepareOptions, data: SourceData, groups: GroupTable | None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The split indices, and each face's group (None: split by row). Faces are matched
    to the groups file by their source row, so rows dropped by --skip-bad-rows shift
    nothing."""
    seeded_fractions = options.seed, options.val_fraction, options.test_fraction
    if groups is None:
        return split_indices(data.keypoints, *seeded_fractions), None
    face_rows, row_count = source_reader(options.source).row_order(data)
    face_groups = groups.of_faces(face_rows, row_count)
    return group_split_indices(face_groups, *seeded_fractions), face_groups


def _generated_files(options: PrepareOptions, staging: Path) -> dict[str, str]:
    """The raw files the synthetic source wrote (none for the dense schemes)."""
    raw = staging / "raw"
    if not raw.is_dir():
        return {}
    return {path.name: sha256_file(path) for path in sorted(raw.iterdir())}


def _files_read(
    options: PrepareOptions,
    staging: Path,
    suffixes: tuple[str, ...] = (),
    recursive: bool = False,
) -> dict[str, str]:
    """``--path`` itself when it is a file, else its files with ``suffixes`` (below it,
    with ``recursive``), by path relative to it."""
    path = Path(options.path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    candidates = sorted(path.rglob("*") if recursive else path.glob("*"))
    return {
        str(candidate.relative_to(path)): sha256_file(candidate)
        for candidate in candidates
        if candidate.suffix in suffixes and candidate.is_file()
    }


SOURCE_READERS: dict[str, SourceReader] = {
    "synthetic": SourceReader(_read_synthetic, _generated_files, draws_faces=True),
    "kaggle": SourceReader(
        _read_kaggle,
        partial(_files_read, suffixes=(".csv", ".zip")),
        path_help="folder with training.csv/.zip (or one zip)",
        scheme="kaggle15",
        row_order=_data_rows,
    ),
    "wflw": SourceReader(
        partial(_read_cropped, _wflw_faces),
        _files_read,
        path_help="the annotation list (list_98pt_rect_attr_*.txt)",
        scheme="wflw98",
        needs_images=True,
        crops=True,
    ),
    "300w": SourceReader(
        partial(_read_cropped, _pts_faces),
        partial(_files_read, suffixes=(".pts",), recursive=True),
        path_help="folder of images with .pts files",
        scheme="ibug68",
        crops=True,
    ),
    "csv": SourceReader(
        partial(_read_cropped, _csv_faces),
        _files_read,
        path_help="the landmark CSV",
        needs_images=True,
        crops=True,
        row_order=_line_rows,
    ),
}
# The --source choices, in the order of the table.
SOURCES = tuple(SOURCE_READERS)


def _missing_counts(keypoints: np.ndarray, scheme: KeypointScheme) -> dict[str, int]:
    missing = np.isnan(keypoints).any(axis=-1).sum(axis=0)
    return {name: int(count) for name, count in zip(scheme.keypoints, missing, strict=True)}


# -- the data set ---------------------------------------------------------------------------
def _already_prepared(options: PrepareOptions) -> PrepareResult | None:
    """The existing data set when it was made with the same options (None: make it);
    one made with other options is an error unless ``force``."""
    data_dir = options.data_dir
    if not (data_dir / MANIFEST_NAME).is_file() or options.force:
        return None
    manifest = read_manifest(data_dir)
    wanted, made = json.loads(json.dumps(options.identity())), manifest.get("options") or {}
    if made == wanted:
        say(f"{data_dir} is already prepared with these options (--force to redo)", options.quiet)
        return PrepareResult(data_dir, manifest, 0.0, skipped_existing=True)
    differ = ", ".join(sorted(key for key in {*wanted, *made} if wanted.get(key) != made.get(key)))
    raise DataError(
        f"{data_dir}: exists with other options ({differ}); use --force to replace it "
        "or --name to prepare beside it"
    )


def _complete_rows(keypoints: np.ndarray) -> int:
    return int((~np.isnan(keypoints).any(axis=(1, 2))).sum())


def _write_splits(
    staging: Path,
    data: SourceData,
    indices: dict[str, np.ndarray],
    face_groups: np.ndarray | None = None,
) -> tuple[dict[str, str], dict[str, dict]]:
    """Save the split files (and unlabelled.npz); returns their checksums and counts
    (with the groups in each split when split by group)."""
    files, counts = {}, {}
    for split, rows in indices.items():
        arrays = SplitArrays(
            data.images[rows],
            data.keypoints[rows],
            data.row_ids[rows],
            None if data.attributes is None else data.attributes[rows],
        )
        save_split(split_path(staging, split), arrays)
        files[f"{split}.npz"] = sha256_file(split_path(staging, split))
        counts[split] = {"rows": len(rows), "complete_rows": _complete_rows(arrays.keypoints)}
        if face_groups is not None:
            counts[split]["groups"] = len(np.unique(face_groups[rows]))
    unlabelled = data.unlabelled
    if unlabelled is not None and len(unlabelled.images):
        with open(staging / "unlabelled.npz", "wb") as handle:
            np.savez(handle, images=unlabelled.images, ids=unlabelled.image_ids)
    return files, counts


def _manifest(
    options: PrepareOptions,
    staging: Path,
    scheme: KeypointScheme,
    data: SourceData,
    indices: dict[str, np.ndarray],
    splits: tuple[dict[str, str], dict[str, dict]],
) -> dict:
    """What the data is; the key order is part of the file's bytes. ``splits``: what
    :func:`_write_splits` returned."""
    split_files, split_counts = splits
    raw_files = source_reader(options.source).raw_files(options, staging)
    train_keypoints = data.keypoints[indices["train"]]
    test_keypoints = data.keypoints[indices["test"]]
    complete_rows = _complete_rows(data.keypoints)
    return {
        "format_version": DATA_FORMAT_VERSION,
        "name": options.dataset_name,
        "source": options.source,
        # Relative for generated data, so that the manifest does not depend on where
        # the data set lives (same seed, same bytes).
        "source_read": data.source.replace(str(staging) + "/", ""),
        "scheme": scheme.name,
        "image_size": options.image_size,
        "seed": options.seed,
        "options": options.identity(),
        # Only for a split by group (the groups file is in "options"): no key, by row.
        **_split_facts(split_counts),
        "counts": {
            "labelled_rows": len(data.images),
            "unlabelled_rows": 0 if data.unlabelled is None else len(data.unlabelled.images),
            "skipped_bad_rows": len(data.bad_rows),
            "complete_rows": complete_rows,
            "splits": split_counts,
        },
        "complete_row_fraction": round(complete_rows / len(data.images), 4),
        "missing_per_keypoint": _missing_counts(data.keypoints, scheme),
        "mean_shape_rmse": {
            "test": round(mean_shape_rmse(train_keypoints, test_keypoints), 4),
            "note": "RMSE (px) of predicting the train split's mean shape on the test "
            "split, over labelled coordinates",
        },
        "checksums": {"raw": raw_files, "splits": split_files},
        **data.facts,
    }


def _split_facts(split_counts: dict[str, dict]) -> dict:
    if "groups" not in split_counts["train"]:
        return {}
    total = sum(counts["groups"] for counts in split_counts.values())
    return {"split": {"rule": GROUP_SPLIT_RULE, "groups": total}}


def _provenance(options: PrepareOptions, seconds: float, bad_rows: list) -> dict:
    return {
        "environment": environment_record(),
        "seconds": round(seconds, 2),
        "options": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(options).items()
        },
        "bad_rows": [asdict(row) for row in bad_rows[:1000]],
    }


def _owner_alive(folder: Path) -> tuple[bool, str]:
    """Whether the process that made the temporary ``folder`` may still be running, and
    who it is (for the message). A folder naming no owner is in use while it is young."""
    owner = read_owner(folder / OWNER_FILE)
    if owner is None or owner == UNKNOWN_OWNER:
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            return False, "a vanished process"
        return age < UNOWNED_STALE_SECONDS, "an unknown process"
    # Another host's process cannot be checked from here (None): leave it alone.
    return owner.alive() is not False, str(owner)


def _clear_stale_staging(options: PrepareOptions) -> None:
    """Remove the temporary folders that killed prepares left beside ``data/<name>``;
    name the ones that may still be in use."""
    target = options.data_dir
    if not target.parent.is_dir():
        return
    pattern = str(target.parent / f".{glob.escape(target.name)}.*.tmp")
    for folder in sorted(map(Path, glob.glob(pattern))):
        alive, who = _owner_alive(folder)
        if alive:
            say(f"{folder}: left alone, {who} may still be preparing it", options.quiet)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        say(f"removed {folder}: left by {who}, which is no longer running", options.quiet)


def _claim(staging: Path) -> None:
    (staging / OWNER_FILE).write_text(owner_json(ProcessOwner.current()), encoding="utf-8")


def prepare(options: PrepareOptions) -> PrepareResult:
    """Prepare ``data/<name>`` from the chosen source; see the module docstring."""
    _validate(options)
    started = time.perf_counter()
    scheme = get_scheme(options.scheme_name)
    existing = _already_prepared(options)
    if existing is not None:
        return existing
    groups = read_groups(options.groups) if options.groups is not None else None
    _clear_stale_staging(options)
    with atomic_directory(options.data_dir) as staging, make_progress(options.quiet) as progress:
        _claim(staging)
        data = source_reader(options.source).read(options, staging, scheme, progress)
        indices, face_groups = _split(options, data, groups)
        splits = _write_splits(staging, data, indices, face_groups)
        manifest = _manifest(options, staging, scheme, data, indices, splits)
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        provenance = _provenance(options, time.perf_counter() - started, data.bad_rows)
        write_json_atomic(staging / "provenance.json", provenance)
        (staging / OWNER_FILE).unlink()  # the finished data set holds only its own files
    preview = None
    if options.preview:
        train = data.images[indices["train"]], data.keypoints[indices["train"]]
        title = f"{options.dataset_name}: training samples"
        preview = draw_preview(options.preview, *train, scheme, title=title)
    seconds = time.perf_counter() - started
    return PrepareResult(
        options.data_dir, manifest, seconds, bad_rows=data.bad_rows, preview=preview
    )


__all__ = [
    "SOURCES",
    "SOURCE_READERS",
    "PrepareOptions",
    "PrepareResult",
    "SourceData",
    "SourceReader",
    "prepare",
    "source_reader",
    "split_indices",
]
