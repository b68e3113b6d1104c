"""The training process's allocator keeps freed memory: no page faults for buffers that
every batch frees and allocates again, and a user's own malloc tuning is left alone.

Each check runs in a fresh Python, since the setting holds for the whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fkdbench import allocator

glibc_only = pytest.mark.skipif(
    not allocator.glibc_malloc(),
    reason="mallopt is glibc's; other C libraries are left at their default",
)

# Frees and re-allocates a 64 MiB tensor (above glibc's largest mmap threshold, like a
# batch-64 activation map) and counts the minor page faults that costs.
_FAULTS_PER_ROUND = """
import json, resource, sys, torch
from fkdbench.allocator import keep_freed_memory
from fkdbench.provenance import environment_record

def faults_per_round(rounds=8):
    # Warm up as a training does: torch's aligned blocks settle in the kept heap after a
    # few rounds (measured: eight), and from then on every round reuses them.
    for _ in range(12):
        torch.empty(16 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.empty(16 * 2**20).fill_(1.0)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds

default, recorded_before = faults_per_round(), environment_record()["allocator"]
described = keep_freed_memory()
print(json.dumps({"default": default, "kept": faults_per_round(), "described": described,
                  "again": keep_freed_memory(), "recorded_before": recorded_before,
                  "recorded": environment_record()["allocator"]}))
"""
PAGES_PER_BUFFER = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")


def _run(environment: dict[str, str] | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in allocator.USER_TUNING_VARIABLES}
    completed = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_ROUND],
        env={**env, **(environment or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(completed.stdout)


@glibc_only
def test_freed_buffers_are_reused_without_page_faults() -> None:
    measured = _run()
    assert measured["described"] == allocator.KEPT and measured["again"] == allocator.KEPT
    # Every record's environment says which allocator the process ran with.
    assert measured["recorded_before"] == allocator.DEFAULT
    assert measured["recorded"] == allocator.KEPT
    # By default each round maps the buffer afresh and faults in most of its pages...
    assert measured["default"] > PAGES_PER_BUFFER / 2, measured
    # ...and once memory is kept, a round reuses the heap: almost no faults.
    assert measured["kept"] < PAGES_PER_BUFFER / 50, measured


@glibc_only
def test_a_users_own_malloc_tuning_is_left_alone() -> None:
    measured = _run({"MALLOC_MMAP_MAX_": "65536"})
    assert measured["described"] == "left as the user set it (MALLOC_MMAP_MAX_)"
    assert measured["kept"] > PAGES_PER_BUFFER / 2, "the setting must not have been changed"
