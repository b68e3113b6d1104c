"""Faults of the run folder (issue 14, items 2, 3 and 6's train part; atomic writes): one
process owns a run folder, a stale lock is taken over, a finished run is skipped only
with the same settings and data, and a full or read-only disk is one line naming the file.

Every test here failed on the code before the fix: config.json was rewritten before a
resume state's settings were checked, a finished run was skipped whatever the settings,
nothing stopped a second process, and a full disk gave torch's traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_train import SMALL_ARCH, tiny_config, write_blob_data
from typer.testing import CliRunner

from fkdbench import io, runs
from fkdbench.cli import app
from fkdbench.train import RunError, train_matrix, train_run

RUN = f"{SMALL_ARCH}--none"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_data(tmp_path_factory.mktemp("data"), {"train": 16, "val": 8, "test": 8})


@pytest.fixture(scope="module")
def finished(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with one finished one-epoch run; copy it before changing it."""
    runs_dir = tmp_path_factory.mktemp("runs")
    assert train_run(tiny_config(data_dir, runs_dir, epochs=1)).status == "finished"
    return runs_dir


@pytest.fixture
def runs_copy(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs"
    shutil.copytree(finished, target)
    return target


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def interrupt(row: dict) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# Item 2: nothing is written before the checks pass.


def test_a_refused_resume_leaves_config_json_as_it_was(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_config(data_dir, tmp_path, epochs=3), on_epoch_end=interrupt)
    folder = tmp_path / RUN
    before = folder_bytes(folder)

    with pytest.raises(RunError, match=r"lr 0\.001 -> 0\.005"):
        train_run(tiny_config(data_dir, tmp_path, epochs=3, lr=5e-3))
    assert folder_bytes(folder) == before  # config.json included: it still matches last.pt


def test_a_refused_force_with_bad_data_keeps_the_finished_run(
    runs_copy: Path, tmp_path: Path
) -> None:
    folder = runs_copy / RUN
    before = folder_bytes(folder)
    missing = tmp_path / "no-data"
    with pytest.raises(ValueError, match="manifest"):
        train_run(tiny_config(missing, runs_copy, epochs=1, force=True))
    assert folder_bytes(folder) == before and runs.is_finished(folder)


# --------------------------------------------------------------------------------------------
# The lock: one process owns a run folder.


@pytest.fixture
def lock_holder(runs_copy: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the run's lock (through runs.acquire_run_lock) until killed."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from fkdbench import runs
        runs.acquire_run_lock(Path({str(runs_copy / RUN)!r}), "holder")
        print("held", flush=True)
        time.sleep(120)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_is_refused_naming_the_run_pid_and_host(
    runs_copy: Path, data_dir: Path, lock_holder: subprocess.Popen
) -> None:
    folder = runs_copy / RUN
    before = folder_bytes(folder)
    # Even a forced rerun: the other process owns the folder.
    with pytest.raises(runs.RunBusy) as refused:
        train_run(tiny_config(data_dir, runs_copy, epochs=2, force=True))
    message = str(refused.value)
    assert RUN in message and f"pid {lock_holder.pid}" in message
    assert socket.gethostname() in message and "\n" not in message
    assert folder_bytes(folder) == before  # the holder's lock and the finished run intact


def test_the_train_command_says_who_holds_the_run_in_one_line(
    runs_copy: Path, data_dir: Path, lock_holder: subprocess.Popen
) -> None:
    result = CliRunner().invoke(
        app,
        ["train", SMALL_ARCH, "--data", str(data_dir), "--runs-dir", str(runs_copy)]
        + ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--threads", "1", "--force"],
    )
    assert result.exit_code == 1, result.output
    assert f"pid {lock_holder.pid}" in result.output and "Traceback" not in result.output


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / RUN
    folder.mkdir()
    pid = dead_pid()
    (folder / runs.LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))

    assert train_run(tiny_config(data_dir, tmp_path, epochs=1)).status == "finished"
    said = " ".join(capsys.readouterr().err.split())
    assert f"took over the lock of pid {pid}" in said
    assert not (folder / runs.LOCK_FILE).exists()


def test_a_lock_with_this_process_pid_is_a_leftover_of_an_earlier_one(tmp_path: Path) -> None:
    # A restarted container reuses pids: the dead owner may have had ours.
    folder = tmp_path / RUN
    folder.mkdir()
    (folder / runs.LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": "x"}))
    with pytest.raises(runs.RunBusy):  # another host: never taken over
        runs.acquire_run_lock(folder, RUN)
    mine = {"pid": os.getpid(), "host": socket.gethostname()}
    (folder / runs.LOCK_FILE).write_text(json.dumps(mine))
    assert runs.acquire_run_lock(folder, RUN) == runs.LockOwner(os.getpid(), mine["host"])
    runs.release_run_lock(folder)
    assert not (folder / runs.LOCK_FILE).exists()


def test_a_lock_on_another_host_is_not_taken_over(runs_copy: Path, data_dir: Path) -> None:
    lock = runs_copy / RUN / runs.LOCK_FILE
    lock.write_text(json.dumps({"pid": dead_pid(), "host": "elsewhere.example"}))
    with pytest.raises(runs.RunBusy, match="on elsewhere.example"):
        train_run(tiny_config(data_dir, runs_copy, epochs=1))
    assert lock.is_file()


def test_the_lock_goes_on_success_error_and_ctrl_c(data_dir: Path, tmp_path: Path) -> None:
    lock = tmp_path / RUN / runs.LOCK_FILE
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_config(data_dir, tmp_path, epochs=2), on_epoch_end=interrupt)
    assert (tmp_path / RUN / runs.RESUME_FILE).is_file() and not lock.exists()
    with pytest.raises(RunError):
        train_run(tiny_config(data_dir, tmp_path, epochs=2, seed=5))
    assert not lock.exists()
    assert train_run(tiny_config(data_dir, tmp_path, epochs=2)).status == "finished"
    assert not lock.exists()


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="manifest"):
        train_run(tiny_config(tmp_path / "no-data", tmp_path / "runs"))
    assert not (tmp_path / "runs" / RUN).exists()


# --------------------------------------------------------------------------------------------
# Item 3: a finished run is skipped only with the same settings and data.


@pytest.mark.parametrize(
    ("changes", "difference"),
    [({"epochs": 3}, "epochs 1 -> 3"), ({"lr": 5e-3}, "lr 0.001 -> 0.005")],
)
def test_a_finished_run_with_other_settings_is_refused_naming_the_first_difference(
    runs_copy: Path, data_dir: Path, changes: dict, difference: str
) -> None:
    folder = runs_copy / RUN
    before = folder_bytes(folder)
    with pytest.raises(RunError) as refused:
        train_run(tiny_config(data_dir, runs_copy, **{"epochs": 1, **changes}))
    message = str(refused.value)
    assert RUN in message and difference in message
    assert "--force" in message and "--runs-dir" in message
    assert folder_bytes(folder) == before


def test_a_finished_run_on_other_data_is_refused(
    runs_copy: Path, tmp_path: Path, data_dir: Path
) -> None:
    other = write_blob_data(tmp_path / "other", {"train": 16, "val": 8, "test": 8}, seed=1)
    (other / "manifest.json").write_text(
        json.dumps({"scheme": "kaggle15", "image_size": 48, "seed": 1, "source": "test-blobs"})
    )
    with pytest.raises(RunError, match=r"data \(manifest.json sha256\)"):
        train_run(tiny_config(other, runs_copy, epochs=1))
    # The same data under another folder name is the same run: skipped.
    same = tmp_path / "same"
    shutil.copytree(data_dir, same)
    assert train_run(tiny_config(same, runs_copy, epochs=1)).status == "skipped"


def test_a_finished_run_with_the_same_settings_is_still_skipped(
    runs_copy: Path, data_dir: Path
) -> None:
    before = folder_bytes(runs_copy / RUN)
    # Settings that do not change what a run computes (threads, ...) may differ.
    # So may settings the run never reads: cnn-manual has no autoencoder phase, and only the
    # aug variant makes augmented copies.
    config = tiny_config(
        data_dir, runs_copy, epochs=1, num_threads=2, ae_pretrain_epochs=7, augment_copies=5
    )
    skipped = train_run(config)
    assert skipped.status == "skipped"
    assert folder_bytes(runs_copy / RUN) == before


def test_in_a_matrix_a_refused_run_is_a_failed_row_and_the_matrix_goes_on(
    runs_copy: Path, data_dir: Path, tmp_path: Path
) -> None:
    preset = tmp_path / "two.json"
    preset.write_text(
        json.dumps(
            {
                "name": "two",
                "defaults": {"epochs": 2, "batch_size": 8, "device": "cpu"},
                "runs": [{"arch": SMALL_ARCH, "variants": ["none", "ffill"]}],
            }
        )
    )
    results = train_matrix(preset, data_dir, runs_copy, quiet=True, num_threads=1)
    assert [result.status for result in results] == ["failed", "finished"]
    assert "epochs 1 -> 2" in results[0].error and "--force" in results[0].error


# --------------------------------------------------------------------------------------------
# Item 6 (train) and atomic writes: a full or read-only disk is one line naming the file.

TORCH_FULL_DISK = (
    "[enforce fail at inline_container.cc:595] . unexpected pos 128 vs 64\n"
    "frame #0: c10::ThrowEnforceNotMet(...)"
)


def test_train_on_a_full_disk_is_one_line_naming_the_file(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(payload: object, path: object) -> None:
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError(TORCH_FULL_DISK)

    monkeypatch.setattr(torch, "save", full_disk)
    result = CliRunner().invoke(
        app,
        ["train", SMALL_ARCH, "--data", str(data_dir), "--runs-dir", str(tmp_path)]
        + ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--threads", "1"],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = " ".join(result.output.split())
    assert str(tmp_path / RUN) in line and "nothing was lost" in line
    assert not list((tmp_path / RUN).glob(".*.tmp"))  # the partial file is gone
    assert not (tmp_path / RUN / runs.LOCK_FILE).exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failed_rename_keeps_the_old_file_and_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    target = tmp_path / "metrics.json"
    io.write_json_atomic(target, {"old": True})

    def refuse(source: object, destination: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(io.WriteError) as failed:
        io.write_json_atomic(target, {"new": True})
    assert isinstance(failed.value, OSError) and failed.value.errno == code
    assert str(target) in str(failed.value) and os.strerror(code) in str(failed.value)
    assert "nothing was lost" in str(failed.value) and "\n" not in str(failed.value)
    assert json.loads(target.read_text()) == {"old": True}
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / runs.MODEL_FILE
    runs.save_checkpoint(target, {"weight": torch.ones(2)})

    def full_disk(payload: object, path: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(io.WriteError, match=str(target)):
        runs.save_checkpoint(target, {"weight": torch.zeros(2)})
    assert torch.equal(runs.load_checkpoint(target)["weight"], torch.ones(2))


def test_other_errors_while_writing_pass_through_unchanged(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), io.atomic_path(tmp_path / "x.json"):
        raise ZeroDivisionError
    with pytest.raises(RuntimeError, match="not a write"), io.atomic_path(tmp_path / "x.json"):
        raise RuntimeError("not a write")
    assert not list(tmp_path.iterdir())


def test_a_full_disk_while_swapping_in_a_folder_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "data"
    with io.atomic_directory(target) as staging:
        (staging / "manifest.json").write_text("old")

    def full_disk(source: object, destination: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    refused = pytest.raises(io.WriteError, match=f"{target}: cannot write.*nothing was lost")
    with refused, io.atomic_directory(target) as staging:
        (staging / "manifest.json").write_text("new")
    assert (target / "manifest.json").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["data"]


def test_a_read_only_runs_folder_is_one_line_naming_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def read_only(path: object, *args: object, **kwargs: object) -> int:
        if Path(str(path)).name == runs.LOCK_FILE:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    lock = tmp_path / RUN / runs.LOCK_FILE
    with pytest.raises(io.WriteError, match=f"{lock}: cannot write: Read-only file system"):
        runs.acquire_run_lock(tmp_path / RUN, RUN)
