"""OpenVINO's INT8 program (fkdbench.openvino_int8): NNCF's two presets and ONNX Runtime's QDQ
graph are each made, scored and timed beside FP32, the fastest within the RMSE bound is
saved as IR, and ``edge.json`` says why. Timing runs on a fake clock: speed is measured by
``fkdbench bench``, never asserted here."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from bench_factory import fake_clock

from fkdbench import edge, openvino_int8, runs
from fkdbench.data.splits import load_split
from fkdbench.export import EXPORT_RECORD_FILE, calibration_images, run_data_dir
from fkdbench.metrics import rmse
from fkdbench.onnxrt import images_as_float

PATHS = [
    {"path": "nncf", "preset": "performance"},
    {"path": "nncf", "preset": "mixed"},
    {"path": "onnxruntime-qdq"},
]


@pytest.fixture()
def run_folder(exported_run: Path, tmp_path: Path) -> Path:
    """A copy of the exported tiny run, with OpenVINO and NNCF installed (or a skip)."""
    reason = edge.missing_reason("openvino-int8")
    if reason is not None:
        if os.environ.get("FKDBENCH_REQUIRE_EDGE") == "1":
            pytest.fail(f"FKDBENCH_REQUIRE_EDGE=1 but {reason}")
        pytest.skip(reason)
    folder = tmp_path / exported_run.name
    shutil.copytree(exported_run, folder)
    return folder


def _inputs(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's calibration images, test images and test keypoints."""
    config = runs.read_json(folder / runs.CONFIG_FILE)
    data = run_data_dir(folder, config, None)
    test = load_split(data, "test")
    return calibration_images(data, 1), images_as_float(test.images, 1), test.keypoints


def _make(folder: Path, trained: bool = True) -> dict:
    calibration, images, keypoints = _inputs(folder)

    def score(predict) -> float:
        return rmse(predict(images), keypoints)

    return openvino_int8.make_openvino_int8(
        folder, calibration, images[:8], 1, score if trained else None, fake_clock()
    )


def test_every_path_is_tried_scored_and_the_kept_one_saved_as_ir(run_folder: Path) -> None:
    record = _make(run_folder)
    assert [candidate["choice"] for candidate in record["candidates"]] == PATHS
    for candidate in record["candidates"]:
        assert candidate["error"] is None and candidate["test_rmse"] > 0
    bound = record["fp32_test_rmse"] * 1.02
    kept = [c for c in record["candidates"] if c["choice"] == record["choice"]][0]
    if any(c["test_rmse"] <= bound for c in record["candidates"]):
        assert kept["within_tolerance"] and kept["seconds_per_100_images"] > 0
        assert "within 2% of FP32's test RMSE" in record["reason"]
    else:  # none accurate enough: the most accurate, and the reason says so
        assert kept["test_rmse"] == min(c["test_rmse"] for c in record["candidates"])
        assert "the most accurate kept" in record["reason"]
    # The IR that was saved runs and scores as the kept candidate did.
    predict = edge._openvino(run_folder / openvino_int8.OPENVINO_INT8_XML, threads=1)
    _, images, keypoints = _inputs(run_folder)
    assert rmse(predict(images), keypoints) == pytest.approx(kept["test_rmse"], rel=1e-4)
    assert not list(run_folder.glob(".openvino-int8-*"))  # the scratch folder is gone


def test_a_qoperator_export_still_gets_a_qdq_candidate(run_folder: Path) -> None:
    # OpenVINO cannot read ONNX Runtime's QOperator graphs: the candidate is made as QDQ
    # from the export's other choices, whatever format the export kept.
    path = run_folder / EXPORT_RECORD_FILE
    record = json.loads(path.read_text())
    record["int8_choice"] = {
        "quant_format": "QOperator",
        "per_channel": False,
        "excluded": "last-dense",
        "calibration": "MinMax",
    }
    path.write_text(json.dumps(record))
    made = _make(run_folder)
    [qdq] = [c for c in made["candidates"] if c["choice"]["path"] == "onnxruntime-qdq"]
    assert qdq["error"] is None and np.isfinite(qdq["test_rmse"])


def _refusing(message: str):
    """A stand-in for a candidate's maker that fails as a library does."""

    def refuse(*args, **kwargs):
        raise RuntimeError(message)

    return refuse


def test_a_candidate_that_fails_is_a_row_and_the_others_go_on(
    run_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse = _refusing("Exception from nncf/x.py:1\nNNCF cannot quantize this model")
    monkeypatch.setattr(openvino_int8, "_nncf", refuse)
    record = _make(run_folder)
    errors = [candidate["error"] for candidate in record["candidates"]]
    assert errors == ["NNCF cannot quantize this model"] * 2 + [None]
    assert record["choice"] == {"path": "onnxruntime-qdq"}


def test_when_no_candidate_can_be_made_it_says_why(
    run_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino_int8, "_nncf", _refusing("no quantizer here"))
    monkeypatch.setattr(openvino_int8, "_onnxruntime_qdq", _refusing("no quantizer here"))
    pattern = r": no OpenVINO INT8 program could be made \(no quantizer here\)"
    with pytest.raises(ValueError, match=re.escape(str(run_folder)) + pattern):
        _make(run_folder)
    assert not (run_folder / openvino_int8.OPENVINO_INT8_XML).exists()


def test_an_untrained_run_is_chosen_on_speed_and_says_so(run_folder: Path) -> None:
    record = _make(run_folder, trained=False)
    assert record["fp32_test_rmse"] is None
    assert record["reason"].startswith("untrained run, chosen on speed")
    assert all(candidate["within_tolerance"] for candidate in record["candidates"])


def test_the_recipe_line_names_the_path() -> None:
    assert openvino_int8.describe(None) is None
    assert "NNCF" in openvino_int8.describe({"path": "nncf", "preset": "mixed"})
    assert "mixed preset" in openvino_int8.describe({"path": "nncf", "preset": "mixed"})
    assert "QDQ" in openvino_int8.describe({"path": "onnxruntime-qdq"})
