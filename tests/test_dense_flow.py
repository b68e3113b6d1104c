"""A 68-point and a 98-point synthetic run through prepare, train, export, bench, report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fkdbench.bench import read_records
from fkdbench.cli import app
from fkdbench.data.schemes import get_scheme

runner = CliRunner()


def _invoke(*arguments: str) -> str:
    result = runner.invoke(app, [*arguments, "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["ibug68", "wflw98"])
def test_dense_scheme_flow(tmp_path: Path, scheme: str) -> None:
    data, runs_dir, results = tmp_path / "data" / scheme, tmp_path / "runs", tmp_path / "results"
    _invoke(
        "prepare", "--scheme", scheme, "--name", scheme, "--data-root", str(tmp_path / "data"),
        "--n-train", "80", "--n-test", "0", "--workers", "1",
    )  # fmt: skip
    _invoke(
        "train", "cnn-manual", "--variant", "aug", "--data", str(data),
        "--runs-dir", str(runs_dir), "--epochs", "1", "--batch-size", "16", "--threads", "1",
    )  # fmt: skip
    folder = runs_dir / "cnn-manual--aug"
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["num_outputs"] == 2 * get_scheme(scheme).num_keypoints
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("test_nme", "test_fr", "test_auc"):
        assert metrics[key] is not None and 0 <= metrics[key] <= 1.5, key
    assert len(metrics["test_ced"]) == 101

    _invoke("export", str(folder), "--exporter", "torchscript")
    _invoke(
        "bench", str(folder), "--backend", "onnxruntime", "--repeats", "1",
        "--latency-samples", "2", "--threads", "1", "--results", str(results / "bench.jsonl"),
    )  # fmt: skip
    (record,) = read_records(results / "bench.jsonl")
    assert record.error is None
    assert record.scores.test_auc == pytest.approx(metrics["test_auc"], abs=1e-3)
    _invoke(
        "report", "--runs-dir", str(runs_dir), "--bench-file", str(results / "bench.jsonl"),
        "--out", str(results),
    )  # fmt: skip
    table = pd.read_csv(results / "landmark_metrics.csv")
    row = table[table.variant == "aug"].iloc[0]
    assert row.scheme == scheme
    assert row.nme == pytest.approx(metrics["test_nme"], rel=1e-5)
    assert row.fr == pytest.approx(metrics["test_fr"], rel=1e-5, abs=1e-9)
    assert (results / "figures" / "ced.png").is_file()
    assert (results / "figures" / "predictions.png").is_file()
