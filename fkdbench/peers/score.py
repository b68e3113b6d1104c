"""Score a peer on a prepared data set's test split: ``<runs_dir>/peers/<name>.json``.

The peer sees the same test faces as every trained run and is scored by the same code
(:func:`fkdbench.train.scoring.score_test_split`: RMSE over labelled coordinates, NME,
FR/AUC, the mean-shape baseline and the per-face errors of ``metrics.json``'s
``test_per_face``), so the report's intervals and paired tests apply to it unchanged.

The record (format :data:`PEER_FORMAT_VERSION`)::

    peer, description, trained_on, mark   what it is (fkdbench.peers.PEERS)
    installed, error                      False / "not installed (uv sync --extra peers)"
                                          when its libraries are absent; error also when
                                          it cannot score this data (no stated mapping)
    data                                  data_dir, manifest_sha256 (of manifest.json, as
                                          a run's config.json), source, scheme, test rows
    faces                                 detected / given_box counts, and per test face
                                          whether the detector found it
    metrics                               score_test_split's scores; RMSE over the
                                          detected faces and over the given-box faces
    timing                                raw per-face samples in seconds, one thread:
                                          detect (upscale + HOG) and shape apart
    settings, environment                 how the peer ran (model sha256, library
                                          versions) and fkdbench.provenance's record

It is machine-dependent (timing, environment) and rewritten whole by each call, except
that ``reuse`` keeps a scored record of the same data and peer settings as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import MANIFEST_NAME, SplitArrays, load_split, read_manifest
from fkdbench.io import read_json, sha256_file, write_json_atomic
from fkdbench.metrics import rmse
from fkdbench.peers import DEFAULT_PEER, PeerError, get_peer, open_peer, peer_available
from fkdbench.progress import make_progress, say
from fkdbench.provenance import environment_record
from fkdbench.runs import finite_or_none

PEER_FORMAT_VERSION = 1
# Under the runs folder: one record per peer.
PEERS_DIR = "peers"
# Faces predicted before timing starts (lazy set-up inside the libraries).
WARMUP_FACES = 1
# Significant digits of the stored timing samples.
SAMPLE_DIGITS = 6


def peer_record_path(runs_dir: Path, name: str) -> Path:
    """Where :func:`score_peer` writes peer ``name``'s record."""
    return Path(runs_dir) / PEERS_DIR / f"{name}.json"


@dataclass(frozen=True)
class PeerResult:
    """What :func:`score_peer` wrote (or, ``reused``, found already written)."""

    path: Path
    record: dict[str, Any]
    reused: bool = False

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    def line(self) -> str:
        """One line for the command line: the scores, or why there are none."""
        name = self.record["peer"]
        if self.error:
            return f"{name}: {self.error}; recorded in {self.path}"
        metrics, faces = self.record["metrics"], self.record["faces"]
        return (
            f"{name}: test RMSE {metrics['test_rmse']:.3f} px, NME {metrics['test_nme']:.4f} "
            f"on {faces['detected'] + faces['given_box']} faces ({faces['detected']} detected, "
            f"{faces['given_box']} on the median detected box); "
            f"{'kept' if self.reused else 'wrote'} {self.path}"
        )


def _data_record(data_dir: Path, manifest: dict[str, Any], test: SplitArrays) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "manifest_sha256": sha256_file(Path(data_dir) / MANIFEST_NAME),
        "source": manifest.get("source"),
        "seed": manifest.get("seed"),
        "scheme": manifest.get("scheme"),
        "image_size": test.image_size,
        "test_rows": len(test),
    }


def _base_record(name: str, data: dict[str, Any], error: str | None) -> dict[str, Any]:
    info = get_peer(name)
    return {
        "format_version": PEER_FORMAT_VERSION,
        "peer": info.name,
        "description": info.description,
        "trained_on": info.trained_on,
        "mark": info.mark,
        "native_scheme": info.native_scheme,
        "installed": peer_available(name) is None,
        "error": error,
        "data": data,
        "faces": None,
        "metrics": None,
        "timing": None,
        "settings": None,
        "environment": environment_record(),
    }


@contextlib.contextmanager
def _one_opencv_thread() -> Iterator[None]:
    """OpenCV (the upscale) on one thread while timing, as the peer is timed."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _sample(value: float) -> float:
    return float(f"{value:.{SAMPLE_DIGITS}g}")


def predict_split(peer: Any, images: np.ndarray, quiet: bool = True) -> dict[str, Any]:
    """The peer on every image, one at a time: its 68 points (N, 68, 2), whether each
    face was detected, and each face's detect and shape seconds (a progress bar with an
    ETA unless ``quiet``)."""
    for image in images[:WARMUP_FACES]:
        peer.predict(image)
    predictions = []
    with make_progress(quiet) as progress:
        task = progress.add_task("peer", total=len(images))
        for image in images:
            predictions.append(peer.predict(image))
            progress.advance(task)
    predictions = _refit_undetected(peer, images, predictions)
    return {
        "points68": np.stack([p.points68 for p in predictions]).reshape(len(images), -1, 2),
        "detected": np.array([p.detected for p in predictions], dtype=bool),
        "detect_seconds": [_sample(p.detect_seconds) for p in predictions],
        "shape_seconds": [_sample(p.shape_seconds) for p in predictions],
    }


def median_box(predictions: Sequence[Any]) -> tuple[int, int, int, int] | None:
    """The median (left, top, right, bottom) of the boxes the detector found; None when
    it found none (or the peer reports no boxes)."""
    boxes = [p.box for p in predictions if p.detected and p.box is not None]
    if not boxes:
        return None
    return tuple(int(round(value)) for value in np.median(np.asarray(boxes), axis=0))


def _refit_undetected(peer: Any, images: np.ndarray, predictions: list[Any]) -> list[Any]:
    """The faces the detector missed, predicted again on the median detected box (their
    detect seconds kept from the first pass, their shape seconds from this one)."""
    box = median_box(predictions)
    if box is None:
        return predictions
    refitted = []
    for image, prediction in zip(images, predictions, strict=True):
        if not prediction.detected:
            again = peer.predict(image, box=box)
            prediction = replace(again, detect_seconds=prediction.detect_seconds)
        refitted.append(prediction)
    return refitted


def _subset_rmse(predicted: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float | None:
    return finite_or_none(rmse(predicted[rows], truth[rows])) if rows.any() else None


def _scored(
    peer: Any, test: SplitArrays, train: SplitArrays, scheme_name: str, quiet: bool
) -> dict[str, Any]:
    """faces, metrics and timing of the record."""
    from fkdbench.train.scoring import score_test_split

    with _one_opencv_thread():
        found = predict_split(peer, test.images, quiet)
    predicted = peer.map_points(found["points68"], scheme_name)
    truth = test.keypoints.astype(np.float64)
    metrics = score_test_split(predicted, test, train, get_scheme(scheme_name))
    detected = found["detected"]
    metrics["test_rmse_detected"] = _subset_rmse(predicted, truth, detected)
    metrics["test_rmse_given_box"] = _subset_rmse(predicted, truth, ~detected)
    return {
        "faces": {
            "detected": int(detected.sum()),
            "given_box": int((~detected).sum()),
            "detected_per_face": detected.tolist(),
        },
        "metrics": metrics,
        "timing": {
            "unit": "seconds",
            "threads": 1,
            "clock": "time.perf_counter",
            "warmup_faces": WARMUP_FACES,
            "per": "face, one at a time",
            "detect_seconds": found["detect_seconds"],
            "shape_seconds": found["shape_seconds"],
        },
    }


def score_peer(
    name: str = DEFAULT_PEER,
    data_dir: Path = Path("data/synthetic"),
    runs_dir: Path = Path("runs"),
    quiet: bool = False,
    reuse: bool = False,
) -> PeerResult:
    """Run peer ``name`` on ``data_dir``'s test split, score it, write its record.

    A peer that is not installed, or that has no mapping to the data's scheme, still gets
    a record (``error`` says why), so the report can say so in its row; a missing or
    unreadable data set is a :class:`~fkdbench.data.splits.DataError`. With ``reuse``, a
    scored record already there is kept when it is of the same data (:func:`_data_record`)
    and the same peer settings (model sha256, library versions): nothing is rerun; where
    the peer is not installed, a scored record of the same data is kept as it is.
    """
    info = get_peer(name)
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    test = load_split(data_dir, "test")
    scheme_name = manifest.get("scheme") or info.native_scheme
    record = _base_record(name, _data_record(data_dir, manifest, test), peer_available(name))
    path = peer_record_path(runs_dir, name)
    if record["error"] is not None and reuse:
        # Not installed here, but scored on this data where it was: that measurement is
        # the user's, and is kept rather than replaced by "not installed".
        kept = _reusable_record(path, record["data"], settings=None)
        if kept is not None:
            return PeerResult(path, kept, reused=True)
    if record["error"] is None:
        try:
            runner = open_peer(name)
            settings = runner.settings()
            kept = _reusable_record(path, record["data"], settings) if reuse else None
            if kept is not None:
                return PeerResult(path, kept, reused=True)
            scored = _run_peer(name, runner, test, data_dir, scheme_name, quiet)
            record.update(settings=settings, **scored)
        except PeerError as error:
            record["error"] = str(error)
    write_json_atomic(path, record)
    return PeerResult(path, record)


def _reusable_record(
    path: Path, data: dict[str, Any], settings: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The record at ``path`` when it scored this data with these settings (None: any,
    the peer not being installed to say which), else None."""
    try:
        kept = read_json(path)
    except ValueError:  # absent or malformed: score again
        return None
    same = (
        isinstance(kept, dict)
        and kept.get("format_version") == PEER_FORMAT_VERSION
        and kept.get("error") is None
        and kept.get("metrics") is not None
        and kept.get("data") == data
        and (settings is None or kept.get("settings") == settings)
    )
    return kept if same else None


def _run_peer(
    name: str, runner: Any, test: SplitArrays, data_dir: Path, scheme_name: str, quiet: bool
) -> dict[str, Any]:
    """faces, metrics and timing; PeerError when the scheme is not mapped."""
    # Refuse an unmapped scheme before spending minutes predicting.
    runner.check_scheme(scheme_name)
    train = load_split(data_dir, "train")
    say(f"peer: {name} on {len(test)} test faces of {data_dir}", quiet)
    return _scored(runner, test, train, scheme_name, quiet)
