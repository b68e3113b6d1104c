"""The command line: help everywhere, version, one-line errors, non-zero exits."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fkdbench import __version__
from fkdbench.cli import app

runner = CliRunner()


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_prepare_small_synthetic(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "prepare",
            "--data-root",
            str(tmp_path),
            "--n-train",
            "40",
            "--n-test",
            "4",
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mean-shape test RMSE" in result.output
    assert (tmp_path / "synthetic" / "train.npz").is_file()


def test_prepare_bad_file_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "files"
    source.mkdir()
    (source / "training.csv").write_text("")
    result = runner.invoke(
        app,
        [
            "prepare",
            "--source",
            "kaggle",
            "--path",
            str(source),
            "--data-root",
            str(tmp_path / "data"),
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    assert "training.csv: the file is empty" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data" / "kaggle").exists()


def test_prepare_kaggle_needs_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", "--source", "kaggle", "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "--path" in result.output


TINY_PRESET = {
    "name": "tiny",
    "description": "two short runs for the end-to-end test",
    "defaults": {
        "epochs": 1,
        "batch_size": 8,
        "lr": 0.001,
        "patience": None,
        "max_train_rows": 32,
        "augment_copies": 1,
        "ae_pretrain_epochs": 1,
    },
    "runs": [{"arch": "cnn-manual", "variants": ["none", "masked"]}],
    # Few timings, and no untrained architectures: this tests the flow, not the machine.
    "bench": {"repeats": 1, "latency_samples": 3, "time_untrained": False},
}


def _write_preset(path: Path) -> Path:
    import json

    path.write_text(json.dumps(TINY_PRESET))
    return path


def test_train_one_run_then_skip(tiny_dataset: Path, tmp_path: Path) -> None:
    arguments = [
        "train",
        "cnn-manual",
        "--variant",
        "none",
        "--data",
        str(tiny_dataset),
        "--runs-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]
    first = runner.invoke(app, arguments)
    assert first.exit_code == 0, first.output
    assert "cnn-manual--none: finished; test RMSE" in first.output
    assert (tmp_path / "cnn-manual--none" / "metrics.json").is_file()
    again = runner.invoke(app, arguments)
    assert "cnn-manual--none: skipped" in again.output


def test_train_unknown_arch_is_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "no-such-net",
            "--data",
            str(tiny_dataset),
            "--runs-dir",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    assert "unknown architecture 'no-such-net'; known:" in result.output
    assert "Traceback" not in result.output


def test_train_missing_data_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--all",
            "--data",
            str(tmp_path / "nothing"),
            "--runs-dir",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    assert "manifest.json: no manifest" in result.output


@pytest.mark.slow
def test_reproduce_end_to_end(tmp_path: Path) -> None:
    """The whole flow as a user runs it, on tiny data: prepare, train, export, bench,
    report; then the report's numbers are checked against the records they came from."""
    import json

    import pandas as pd

    from fkdbench.bench import BACKENDS
    from fkdbench.report import SECTIONS

    preset = _write_preset(tmp_path / "tiny.json")
    results = tmp_path / "results"
    arguments = [
        "reproduce",
        "--preset",
        str(preset),
        "--data-root",
        str(tmp_path / "data"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--results-dir",
        str(results),
        "--n-train",
        "60",
        "--n-test",
        "6",
        "--quiet",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "2 runs, 6 bench records" in result.output
    for run in ("cnn-manual--none", "cnn-manual--masked"):
        folder = tmp_path / "runs" / run
        for name in ("metrics.json", "model.onnx", "model.int8.onnx", "export.json"):
            assert (folder / name).is_file(), name
        assert f"{run}: finished" in result.output

    report = (results / "REPORT.md").read_text()
    for section in SECTIONS:
        assert f"## {section}\n" in report
    for figure in (
        "params_vs_size",
        "rmse_by_variant",
        "training_curves",
        "predictions",
        "accuracy_vs_speed",
    ):
        path = results / "figures" / f"{figure}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        assert f"figures/{figure}.png" in report

    # The tables hold exactly the recorded numbers.
    accuracy = pd.read_csv(results / "accuracy_rmse.csv", index_col="model")
    for run, variant in (("cnn-manual--none", "none"), ("cnn-manual--masked", "masked")):
        metrics = json.loads((tmp_path / "runs" / run / "metrics.json").read_text())
        assert accuracy.loc["cnn-manual", variant] == pytest.approx(metrics["test_rmse"], rel=1e-5)
        assert f"{metrics['test_rmse']:.3f}" in report
    records = [json.loads(line) for line in (results / "bench.jsonl").read_text().splitlines()]
    assert sorted(r["backend"] for r in records) == sorted(BACKENDS * 2)
    timing = pd.read_csv(results / "timing.csv")
    for record in records:
        row = timing[
            (timing.run_name == record["run_name"]) & (timing.backend == record["backend"])
        ]
        assert row.seconds_per_100.item() == pytest.approx(
            record["seconds_per_100_images"], rel=1e-5
        )
        assert f"{record['seconds_per_100_images']:.4f}" in report

    # Resumable: a second call reuses data, runs, exports and timings; only the report is
    # rewritten, and identically.
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0 and again.output.count(": skipped") == 2
    assert "2 runs, 0 bench records" in again.output
    assert (results / "REPORT.md").read_text() == report
    assert len((results / "bench.jsonl").read_text().splitlines()) == 6

    # The report rebuilds from its records alone (what results/ commits): same bytes.
    rebuilt = runner.invoke(
        app,
        ["report", "--from-records", "--out", str(results), "--bench-file",
         str(results / "bench.jsonl"), "--quiet"],
    )  # fmt: skip
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (results / "REPORT.md").read_text() == report
