"""The command line: help everywhere, choices from the registries, defaults from the
library's dataclasses, one-line errors, non-zero exits, and the whole flow end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from fkdbench import __version__
from fkdbench.bench import BACKENDS, CORE_BACKENDS, BenchOptions, read_records
from fkdbench.cli import app
from fkdbench.config import TrainConfig
from fkdbench.data.prepare import SOURCES, PrepareOptions
from fkdbench.data.schemes import SCHEMES
from fkdbench.data.variants import VARIANTS
from fkdbench.report import SECTIONS
from fkdbench.tune import OBJECTIVES, TuneOptions

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands


def _option(command: str, name: str) -> Any:
    """The parameter of ``--name`` in ``command`` (a Typer option)."""
    for parameter in COMMANDS[command].params:
        if f"--{name}" in parameter.opts:
            return parameter
    raise AssertionError(f"{command} has no --{name}")


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_every_step_of_the_flow_is_a_command() -> None:
    assert {"prepare", "train", "export", "bench", "report", "reproduce"} <= set(COMMANDS)
    assert {"models", "predict", "tune"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("command", "option", "registry"),
    [
        ("prepare", "source", SOURCES),
        ("prepare", "scheme", tuple(SCHEMES)),
        ("train", "variant", VARIANTS),
        ("tune", "variant", VARIANTS),
        ("tune", "objective", tuple(OBJECTIVES)),
        ("bench", "backend", BACKENDS),
    ],
)
def test_choices_are_the_registry(command: str, option: str, registry: tuple) -> None:
    """A variant, backend or source added to its registry is a CLI choice, nothing else:
    a wrong value is a usage error listing exactly the registry, in its order."""
    result = runner.invoke(app, [command, f"--{option}", "bogus"])
    assert result.exit_code == 2
    listed = result.output.split("is not one of", 1)[1]
    assert tuple(re.findall(r"'([^']+)'", listed)) == tuple(registry)


@pytest.mark.parametrize(
    ("command", "option", "options_class", "field"),
    [
        ("prepare", "n-train", PrepareOptions, "n_train"),
        ("prepare", "margin", PrepareOptions, "margin"),
        ("prepare", "size", PrepareOptions, "image_size"),
        ("train", "data", TrainConfig, "data_dir"),
        ("train", "weights-mode", TrainConfig, "weights_mode"),
        ("bench", "repeats", BenchOptions, "repeats"),
        ("bench", "latency-samples", BenchOptions, "latency_samples"),
        ("bench", "batch-size", BenchOptions, "batch_size"),
        ("tune", "epochs", TuneOptions, "epochs_per_trial"),
        ("tune", "max-params", TuneOptions, "max_params"),
    ],
)
def test_defaults_are_the_dataclasses(
    command: str, option: str, options_class: type, field: str
) -> None:
    default = _option(command, option).default
    default = getattr(default, "value", default)  # an Enum choice
    assert default == getattr(options_class(), field)


def test_shared_options_say_the_same_everywhere() -> None:
    """--threads, --force and --quiet are declared once: one help text wherever they appear."""
    for name in ("threads", "force", "quiet"):
        helps = {
            parameter.help
            for command in COMMANDS.values()
            for parameter in command.params
            if f"--{name}" in parameter.opts
        }
        assert len(helps) == 1, (name, helps)


def test_unknown_choice_is_a_usage_error_naming_the_choices() -> None:
    result = runner.invoke(app, ["train", "cnn-manual", "--variant", "bogus"])
    assert result.exit_code == 2
    assert "bogus" in result.output
    for variant in VARIANTS:
        assert variant in result.output


def test_train_needs_arch_or_all_but_not_both(tiny_dataset: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny_dataset), "--runs-dir", str(tmp_path), "--quiet"]
    neither = runner.invoke(app, ["train", *common])
    assert neither.exit_code == 1
    assert "name an architecture" in neither.output
    both = runner.invoke(app, ["train", "cnn-manual", "--all", *common])
    assert both.exit_code == 1
    assert "not both" in both.output
    assert not any(tmp_path.iterdir())


def test_predict_needs_images_or_submission(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path / "model.onnx")])
    assert result.exit_code == 1
    assert "name image files or folders" in result.output


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
    records = [record.flat() for record in read_records(results / "bench.jsonl")]
    assert not any(record["error"] for record in records)
    assert sorted(r["backend"] for r in records) == sorted(CORE_BACKENDS * 2)
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
