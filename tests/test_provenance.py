"""Tests for fkdbench.provenance: what every record says about where it came from."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest

from fkdbench import provenance
from fkdbench.allocator import allocator_description
from fkdbench.provenance import (
    available_cores,
    cpu_description,
    environment_record,
    git_commit,
    library_versions,
    parse_cpuinfo,
)

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f amx_tile amx_int8 avx_vnni
bogomips\t: 4000.00

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2
"""


def test_parse_cpuinfo_takes_the_model_and_the_first_processors_flags() -> None:
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == {"fpu", "sse2", "avx2", "avx512f", "amx_tile", "amx_int8", "avx_vnni"}
    assert parse_cpuinfo("") == (None, set())
    assert parse_cpuinfo("processor : 0\nfeatures : fp asimd\n") == (None, set())  # ARM


def test_cpu_description_reports_this_machine() -> None:
    description = cpu_description()
    assert set(description) == {
        "cpu_model",
        "cpu_cores",
        "cpu_cores_available",
        "cpu_features",
        "machine",
        "system",
    }
    assert description["cpu_cores"] == (os.cpu_count() or 1)
    assert 1 <= description["cpu_cores_available"] <= description["cpu_cores"]
    assert description["machine"] == platform.machine()
    assert description["system"] == f"{platform.system()} {platform.release()}"
    # Only the features that decide INT8 speed, in their fixed order.
    features = description["cpu_features"]
    order = list(provenance._CPU_FLAGS_OF_INTEREST)
    assert features == sorted(features, key=order.index)
    if Path("/proc/cpuinfo").is_file():
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
        assert description["cpu_model"] == (model or platform.processor() or "unknown")
        assert set(features) == flags & set(order)


def test_available_cores_is_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert available_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores() == 6  # not Linux: every core
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


def test_library_versions_name_every_tracked_package(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = library_versions()
    assert list(versions) == ["python", *provenance._TRACKED_PACKAGES]
    assert versions["python"] == platform.python_version()
    assert versions["torch"] == metadata.version("torch")
    real = metadata.version

    def version(package: str) -> str:
        if package == "onnx":
            raise metadata.PackageNotFoundError(package)
        return real(package)

    monkeypatch.setattr(metadata, "version", version)
    assert library_versions()["onnx"] == "absent"


def _git(folder: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        [*command, *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_git_commit_names_the_commit_and_says_dirty(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    _git(repository, "init", "-q")
    (repository / "code.py").write_text("x = 1\n")
    _git(repository, "add", "code.py")
    _git(repository, "commit", "-q", "-m", "first")
    head = _git(repository, "rev-parse", "HEAD")
    assert git_commit(repository) == head
    (repository / "untracked.txt").write_text("ignored: only tracked changes count\n")
    assert git_commit.__wrapped__(repository) == head
    (repository / "code.py").write_text("x = 2\n")
    assert git_commit.__wrapped__(repository) == f"{head}-dirty"


def test_git_commit_outside_a_repository_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "absent") == "unknown"  # git cannot even start there


def test_environment_record_is_one_json_ready_block() -> None:
    record = environment_record()
    assert set(record) == {
        "timestamp",
        "git_commit",
        "hostname",
        "versions",
        "allocator",
        *cpu_description(),
    }
    assert record["allocator"] == allocator_description()
    assert json.loads(json.dumps(record)) == record
    stamp = datetime.fromisoformat(record["timestamp"])
    assert stamp.tzinfo == UTC and stamp.microsecond == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert record["git_commit"] == git_commit()
    assert record["hostname"] == platform.node()
    assert record["versions"] == library_versions()
