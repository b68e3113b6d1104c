"""Tests for fkdbench.io: atomic writes leave nothing half written, the JSON reader's
one-line errors, hashing, JSON-lines appends, ``plain``. The reader is fuzzed with
Hypothesis."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fkdbench import io
from fkdbench.io import (
    JsonlTail,
    append_jsonl_atomic,
    atomic_directory,
    atomic_path,
    plain,
    read_json,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

# No example database (it would write .hypothesis/ into the checkout), no deadline (the test
# machine is shared and slow), and few enough examples to stay within a few seconds.
FUZZ = settings(
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
RECORDS = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=6),
    st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    max_size=4,
)


class Boom(Exception):
    """Raised inside a write to interrupt it."""


def _leftovers(folder: Path) -> list[str]:
    """Hidden temporary names the atomic writers use (``.<name>.*``)."""
    return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith("."))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- atomic files --------------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old\n")
    with pytest.raises(Boom), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        assert temporary.parent == tmp_path and temporary.name.startswith(".result.json.")
        raise Boom
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "model.onnx"
    with pytest.raises(Boom), atomic_path(target) as temporary:
        temporary.write_bytes(b"\x00" * 10)
        raise Boom
    assert not target.exists()
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []


def test_a_keyboard_interrupt_also_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"epoch": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("{")
        raise KeyboardInterrupt
    assert read_json(target) == {"epoch": 1}
    assert _leftovers(tmp_path) == []


def test_writes_replace_the_file_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out" / "notes.txt"
    write_text_atomic(target, "première\n")
    assert target.read_bytes() == "première\n".encode()
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    # mkstemp makes files 0600; a written file gets what open() would have given it.
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert _leftovers(target.parent) == []


def test_json_is_pretty_key_sorted_and_stringifies_paths(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    write_json_atomic(target, {"b": 1, "a": {"path": Path("/x/y"), "t": (1, 2)}})
    assert target.read_text() == (
        '{\n  "a": {\n    "path": "/x/y",\n    "t": [\n      1,\n      2\n    ]\n  },\n'
        '  "b": 1\n}\n'
    )


# -- atomic folders ------------------------------------------------------------------------


def test_a_failed_folder_build_leaves_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "synthetic"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    with pytest.raises(Boom), atomic_directory(target) as staging:
        assert staging.is_dir() and list(staging.iterdir()) == []
        (staging / "manifest.json").write_text("new")
        raise Boom
    assert sorted(path.name for path in target.iterdir()) == ["manifest.json"]
    assert (target / "manifest.json").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_finished_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "synthetic"
    target.mkdir()
    (target / "stale.npz").write_text("from the last run")
    with atomic_directory(target) as staging:
        (staging / "train.npz").write_text("new")
    assert sorted(path.name for path in target.iterdir()) == ["train.npz"]
    assert target.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert _leftovers(tmp_path) == []


def test_a_new_folder_appears_only_when_finished(tmp_path: Path) -> None:
    target = tmp_path / "data" / "synthetic"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"


# -- reading JSON --------------------------------------------------------------------------


def test_read_json_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    class PresetError(ValueError):
        pass

    absent = tmp_path / "absent.json"
    with pytest.raises(ValueError) as raised:
        read_json(absent)
    assert str(raised.value) == f"{absent}: no such file"
    with pytest.raises(PresetError) as raised:
        read_json(absent, PresetError, "no such preset (see fkdbench presets)")
    assert str(raised.value) == f"{absent}: no such preset (see fkdbench presets)"
    with pytest.raises(ValueError, match="no such file"):
        read_json(tmp_path)  # a folder is not a JSON file


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b'{"a": 1,\n "b": }', "Expecting value: line 2 column 7 (char 15)"),
        (b'{"a": 1} trailing', "Extra data: line 1 column 10 (char 9)"),
        (b'{"caf\xe9": 1}', "'utf-8' codec can't decode byte 0xe9 in position 5"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_read_json_malformed_file_is_one_line_naming_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(ValueError) as raised:
        read_json(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: malformed JSON ({problem}")
    assert "\n" not in message


# Any bytes, any text, and JSON documents (with a byte or two cut off the end, sometimes).
FILE_CONTENTS = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.builds(
        lambda value, cut: json.dumps(value).encode()[: -cut or None],
        JSON_VALUES,
        st.integers(0, 2),
    )
)


@FUZZ
@given(content=FILE_CONTENTS)
def test_read_json_returns_the_value_or_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    class RunError(ValueError):
        pass

    path = tmp_path / "fuzz.json"
    path.write_bytes(content)
    try:
        expected = json.loads(content.decode("utf-8"))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        with pytest.raises(RunError) as raised:
            read_json(path, RunError)
        message = str(raised.value)
        assert message.startswith(f"{path}: malformed JSON (") and "\n" not in message
    else:
        # Compared as JSON text: "NaN" parses to a float that is not equal to itself.
        assert json.dumps(read_json(path, RunError)) == json.dumps(expected)


@FUZZ
@given(value=JSON_VALUES)
def test_written_json_reads_back_equal(tmp_path: Path, value: object) -> None:
    path = tmp_path / "round.json"
    write_json_atomic(path, value)
    assert read_json(path) == value
    first = path.read_bytes()
    write_json_atomic(path, value)
    assert path.read_bytes() == first  # stable bytes for the same content


# -- JSON lines ----------------------------------------------------------------------------


@FUZZ
@given(batches=st.lists(st.lists(RECORDS, max_size=3), min_size=1, max_size=4))
def test_appended_jsonl_holds_every_record_in_order(
    tmp_path: Path, batches: list[list[dict]]
) -> None:
    path = tmp_path / "results.jsonl"
    path.unlink(missing_ok=True)
    for batch in batches:
        append_jsonl_atomic(path, batch)
    everything = [record for batch in batches for record in batch]
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    assert [json.loads(line) for line in lines] == everything
    assert all(line == json.dumps(json.loads(line), sort_keys=True) for line in lines)


def test_append_jsonl_completes_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"run": 1}')
    append_jsonl_atomic(path, [{"run": 2, "path": Path("a/b")}])
    assert path.read_text() == '{"run": 1}\n{"path": "a/b", "run": 2}\n'
    append_jsonl_atomic(path, [])
    assert path.read_text() == '{"run": 1}\n{"path": "a/b", "run": 2}\n'


def test_a_jsonl_tail_replaces_only_its_own_lines(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"run": 1}')
    tail = JsonlTail(path)
    tail.write([{"run": 2}])
    append_jsonl_atomic(tmp_path / "other.jsonl", [{"run": 9}])
    tail.write([{"run": 2}, {"run": 3}])
    assert path.read_text() == '{"run": 1}\n{"run": 2}\n{"run": 3}\n'
    tail.write([])
    assert path.read_text() == '{"run": 1}\n'


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_jsonl_atomic(path, [{"run": 1}])
    looped: dict = {}
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular reference"):
        append_jsonl_atomic(path, [{"run": 2}, looped])
    assert path.read_text() == '{"run": 1}\n'
    assert _leftovers(tmp_path) == []


# -- hashing and plain values --------------------------------------------------------------


def test_sha256_file_matches_hashlib_across_block_boundaries(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    data = np.random.default_rng(0).bytes((5 << 20) // 2)  # 2.5 blocks of 1 MiB
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()


def test_plain_makes_values_json_and_weights_only_safe() -> None:
    value = {
        "path": Path("runs/a"),
        1: (np.int64(3), np.float32(0.5), [np.bool_(True), None]),
        "nested": {"shape": (96, 96), "name": "cnn"},
    }
    result = plain(value)
    assert result == {
        "path": "runs/a",
        "1": [3, 0.5, [True, None]],
        "nested": {"shape": [96, 96], "name": "cnn"},
    }
    assert type(result["1"][0]) is int and type(result["1"][1]) is float
    assert type(result["1"][2][0]) is bool
    assert json.loads(json.dumps(result)) == result


@FUZZ
@given(value=JSON_VALUES)
def test_plain_leaves_json_values_alone(value: object) -> None:
    assert plain(value) == value


def test_an_owner_reads_back_and_knows_who_is_alive(tmp_path: Path) -> None:
    path = tmp_path / "owner.json"
    assert io.read_owner(path) is None  # gone
    path.write_text(io.owner_json(io.ProcessOwner(os.getppid(), socket.gethostname())))
    parent = io.read_owner(path)
    assert parent == io.ProcessOwner(os.getppid(), socket.gethostname())
    assert parent.alive() is True and str(parent) == f"pid {os.getppid()} on {parent.host}"
    # A pid that is free now: start a process, wait for it to end.
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert io.ProcessOwner(ended.pid, socket.gethostname()).alive() is False
    # This process's own pid on a leftover file: a dead process that had the pid before.
    assert io.ProcessOwner.current().alive() is False
    assert io.ProcessOwner(os.getppid(), "another-host").alive() is None  # cannot tell
    path.write_text('{"pid": "x"')  # being written, or damaged
    assert io.read_owner(path) == io.UNKNOWN_OWNER
