"""The regression gate: bench records against a baseline, on machine-normalised times.

An error record is never a timing: a model whose target failed fails the gate with its
error message, whether or not the baseline has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fkdbench.bench.records import BenchError, BenchRecord
from fkdbench.io import read_json, write_json_atomic
from fkdbench.provenance import environment_record

BASELINE_FORMAT_VERSION = 1
NORMALISATION = (
    "seconds per 100 images x this machine's FP32 matmul peak GFLOP/s (the faster of torch "
    "and ONNX Runtime, measured in the same process with the same threads): the GFLOP of "
    "peak-rate work the same time buys"
)


def gate_key(record: BenchRecord) -> str:
    """What a baseline entry is matched on: the model, the backend, the batch size."""
    identity = record.identity
    return f"{identity.run_name}|{identity.backend}|batch {record.settings.batch_size}"


def save_baseline(records: Sequence[BenchRecord], path: Path) -> dict[str, Any]:
    """Write a baseline for :func:`check_baseline` from bench records (the last measured
    per key; error records hold no time to save)."""
    measured = [record for record in records if not record.failed]
    if not measured:
        raise BenchError("no bench records to save as a baseline")
    entries = {}
    for record in measured:
        entries[gate_key(record)] = {
            "seconds_per_100_images": record.seconds_per_100_images,
            "normalised_time": record.normalised_time,
            "machine_peak_gflops": record.peak_gflops,
            "threads": record.settings.threads,
            "cpu_model": record.environment.get("cpu_model"),
        }
    baseline = {
        "format_version": BASELINE_FORMAT_VERSION,
        "normalisation": NORMALISATION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment_record(),
        "entries": dict(sorted(entries.items())),
    }
    write_json_atomic(Path(path), baseline)
    return baseline


@dataclass
class GateComparison:
    key: str
    baseline_normalised: float
    current_normalised: float
    baseline_seconds: float
    current_seconds: float

    @property
    def ratio(self) -> float:
        return self.current_normalised / self.baseline_normalised


@dataclass
class GateResult:
    tolerance: float
    compared: list[GateComparison]
    regressions: list[GateComparison]
    not_measured: list[str]  # in the baseline, not in this run (nor failed in it)
    new: list[str]  # measured in this run, not in the baseline
    failed: dict[str, str] = field(default_factory=dict)  # key -> the target's error

    @property
    def passed(self) -> bool:
        return not self.regressions and not self.failed


def load_baseline(path: Path) -> dict[str, Any]:
    baseline = read_json(path, BenchError, "no such baseline (write one with --save-baseline)")
    if not isinstance(baseline, dict) or not isinstance(baseline.get("entries"), dict):
        raise BenchError(f"{path}: not a fkdbench baseline (no 'entries')")
    for key, entry in baseline["entries"].items():
        _check_entry(path, key, entry)
    return baseline


# The numbers check_baseline reads from each entry.
_ENTRY_NUMBERS = ("normalised_time", "seconds_per_100_images")


def _check_entry(path: Path, key: str, entry: Any) -> None:
    """An entry the gate can compare with: positive, finite times (a hand-edited or
    damaged baseline fails here, naming the entry, not inside the comparison)."""
    if not isinstance(entry, dict):
        raise BenchError(f"{path}: entry {key[:60]!r} is not an object")
    for name in _ENTRY_NUMBERS:
        value = entry.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BenchError(f"{path}: entry {key[:60]!r}: {name} is not a number")
        if not 0 < value < float("inf"):
            raise BenchError(f"{path}: entry {key[:60]!r}: {name} must be a positive number")


def check_baseline(
    records: Sequence[BenchRecord], baseline: dict[str, Any], tolerance: float
) -> GateResult:
    """Compare machine-normalised times against a baseline.

    A model regresses when its normalised time exceeds the baseline's by more than
    ``tolerance`` (0.25: 25% slower). Raw seconds are kept for the message only: CI
    machines differ, normalised times travel between them. The last record per key
    counts; an error record fails its key.
    """
    if tolerance < 0:
        raise BenchError(f"tolerance must be >= 0, got {tolerance}")
    latest = {gate_key(record): record for record in records}
    failed = {key: str(record.error) for key, record in sorted(latest.items()) if record.failed}
    current = {key: record for key, record in latest.items() if not record.failed}
    entries = baseline["entries"]
    compared, regressions = [], []
    for key, record in sorted(current.items()):
        if key not in entries:
            continue
        entry = entries[key]
        comparison = GateComparison(
            key,
            float(entry["normalised_time"]),
            float(record.normalised_time),
            float(entry["seconds_per_100_images"]),
            float(record.seconds_per_100_images),
        )
        compared.append(comparison)
        if comparison.ratio > 1 + tolerance:
            regressions.append(comparison)
    return GateResult(
        tolerance=tolerance,
        compared=compared,
        regressions=regressions,
        not_measured=sorted(set(entries) - set(current) - set(failed)),
        new=sorted(set(current) - set(entries)),
        failed=failed,
    )


def gate_report(result: GateResult) -> list[str]:
    """Lines explaining a gate verdict: each regression and failure named, with why."""
    lines = [
        f"gate: {len(result.compared)} model/backend pair(s) compared with the baseline, "
        f"tolerance {result.tolerance:.0%}, on times normalised by the machine's measured "
        "matmul peak (so machines of different speed compare)"
    ]
    for comparison in result.regressions:
        lines.append(
            f"REGRESSION {comparison.key}: {comparison.ratio - 1:+.0%} normalised "
            f"(baseline {comparison.baseline_seconds:.4f} s / 100 images, "
            f"now {comparison.current_seconds:.4f} s)"
        )
    for key, error in result.failed.items():
        lines.append(f"FAILED {key}: not measured: {error}")
    if result.not_measured:
        lines.append(f"in the baseline but not measured now: {', '.join(result.not_measured)}")
    if result.new:
        lines.append(f"measured but not in the baseline: {', '.join(result.new)}")
    lines.append("gate: PASSED" if result.passed else "gate: FAILED")
    return lines
