"""The regression gate: normalised times against a baseline; failures are not timings."""

from __future__ import annotations

import json
from pathlib import Path

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
