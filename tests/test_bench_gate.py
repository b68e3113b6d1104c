"""The regression gate: normalised times against a baseline; failures are not timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_factory import make_bench_record, make_error_record

from fkdbench import bench


def _timed(run_name: str, backend: str, seconds: float, peak: float):
    return make_bench_record(
        run_name=run_name,
        backend=backend,
        seconds_per_100_images=[seconds],
        peak_gflops=peak,
    )


def test_gate_compares_normalised_times(tmp_path: Path) -> None:
    records = [_timed("a--none", "onnxruntime", 0.1, 100.0), _timed("b", "torch", 1.0, 100.0)]
    path = tmp_path / "baseline.json"
    bench.save_baseline(records, path)
    baseline = bench.load_baseline(path)
    assert baseline["entries"]["a--none|onnxruntime|batch 32"] == {
        "seconds_per_100_images": 0.1,
        "normalised_time": 0.1 * 100.0,
        "normalised_samples": [0.1 * 100.0],
        "machine_peak_gflops": 100.0,
        "threads": 2,
        "cpu_model": "Test CPU",
    }
    assert bench.check_baseline(records, baseline, 0.25).passed

    # A machine twice as fast measures half the seconds but the same normalised time.
    fast_machine = [
        _timed("a--none", "onnxruntime", 0.05, 200.0),
        _timed("b", "torch", 0.5, 200.0),
    ]
    assert bench.check_baseline(fast_machine, baseline, 0.25).passed

    # The same machine, one model 40% slower: named; the other passes.
    slower = [_timed("a--none", "onnxruntime", 0.14, 100.0), _timed("b", "torch", 1.0, 100.0)]
    result = bench.check_baseline(slower, baseline, 0.25)
    assert not result.passed
    assert [comparison.key for comparison in result.regressions] == ["a--none|onnxruntime|batch 32"]
    assert result.regressions[0].ratio == pytest.approx(1.4)
    assert any("REGRESSION a--none|onnxruntime" in line for line in bench.gate_report(result))
    assert bench.check_baseline(slower, baseline, 0.5).passed

    partial = bench.check_baseline(records[:1] + [_timed("c", "torch", 1, 100)], baseline, 0.25)
    assert partial.not_measured == ["b|torch|batch 32"] and partial.new == ["c|torch|batch 32"]
    assert partial.passed


def test_an_error_record_fails_the_gate_with_its_message(tmp_path: Path) -> None:
    records = [_timed("a--none", "onnxruntime", 0.1, 100.0), _timed("b", "torch", 1.0, 100.0)]
    baseline = bench.save_baseline(records, tmp_path / "baseline.json")
    error = "runs/b/model.pt: not a readable checkpoint"
    broken = make_error_record(error, run_name="b", backend="torch")
    result = bench.check_baseline([records[0], broken], baseline, 0.25)
    assert not result.passed and result.regressions == []
    assert result.failed == {"b|torch|batch 32": error}
    # Failed is not "not measured", and not compared as a time.
    assert result.not_measured == [] and len(result.compared) == 1
    lines = bench.gate_report(result)
    assert f"FAILED b|torch|batch 32: not measured: {error}" in lines
    assert lines[-1] == "gate: FAILED"
    # A later success of the same key in the same list counts instead.
    assert bench.check_baseline([broken, *records], baseline, 0.25).passed


def test_error_records_are_not_saved_as_a_baseline(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    saved = bench.save_baseline([make_error_record(), _timed("a", "torch", 0.1, 100.0)], path)
    assert list(saved["entries"]) == ["a|torch|batch 32"]
    assert json.loads(path.read_text())["entries"] == saved["entries"]
    with pytest.raises(bench.BenchError, match="no bench records to save"):
        bench.save_baseline([make_error_record()], path)


def test_baseline_errors(tmp_path: Path) -> None:
    with pytest.raises(bench.BenchError, match="no such baseline"):
        bench.load_baseline(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(bench.BenchError, match="malformed JSON"):
        bench.load_baseline(bad)
    bad.write_text("[]")
    with pytest.raises(bench.BenchError, match="not a fkdbench baseline"):
        bench.load_baseline(bad)
    with pytest.raises(bench.BenchError, match="tolerance must be >= 0"):
        bench.check_baseline([], {"entries": {}}, -0.1)


# -- the gate as a statistical test ------------------------------------------------------

REPEATS = 10
KEY = "a|torch|batch 32"


def _noisy(seed: int, scale: float = 1.0, noise: float = 0.05):
    """A record of REPEATS passes around 0.1 s x ``scale``, with lognormal noise."""
    rng = np.random.default_rng(seed)
    passes = 0.1 * scale * rng.lognormal(0.0, noise, REPEATS)
    return make_bench_record(run_name="a", backend="torch", seconds_per_100_images=list(passes))


def _baseline(tmp_path: Path, record) -> dict:
    return bench.save_baseline([record], tmp_path / "baseline.json")


@pytest.mark.parametrize("seed", range(1, 11))
def test_noise_alone_passes_even_where_the_medians_differ(tmp_path: Path, seed: int) -> None:
    baseline = _baseline(tmp_path, _noisy(0))
    # Tolerance 1%: the ratio of medians alone would fail about half of these.
    result = bench.check_baseline([_noisy(seed)], baseline, 0.01)
    assert result.passed, bench.gate_report(result)


def test_some_noise_only_runs_exceed_the_tolerance_so_the_test_decides(tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, _noisy(0))
    results = [bench.check_baseline([_noisy(seed)], baseline, 0.01) for seed in range(1, 11)]
    assert any(result.compared[0].ratio > 1.01 for result in results)


def test_an_injected_slowdown_fails_the_gate(tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, _noisy(0))
    result = bench.check_baseline([_noisy(1, scale=1.5)], baseline, 0.25)
    assert not result.passed
    [regression] = result.regressions
    assert regression.key == KEY and regression.p_value < bench.gate.ALPHA
    assert regression.ratio == pytest.approx(1.5, rel=0.1)
    assert any(line.startswith(f"REGRESSION {KEY}") for line in bench.gate_report(result))


def test_a_significant_slowdown_within_tolerance_passes(tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, _noisy(0, noise=0.01))
    result = bench.check_baseline([_noisy(1, scale=1.1, noise=0.01)], baseline, 0.25)
    assert result.compared[0].significant is True and result.passed


def test_a_slowdown_beyond_tolerance_but_not_significant_passes_and_is_said(
    tmp_path: Path,
) -> None:
    # Every pass 2% slower, inside a 5% noise: over the zero tolerance, but no evidence.
    base = _noisy(0)
    baseline = _baseline(tmp_path, base)
    passes = [value * 1.02 for value in base.samples.seconds_per_100_images]
    slower = make_bench_record(run_name="a", backend="torch", seconds_per_100_images=passes)
    result = bench.check_baseline([slower], baseline, 0.0)
    comparison = result.compared[0]
    assert comparison.ratio == pytest.approx(1.02) and comparison.significant is False
    assert result.passed
    assert any(line.startswith(f"not significant {KEY}") for line in bench.gate_report(result))


def test_too_few_samples_are_judged_on_the_ratio_and_said(tmp_path: Path) -> None:
    three = make_bench_record(run_name="a", backend="torch", seconds_per_100_images=[0.1] * 3)
    slower = make_bench_record(run_name="a", backend="torch", seconds_per_100_images=[0.2] * 3)
    baseline = _baseline(tmp_path, three)
    result = bench.check_baseline([slower], baseline, 0.25)
    assert not result.passed and result.regressions[0].p_value is None
    lines = bench.gate_report(result)
    assert any("3 vs 3 samples can never be significant" in line for line in lines)


def test_a_format1_baseline_without_samples_is_judged_on_the_ratio(tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, _noisy(0))
    for entry in baseline["entries"].values():
        del entry["normalised_samples"]
    baseline["format_version"] = 1
    result = bench.check_baseline([_noisy(1, scale=1.5)], baseline, 0.25)
    assert not result.passed
    assert "no samples (format 1)" in bench.gate_report(result)[1]


def test_a_baseline_matching_no_model_is_an_error(tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, _noisy(0))
    other = make_bench_record(run_name="b", backend="torch")
    with pytest.raises(bench.BenchError, match="matches none of the models measured") as caught:
        bench.check_baseline([other], baseline, 0.25, tmp_path / "baseline.json")
    message = str(caught.value)
    assert "baseline.json" in message and KEY in message and "b|torch|batch 32" in message


def test_baseline_samples_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    data = bench.save_baseline([_noisy(0)], path)
    data["entries"][KEY]["normalised_samples"] = ["fast"]
    path.write_text(json.dumps(data))
    with pytest.raises(bench.BenchError, match="normalised_samples is not a list"):
        bench.load_baseline(path)
