"""Was the machine steady while it was timed? The peak measured through the bench, the load
beside it, and the verdict each record carries (``unstable``, ``unstable_reasons``).

A busy moment cannot make a machine faster than it is, so the peak is measured several
times (before the first model, after each backend's round) and the best is kept. The
spread of those measurements, the load average read beside each, and the spread of each
record's own repeats say whether the timings can be trusted; a record that fails any of
them is marked, and the bench warns once.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import fkdbench.bench.stats as stats
from fkdbench.bench.records import BenchRecord, Calibration
from fkdbench.bench.timing import measure_machine_peak
from fkdbench.provenance import available_cores

# The largest (max - min) / median of a record's repeats, or of the peak measurements, that
# still counts as steady. The goal is medians repeatable within 5% between bench runs; the
# median of repeats spread wider than 10% can itself sit more than 5% from where a calm run
# puts it, so such a figure is not a result to compare.
SPREAD_LIMIT = 0.10


# Other processes may use at most this many cores on average between two peak
# measurements. The load average cannot say this by itself: a bench on every core keeps
# it at the core count on a calm machine (ONNX Runtime's threads spin between runs), so
# "load above the cores" flags half of calm runs; the CPU time the machine spent minus
# this process's own is the other processes' share, whatever the bench's threads.
OTHER_CPU_LIMIT = 0.25


def read_cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), both since
    boot/start; None where ``/proc/stat`` is absent (not Linux)."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    busy = (user + nice + system + irq + softirq + steal) / ticks
    own = os.times()
    return busy, own.user + own.system


def read_load_average() -> float | None:
    """The 1-minute load average; None where the system has none (not Unix)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass
class PeakMeter:
    """Measures the machine's FP32 peak at each :meth:`sample`, with the load average beside
    it; :meth:`calibration` keeps every measurement, and the best as the peak. Built with
    ``reuse``, it measures nothing and answers that calibration (a caller's own)."""

    threads: int
    measure: Callable[[int], Calibration] = measure_machine_peak
    load_average: Callable[[], float | None] = read_load_average
    cpu_seconds: Callable[[], tuple[float, float] | None] = read_cpu_seconds
    wall_clock: Callable[[], float] = time.monotonic
    reuse: Calibration | None = None
    measurements: list[Calibration] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    # Cores other processes used on average since the previous sample.
    other_cores: list[float] = field(default_factory=list)
    _last_cpu: tuple[float, float, float] | None = None

    def sample(self) -> None:
        if self.reuse is not None:
            return
        self._sample_other_cpu()
        self.measurements.append(self.measure(self.threads))
        load = self.load_average()
        if load is not None:
            self.loads.append(load)

    def _sample_other_cpu(self) -> None:
        reading, now = self.cpu_seconds(), self.wall_clock()
        if reading is None:
            return
        if self._last_cpu is not None:
            busy, own, then = self._last_cpu
            wall = now - then
            if wall > 0:
                others = (reading[0] - busy) - (reading[1] - own)
                self.other_cores.append(round(max(others, 0.0) / wall, 3))
        self._last_cpu = (*reading, now)

    def calibration(self) -> Calibration:
        if self.reuse is not None:
            return self.reuse
        first = self.measurements[0]
        return Calibration(
            peak_gflops=max(m.peak_gflops for m in self.measurements),
            torch_gflops=max(m.torch_gflops for m in self.measurements),
            onnxruntime_gflops=max(m.onnxruntime_gflops for m in self.measurements),
            threads=self.threads,
            matrix_sizes=first.matrix_sizes,
            seconds=sum(m.seconds or 0.0 for m in self.measurements),
            peak_samples=[m.peak_gflops for m in self.measurements],
            load_averages=list(self.loads),
            usable_cores=available_cores(),
            other_cpu_cores=list(self.other_cores) if self._last_cpu is not None else None,
        )


def machine_reasons(calibration: Calibration) -> list[str]:
    """Why the machine was unsteady during a bench: other processes using the CPU (where
    that was measured; else a load average above the cores), or peak measurements that
    disagree; [] when none (or when nothing was recorded)."""
    reasons = []
    loads, cores = calibration.load_averages, calibration.usable_cores
    others = calibration.other_cpu_cores
    if others:
        if max(others) > OTHER_CPU_LIMIT:
            reasons.append(
                f"other processes used {max(others):.2f} cores "
                f"(limit {OTHER_CPU_LIMIT:.2f}; load average up to {max(loads or [0.0]):.2f})"
            )
    elif loads and cores and max(loads) > cores:
        reasons.append(f"load average {max(loads):.2f} above the {cores} usable cores")
    peaks = calibration.peak_samples or []
    if len(peaks) > 1 and stats.spread(peaks) > SPREAD_LIMIT:
        reasons.append(
            f"machine peak measurements {stats.spread(peaks):.0%} apart (limit {SPREAD_LIMIT:.0%})"
        )
    return reasons


def repeat_reason(passes: Sequence[float]) -> str | None:
    """Why a record's own repeats are unsteady, or None."""
    if len(passes) > 1 and stats.spread(passes) > SPREAD_LIMIT:
        return f"repeats {stats.spread(passes):.0%} apart (limit {SPREAD_LIMIT:.0%})"
    return None


def mark_steadiness(records: Sequence[BenchRecord]) -> list[BenchRecord]:
    """Each measured record with its verdict; an error record holds no timing to judge."""
    marked = []
    for record in records:
        if not record.failed:
            reasons = machine_reasons(record.calibration)
            own = repeat_reason(record.samples.seconds_per_100_images)
            reasons += [own] if own else []
            record = dataclasses.replace(record, unstable=bool(reasons), unstable_reasons=reasons)
        marked.append(record)
    return marked


def unsteady_warning(records: Sequence[BenchRecord], calibration: Calibration) -> str | None:
    """One line naming what was unsteady, or None when every record is steady."""
    unstable = [record for record in records if record.unstable]
    if not unstable:
        return None
    parts = machine_reasons(calibration)
    spread = [r for r in unstable if repeat_reason(r.samples.seconds_per_100_images)]
    if spread:
        parts.append(f"repeats more than {SPREAD_LIMIT:.0%} apart in {len(spread)} record(s)")
    return (
        f"unsteady machine: {'; '.join(parts)}; {len(unstable)} of {len(records)} record(s) "
        "marked unstable (compare them with care)"
    )
