"""ONNX export: parity with PyTorch, INT8 quantization, and refusing what cannot be trusted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fkdbench import export, runs
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.data.splits import load_split
from fkdbench.export import ExportError, export_run
from fkdbench.onnxrt import images_as_float, onnx_predict, open_session

RUN = "cnn-manual--none"


@pytest.fixture
def run_folder(trained_runs: Path, tmp_path: Path) -> Path:
    folder = tmp_path / RUN
    shutil.copytree(trained_runs / RUN, folder)
    return folder


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_export_is_faithful_and_scored(run_folder: Path, tiny_dataset: Path) -> None:
    record = export_run(run_folder, quiet=True)

    onnx_path, int8_path = run_folder / export.ONNX_FILE, run_folder / export.INT8_FILE
    assert onnx_path.is_file() and int8_path.is_file()
    assert record.exporter in ("dynamo", "torchscript")
    assert record.parity_max_abs_diff_pixels <= export.PARITY_TOLERANCE_PIXELS
    assert record.onnx_bytes == onnx_path.stat().st_size
    assert record.int8_bytes == int8_path.stat().st_size < record.onnx_bytes

    # Check parity independently: the graph's pixels against the PyTorch model's pixels,
    # for a batch size the export never saw (the batch dimension is dynamic).
    model, config = runs.load_model(run_folder)
    test = load_split(tiny_dataset, "test")
    images = images_as_float(test.images[:5])
    session = open_session(onnx_path, threads=1)
    assert [node.name for node in session.get_inputs()] == ["image"]
    assert [node.name for node in session.get_outputs()] == ["keypoints"]
    got = onnx_predict(session, images)
    with torch.inference_mode():
        coords = model(torch.from_numpy(images)).numpy()
    expected = (coords * 48 + 47.5).reshape(5, 15, 2)
    assert got.shape == (5, 15, 2)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    single = onnx_predict(session, images[:1])
    np.testing.assert_allclose(single, expected[:1], atol=1e-3)

    # FP32 ONNX scores what PyTorch scored; INT8 is measured, finite and close.
    saved = json.loads((run_folder / export.EXPORT_RECORD_FILE).read_text())
    assert saved["test_rmse_onnx"] == pytest.approx(saved["test_rmse_torch"], abs=1e-3)
    assert np.isfinite(saved["test_rmse_int8"])
    assert saved["test_rmse_int8"] == pytest.approx(saved["test_rmse_onnx"], rel=0.5)
    assert saved["int8_calibration_images"] > 0 and "QDQ" in saved["int8_recipe"]
    assert set(saved) == set(export.ExportRecord.__dataclass_fields__)
    int8_session = open_session(int8_path, threads=1)
    assert onnx_predict(int8_session, images).shape == (5, 15, 2)


def test_export_is_reused_until_the_weights_change(run_folder: Path) -> None:
    export_run(run_folder, int8=False, exporter="torchscript", quiet=True)
    written = (run_folder / export.ONNX_FILE).stat().st_mtime_ns
    again = export_run(run_folder, int8=False, quiet=True)
    assert again.exporter == "torchscript"
    assert (run_folder / export.ONNX_FILE).stat().st_mtime_ns == written
    assert not (run_folder / export.INT8_FILE).exists()


def test_torchscript_exporter_and_signed_int8(run_folder: Path) -> None:
    record = export_run(run_folder, exporter="torchscript", int8_activations="int8", quiet=True)
    assert record.exporter == "torchscript" and record.int8_activations == "int8"
    assert "QInt8 activations" in record.int8_recipe


def test_parity_failure_writes_no_graph(run_folder: Path, monkeypatch) -> None:
    monkeypatch.setattr(export, "PARITY_TOLERANCE_PIXELS", -1.0)
    with pytest.raises(ExportError, match="no exporter gave a faithful graph"):
        export_run(run_folder, exporter="torchscript", quiet=True)
    assert not (run_folder / export.ONNX_FILE).exists()
    assert not (run_folder / export.EXPORT_RECORD_FILE).exists()


def test_missing_run_and_corrupt_checkpoint(run_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such run"):
        export_run(tmp_path / "nope", quiet=True)
    (run_folder / runs.MODEL_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(runs.CheckpointError, match=r"model\.pt: not a readable checkpoint"):
        export_run(run_folder, quiet=True)
    assert not (run_folder / export.ONNX_FILE).exists()


def test_data_of_another_size_is_refused(run_folder: Path, tmp_path: Path) -> None:
    small = prepare(
        PrepareOptions(
            data_root=tmp_path, n_train=40, n_test=4, image_size=64, workers=1, quiet=True
        )
    ).data_dir
    with pytest.raises(ExportError, match="takes 96x96 images but .* has 64x64"):
        export_run(run_folder, data_dir=small, quiet=True)


def test_untrained_run_exports_without_scores(tiny_dataset: Path, tmp_path: Path) -> None:
    folder = runs.create_untrained_run(tmp_path, "cnn-tuned", tiny_dataset)
    assert folder.name == "cnn-tuned--untrained" and not runs.is_finished(folder)
    record = export_run(folder, exporter="torchscript", quiet=True)
    assert record.trained is False and record.test_rmse_onnx is None
    assert record.int8_bytes is not None
    # Reused while the architecture is unchanged.
    assert runs.create_untrained_run(tmp_path, "cnn-tuned", tiny_dataset) == folder


def test_cli_export_passes_its_options(run_folder: Path) -> None:
    from typer.testing import CliRunner

    from fkdbench.cli import app

    arguments = ["export", str(run_folder), "--exporter", "torchscript", "--quiet"]
    result = CliRunner().invoke(app, [*arguments, "--int8-activations", "int8"])
    assert result.exit_code == 0, result.output
    assert f"{RUN}: torchscript exporter, parity" in result.output
    saved = json.loads((run_folder / export.EXPORT_RECORD_FILE).read_text())
    assert saved["exporter"] == "torchscript" and saved["int8_activations"] == "int8"
    # Asking for the other activation type (the default) is not "up to date".
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0, again.output
    saved = json.loads((run_folder / export.EXPORT_RECORD_FILE).read_text())
    assert saved["int8_activations"] == "uint8"


def test_export_targets(trained_runs: Path, tmp_path: Path) -> None:
    assert export.export_targets(trained_runs, all_runs=True) == [trained_runs / RUN]
    assert export.export_targets(trained_runs, [RUN]) == [trained_runs / RUN]
    with pytest.raises(ExportError, match="not both"):
        export.export_targets(trained_runs, [RUN], all_runs=True)
    with pytest.raises(ExportError, match="no finished runs"):
        export.export_targets(tmp_path, all_runs=True)
    with pytest.raises(runs.CheckpointError, match="no such run"):
        export.export_targets(trained_runs, ["nope"])
