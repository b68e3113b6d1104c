"""A bench noise cannot fool: one timing per graph, interleaved passes, the best of several
peaks, and unsteady machines marked. Fake clocks, fake peaks and fake loads: no timing."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from bench_factory import STEP, fake_clock, make_bench_record, make_error_record

from fkdbench import bench, runs
from fkdbench.bench import BenchOptions, Calibration
from fkdbench.bench.plan import LATENCY_CHUNK, graph_key, timing_sources
from fkdbench.bench.steadiness import (
    OTHER_CPU_LIMIT,
    SPREAD_LIMIT,
    PeakMeter,
    mark_steadiness,
    read_cpu_seconds,
    unsteady_warning,
)
from fkdbench.bench.timing import passes_for, time_interleaved
from fkdbench.provenance import available_cores

RUN = "cnn-manual--none"
MODEL = {"arch": "cnn-manual", "num_outputs": 30, "in_chans": 1, "input_size": 96, "kwargs": {}}


def _calibration(peak: float) -> Calibration:
    return Calibration(
        peak_gflops=peak,
        torch_gflops=peak,
        onnxruntime_gflops=peak / 2,
        threads=1,
        matrix_sizes=[64],
        seconds=0.5,
    )


class FakeMachine:
    """Peak measurements and load averages from lists, one per sample."""

    def __init__(self, peaks: list[float], loads: list[float]) -> None:
        self.peaks, self.loads = list(peaks), list(loads)

    def meter(self) -> PeakMeter:
        return PeakMeter(
            1,
            measure=lambda _threads: _calibration(self.peaks.pop(0)),
            load_average=lambda: self.loads.pop(0),
            cpu_seconds=lambda: None,  # the load average decides, as on a non-Linux machine
        )


# -- graph keys ----------------------------------------------------------------------------


def test_graph_key_is_the_graph_not_the_weights_or_the_variant() -> None:
    key = graph_key(MODEL, "onnxruntime", "dynamo")
    extra = {**MODEL, "keypoints": ["other"], "spec_source": "tune", "scheme": "x"}
    assert graph_key(extra, "onnxruntime", "dynamo") == key
    assert graph_key({**MODEL, "kwargs": {"width": 2}}, "onnxruntime", "dynamo") != key
    assert graph_key({**MODEL, "input_size": 64}, "onnxruntime", "dynamo") != key
    assert graph_key({**MODEL, "in_chans": 3}, "onnxruntime", "dynamo") != key
    assert graph_key(MODEL, "torch") != key
    assert graph_key(MODEL, "onnxruntime", "torchscript") != key
    assert len(key) == 64 and int(key, 16) >= 0


def test_timing_sources_point_at_the_first_of_each_graph() -> None:
    assert timing_sources(["a", "b", "a", "c", "b"]) == [None, None, 0, None, 1]


# -- interleaving ----------------------------------------------------------------------------


def test_timed_passes_and_latencies_take_turns() -> None:
    calls: list[tuple[str, int]] = []

    def predictor(name: str):
        def predict(images: np.ndarray) -> np.ndarray:
            calls.append((name, len(images)))
            return images[:, 0, :3, :2]

        return predict

    images = np.zeros((4, 1, 4, 4), dtype=np.float32)
    samples = LATENCY_CHUNK + 2
    options = BenchOptions(
        batch_size=4, warmup_passes=2, repeats=3, latency_samples=samples, latency_warmup=1
    )
    timings, errors = time_interleaved(
        [predictor("A"), predictor("B")], [images, images], options, clock=fake_clock()
    )
    assert errors == {}
    full = [name for name, size in calls if size == 4]
    # One more warm-up and the clocked pass each, then the timed samples (passes_for(STEP)
    # passes each) in turn: A, B, A, B, not A, A, A, B, B, B.
    passes = passes_for(STEP)
    assert full == ["A"] * 2 + ["B"] * 2 + (["A"] * passes + ["B"] * passes) * 3
    singles = [name for name, size in calls if size == 1]
    assert (
        singles
        == ["A", "B"] + ["A"] * LATENCY_CHUNK + ["B"] * LATENCY_CHUNK + ["A"] * 2 + ["B"] * 2
    )
    for timing in timings:
        assert len(timing.seconds_per_100_images) == 3
        assert len(timing.latency_batch1_ms) == samples


def test_a_graph_that_fails_leaves_the_rotation_and_the_others_finish() -> None:
    calls: list[str] = []

    def good(images: np.ndarray) -> np.ndarray:
        calls.append("good")
        return images

    def bad(images: np.ndarray) -> np.ndarray:
        raise RuntimeError("session died")

    images = np.zeros((2, 1, 4, 4), dtype=np.float32)
    options = BenchOptions(batch_size=2, repeats=3, latency_samples=2, latency_warmup=0)
    timings, errors = time_interleaved([bad, good], [images, images], options, fake_clock())
    assert list(errors) == [0] and "session died" in str(errors[0])
    assert len(timings[1].seconds_per_100_images) == 3 and timings[0].latency_batch1_ms == []


# -- the sweep: one timing per graph ----------------------------------------------------------


@pytest.fixture
def runs_dir(trained_runs: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    shutil.copytree(trained_runs, folder)
    return folder


def _copy_run(runs_dir: Path, name: str) -> Path:
    """Another run of the same graph (a copy of RUN under another name)."""
    folder = runs_dir / name
    shutil.copytree(runs_dir / RUN, folder)
    config = json.loads((folder / runs.CONFIG_FILE).read_text())
    config["run_name"] = name
    (folder / runs.CONFIG_FILE).write_text(json.dumps(config))
    return folder


def _options(tmp_path: Path, **changes) -> BenchOptions:
    settings = dict(
        backends=("torch",),
        threads=1,
        repeats=2,
        latency_samples=3,
        latency_warmup=1,
        batch_size=4,
        results=tmp_path / "bench.jsonl",
        quiet=True,
    )
    return BenchOptions(**{**settings, **changes})


def test_identical_graphs_are_timed_once_different_ones_each(
    runs_dir: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    twin = _copy_run(runs_dir, "cnn-manual--twin")
    other = runs.create_untrained_run(runs_dir, "test-resnet", tiny_dataset)
    machine = FakeMachine(peaks=[50.0, 80.0, 60.0], loads=[0.1, 0.2, 0.3])
    folders = [runs_dir / RUN, twin, other]
    options = _options(tmp_path, backends=("torch", "onnxruntime"))

    result = bench.bench(folders, options, clock=fake_clock(), peak_meter=machine.meter())

    assert result.failures == []
    by_target = {(r.identity.run_name, r.identity.backend): r for r in result.records}
    for backend in options.backends:
        timed, copy = by_target[(RUN, backend)], by_target[("cnn-manual--twin", backend)]
        resnet = by_target[("test-resnet--untrained", backend)]
        assert timed.identity.timed_as is None and copy.identity.timed_as == RUN
        assert timed.identity.graph_key == copy.identity.graph_key
        assert copy.samples == timed.samples
        assert resnet.identity.timed_as is None
        assert resnet.identity.graph_key != timed.identity.graph_key
    # Scores stay per run: the copy was scored from its own pass (same weights here).
    assert by_target[("cnn-manual--twin", "torch")].scores.test_rmse is not None
    assert len({r.identity.graph_key for r in result.records}) == 4
    # Best of three peaks: before the first model, after each backend's round.
    assert result.calibration.peak_samples == [50.0, 80.0, 60.0]
    assert result.calibration.peak_gflops == 80.0
    assert result.calibration.load_averages == [0.1, 0.2, 0.3]
    assert all(record.calibration == result.calibration for record in result.records)
    # The file ends with the call's final records, as they were returned.
    assert bench.read_records(options.results) == result.records


def test_a_bench_cut_off_keeps_the_rounds_it_finished(runs_dir: Path, tmp_path: Path) -> None:
    """Each round's records are on file once it is timed: a bench stopped in a later round
    keeps them (and what the file held before), and ``--skip-existing`` goes on from there."""
    peaks = iter([50.0, 80.0])

    def measure(_threads: int) -> Calibration:
        peak = next(peaks, None)
        if peak is None:  # Ctrl-C in the peak measurement after the second round
            raise KeyboardInterrupt
        return _calibration(peak)

    meter = PeakMeter(1, measure=measure, load_average=lambda: 0.1, cpu_seconds=lambda: None)
    options = _options(tmp_path, backends=("torch", "onnxruntime"))
    earlier = make_error_record()
    bench.append_records(options.results, [earlier])

    with pytest.raises(KeyboardInterrupt):
        bench.bench([runs_dir / RUN], options, clock=fake_clock(), peak_meter=meter)

    on_file = bench.read_records(options.results)
    assert on_file[0] == earlier
    [torch_record] = on_file[1:]
    assert torch_record.identity.backend == "torch" and not torch_record.failed
    assert torch_record.calibration.peak_samples == [50.0, 80.0]  # what was measured by then

    machine = FakeMachine(peaks=[70.0, 70.0], loads=[0.1, 0.1])
    resumed = bench.bench(
        [runs_dir / RUN],
        dataclasses.replace(options, skip_existing=True),
        clock=fake_clock(),
        peak_meter=machine.meter(),
    )
    assert [record.identity.backend for record in resumed.records] == ["onnxruntime"]
    assert bench.read_records(options.results) == [earlier, torch_record, *resumed.records]


def test_a_busy_machine_marks_every_record_unstable(runs_dir: Path, tmp_path: Path) -> None:
    busy = float(available_cores() + 3)
    machine = FakeMachine(peaks=[100.0, 100.0], loads=[0.1, busy])
    result = bench.bench(
        [runs_dir / RUN], _options(tmp_path), clock=fake_clock(), peak_meter=machine.meter()
    )
    [record] = result.records
    assert record.unstable is True
    assert record.unstable_reasons == [
        f"load average {busy:.2f} above the {available_cores()} usable cores"
    ]


# -- steadiness -------------------------------------------------------------------------------


def _steady(**overrides) -> object:
    defaults = dict(peak_samples=[100.0, 98.0], load_averages=[0.5, 0.7], usable_cores=2)
    return make_bench_record(
        **{"seconds_per_100_images": [0.1, 0.101, 0.102], **defaults, **overrides}
    )


def test_steadiness_marks_load_spread_and_peak_spread() -> None:
    calm = _steady()
    loaded = _steady(load_averages=[0.5, 2.5])
    spread = _steady(seconds_per_100_images=[0.1, 0.1, 0.1 * (1 + SPREAD_LIMIT) + 0.001])
    drifting = _steady(peak_samples=[100.0, 80.0])
    failed = make_error_record(load_averages=[9.0], usable_cores=2)
    marked = mark_steadiness([calm, loaded, spread, drifting, failed])
    assert [record.unstable for record in marked] == [False, True, True, True, False]
    assert marked[1].unstable_reasons == ["load average 2.50 above the 2 usable cores"]
    assert marked[2].unstable_reasons[0] == "repeats 11% apart (limit 10%)"
    assert marked[3].unstable_reasons[0].startswith("machine peak measurements 22% apart")
    assert unsteady_warning(marked[:1], calm.calibration) is None
    warning = unsteady_warning(marked, marked[2].calibration)
    assert "\n" not in warning and "1 record(s)" in warning and "3 of 5" in warning


def test_peak_meter_keeps_every_measurement_and_the_best() -> None:
    meter = FakeMachine(peaks=[70.0, 90.0, 85.0], loads=[1.0, 1.5, 0.5]).meter()
    for _ in range(3):
        meter.sample()
    calibration = meter.calibration()
    assert calibration.peak_gflops == 90.0 and calibration.peak_samples == [70.0, 90.0, 85.0]
    assert calibration.onnxruntime_gflops == 45.0 and calibration.seconds == 1.5
    assert calibration.load_averages == [1.0, 1.5, 0.5]
    assert calibration.usable_cores == available_cores()
    reused = PeakMeter(1, reuse=_calibration(10.0))
    reused.sample()
    assert reused.calibration() == _calibration(10.0)


def test_threads_are_bounded_by_the_usable_cores() -> None:
    cores = available_cores()
    assert BenchOptions(threads=cores).threads == cores
    for threads in (0, cores + 1, 999):
        message = f"threads must be between 1 and {cores} (the cores this process may use)"
        with pytest.raises(bench.BenchError, match=re.escape(f"{message}, got {threads}")):
            BenchOptions(threads=threads)


def test_other_processes_cpu_decides_over_the_load_average() -> None:
    """On Linux the other processes' share of the CPU decides: the bench's own threads keep
    the load average at the core count on a calm machine."""
    # (machine busy seconds, this process's seconds) at three samples, one second apart.
    readings = iter([(0.0, 0.0), (2.0, 1.9), (4.0, 2.9)])
    walls = iter([0.0, 1.0, 2.0])
    meter = PeakMeter(
        1,
        measure=lambda _threads: _calibration(100.0),
        load_average=lambda: float(available_cores()) + 0.1,
        cpu_seconds=lambda: next(readings),
        wall_clock=lambda: next(walls),
    )
    for _ in range(3):
        meter.sample()
    calibration = meter.calibration()
    # Others: 0.1 core in the first second, 1.0 core (a CPU burner) in the second.
    assert calibration.other_cpu_cores == [0.1, 1.0]
    calm = _steady(other_cpu_cores=[0.1, 0.05], load_averages=[2.1, 2.2])
    busy = _steady(other_cpu_cores=calibration.other_cpu_cores, load_averages=[2.1, 2.2])
    marked = mark_steadiness([calm, busy])
    assert [record.unstable for record in marked] == [False, True]
    assert (
        marked[1]
        .unstable_reasons[0]
        .startswith(f"other processes used 1.00 cores (limit {OTHER_CPU_LIMIT:.2f}")
    )


def test_read_cpu_seconds_counts_this_process() -> None:
    first = read_cpu_seconds()
    if first is None:
        pytest.skip("no /proc/stat on this system")
    sum(index * index for index in range(2_000_000))  # some CPU time of our own
    second = read_cpu_seconds()
    assert second is not None
    assert second[1] > first[1] and second[0] >= first[0]
