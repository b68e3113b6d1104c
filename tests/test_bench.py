"""Benchmark: well-formed records, honest scores, the regression gate, bad input.

No timing thresholds here: speed is measured by running ``fkdbench bench``, not asserted.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fkdbench import bench, export, runs
from fkdbench.bench import BenchOptions, BenchRecord
from fkdbench.cli import app
from fkdbench.models import list_models

RUN = "cnn-manual--none"
runner = CliRunner()


@pytest.fixture
def runs_dir(trained_runs: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    shutil.copytree(trained_runs, folder)
    return folder


def _options(tmp_path: Path, **changes) -> BenchOptions:
    settings = dict(
        threads=1,
        repeats=2,
        latency_samples=5,
        latency_warmup=1,
        batch_size=4,
        results=tmp_path / "results" / "bench.jsonl",
        quiet=True,
    )
    return BenchOptions(**{**settings, **changes})


def test_machine_peak_and_flops() -> None:
    calibration = bench.measure_machine_peak(threads=1, matrix_sizes=(64, 128))
    assert calibration.peak_gflops == max(calibration.torch_gflops, calibration.onnxruntime_gflops)
    assert calibration.torch_gflops > 0 and calibration.onnxruntime_gflops > 0
    # A 16 -> 3 linear layer: 16 * 3 multiply-adds = 96 FLOPs per image.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    assert bench.flops_per_image(model, in_chans=1, image_size=4) == 96


def test_records_are_complete_and_scores_match_training(runs_dir: Path, tmp_path: Path) -> None:
    options = _options(tmp_path)
    records, calibration = bench.bench([runs_dir / RUN], options)

    assert [record.backend for record in records] == list(bench.BACKENDS)
    metrics = runs.read_metrics(runs_dir / RUN)
    lines = options.results.read_text().splitlines()
    assert len(lines) == 3
    for line, record in zip(lines, records, strict=True):
        saved = json.loads(line)
        assert set(saved) == {field.name for field in dataclasses.fields(BenchRecord)}
        assert saved["run_name"] == RUN and saved["trained"] is True
        assert saved["arch"] == "cnn-manual" and saved["variant"] == "none"
        assert saved["threads"] == 1 and saved["batch_size"] == 4
        assert saved["images"] == metrics["rows"]["test"]
        assert len(saved["seconds_per_100_images_all"]) == 2
        q1, median, q3 = (saved[f"seconds_per_100_images{suffix}"] for suffix in ("_q1", "", "_q3"))
        assert 0 < q1 <= median <= q3
        assert 0 < saved["latency_batch1_p50_ms"] <= saved["latency_batch1_p99_ms"]
        assert saved["flops_per_image"] > 0
        assert saved["fraction_of_peak"] == pytest.approx(
            saved["achieved_gflops"] / calibration.peak_gflops
        )
        assert saved["normalised_time"] == pytest.approx(median * calibration.peak_gflops)
        assert saved["parameters_pytorch"] == metrics["parameters"]["pytorch"]
        assert saved["parameters_keras"] == metrics["parameters"]["keras"]
        assert saved["model_pt_bytes"] == metrics["model_file_bytes"]
        assert saved["onnx_bytes"] and saved["int8_onnx_bytes"]
        assert saved["cpu_model"] and saved["cpu_cores"] >= 1 and saved["versions"]["torch"]
        assert saved["git_commit"] and saved["timestamp"]
        assert Path(saved["model_file"]).name == bench.BACKEND_FILES[record.backend]
    by_backend = {record.backend: record for record in records}
    # Each backend is scored from its own predictions: torch reproduces training's score.
    assert by_backend["torch"].test_rmse == pytest.approx(metrics["test_rmse"], abs=1e-4)
    assert by_backend["onnxruntime"].test_rmse == pytest.approx(metrics["test_rmse"], abs=1e-3)
    assert by_backend["onnxruntime-int8"].test_rmse > 0


def test_skip_existing_measures_only_what_is_new(runs_dir: Path, tmp_path: Path) -> None:
    options = _options(tmp_path, backends=("torch",))
    bench.bench([runs_dir / RUN], options)
    again, _ = bench.bench([runs_dir / RUN], dataclasses.replace(options, skip_existing=True))
    assert again == []
    more, _ = bench.bench(
        [runs_dir / RUN],
        dataclasses.replace(options, skip_existing=True, backends=("torch", "onnxruntime")),
    )
    assert [record.backend for record in more] == ["onnxruntime"]
    assert len(options.results.read_text().splitlines()) == 2


def test_all_times_every_architecture_untrained_where_needed(
    runs_dir: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    folders = bench.bench_targets(runs_dir, all_models=True, data_dir=tiny_dataset)
    names = [folder.name for folder in folders]
    assert RUN in names
    untrained = {name.removesuffix("--untrained") for name in names if name.endswith("--untrained")}
    assert untrained == set(list_models()) - {"cnn-manual"}
    records, _ = bench.bench(
        folders, _options(tmp_path, backends=("torch",), repeats=1, latency_samples=1)
    )
    assert {record.arch for record in records} == set(list_models())
    for record in records:
        assert record.trained == (record.run_name == RUN)
        assert (record.test_rmse is None) == (not record.trained)


def _record(run_name: str, backend: str, seconds: float, peak: float) -> dict:
    return {
        "run_name": run_name,
        "backend": backend,
        "batch_size": 32,
        "seconds_per_100_images": seconds,
        "normalised_time": seconds * peak,
        "machine_peak_gflops": peak,
        "threads": 2,
        "cpu_model": "test",
    }


def test_gate_compares_normalised_times(tmp_path: Path) -> None:
    records = [_record("a--none", "onnxruntime", 0.1, 100.0), _record("b", "torch", 1.0, 100.0)]
    path = tmp_path / "baseline.json"
    bench.save_baseline(records, path)
    baseline = bench.load_baseline(path)
    assert bench.check_baseline(records, baseline, 0.25).passed

    # A machine twice as fast measures half the seconds but the same normalised time.
    fast_machine = [
        _record("a--none", "onnxruntime", 0.05, 200.0),
        _record("b", "torch", 0.5, 200.0),
    ]
    assert bench.check_baseline(fast_machine, baseline, 0.25).passed

    # The same machine, one model 40% slower: named; the other passes.
    slower = [_record("a--none", "onnxruntime", 0.14, 100.0), _record("b", "torch", 1.0, 100.0)]
    result = bench.check_baseline(slower, baseline, 0.25)
    assert not result.passed
    assert [comparison.key for comparison in result.regressions] == ["a--none|onnxruntime|batch 32"]
    assert any("REGRESSION a--none|onnxruntime" in line for line in bench.gate_report(result))
    assert bench.check_baseline(slower, baseline, 0.5).passed

    partial = bench.check_baseline(records[:1] + [_record("c", "torch", 1, 100)], baseline, 0.25)
    assert partial.not_measured == ["b|torch|batch 32"] and partial.new == ["c|torch|batch 32"]


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


def _cli_bench(runs_dir: Path, results: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "bench",
            RUN,
            "--runs-dir",
            str(runs_dir),
            "--threads",
            "1",
            "--repeats",
            "1",
            "--latency-samples",
            "2",
            "--backend",
            "onnxruntime",
            "--results",
            str(results),
            "--quiet",
            *extra,
        ],
    )


def test_cli_gate_passes_then_fails_on_an_injected_slowdown(runs_dir: Path, tmp_path: Path) -> None:
    results, baseline = tmp_path / "bench.jsonl", tmp_path / "baseline.json"
    saved = _cli_bench(runs_dir, results, "--save-baseline", str(baseline))
    assert saved.exit_code == 0, saved.output
    assert baseline.is_file() and "1 record(s) appended" in saved.output

    # Generous tolerance: this checks the wiring, not the machine's noise.
    same = _cli_bench(runs_dir, results, "--baseline", str(baseline), "--tolerance", "50")
    assert same.exit_code == 0, same.output
    assert "gate: PASSED" in same.output

    # A baseline edited to be 1000x faster: the model must be named as a regression.
    data = json.loads(baseline.read_text())
    for entry in data["entries"].values():
        entry["normalised_time"] /= 1000
    baseline.write_text(json.dumps(data))
    slow = _cli_bench(runs_dir, results, "--baseline", str(baseline), "--tolerance", "0.25")
    assert slow.exit_code == 1
    assert f"REGRESSION {RUN}|onnxruntime|batch 32" in slow.output
    assert "gate: FAILED" in slow.output
    assert len(results.read_text().splitlines()) == 3


def test_cli_bad_input_is_one_line_and_records_nothing(runs_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "bench.jsonl"
    missing = runner.invoke(app, ["bench", "no-such-run", "--runs-dir", str(runs_dir)])
    assert missing.exit_code == 1 and "no such run" in missing.output
    assert "Traceback" not in missing.output

    # A corrupt model.onnx that no export.json vouches for.
    (runs_dir / RUN / export.ONNX_FILE).write_bytes(b"garbage")
    (runs_dir / RUN / export.EXPORT_RECORD_FILE).unlink(missing_ok=True)
    corrupt = _cli_bench(runs_dir, results)
    assert corrupt.exit_code == 1
    assert "model.onnx: not a loadable ONNX model" in corrupt.output
    assert len(corrupt.output.strip().splitlines()) == 1
    assert not results.exists()

    no_baseline = _cli_bench(runs_dir, results, "--baseline", str(tmp_path / "missing.json"))
    assert no_baseline.exit_code == 1 and "no such baseline" in no_baseline.output


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(bench.BenchError, match="unknown backend 'tensorrt'"):
        BenchOptions(backends=("tensorrt",))
