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
