"""Where a result came from: machine, library versions, git commit, time.

Every manifest, run and benchmark record carries this, so a number can be traced to
the code and machine that produced it.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from fkdbench.allocator import allocator_description

# Libraries whose versions change results or timings.
_TRACKED_PACKAGES = (
    "fkdbench",
    "numpy",
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "pandas",
)

_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Each package's installed version, ``"absent"`` where not installed."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def library_versions() -> dict[str, str]:
    """Python's version and each tracked package's, ``"absent"`` where not installed."""
    return {"python": platform.python_version(), **package_versions(_TRACKED_PACKAGES)}


@functools.cache
def git_commit(repository: Path | None = None) -> str:
    """The commit of the fkdbench source tree, with ``-dirty`` when it has local changes."""
    folder = repository or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask): every backend's default threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ThreadsError(ValueError):
    """A thread count outside 1 .. the cores this process may use."""


def check_threads(threads: int | None) -> int | None:
    """``threads`` itself when it is None (every core) or within 1 .. :func:`available_cores`.

    More threads than cores only oversubscribe them: a timing taken so is not the model's
    (999 threads once recorded a time 450x too slow), and 0 means nothing to torch.
    """
    if threads is None:
        return None
    cores = available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cores:
        raise ThreadsError(
            f"threads must be between 1 and {cores} (the cores this process may use), "
            f"got {threads!r}"
        )
    return threads


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """The CPU model (``model name``, None if absent) and the first processor's ``flags``
    from the text of Linux's ``/proc/cpuinfo``."""
    model: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


@functools.cache
def cpu_description() -> dict[str, object]:
    """CPU model, core count and the vector features that decide INT8 speed."""
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        model, flags = None, set()
    if model is None:
        model = platform.processor() or "unknown"
    return {
        "cpu_model": model,
        "cpu_cores": os.cpu_count() or 1,
        "cpu_cores_available": available_cores(),
        "cpu_features": [flag for flag in _CPU_FLAGS_OF_INTEREST if flag in flags],
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
    }


def environment_record() -> dict[str, object]:
    """Everything about the producing environment, as one JSON-ready dict."""
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "hostname": platform.node(),
        **cpu_description(),
        "versions": library_versions(),
        "allocator": allocator_description(),
    }
