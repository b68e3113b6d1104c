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
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fkdbench.data import kaggle, synthetic
from fkdbench.data.schemes import KAGGLE15, KeypointScheme, get_scheme
from fkdbench.data.splits import (
    DATA_FORMAT_VERSION,
    MANIFEST_NAME,
    SPLITS,
    DataError,
    SplitArrays,
    read_manifest,
    save_split,
    split_path,
)
from fkdbench.io import atomic_directory, sha256_file, write_json_atomic
from fkdbench.metrics import mean_shape_rmse
from fkdbench.progress import make_progress, say
from fkdbench.provenance import environment_record

SOURCES = ("synthetic", "kaggle", "wflw", "300w", "csv")
CROP_POLICY = (
    "square box centred on the landmarks' bounding box, side = max(width, height) x "
    "(1 + 2 margin), zeros outside the image, resized to --size (fkdbench.data.landmarks)"
)
# The scheme each real source is labelled in (csv: whatever --scheme names).
SOURCE_SCHEMES = {"kaggle": "kaggle15", "wflw": "wflw98", "300w": "ibug68"}
# Kaggle's sizes: 7049 labelled training images, 1783 unlabelled test images.
KAGGLE_LABELLED_ROWS = 7049
KAGGLE_UNLABELLED_ROWS = 1783


@dataclass(frozen=True)
class PrepareOptions:
    """What to prepare; every field is a ``fkdbench prepare`` option."""

    # "synthetic" draws faces; "kaggle" reads the competition files from ``path``;
    # "wflw" an annotation list (``path``) and its image folder (``images``); "300w" a
    # folder of images with .pts files (``path``); "csv" a landmark CSV (``path``) whose
    # image names are relative to ``images``.
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
        # Only where they matter, so that existing kaggle15 manifests stay byte-identical.
        if self.scheme_name != "kaggle15":
            record["scheme"] = self.scheme_name
        if self.source in ("wflw", "300w", "csv"):
            record["images"] = str(self.images) if self.images else None
            record["margin"] = self.margin
        if self.source != "synthetic":
            record.pop("n_train")
            record.pop("n_test")
        return record

    @property
    def scheme_name(self) -> str:
        return SOURCE_SCHEMES.get(self.source, self.scheme)


@dataclass
class PrepareResult:
    """What ``prepare`` did."""

    data_dir: Path
    manifest: dict
    seconds: float
    skipped_existing: bool = False
    bad_rows: list[kaggle.BadRow] = field(default_factory=list)
    preview: Path | None = None


def _validate(options: PrepareOptions) -> None:
    if options.source not in SOURCES:
        raise ValueError(f"unknown source {options.source!r}; known: {', '.join(SOURCES)}")
    get_scheme(options.scheme)  # a clear error for an unknown scheme
    fixed = SOURCE_SCHEMES.get(options.source)
    if fixed and options.scheme not in ("kaggle15", fixed):
        raise ValueError(f"--source {options.source} is labelled in {fixed}, not {options.scheme}")
    if options.source != "synthetic" and options.path is None:
        raise ValueError(f"--source {options.source} needs --path (see `fkdbench prepare --help`)")
    if options.source != "synthetic" and not Path(options.path).exists():
        raise DataError(f"{options.path}: no such file or folder")
    if options.source in ("wflw", "csv") and options.images is None:
        raise ValueError(f"--source {options.source} needs --images DIR (the image folder)")
    if options.source == "synthetic" and options.n_train < 10:
        raise ValueError(f"--n-train must be at least 10, got {options.n_train}")
    if options.n_test < 0:
        raise ValueError(f"--n-test must not be negative, got {options.n_test}")
    if options.image_size < 32:
        raise ValueError(f"--size must be at least 32 pixels, got {options.image_size}")
    if not (0 < options.val_fraction < 0.5 and 0 < options.test_fraction < 0.5):
        raise ValueError("--val-fraction and --test-fraction must lie in (0, 0.5)")


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


def _write_synthetic_raw(raw_dir: Path, options: PrepareOptions, progress) -> dict:
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
    return {"generator": "fkdbench.data.synthetic", "pose": asdict(synthetic.PoseRanges())}


@dataclass
class _Labelled:
    """Labelled faces from any source, before splitting."""

    images: np.ndarray
    keypoints: np.ndarray
    row_ids: np.ndarray
    source: str
    skipped: list = field(default_factory=list)
    attributes: np.ndarray | None = None


def _read_source(
    options: PrepareOptions, staging: Path, scheme: KeypointScheme, progress
) -> tuple[_Labelled, kaggle.TestTable | None, dict]:
    """The labelled faces (and Kaggle's unlabelled ones) of ``options.source``."""
    extra: dict = {}
    if options.source == "synthetic" and scheme.name != KAGGLE15.name:
        return _dense_synthetic(options, scheme, progress)
    if options.source in ("synthetic", "kaggle"):
        if options.source == "synthetic":
            extra = _write_synthetic_raw(staging / "raw", options, progress)
            location = staging / "raw"
        else:
            location = Path(options.path)
        reading = progress.add_task("reading training.csv", total=None)
        table = kaggle.read_training_csv(
            location, scheme, options.image_size, options.skip_bad_rows
        )
        unlabelled = kaggle.read_test_csv(location, options.image_size, options.skip_bad_rows)
        progress.update(reading, total=1, completed=1)
        labelled = _Labelled(
            table.images, table.keypoints, table.row_ids, table.source, list(table.skipped)
        )
        return labelled, unlabelled, extra

    from fkdbench.data import landmarks

    reading = progress.add_task(f"reading {options.source} faces", total=None)
    common = dict(size=options.image_size, margin=options.margin)
    if options.source == "wflw":
        faces = landmarks.read_wflw(
            options.path, options.images, skip_bad_rows=options.skip_bad_rows, **common
        )
    elif options.source == "300w":
        faces = landmarks.read_pts_folder(
            options.path, scheme=scheme.name, skip_bad_rows=options.skip_bad_rows, **common
        )
    else:
        faces = landmarks.read_landmark_csv(
            options.path,
            options.images,
            scheme.name,
            skip_bad_rows=options.skip_bad_rows,
            **common,
        )
    progress.update(reading, total=1, completed=1)
    labelled = _Labelled(
        faces.images,
        faces.keypoints,
        faces.ids,
        str(options.path),
        list(faces.skipped),
        faces.attributes,
    )
    extra = {"crop": {"policy": CROP_POLICY, "margin": options.margin}}
    if faces.outside_image:
        extra["points_outside_image"] = sum(item.count for item in faces.outside_image)
    if faces.attributes is not None:
        extra["attributes"] = list(landmarks.ATTRIBUTE_NAMES)
    return labelled, None, extra


def _dense_synthetic(
    options: PrepareOptions, scheme: KeypointScheme, progress
) -> tuple[_Labelled, None, dict]:
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
    labelled = _Labelled(
        images, keypoints, np.arange(len(images), dtype=np.int64), "fkdbench.data.synthetic"
    )
    extra = {
        "generator": "fkdbench.data.synthetic",
        "pose": asdict(synthetic.PoseRanges()),
        # Dense faces are drawn smaller than Kaggle's so that the whole jaw fits.
        "framing": synthetic.DENSE_LAYOUTS[scheme.name].framing,
    }
    return labelled, None, extra


def _raw_checksums(options: PrepareOptions, staging: Path) -> dict[str, str]:
    """sha256 of the files the data came from (the generated raw files for synthetic)."""
    if options.source == "synthetic":
        raw = staging / "raw"
        return (
            {path.name: sha256_file(path) for path in sorted(raw.iterdir())} if raw.is_dir() else {}
        )
    path = Path(options.path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    if options.source == "kaggle":
        candidates, suffixes = sorted(path.glob("*")), (".csv", ".zip")
    else:  # 300-W: the .pts files anywhere below
        candidates, suffixes = sorted(path.rglob("*")), (".pts",)
    return {
        str(candidate.relative_to(path)): sha256_file(candidate)
        for candidate in candidates
        if candidate.suffix in suffixes and candidate.is_file()
    }


def _missing_counts(keypoints: np.ndarray, scheme: KeypointScheme) -> dict[str, int]:
    missing = np.isnan(keypoints).any(axis=-1).sum(axis=0)
    return {name: int(count) for name, count in zip(scheme.keypoints, missing, strict=True)}


def prepare(options: PrepareOptions) -> PrepareResult:
    """Prepare ``data/<name>`` from the chosen source; see the module docstring."""
    _validate(options)
    started = time.perf_counter()
    data_dir = options.data_dir
    scheme = get_scheme(options.scheme_name)
    if (data_dir / MANIFEST_NAME).is_file() and not options.force:
        manifest = read_manifest(data_dir)
        if manifest.get("options") == json.loads(json.dumps(options.identity())):
            say(
                f"{data_dir} is already prepared with these options (--force to redo)",
                options.quiet,
            )
            return PrepareResult(data_dir, manifest, 0.0, skipped_existing=True)
        raise DataError(
            f"{data_dir}: exists with other options; use --force to replace it "
            "or --name to prepare beside it"
        )

    with atomic_directory(data_dir) as staging, make_progress(options.quiet) as progress:
        table, unlabelled, extra = _read_source(options, staging, scheme, progress)
        indices = split_indices(
            table.keypoints, options.seed, options.val_fraction, options.test_fraction
        )
        split_files = {}
        split_counts = {}
        for split, rows in indices.items():
            arrays = SplitArrays(
                table.images[rows],
                table.keypoints[rows],
                table.row_ids[rows],
                None if table.attributes is None else table.attributes[rows],
            )
            save_split(split_path(staging, split), arrays)
            split_files[f"{split}.npz"] = sha256_file(split_path(staging, split))
            split_counts[split] = {
                "rows": len(rows),
                "complete_rows": int((~np.isnan(arrays.keypoints).any(axis=(1, 2))).sum()),
            }
        if unlabelled is not None and len(unlabelled.images):
            with open(staging / "unlabelled.npz", "wb") as handle:
                np.savez(handle, images=unlabelled.images, ids=unlabelled.image_ids)

        raw_files = _raw_checksums(options, staging)
        train_keypoints = table.keypoints[indices["train"]]
        test_keypoints = table.keypoints[indices["test"]]
        complete_rows = int((~np.isnan(table.keypoints).any(axis=(1, 2))).sum())
        bad_rows = list(table.skipped) + (list(unlabelled.skipped) if unlabelled else [])
        manifest = {
            "format_version": DATA_FORMAT_VERSION,
            "name": options.dataset_name,
            "source": options.source,
            # Relative for generated data, so that the manifest does not depend on where
            # the data set lives (same seed, same bytes).
            "source_read": table.source.replace(str(staging) + "/", ""),
            "scheme": scheme.name,
            "image_size": options.image_size,
            "seed": options.seed,
            "options": options.identity(),
            "counts": {
                "labelled_rows": len(table.images),
                "unlabelled_rows": 0 if unlabelled is None else len(unlabelled.images),
                "skipped_bad_rows": len(bad_rows),
                "complete_rows": complete_rows,
                "splits": split_counts,
            },
            "complete_row_fraction": round(complete_rows / len(table.images), 4),
            "missing_per_keypoint": _missing_counts(table.keypoints, scheme),
            "mean_shape_rmse": {
                "test": round(mean_shape_rmse(train_keypoints, test_keypoints), 4),
                "note": "RMSE (px) of predicting the train split's mean shape on the test "
                "split, over labelled coordinates",
            },
            "checksums": {"raw": raw_files, "splits": split_files},
            **extra,
        }
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        seconds = time.perf_counter() - started
        write_json_atomic(
            staging / "provenance.json",
            {
                "environment": environment_record(),
                "seconds": round(seconds, 2),
                "options": {
                    key: str(value) if isinstance(value, Path) else value
                    for key, value in asdict(options).items()
                },
                "bad_rows": [asdict(row) for row in bad_rows[:1000]],
            },
        )

    preview = None
    if options.preview:
        from fkdbench.data.preview import draw_preview

        train = table.images[indices["train"]], table.keypoints[indices["train"]]
        preview = draw_preview(
            options.preview, *train, scheme, title=f"{options.dataset_name}: training samples"
        )
    return PrepareResult(
        data_dir, manifest, time.perf_counter() - started, bad_rows=bad_rows, preview=preview
    )


__all__ = ["SOURCES", "PrepareOptions", "PrepareResult", "prepare", "split_indices"]
