"""--threads is 1 to the usable cores for every command that takes it, at the command line
and in the library functions behind it (a timing with 999 threads once came out 450x too
slow; 0 means nothing to torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from fkdbench.cli import app
from fkdbench.config import TrainConfig
from fkdbench.onnxrt import open_session
from fkdbench.predict import load_predictor
from fkdbench.provenance import ThreadsError, available_cores, check_threads
from fkdbench.train import train_run
from fkdbench.tune import TuneOptions

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands
TOO_MANY = available_cores() + 1


def test_every_command_with_threads_is_covered_here() -> None:
    with_threads = {
        name
        for name, command in COMMANDS.items()
        if any("--threads" in parameter.opts for parameter in command.params)
    }
    assert with_threads == {"bench", "train", "predict", "pretrain", "tune"}


@pytest.mark.parametrize("command", ["bench", "train", "predict", "pretrain", "tune"])
@pytest.mark.parametrize("threads", [0, -1, TOO_MANY, 999])
def test_the_command_line_refuses_threads_outside_the_usable_cores(
    command: str, threads: int
) -> None:
    # pretrain's ARCH argument comes first: give one, so the option is what is refused.
    arguments = [command, "cnn-manual"] if command == "pretrain" else [command]
    result = runner.invoke(app, [*arguments, "--threads", str(threads)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--threads'" in result.output


@pytest.mark.parametrize("threads", [None, 1, available_cores()])
def test_check_threads_keeps_a_count_within_the_cores(threads: int | None) -> None:
    assert check_threads(threads) == threads


@pytest.mark.parametrize("threads", [0, -3, TOO_MANY, 999, True, 1.5])
def test_check_threads_names_the_bound(threads: object) -> None:
    with pytest.raises(ThreadsError, match=rf"between 1 and {available_cores()} "):
        check_threads(threads)  # type: ignore[arg-type]


def test_tune_options_refuse_too_many_threads(tmp_path: Path) -> None:
    with pytest.raises(ThreadsError):
        TuneOptions(data_dir=tmp_path, runs_dir=tmp_path, threads=TOO_MANY)


def test_an_onnx_session_refuses_too_many_threads_before_reading_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ThreadsError):
        open_session(tmp_path / "missing.onnx", threads=TOO_MANY)


def test_predict_refuses_zero_threads(tmp_path: Path) -> None:
    with pytest.raises(ThreadsError):
        load_predictor(tmp_path / "missing.onnx", threads=0)


def test_a_training_run_refuses_too_many_threads_before_making_its_folder(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    config = TrainConfig(
        arch="cnn-manual", data_dir=tiny_dataset, runs_dir=tmp_path, num_threads=TOO_MANY
    )
    with pytest.raises(ThreadsError):
        train_run(config)
    assert not any(tmp_path.iterdir())


def test_a_pretraining_refuses_too_many_threads_before_making_its_cache(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    from fkdbench.pretrain import PretrainOptions, pretrain

    options = PretrainOptions(data_dir=tiny_dataset, runs_dir=tmp_path, num_threads=TOO_MANY)
    with pytest.raises(ThreadsError):
        pretrain(options)
    assert list(tmp_path.iterdir()) == []
