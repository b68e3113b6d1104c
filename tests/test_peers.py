"""Off-the-shelf peers: dlib-ert68's point mapping and box, the peer on synthetic faces,
its record (``fkdbench peer``), the not-installed path, the report's marked rows, and the
readers of peer records fuzzed.

The tests that run dlib are skipped where the ``peers`` extra is not installed (CI
installs it); the rest need nothing beyond the core dependencies.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bench_factory import make_bench_record
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis_profiles import FUZZ, JSON_VALUES
from report_factory import (
    COORDINATES_PER_FACE,
    MANIFEST,
    TEST_FACES,
    per_face_errors,
    result_of,
    summary,
    write_bench_file,
    write_seeded_run,
)
from typer.testing import CliRunner

from fkdbench import peers, report
from fkdbench.cli import app
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.data.schemes import IBUG68, KAGGLE15
from fkdbench.data.splits import MANIFEST_NAME, load_split
from fkdbench.data.synthetic import _draw_face, render_face
from fkdbench.data.synthetic_geometry import PoseRanges
from fkdbench.faces.crop import box_for_training_crop
from fkdbench.faces.detect import FaceBox
from fkdbench.io import sha256_file
from fkdbench.peers import NOT_INSTALLED, PEER_MARK, PeerError, open_peer, peer_available
from fkdbench.peers.dlib_ert import (
    IBUG68_TO_KAGGLE15,
    UPSCALE,
    FacePrediction,
    map_points,
    model_path,
    upscale_box,
)
from fkdbench.peers.score import (
    WARMUP_FACES,
    median_box,
    peer_record_path,
    predict_split,
    score_peer,
)
from fkdbench.report.accuracy import accuracy_section
from fkdbench.report.common import ReportError
from fkdbench.report.peers import (
    PEER_RECORDS_FILE,
    PEERS_TABLE,
    PeerSummary,
    accuracy_cells_of_peers,
    accuracy_peer_lines,
    landmark_rows_of_peers,
    load_peer_records,
    peer_points,
    peer_summary_lines,
    peer_table,
    read_peer_records,
    timing_peer_lines,
    timing_rows_of_peers,
    write_peer_records,
)
from fkdbench.report.timing import timing_section

DLIB = "dlib-ert68"
LABEL = f"{DLIB} ({PEER_MARK})"
needs_dlib = pytest.mark.skipif(
    peer_available(DLIB) is not None,
    reason=f"{DLIB} needs dlib and face_recognition_models: uv sync --extra peers",
)
runner = CliRunner()


# -- the point mapping and the box ------------------------------------------------------------


def _distinct_points68() -> np.ndarray:
    """68 points whose 136 coordinates all differ, so a wrong index changes every mean."""
    return np.random.default_rng(0).permutation(136).reshape(68, 2).astype(np.float64)


def test_kaggle15_comes_in_kaggle_order_as_the_mean_of_its_ibug_points() -> None:
    points68 = _distinct_points68()
    mapped = map_points(points68, KAGGLE15.name)
    assert list(IBUG68_TO_KAGGLE15) == list(KAGGLE15.keypoints)
    assert mapped.shape == (KAGGLE15.num_keypoints, 2)
    for index, name in enumerate(KAGGLE15.keypoints):
        expected = points68[list(IBUG68_TO_KAGGLE15[name])].mean(axis=0)
        np.testing.assert_allclose(mapped[index], expected, err_msg=name)
    # Stated by hand: the eye centre is its six contour points, the nose tip the bridge's end.
    np.testing.assert_allclose(mapped[KAGGLE15.index("left_eye_center")], points68[42:48].mean(0))
    np.testing.assert_array_equal(mapped[KAGGLE15.index("nose_tip")], points68[30])
    # Batches map face by face.
    batch = np.stack([points68, points68[::-1]])
    np.testing.assert_allclose(map_points(batch, KAGGLE15.name)[0], mapped)


# Kaggle's part of a name -> the part of iBUG's names (fkdbench.data.schemes) it maps from.
_PARTS = {
    "left_eye": "left_eye_",
    "right_eye": "right_eye_",
    "left_eyebrow": "left_brow_",
    "right_eyebrow": "right_brow_",
    "nose": "nose_",
    "mouth": "mouth_outer_",
}


def test_every_kaggle_point_comes_from_the_ibug_part_of_the_same_side() -> None:
    for name, indices in IBUG68_TO_KAGGLE15.items():
        part = next(p for p in sorted(_PARTS, key=len, reverse=True) if name.startswith(p))
        sources = [IBUG68.keypoints[index] for index in indices]
        assert all(source.startswith(_PARTS[part]) for source in sources), (name, sources)


def test_the_mapping_agrees_with_the_renderer_on_the_same_faces() -> None:
    """The synthetic renderer draws a face's 68 points and its Kaggle 15 in one frame: the
    corners, brow ends, nose tip and lips are the same points; eye centres (the pupil vs
    the mean of the eye's contour) agree to a pixel or two."""
    for index in range(4):
        _, kaggle15, ibug68 = _draw_face(0, index, 96, PoseRanges(), IBUG68.name)
        error = np.linalg.norm(map_points(ibug68, KAGGLE15.name) - kaggle15, axis=-1)
        centres = [KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")]
        assert np.delete(error, centres).max() < 1e-3, error
        assert error[centres].max() < 2.0, error


def test_ibug68_passes_through_and_other_schemes_are_refused() -> None:
    points68 = _distinct_points68()
    through = map_points(points68, IBUG68.name)
    np.testing.assert_array_equal(through, points68)
    through[0, 0] = -1.0  # a copy: the caller's points are not changed
    assert points68[0, 0] != -1.0
    with pytest.raises(PeerError, match="no stated mapping to wflw98"):
        map_points(points68, "wflw98")
    with pytest.raises(ValueError, match="unknown"):
        map_points(points68, "no-such-scheme")
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 68, 2\) points"):
        map_points(points68[:15], KAGGLE15.name)


def test_a_box_maps_to_the_pixels_it_covers_in_the_enlarged_image() -> None:
    # Crop pixels 10..29 across and 5..14 down: their edges sit half a pixel outside.
    box = FaceBox(9.5, 4.5, 29.5, 14.5, math.nan)
    assert upscale_box(box, 3) == (30, 15, 89, 44)
    left, top, right, bottom = upscale_box(box, UPSCALE)
    assert (right - left + 1, bottom - top + 1) == (20 * UPSCALE, 10 * UPSCALE)
    assert upscale_box(box, 1) == (10, 5, 29, 14)


# -- predict_split, with a stand-in peer ------------------------------------------------------


class _CountingPeer:
    """A peer that puts every point at the image's mean and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, crop: np.ndarray) -> FacePrediction:
        self.calls += 1
        points = np.full((68, 2), float(crop.mean()))
        return FacePrediction(points, bool(crop.mean() > 100), 0.0012345678, 0.00025)


def test_predict_split_keeps_one_prediction_per_face_after_the_warmup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = np.stack([np.full((8, 8), shade, dtype=np.uint8) for shade in (50, 150, 200)])
    peer = _CountingPeer()
    found = predict_split(peer, images, quiet=True)
    assert peer.calls == len(images) + WARMUP_FACES
    assert found["points68"].shape == (3, 68, 2)
    np.testing.assert_array_equal(found["points68"][:, 0, 0], [50.0, 150.0, 200.0])
    assert found["detected"].dtype == bool and found["detected"].tolist() == [False, True, True]
    assert found["detect_seconds"] == [0.00123457] * 3  # six significant digits
    assert found["shape_seconds"] == [0.00025] * 3
    assert capsys.readouterr().err == ""
    predict_split(_CountingPeer(), images, quiet=False)
    assert "peer" in capsys.readouterr().err


# -- the peer on synthetic faces ---------------------------------------------------------------

# Mean distance (px, 96 px crops) of the peer's mapped Kaggle points from the truth on
# FACES: measured 3.0-3.2 px (with and without the detector's box). Sides swapped put
# points ~28 px off; points left in the enlarged image's pixels, hundreds.
FACES = 12
MEAN_ERROR_LIMIT = 5.0


@pytest.fixture(scope="module")
def dlib_peer() -> Any:
    """One DlibErt68 (loading its model takes seconds); only tests marked needs_dlib."""
    return open_peer(DLIB)


def _mean_error(peer: Any) -> tuple[float, list[FacePrediction]]:
    errors, predictions = [], []
    for index in range(FACES):
        crop, truth = render_face(seed=0, index=index, size=96)
        prediction = peer.predict(crop)
        mapped = peer.map_points(prediction.points68, KAGGLE15.name)
        errors.append(np.linalg.norm(mapped - truth, axis=-1).mean())
        predictions.append(prediction)
    return float(np.mean(errors)), predictions


class _Shape:
    """What dlib's shape predictor returns: 68 parts, here all at one pixel."""

    def __init__(self, x: int, y: int) -> None:
        self._parts = [SimpleNamespace(x=x, y=y)] * 68

    def parts(self) -> list[SimpleNamespace]:
        return self._parts


@needs_dlib
def test_the_predictor_gets_the_enlarged_box_and_its_pixels_come_back_exactly(
    dlib_peer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes = []

    def predictor(big: np.ndarray, rect: Any) -> _Shape:
        boxes.append((big.shape, (rect.left(), rect.top(), rect.right(), rect.bottom())))
        # Enlarged pixel 31 is the middle of crop pixel 10's 3x3 block; 64, of pixel 21's.
        return _Shape(31, 64)

    monkeypatch.setattr(dlib_peer, "_predictor", predictor)
    monkeypatch.setattr(dlib_peer, "_detect", lambda big: (30, 15, 89, 44))
    found = dlib_peer.predict(np.zeros((96, 96), dtype=np.uint8))
    np.testing.assert_array_equal(found.points68, np.tile([10.0, 21.0], (68, 1)))
    assert found.detected is True
    monkeypatch.setattr(dlib_peer, "_detect", lambda big: None)
    assert dlib_peer.predict(np.zeros((96, 96), dtype=np.uint8)).detected is False
    given = upscale_box(box_for_training_crop("dlib-hog", 96), UPSCALE)
    assert boxes == [((288, 288), (30, 15, 89, 44)), ((288, 288), given)]


@needs_dlib
def test_the_peer_finds_the_points_of_synthetic_faces(dlib_peer: Any) -> None:
    error, predictions = _mean_error(dlib_peer)
    assert error < MEAN_ERROR_LIMIT
    for prediction in predictions:
        assert isinstance(prediction.detected, bool)
        assert prediction.points68.shape == (68, 2)
        assert prediction.detect_seconds > 0 and prediction.shape_seconds > 0


@needs_dlib
def test_the_training_crop_box_also_finds_them(
    dlib_peer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where HOG finds no face the predictor runs in the mean training-crop box."""
    monkeypatch.setattr(dlib_peer, "_detect", lambda big: None)
    error, predictions = _mean_error(dlib_peer)
    assert error < MEAN_ERROR_LIMIT
    assert not any(prediction.detected for prediction in predictions)


@needs_dlib
def test_the_peer_refuses_a_float_or_colour_crop(dlib_peer: Any) -> None:
    with pytest.raises(ValueError, match="gray uint8"):
        dlib_peer.predict(np.zeros((96, 96), dtype=np.float32))
    with pytest.raises(ValueError, match="gray uint8"):
        dlib_peer.predict(np.zeros((96, 96, 3), dtype=np.uint8))


# -- score_peer and its record ------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared synthetic data set with 24 test faces."""
    root = tmp_path_factory.mktemp("peer-data")
    options = PrepareOptions(
        data_root=root, n_train=60, n_test=0, test_fraction=0.4, val_fraction=0.1, seed=5,
        workers=1, quiet=True,
    )  # fmt: skip
    return prepare(options).data_dir


@pytest.fixture(scope="module")
def scored(peer_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """score_peer's result on peer_data (only tests marked needs_dlib)."""
    return score_peer(DLIB, peer_data, tmp_path_factory.mktemp("peer-runs"), quiet=True)


@needs_dlib
def test_score_peer_writes_the_record_of_every_test_face(scored: Any, peer_data: Path) -> None:
    record = scored.record
    test = load_split(peer_data, "test")
    rows = len(test)
    assert rows >= 20
    assert scored.path == peer_record_path(scored.path.parents[1], DLIB)
    assert json.loads(scored.path.read_text()) == record
    assert (record["installed"], record["error"], record["peer"]) == (True, None, DLIB)
    assert record["data"]["test_rows"] == rows
    assert record["data"]["manifest_sha256"] == sha256_file(peer_data / MANIFEST_NAME)
    faces = record["faces"]
    assert faces["detected"] + faces["given_box"] == rows
    assert len(faces["detected_per_face"]) == rows
    assert sum(faces["detected_per_face"]) == faces["detected"]
    metrics = record["metrics"]
    assert math.isfinite(metrics["test_rmse"]) and metrics["test_rmse"] > 0
    assert metrics["test_rmse"] < metrics["mean_shape_rmse"]  # it sees the faces
    per_face = metrics["test_per_face"]
    assert sum(per_face["coordinates"]) == int(np.isfinite(test.keypoints).sum())
    pooled = math.sqrt(sum(per_face["squared_error_sum"]) / sum(per_face["coordinates"]))
    assert pooled == pytest.approx(metrics["test_rmse"], rel=1e-5)
    timing = record["timing"]
    for stage in ("detect_seconds", "shape_seconds"):
        assert len(timing[stage]) == rows and all(value > 0 for value in timing[stage])
    assert record["settings"]["model_sha256"] == sha256_file(model_path())
    assert f"on {rows} faces" in scored.line() and str(scored.path) in scored.line()


@needs_dlib
def test_the_report_reads_the_record_score_peer_writes(scored: Any) -> None:
    """The hand-made record of the report tests has score_peer's layout."""
    record = scored.record
    made = _peer_record()
    assert set(made) == set(record)
    for section in ("data", "faces", "timing"):
        assert set(made[section]) <= set(record[section]), section
    assert set(made["metrics"]) <= set(record["metrics"])
    (peer,) = load_peer_records(scored.path.parents[1])
    assert peer.scored and peer.installed and peer.label == LABEL
    assert peer.test_rmse == record["metrics"]["test_rmse"]
    assert len(peer.per_face_squared_errors) == len(peer.detect_seconds) == peer.test_rows


@needs_dlib
def test_reuse_keeps_a_record_of_the_same_data_and_settings_only(
    scored: Any, peer_data: Path, tmp_path: Path
) -> None:
    path = peer_record_path(tmp_path, DLIB)
    path.parent.mkdir(parents=True)
    kept = {**scored.record, "metrics": {**scored.record["metrics"], "test_rmse": 0.25}}
    path.write_text(json.dumps(kept))
    again = score_peer(DLIB, peer_data, tmp_path, quiet=True, reuse=True)
    assert again.reused and again.record == kept and "kept" in again.line()
    assert json.loads(path.read_text()) == kept  # not rewritten
    settings = scored.record["settings"]
    other = {**kept, "settings": {**settings, "versions": {"dlib": "0"}}, "stale": True}
    path.write_text(json.dumps(other))
    rerun = score_peer(DLIB, peer_data, tmp_path, quiet=True, reuse=True)
    assert not rerun.reused and "stale" not in rerun.record  # rewritten whole
    assert rerun.record["metrics"]["test_rmse"] == scored.record["metrics"]["test_rmse"]
    assert rerun.record["settings"] == settings


def _hide_peer_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make dlib look uninstalled to fkdbench.peers (which asks importlib.util.find_spec)."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "dlib" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_a_peer_that_is_not_installed_still_gets_its_record(
    peer_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir = tmp_path / "runs"
    path = peer_record_path(runs_dir, DLIB)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"peer": DLIB, "metrics": {"test_rmse": 1.0}, "stale": True}))
    _hide_peer_libraries(monkeypatch)
    assert peer_available(DLIB) == NOT_INSTALLED == "not installed (uv sync --extra peers)"
    with pytest.raises(PeerError, match=f"peer {DLIB}: not installed"):
        open_peer(DLIB)
    result = score_peer(DLIB, peer_data, runs_dir, quiet=True)
    record = json.loads(path.read_text())
    assert record == result.record  # rewritten whole: nothing of the old record is left
    assert (record["installed"], record["error"]) == (False, NOT_INSTALLED)
    assert "stale" not in record
    assert all(record[key] is None for key in ("metrics", "faces", "timing", "settings"))
    assert record["data"]["test_rows"] == len(load_split(peer_data, "test"))
    (peer,) = load_peer_records(runs_dir)
    assert not peer.installed and not peer.scored and peer.why_no_score == "not installed"


@needs_dlib
def test_reuse_keeps_a_scored_record_where_the_peer_is_not_installed(
    scored: Any, peer_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A measurement made where dlib was installed is the user's: reproduce on a machine
    without the extra keeps it (same data) instead of writing "not installed" over it."""
    path = peer_record_path(tmp_path, DLIB)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(scored.record))
    _hide_peer_libraries(monkeypatch)
    kept = score_peer(DLIB, peer_data, tmp_path, quiet=True, reuse=True)
    assert kept.reused and json.loads(path.read_text()) == scored.record
    other_data = {**scored.record, "data": {**scored.record["data"], "test_rows": 1}}
    path.write_text(json.dumps(other_data))
    replaced = score_peer(DLIB, peer_data, tmp_path, quiet=True, reuse=True)
    assert not replaced.reused and replaced.record["error"] == NOT_INSTALLED


def test_the_peer_command_fails_in_one_line_when_not_installed(
    peer_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_peer_libraries(monkeypatch)
    command = ["peer", str(peer_data), "--name", DLIB, "--runs-dir", str(tmp_path), "--quiet"]
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert NOT_INSTALLED in result.output and "Traceback" not in result.output
    assert peer_record_path(tmp_path, DLIB).is_file()


def test_an_unknown_peer_names_the_known_ones() -> None:
    with pytest.raises(PeerError, match=f"unknown peer 'nope'; known: {DLIB}"):
        peers.get_peer("nope")
    assert runner.invoke(app, ["peer", ".", "--name", "nope"]).exit_code == 2


# -- the report ---------------------------------------------------------------------------------

# The peer is better than every trained row: it must still be neither bold nor ranked.
PEER_RMSE = 1.5
TRAINED = {"none": 2.0, "aug": 1.8}


def _peer_record(**overrides: Any) -> dict[str, Any]:
    """A scored record in score_peer's layout, on the report runs' test faces."""
    per_face = per_face_errors(PEER_RMSE, seed=9)
    record = {
        "format_version": 1, "peer": DLIB, "description": "dlib", "trained_on": "iBUG 300-W",
        "mark": PEER_MARK, "native_scheme": "ibug68", "installed": True, "error": None,
        "data": {
            "data_dir": "data/synthetic", "manifest_sha256": MANIFEST, "scheme": "kaggle15",
            "test_rows": TEST_FACES,
        },
        "faces": {"detected": 30, "given_box": 10},
        "metrics": {
            "test_rmse": PEER_RMSE, "test_nme": 0.05, "test_fr": 0.1, "test_auc": 0.5,
            "failure_threshold": 0.1, "mean_shape_rmse": 4.0, "test_rmse_detected": 1.4,
            "test_rmse_given_box": 1.8,
            "test_per_face": {
                "squared_error_sum": per_face,
                "coordinates": [COORDINATES_PER_FACE] * TEST_FACES,
            },
        },
        "timing": {
            "threads": 1, "detect_seconds": [0.010] * TEST_FACES,
            "shape_seconds": [0.002] * TEST_FACES,
        },
        "settings": {"model_sha256": "d" * 64},
        "environment": {"cpu_model": "Test CPU"},
    }  # fmt: skip
    record.update(overrides)
    return record


def _write_peer_record(runs_dir: Path, record: dict[str, Any]) -> Path:
    path = peer_record_path(runs_dir, record["peer"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def _report_runs(root: Path) -> tuple[Path, Path]:
    """Two trained runs on the MANIFEST test faces and their ONNX Runtime records."""
    runs_dir = root / "runs"
    records = []
    for variant, rmse in TRAINED.items():
        folder = write_seeded_run(runs_dir, "cnn-manual", variant, 1, rmse)
        records.append(
            make_bench_record(
                run_name=folder.name,
                variant=variant,
                seconds_per_100_images=[0.02] * 3,
                test_rmse=rmse,
                threads=1,
                timestamp="2026-01-01T00:00:00+00:00",
            )
        )
    return runs_dir, write_bench_file(root / "bench.jsonl", records)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("peer-report")
    runs_dir, bench_file = _report_runs(root)
    _write_peer_record(runs_dir, _peer_record())
    result = report.build_report(runs_dir, bench_file, root / "out", quiet=True)
    return {"root": root, "runs": runs_dir, "bench": bench_file, "result": result}


def _section(markdown: str, heading: str) -> str:
    return markdown.split(f"## {heading}\n")[1].split("\n## ")[0]


def _peer_rows(section: str) -> list[str]:
    return [line for line in section.splitlines() if line.startswith(f"| {LABEL} |")]


def test_the_peer_is_a_marked_row_of_the_accuracy_and_timing_tables(
    reported: dict[str, Any],
) -> None:
    markdown = reported["result"].markdown.read_text()
    accuracy = _section(markdown, "Accuracy")
    rows = _peer_rows(accuracy)
    assert len(rows) == 3  # RMSE, NME and the landmark metrics
    assert all("**" not in row for row in rows)
    assert re.search(rf"\| +{PEER_RMSE:.3f} \[", rows[0])
    trained = next(line for line in accuracy.splitlines() if line.startswith("| cnn-manual"))
    assert f"**{TRAINED['aug']:.3f}" in trained  # the lowest trained value keeps the bold
    assert "vs the best trained row" in accuracy
    (timing,) = _peer_rows(_section(markdown, "Inference time"))
    assert "**" not in timing and "dlib (own runtime)" in timing
    assert re.search(rf"\| +{100 * 0.012:.4f} +\|", timing)  # (detect + shape) x 100
    assert "Diamonds: off-the-shelf peers" in _section(markdown, "Figures")


def test_the_peer_table_goes_to_every_output(reported: dict[str, Any]) -> None:
    result, out = reported["result"], reported["result"].out_dir
    assert PEERS_TABLE in result.tables
    payload = json.loads((out / "report.json").read_text())
    (row,) = payload["tables"][PEERS_TABLE]
    assert (row["peer"], row["same_test_split"], row["test_rmse"]) == (DLIB, True, PEER_RMSE)
    assert row["vs_variant"] == "aug"
    assert payload["peers"]["mark"] == PEER_MARK
    assert (out / f"{PEERS_TABLE}.csv").is_file()
    assert read_peer_records(out / PEER_RECORDS_FILE) == load_peer_records(reported["runs"])


def _without_predictions(markdown: Path) -> bytes:
    """REPORT.md but the predictions figure's line: with no model at hand it says why
    it is not drawn in other words when rebuilt from records (peers play no part)."""
    lines = markdown.read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if b"figures/predictions.png" not in line)


def test_a_report_rebuilt_from_records_keeps_its_peers(
    reported: dict[str, Any], tmp_path: Path
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(reported["result"].out_dir, copy)
    (copy / "REPORT.md").unlink()
    built = reported["result"]
    again = report.build_report(None, reported["bench"], copy, quiet=True)
    assert _without_predictions(again.markdown) == _without_predictions(built.markdown)
    built = built.out_dir
    for name in (f"{PEERS_TABLE}.csv", PEER_RECORDS_FILE):
        assert (copy / name).read_bytes() == (built / name).read_bytes(), name


def test_a_report_without_peers_says_nothing_of_them(
    reported: dict[str, Any], tmp_path: Path
) -> None:
    runs_dir = tmp_path / "runs"
    shutil.copytree(reported["runs"], runs_dir, ignore=shutil.ignore_patterns("peers"))
    out = tmp_path / "out"
    result = report.build_report(runs_dir, reported["bench"], out, quiet=True)
    assert PEERS_TABLE not in result.tables
    assert not (out / f"{PEERS_TABLE}.csv").exists()
    assert not (out / PEER_RECORDS_FILE).exists()
    assert "off-the-shelf" not in result.markdown.read_text()
    assert "peers" not in json.loads((out / "report.json").read_text())


def test_a_peer_not_installed_says_so_in_its_rows(tmp_path: Path) -> None:
    record = _peer_record(
        installed=False, error=NOT_INSTALLED, faces=None, metrics=None, timing=None
    )
    _write_peer_record(tmp_path, record)
    (peer,) = load_peer_records(tmp_path)
    result = result_of([summary(), summary(variant="aug", rmse=1.8)], peers=[peer])
    for lines in (accuracy_section(result), timing_section(result)):
        rows = _peer_rows("\n".join(lines))
        assert rows and all(re.search(r"\| +not installed +\|", row) for row in rows), rows


# -- the readers, fuzzed -------------------------------------------------------------------------

_NUMBERS = st.lists(st.floats(0.0, 10.0), min_size=0, max_size=3)
# Each field's own kind of value, or anything.
_FIELD_VALUES = {
    "peer": st.sampled_from([DLIB, "other"]),
    "installed": st.booleans(),
    "error": st.one_of(st.none(), st.just(NOT_INSTALLED)),
    "manifest_sha256": st.just(MANIFEST),
    "test_rows": st.integers(0, 50),
    "detected": st.integers(0, 50),
    "given_box": st.integers(0, 50),
    "threads": st.integers(1, 4),
    "test_rmse": st.floats(0.1, 9.0),
    "test_nme": st.floats(0.0, 1.0),
    "per_face_squared_errors": _NUMBERS,
    "per_face_coordinates": st.lists(st.integers(1, 30), max_size=3),
    "detect_seconds": _NUMBERS,
    "shape_seconds": _NUMBERS,
}


@st.composite
def _summary_lines(draw: st.DrawFn) -> object:
    """Mostly peers.jsonl lines with damaged fields, sometimes any JSON at all."""
    if draw(st.integers(0, 7)) == 0:
        return draw(JSON_VALUES)
    line = {}
    for name, valid in _FIELD_VALUES.items():
        if draw(st.booleans()):
            line[name] = draw(valid) if draw(st.integers(0, 4)) else draw(JSON_VALUES)
    return line


def _one_line(read: Any, path: Path) -> Any:
    """``read()``, or None where it raised a ReportError of one line naming ``path``."""
    try:
        return read()
    except ReportError as problem:
        message = str(problem)
        assert str(path) in message and "\n" not in message, message
        return None


def _usable(summaries: list[PeerSummary]) -> None:
    """What the report does with summaries that were read: none of it may fail."""
    table = peer_table(summaries, [summary()])
    assert len(table) == len(summaries)
    if not summaries:
        return
    tables = {PEERS_TABLE: table}
    accuracy_cells_of_peers(table, "test_rmse", ".3f", ["none", "aug"], {"none"})
    landmark_rows_of_peers(table, ["model", "variant", "scheme", "nme", "fr", "auc", "threshold"])
    timing_rows_of_peers(table, ["model", "s / 100 images (median)", "batch-1 p50 ms"])
    assert accuracy_peer_lines(table) and peer_summary_lines(tables)
    assert isinstance(timing_peer_lines(table), list)
    assert all(isinstance(value, float) for point in peer_points(tables) for value in point[1:])


@FUZZ
@given(lines=st.lists(_summary_lines(), max_size=3), raw=st.one_of(st.none(), st.binary()))
# Each crashed the reader before it checked its values (AttributeError, UnicodeDecodeError,
# TypeError when sorting, IndexError in the bootstrap, OverflowError in the table).
@example(lines=[[1, 2]], raw=None)
@example(lines=[], raw=b"\xff\xfe\n")
@example(lines=[{"peer": 3}, {"peer": "a"}], raw=None)
@example(lines=[{"peer": "a", "test_rows": "x"}], raw=None)
@example(lines=[{"peer": "a", "test_rows": 2**70}], raw=None)
@example(
    lines=[
        {"peer": "a", "installed": True, "test_rmse": 1.0, "per_face_squared_errors": [1, 2],
         "per_face_coordinates": [30]}
    ],
    raw=None,
)  # fmt: skip
@example(lines=[], raw=b"[" * 100_000)
def test_fuzzed_peers_jsonl(lines: list[object], raw: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / PEER_RECORDS_FILE
        text = "".join(json.dumps(line) + "\n" for line in lines)
        path.write_bytes(raw if raw is not None else text.encode())
        summaries = _one_line(lambda: read_peer_records(path), path)
    event("read" if summaries is not None else "one-line error")
    if summaries is not None:
        _usable(summaries)
        with tempfile.TemporaryDirectory() as folder:
            again = write_peer_records(summaries, Path(folder) / PEER_RECORDS_FILE)
            assert read_peer_records(again) == summaries


@st.composite
def _peer_records(draw: st.DrawFn) -> object:
    """Mostly score_peer records with damaged sections or values, sometimes anything."""
    if draw(st.integers(0, 7)) == 0:
        return draw(JSON_VALUES)
    record = _peer_record(
        peer=draw(st.sampled_from([DLIB, "other"])), installed=draw(st.booleans())
    )
    for section in ("data", "faces", "metrics", "timing", "environment"):
        if draw(st.integers(0, 3)) == 0:
            record[section] = draw(JSON_VALUES)
        elif isinstance(record[section], dict) and record[section] and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(record[section])))
            record[section][key] = draw(JSON_VALUES)
    if draw(st.integers(0, 3)) == 0:
        record[draw(st.sampled_from(sorted(record)))] = draw(JSON_VALUES)
    return record


@FUZZ
@given(record=_peer_records(), raw=st.one_of(st.none(), st.binary(max_size=60)))
@example(record=[1], raw=None)
@example(record={"peer": "a", "data": [1]}, raw=None)
@example(record={"peer": "a", "metrics": {"test_rmse": 10**400}}, raw=None)
@example(record={"peer": "a", "data": {"test_rows": "x"}}, raw=None)
@example(record=None, raw=b"\xff")
@example(record=None, raw=b"1" * 5000)  # json's ValueError for long integers names no file
def test_fuzzed_peer_record(record: object, raw: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "peers" / f"{DLIB}.json"
        path.parent.mkdir()
        path.write_bytes(raw if raw is not None else json.dumps(record).encode())
        problems: list[str] = []
        summaries = load_peer_records(Path(folder), problems)
    event("read" if summaries else "skipped")
    assert len(summaries) + len(problems) == 1
    if problems:
        assert str(path) in problems[0] and "\n" not in problems[0], problems
    _usable(summaries)


class _BoxPeer:
    """Finds a face (box by shade) on bright crops only; records the boxes it is given."""

    def __init__(self) -> None:
        self.given: list[tuple[int, int, int, int]] = []

    def predict(self, crop: np.ndarray, box: tuple[int, int, int, int] | None = None):
        if box is not None:
            self.given.append(box)
            return FacePrediction(np.full((68, 2), float(box[0])), False, 0.0, 0.5, box)
        shade = int(crop.mean())
        if shade > 100:
            found = (shade, shade, shade + 10, shade + 10)
            return FacePrediction(np.zeros((68, 2)), True, 0.25, 0.5, found)
        return FacePrediction(np.zeros((68, 2)), False, 0.25, 0.5, None)


def test_a_missed_face_is_predicted_on_the_median_detected_box() -> None:
    images = np.stack([np.full((8, 8), shade, dtype=np.uint8) for shade in (150, 50, 200, 170)])
    peer = _BoxPeer()
    found = predict_split(peer, images, quiet=True)
    assert median_box([peer.predict(image) for image in images]) == (170, 170, 180, 180)
    assert peer.given == [(170, 170, 180, 180)]  # the one missed face, once
    assert found["detected"].tolist() == [True, False, True, True]
    assert found["points68"][1, 0, 0] == 170.0
    assert found["detect_seconds"][1] == 0.25  # its detection time is kept
