"""The regression gate: bench records against a baseline, on machine-normalised times.

A model regresses only when its slowdown is both real and large: a one-sided Mann-Whitney
U test of its normalised repeat samples against the baseline's says the current ones are
slower (p < :data:`ALPHA`), and the ratio of their medians exceeds 1 + tolerance. Noise
alone seldom passes the test; a real but small slowdown passes the tolerance. Where no
test can decide (a format-1 baseline keeps one number, not samples; or so few samples that
even a complete separation is not significant, e.g. 3 vs 3), the ratio alone decides, as
the gate always did, and its lines say that no test was possible.

An error record is never a timing: a model whose target failed fails the gate with its
error message, whether or not the baseline has it. A baseline that matches none of the
models measured is an error, not a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import comb
from pathlib import Path
from typing import Any

import fkdbench.bench.stats as stats
from fkdbench.bench.records import BenchError, BenchRecord
from fkdbench.io import read_json, write_json_atomic
from fkdbench.provenance import environment_record

BASELINE_FORMAT_VERSION = 2  # 2: each entry keeps its normalised repeat samples
# The significance level of the one-sided Mann-Whitney U test.
ALPHA = 0.05
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
            "normalised_samples": normalised_samples(record),
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


def normalised_samples(record: BenchRecord) -> list[float]:
    """Each timed pass of a record, normalised by its machine's peak."""
    peak = record.peak_gflops
    return [stats.normalised_time(s, peak) for s in record.samples.seconds_per_100_images]


@dataclass
class GateComparison:
    key: str
    baseline_normalised: float  # medians
    current_normalised: float
    baseline_seconds: float
    current_seconds: float
    # The one-sided Mann-Whitney U p-value (current slower); None when no test was possible.
    p_value: float | None = None
    untested: str | None = None  # why no test was possible, when it was not

    @property
    def ratio(self) -> float:
        return self.current_normalised / self.baseline_normalised

    @property
    def significant(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA


def slowdown_test(
    current: list[float], baseline: list[float] | None
) -> tuple[float | None, str | None]:
    """(p-value, None) of the one-sided Mann-Whitney U test that ``current`` is slower
    than ``baseline``, or (None, why no test is possible)."""
    if not baseline:
        return None, "the baseline keeps no samples (format 1)"
    n, m = len(current), len(baseline)
    # The smallest one-sided p-value n vs m samples can reach: all current above all
    # baseline. When even that is not below ALPHA, no outcome could be significant.
    if 1 / comb(n + m, n) >= ALPHA:
        return None, f"{n} vs {m} samples can never be significant at {ALPHA}"
    from scipy.stats import mannwhitneyu  # heavy: only when gating

    p_value = float(mannwhitneyu(current, baseline, alternative="greater").pvalue)
    return (1.0 if p_value != p_value else p_value), None  # NaN (all tied): no evidence


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
    samples = entry.get("normalised_samples")  # absent from format-1 baselines
    if samples is not None and not (
        isinstance(samples, list)
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in samples)
    ):
        raise BenchError(
            f"{path}: entry {key[:60]!r}: normalised_samples is not a list of positive numbers"
        )


def check_baseline(
    records: Sequence[BenchRecord],
    baseline: dict[str, Any],
    tolerance: float,
    source: Path | str = "the baseline",
) -> GateResult:
    """Compare machine-normalised times against a baseline (``source``: its file, for
    messages).

    A model regresses when its median normalised time exceeds the baseline's by more than
    ``tolerance`` (0.25: 25% slower) and the slowdown is significant (see the module
    doc). Raw seconds are kept for the message only: CI
    machines differ, normalised times travel between them. The last record per key
    counts; an error record fails its key.
    """
    if tolerance < 0:
        raise BenchError(f"tolerance must be >= 0, got {tolerance}")
    latest = {gate_key(record): record for record in records}
    _check_overlap(latest, baseline, source)
    failed = {key: str(record.error) for key, record in sorted(latest.items()) if record.failed}
    current = {key: record for key, record in latest.items() if not record.failed}
    entries = baseline["entries"]
    compared, regressions = [], []
    for key, record in sorted(current.items()):
        if key not in entries:
            continue
        comparison = _compare(key, record, entries[key])
        compared.append(comparison)
        if comparison.ratio > 1 + tolerance and comparison.significant is not False:
            regressions.append(comparison)
    return GateResult(
        tolerance=tolerance,
        compared=compared,
        regressions=regressions,
        not_measured=sorted(set(entries) - set(current) - set(failed)),
        new=sorted(set(current) - set(entries)),
        failed=failed,
    )


def _compare(key: str, record: BenchRecord, entry: dict[str, Any]) -> GateComparison:
    current = normalised_samples(record)
    p_value, untested = slowdown_test(current, entry.get("normalised_samples"))
    return GateComparison(
        key,
        float(entry["normalised_time"]),
        float(record.normalised_time),
        float(entry["seconds_per_100_images"]),
        float(record.seconds_per_100_images),
        p_value,
        untested,
    )


def _check_overlap(
    latest: dict[str, BenchRecord], baseline: dict[str, Any], source: Path | str
) -> None:
    """A baseline that shares no key with this run compares nothing: an error, not a pass."""
    entries = baseline["entries"]
    if latest and not set(latest) & set(entries):
        held, measured = sorted(entries), sorted(latest)
        raise BenchError(
            f"{source}: the baseline matches none of the models measured: it holds "
            f"{len(held)} ({_few(held)}), this run measured {len(measured)} ({_few(measured)})"
        )


def _few(keys: Sequence[str], shown: int = 3) -> str:
    more = f", and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more if keys else "none"


def gate_report(result: GateResult) -> list[str]:
    """Lines explaining a gate verdict: each regression and failure named, with why."""
    lines = [
        f"gate: {len(result.compared)} model/backend pair(s) compared with the baseline, "
        f"tolerance {result.tolerance:.0%}, on times normalised by the machine's measured "
        "matmul peak (so machines of different speed compare); a regression must also be "
        f"significant (one-sided Mann-Whitney U on the repeats, p < {ALPHA})"
    ]
    for comparison in result.compared:
        lines += _comparison_lines(comparison, result.tolerance, comparison in result.regressions)
    for key, error in result.failed.items():
        lines.append(f"FAILED {key}: not measured: {error}")
    if result.not_measured:
        lines.append(f"in the baseline but not measured now: {', '.join(result.not_measured)}")
    if result.new:
        lines.append(f"measured but not in the baseline: {', '.join(result.new)}")
    lines.append("gate: PASSED" if result.passed else "gate: FAILED")
    return lines


def _comparison_lines(comparison: GateComparison, tolerance: float, regressed: bool) -> list[str]:
    """A regression named with why; a slowdown that did not count, with why not; a model
    no test could judge, said so."""
    times = (
        f"(baseline {comparison.baseline_seconds:.4f} s / 100 images, "
        f"now {comparison.current_seconds:.4f} s"
    )
    test = (
        f"no test possible: {comparison.untested}, judged on the ratio alone"
        if comparison.untested
        else f"p = {comparison.p_value:.3g}"
    )
    change = f"{comparison.ratio - 1:+.0%} normalised"
    if regressed:
        return [f"REGRESSION {comparison.key}: {change} {times}; {test})"]
    if comparison.ratio > 1 + tolerance:
        return [f"not significant {comparison.key}: {change} {times}; {test})"]
    if comparison.untested:
        return [f"untested {comparison.key}: {change}; {test}"]
    return []
