"""Issue 14, readers and storage: misleading messages (item 8), stale temporary folders, a
missing SQLite folder and an unwritable bench results file (item 9), and the fuzzing of the
bench baseline and preset JSON readers (the other readers are fuzzed in test_kaggle.py and
test_prepare_sources.py, with the same profile: tests/hypothesis_profiles.py).

Each test below fails on the code before issue 14 (HEAD) and names what it used to do.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis_profiles import FUZZ, JSON_VALUES
from PIL import Image
from typer.testing import CliRunner

from fkdbench.bench import sweep
from fkdbench.bench.gate import check_baseline, load_baseline
from fkdbench.bench.options import BenchOptions
from fkdbench.bench.records import BenchError
from fkdbench.cli import app
from fkdbench.data import kaggle
from fkdbench.data.landmarks import read_landmark_csv
from fkdbench.data.prepare import OWNER_FILE, PrepareOptions, prepare
from fkdbench.data.splits import DataError
from fkdbench.presets import PresetError, load_preset
from fkdbench.tune.options import TuneError
from fkdbench.tune.storage import open_storage

BOM = "\ufeff".encode()


def _kaggle_faces() -> tuple[np.ndarray, np.ndarray]:
    images = np.arange(2 * 96 * 96, dtype=np.int64).reshape(2, 96, 96) % 256
    keypoints = np.full((2, 15, 2), 40.0, dtype=np.float32)
    keypoints[:, :, 0] += np.arange(15)
    return images.astype(np.uint8), keypoints


# -- item 8: messages that mislead ----------------------------------------------------------
def test_kaggle_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """HEAD: "training.csv: line 1: missing column(s) left_eye_center_x"."""
    images, keypoints = _kaggle_faces()
    kaggle.write_training_csv(tmp_path / kaggle.TRAINING_NAME, images, keypoints)
    path = tmp_path / kaggle.TRAINING_NAME
    path.write_bytes(BOM + path.read_bytes())
    table = kaggle.read_training_csv(tmp_path)
    np.testing.assert_array_equal(table.images, images)
    np.testing.assert_array_equal(table.keypoints, keypoints)


def test_kaggle_zip_member_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    import zipfile

    images, keypoints = _kaggle_faces()
    kaggle.write_training_csv(tmp_path / "plain.csv", images, keypoints)
    with zipfile.ZipFile(tmp_path / "training.zip", "w") as archive:
        archive.writestr(kaggle.TRAINING_NAME, BOM + (tmp_path / "plain.csv").read_bytes())
    (tmp_path / "plain.csv").unlink()
    assert len(kaggle.read_training_csv(tmp_path / "training.zip").images) == 2


def test_landmark_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """HEAD: the mark stuck to the first image name: "image \\ufeffa.png not found"."""
    Image.fromarray(np.full((40, 48), 128, dtype=np.uint8)).save(tmp_path / "a.png")
    cells = ["a.png"] + [f"{10 + i % 20}" for i in range(30)]
    path = tmp_path / "landmarks.csv"
    path.write_bytes(BOM + (",".join(cells) + "\n").encode())
    faces = read_landmark_csv(path, tmp_path, "kaggle15", size=16)
    assert faces.names == ["a.png"] and len(faces) == 1


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("training.csv", b"not,a,zip\n", "is a file, not a folder or a zip"),
        ("training.zip", b"not a zip at all", "not a readable zip file"),
    ],
)
def test_kaggle_path_naming_a_file_says_what_it_is(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    """HEAD: "<file>: no training.csv or training.zip found", for a file that is there."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        kaggle.read_training_csv(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)
    result = CliRunner().invoke(
        app,
        ["prepare", "--source", "kaggle", "--path", str(path), "--data-root", str(tmp_path / "d")],
    )
    assert result.exit_code == 1, result.output
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "d" / "kaggle").exists()


def test_sqlite_folder_that_is_a_file_names_storage(tmp_path: Path) -> None:
    """HEAD: a raw "[Errno 17] File exists" (FileExistsError), no --storage in it."""
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(TuneError) as caught:
        open_storage(f"sqlite:///{tmp_path}/taken/study.db")
    message = str(caught.value)
    assert message.startswith("--storage ") and "is a file" in message and "\n" not in message


# -- item 9: minor -----------------------------------------------------------------------------
def test_sqlite_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    """HEAD: sqlite:////nonexistent/dir/x.db made the folders and a study in them."""
    with pytest.raises(TuneError) as caught:
        open_storage(f"sqlite:///{tmp_path}/nonexistent/dir/x.db")
    assert "--storage" in str(caught.value) and "does not exist" in str(caught.value)
    assert not (tmp_path / "nonexistent").exists()


def test_sqlite_default_tune_folder_is_still_created(tmp_path: Path) -> None:
    open_storage(f"sqlite:///{tmp_path}/runs/tune/study.db")
    assert (tmp_path / "runs" / "tune").is_dir()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_prepare_removes_temporary_folders_of_dead_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HEAD: `kill -9` during prepare left data/.NAME.*.tmp for ever."""
    import socket

    root = tmp_path / "data"
    root.mkdir()
    dead = root / ".synthetic.dead1234.tmp"  # claimed by a process that is gone
    dead.mkdir()
    owner = {"pid": _dead_pid(), "host": socket.gethostname()}
    (dead / OWNER_FILE).write_text(json.dumps(owner))
    empty = root / ".synthetic.old5678.tmp"  # unclaimed (older fkdbench) and long untouched
    empty.mkdir()
    old = time.time() - 3600
    os.utime(empty, (old, old))
    # Claimed by a running process: this one's parent. (This process's own pid on a
    # leftover folder means a dead process that had the pid before, as in a restarted
    # container: io.ProcessOwner.alive.)
    alive = root / ".synthetic.live9012.tmp"
    alive.mkdir()
    (alive / OWNER_FILE).write_text(json.dumps({"pid": os.getppid(), "host": owner["host"]}))
    options = PrepareOptions(data_root=root, n_train=20, n_test=0, image_size=32, workers=1)
    prepare(options)
    said = " ".join(capsys.readouterr().err.split())
    assert not dead.exists() and not empty.exists()
    assert alive.is_dir() and "left alone" in said and "no longer running" in said
    assert not (root / "synthetic" / OWNER_FILE).exists()  # the data set has only its files


def test_prepare_killed_with_sigkill_leaves_nothing_a_rerun_keeps(tmp_path: Path) -> None:
    """The real thing: a prepare killed mid-way, then a second prepare."""
    root = tmp_path / "data"
    script = (
        "import sys, time\n"
        "from fkdbench.data import prepare as p\n"
        "def hang(*args):\n"
        "    print('staging', flush=True); time.sleep(60)\n"
        "p.SOURCE_READERS['synthetic'] = p.replace(p.SOURCE_READERS['synthetic'], read=hang)\n"
        f"p.prepare(p.PrepareOptions(data_root={str(root)!r}, n_train=20, n_test=0, quiet=True))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "staging"
    child.kill()
    child.wait()
    assert list(root.glob(".synthetic.*.tmp")), "the kill left its temporary folder"
    prepare(PrepareOptions(data_root=root, n_train=20, n_test=0, image_size=32, quiet=True))
    assert not list(root.glob(".synthetic.*.tmp"))


def test_bench_checks_the_results_file_before_timing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEAD: timed everything (calibration first), then lost the results at the write."""
    (tmp_path / "results").write_text("a file where the results folder should be")
    results = tmp_path / "results" / "bench.jsonl"

    def timing_started(*args: object, **kwargs: object) -> None:
        raise AssertionError("timing started before the results file was checked")

    monkeypatch.setattr(sweep, "measure_machine_peak", timing_started)
    with pytest.raises(BenchError) as caught:
        sweep.bench([tmp_path / "run"], BenchOptions(results=results, quiet=True))
    message = str(caught.value)
    assert str(results) in message and "nothing was timed" in message and "\n" not in message


def test_bench_refuses_a_read_only_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EROFS, emulated (the tests may run as root, who writes into read-only folders)."""

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(sweep.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(sweep, "measure_machine_peak", lambda *a, **k: pytest.fail("timed"))
    results = tmp_path / "bench.jsonl"
    with pytest.raises(BenchError) as caught:
        sweep.bench([tmp_path / "run"], BenchOptions(results=results, quiet=True))
    assert str(caught.value) == (
        f"{results}: cannot write the results file (Read-only file system); nothing was timed"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_bench_refuses_a_read_only_results_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    folder.chmod(0o555)
    monkeypatch.setattr(sweep, "measure_machine_peak", lambda *a, **k: pytest.fail("timed"))
    try:
        with pytest.raises(BenchError, match="cannot write the results file"):
            sweep.bench([tmp_path / "run"], BenchOptions(results=folder / "b.jsonl", quiet=True))
    finally:
        folder.chmod(0o755)


# -- fuzzing the JSON readers: parsed data or one line naming the file ------------------------


def _one_line(read, path: Path, error: type[Exception]):
    try:
        return read()
    except error as problem:
        message = str(problem)
        assert str(path) in message and "\n" not in message, message
        return None


def _write(path: Path, document: object, raw: bytes | None) -> None:
    path.write_bytes(raw if raw is not None else json.dumps(document).encode())


_ENTRY_VALUES = st.one_of(st.floats(0.001, 100.0), JSON_VALUES)


@st.composite
def _baselines(draw) -> object:
    """Mostly baseline-shaped documents with damaged parts, sometimes anything."""
    if draw(st.integers(0, 7)) == 0:
        return draw(JSON_VALUES)
    entries = {}
    for key in draw(st.lists(st.text(max_size=10), max_size=3)):
        entry = {
            "normalised_time": draw(_ENTRY_VALUES),
            "seconds_per_100_images": draw(_ENTRY_VALUES),
        }
        entries[key] = entry if draw(st.integers(0, 5)) else draw(JSON_VALUES)
    document: dict = {"format_version": 1, "entries": entries}
    if draw(st.integers(0, 7)) == 0:
        document["entries"] = draw(JSON_VALUES)
    return document


@FUZZ
@given(document=_baselines(), raw=st.one_of(st.none(), st.binary(max_size=60)))
# HEAD: loaded, then TypeError/KeyError inside the gate's comparison.
@example(document={"entries": {"k": None}}, raw=None)
@example(document={"entries": {"k": {"normalised_time": "fast"}}}, raw=None)
def test_fuzzed_baseline_json(document: object, raw: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "baseline.json"
        _write(path, document, raw)
        baseline = _one_line(lambda: load_baseline(path), path, BenchError)
    event("read" if baseline is not None else "one-line error")
    if baseline is not None:
        check_baseline([], baseline, 0.25)
        for entry in baseline["entries"].values():
            assert float(entry["normalised_time"]) > 0


_FIELD_VALUES = st.one_of(st.integers(-3, 100), st.floats(), st.text(max_size=6), JSON_VALUES)
_PRESET_KEYS = ["epochs", "batch_size", "lr", "max_minutes", "patience", "seed", "bogus", "note"]


@st.composite
def _presets(draw) -> object:
    """A valid small preset with a few keys or values damaged, sometimes anything."""
    if draw(st.integers(0, 7)) == 0:
        return draw(JSON_VALUES)
    run: dict = {"arch": draw(st.sampled_from(["cnn-manual", "nope", 3])), "epochs": 1}
    if draw(st.booleans()):
        run["variants"] = draw(st.one_of(st.just(["none", "masked"]), JSON_VALUES))
    else:
        run["variant"] = draw(st.one_of(st.just("none"), JSON_VALUES))
    for key in draw(st.lists(st.sampled_from(_PRESET_KEYS), max_size=2)):
        run[key] = draw(_FIELD_VALUES)
    document: dict = {"name": "fuzz", "defaults": {"epochs": 1}, "runs": [run]}
    for key in draw(st.lists(st.sampled_from(["defaults", "runs", "bench", "other"]), max_size=1)):
        document[key] = draw(JSON_VALUES)
    return document


@FUZZ
@given(document=_presets(), raw=st.one_of(st.none(), st.binary(max_size=60)))
# HEAD: TypeError ('int' object is not iterable; unhashable type: 'list'), and a text
# number of epochs accepted, to fail only when training started.
@example(document={"runs": [{"arch": "cnn-manual", "variants": 7}]}, raw=None)
@example(document={"runs": [{"arch": "cnn-manual", "variant": [1]}]}, raw=None)
@example(document={"runs": [{"arch": "cnn-manual", "variant": "none", "epochs": "x"}]}, raw=None)
def test_fuzzed_preset_json(document: object, raw: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preset.json"
        _write(path, document, raw)
        preset = _one_line(lambda: load_preset(path), path, PresetError)
        event("read" if preset is not None else "one-line error")
        if preset is not None:
            configs = preset.configs(Path(folder), Path(folder))
            assert configs and all(isinstance(config.epochs, int) for config in configs)


def test_fuzz_profile_meets_the_ci_goal() -> None:
    """CI runs 2,000 inputs per reader (FKDBENCH_HYPOTHESIS_PROFILE=ci in .ci/run)."""
    from hypothesis_profiles import PROFILE, PROFILE_EXAMPLES

    assert PROFILE_EXAMPLES["ci"] >= 2000 and FUZZ.max_examples == PROFILE_EXAMPLES[PROFILE]
    ci_script = Path(__file__).resolve().parents[1] / ".ci" / "run"
    assert "FKDBENCH_HYPOTHESIS_PROFILE=ci" in ci_script.read_text()
