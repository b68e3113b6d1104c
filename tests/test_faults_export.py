"""Faults of ``fkdbench export`` (issue 14, items 5 and 9): an export is reused only while
its graphs are the files ``export.json`` recorded, and an interrupted run is not passed off
as untrained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fkdbench import export, runs
from fkdbench.cli import app
from fkdbench.export import ExportError, export_run
from fkdbench.io import sha256_file
from fkdbench.onnxrt import open_session

RUN = "cnn-manual--none"
runner = CliRunner()


@pytest.fixture
def run_folder(trained_runs: Path, tmp_path: Path) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path / RUN
    shutil.copytree(trained_runs / RUN, folder)
    return folder


def _record(folder: Path) -> dict:
    return json.loads((folder / export.EXPORT_RECORD_FILE).read_text())


@pytest.mark.parametrize("graph", [export.ONNX_FILE, export.INT8_FILE])
def test_a_replaced_graph_is_exported_again(
    run_folder: Path, graph: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export_run(run_folder, exporter="torchscript", quiet=True)
    (run_folder / graph).write_bytes(np.random.default_rng(0).bytes(4096))
    capsys.readouterr()

    record = export_run(run_folder, exporter="torchscript")
    # Not the old record over random bytes: a loadable graph, and the record vouches for it.
    open_session(run_folder / graph, threads=1)
    recorded = _record(run_folder)
    for name, key in ((export.ONNX_FILE, "onnx_sha256"), (export.INT8_FILE, "int8_sha256")):
        assert getattr(record, key) == recorded.get(key) == sha256_file(run_folder / name)
    said = capsys.readouterr().err
    assert f"exporting again: {graph} is not the file export.json recorded" in said


def test_an_export_json_without_checksums_is_not_trusted(run_folder: Path) -> None:
    export_run(run_folder, exporter="torchscript", int8=False, quiet=True)
    record = _record(run_folder)
    for key in ("onnx_sha256", "int8_sha256"):
        record.pop(key, None)  # as fkdbench before issue 14 wrote it
    (run_folder / export.EXPORT_RECORD_FILE).write_text(json.dumps(record))
    (run_folder / export.ONNX_FILE).write_bytes(b"random bytes, not a graph")

    result = runner.invoke(
        app, ["export", str(run_folder), "--no-int8", "--exporter", "torchscript"]
    )
    assert result.exit_code == 0, result.output
    open_session(run_folder / export.ONNX_FILE, threads=1)
    assert "records no sha256 of model.onnx" in result.output
    assert _record(run_folder).get("onnx_sha256") == sha256_file(run_folder / export.ONNX_FILE)


def test_an_intact_export_is_still_reused(run_folder: Path) -> None:
    export_run(run_folder, exporter="torchscript", int8=False, quiet=True)
    written = (run_folder / export.ONNX_FILE).stat().st_mtime_ns
    assert (
        export.stale_export_reason(
            run_folder, sha256_file(run_folder / runs.MODEL_FILE), False, "uint8"
        )
        is None
    )
    export_run(run_folder, int8=False, quiet=True)
    assert (run_folder / export.ONNX_FILE).stat().st_mtime_ns == written


def test_an_interrupted_run_is_refused_not_called_untrained(run_folder: Path) -> None:
    (run_folder / runs.METRICS_FILE).unlink()  # what a run stopped mid-training lacks
    assert not runs.is_finished(run_folder)
    with pytest.raises(ExportError, match=r"interrupted \(partly trained"):
        export_run(run_folder, exporter="torchscript", int8=False, quiet=True)
    assert not (run_folder / export.ONNX_FILE).exists()

    result = runner.invoke(app, ["export", str(run_folder), "--no-int8"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "interrupted (partly trained" in result.output and "untrained" not in result.output
    assert "Traceback" not in result.output
