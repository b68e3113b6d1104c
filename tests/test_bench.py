"""The bench sweep: well-formed records, honest scores, failures as records, the CLI.

No timing thresholds here: the sweep runs on a fake clock and a fixed calibration, so its
samples are known exactly; speed is measured by running ``fkdbench bench``, not asserted.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from bench_factory import fake_clock, make_error_record
from typer.testing import CliRunner

from fkdbench import bench, export, runs
from fkdbench.bench import BenchOptions, Calibration, read_records, record_from_json, sweep
from fkdbench.bench.timing import passes_for
from fkdbench.cli import app
from fkdbench.io import sha256_file

RUN = "cnn-manual--none"
STEP = 0.0625  # fake_clock's step: each timed pass or call lasts exactly this long
CALIBRATION = Calibration(
    peak_gflops=100.0,
    torch_gflops=80.0,
    onnxruntime_gflops=100.0,
    threads=1,
    matrix_sizes=[64],
    seconds=0.5,
)
# INT8 costs a little accuracy: on the tiny trained run its test RMSE is within this
# fraction of FP32 ONNX Runtime's (measured: 0.3%); a broken quantization is far off.
INT8_RMSE_RELATIVE_TOLERANCE = 0.02
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


def _bench(folders: list[Path], options: BenchOptions) -> bench.BenchResult:
    return bench.bench(folders, options, calibration=CALIBRATION, clock=fake_clock(STEP))


def test_records_are_complete_and_scores_match_training(runs_dir: Path, tmp_path: Path) -> None:
    options = _options(tmp_path)
    result = _bench([runs_dir / RUN], options)

    records = result.records
    assert [record.identity.backend for record in records] == list(bench.CORE_BACKENDS)
    assert result.failures == [] and result.failure_summary() is None
    assert result.calibration == CALIBRATION
    metrics = runs.read_metrics(runs_dir / RUN)
    lines = options.results.read_text().splitlines()
    assert [record_from_json(json.loads(line)) for line in lines] == records
    images = metrics["rows"]["test"]
    for record in records:
        flat = record.flat()
        assert flat["run_name"] == RUN and flat["trained"] is True and flat["error"] is None
        assert flat["arch"] == "cnn-manual" and flat["variant"] == "none"
        assert flat["threads"] == 1 and flat["batch_size"] == 4 and flat["images"] == images
        assert flat["passes_per_sample"] == passes_for(STEP)
        # Every sample and every batch-1 call is kept, and lasted one clock step; a
        # sample of passes_for(STEP) passes, since one pass is shorter than a sample.
        assert record.settings.passes_per_sample == passes_for(STEP) > 1
        sample_images = images * passes_for(STEP)
        assert record.samples.seconds_per_100_images == [STEP / sample_images * 100] * 2
        assert record.samples.latency_batch1_ms == [STEP * 1000] * 5
        assert flat["seconds_per_100_images_iqr"] == 0.0
        assert flat["latency_batch1_p99_ms"] == STEP * 1000
        work = flat["flops_per_image"]
        assert work > 0
        assert flat["achieved_gflops"] == work * 100 / (STEP / sample_images * 100) / 1e9
        assert flat["fraction_of_peak"] == flat["achieved_gflops"] / 100.0
        assert flat["normalised_time"] == STEP / sample_images * 100 * 100.0
        assert flat["parameters_pytorch"] == metrics["parameters"]["pytorch"]
        assert flat["parameters_keras"] == metrics["parameters"]["keras"]
        assert flat["model_pt_bytes"] == metrics["model_file_bytes"]
        assert flat["onnx_bytes"] and flat["int8_onnx_bytes"]
        assert flat["cpu_model"] and flat["cpu_cores"] >= 1 and flat["versions"]["torch"]
        assert flat["git_commit"] and flat["timestamp"] and record.settings.latency_warmup == 1
        assert Path(flat["model_file"]).name == bench.BACKEND_FILES[record.identity.backend]
        assert flat["test_fr"] is not None and flat["test_auc"] is not None
    by_backend = {record.identity.backend: record.scores for record in records}
    # Each backend is scored from its own predictions: torch reproduces training's score.
    assert by_backend["torch"].test_rmse == pytest.approx(metrics["test_rmse"], abs=1e-4)
    assert by_backend["onnxruntime"].test_rmse == pytest.approx(metrics["test_rmse"], abs=1e-3)
    assert by_backend["onnxruntime-int8"].test_rmse == pytest.approx(
        by_backend["onnxruntime"].test_rmse, rel=INT8_RMSE_RELATIVE_TOLERANCE
    )
    assert by_backend["onnxruntime-int8"].test_rmse != by_backend["onnxruntime"].test_rmse
    assert records[2].settings.int8_activations == "uint8"


def test_skip_existing_measures_only_what_is_new(runs_dir: Path, tmp_path: Path) -> None:
    options = _options(tmp_path, backends=("torch",))
    _bench([runs_dir / RUN], options)
    again = _bench([runs_dir / RUN], dataclasses.replace(options, skip_existing=True))
    assert again.records == []
    more = _bench(
        [runs_dir / RUN],
        dataclasses.replace(options, skip_existing=True, backends=("torch", "onnxruntime")),
    )
    assert [record.identity.backend for record in more.records] == ["onnxruntime"]
    assert len(options.results.read_text().splitlines()) == 2

    # An error record is never a measurement: that target is measured again.
    other = tmp_path / "other.jsonl"
    measured = read_records(options.results)[0]
    failed = make_error_record(
        run_name=RUN,
        backend="torch",
        model_sha256=measured.identity.model_sha256,
        **{name: getattr(measured.settings, name) for name in ("threads", "batch_size", "repeats")},
    )
    bench.append_records(other, [failed])
    retried = _bench(
        [runs_dir / RUN], dataclasses.replace(options, results=other, skip_existing=True)
    )
    assert [(r.identity.backend, r.failed) for r in retried.records] == [("torch", False)]


def _model_sha(folder: Path) -> str:
    return sha256_file(folder / runs.MODEL_FILE)


def test_failed_targets_become_records_and_the_sweep_goes_on(
    runs_dir: Path, tmp_path: Path
) -> None:
    unreadable = runs_dir / "broken--config"
    shutil.copytree(runs_dir / RUN, unreadable)
    (unreadable / runs.CONFIG_FILE).write_text("{not json")
    corrupt = runs_dir / "corrupt--onnx"
    shutil.copytree(runs_dir / RUN, corrupt)
    # A model.onnx that is not the graph export.json recorded is exported again, not timed.
    (corrupt / export.ONNX_FILE).write_bytes(b"garbage")
    interrupted = runs_dir / "interrupted--run"
    shutil.copytree(runs_dir / RUN, interrupted)
    # Partly trained weights are not exported: its ONNX backend fails, torch still times.
    (interrupted / runs.METRICS_FILE).unlink()
    options = _options(tmp_path, backends=("torch", "onnxruntime"))

    result = _bench([unreadable, corrupt, interrupted, runs_dir / RUN], options)

    outcome = [(r.identity.run_name, r.identity.backend, r.failed) for r in result.records]
    assert outcome == [
        ("broken--config", "torch", True),
        ("broken--config", "onnxruntime", True),
        (RUN, "torch", False),
        (RUN, "onnxruntime", False),  # the corrupt copy, exported again
        (RUN, "torch", False),  # the interrupted copy: torch needs no ONNX file
        (RUN, "onnxruntime", True),
        (RUN, "torch", False),
        (RUN, "onnxruntime", False),
    ]
    assert result.failure_summary() == "3 of 8 targets failed"
    assert "config.json" in result.records[0].error and result.records[0].model is None
    assert "training was interrupted" in result.records[5].error
    assert all("\n" not in record.error for record in result.failures)
    assert result.records[5].model is not None  # the run was read; only its export failed
    assert export.stale_export_reason(corrupt, _model_sha(corrupt), False, "uint8") is None
    # Every target is on file, the failures with their errors.
    on_file = read_records(options.results)
    assert on_file == result.records
    assert [record.flat()["error"] is not None for record in on_file] == [
        record.failed for record in result.records
    ]


# The registry's tiny stand-ins for the three heavy backbones: what is tested is the sweep
# over every architecture, not the backbones' speed.
TINY_REGISTRY = ["cnn-manual", "test-mobilenetv2", "test-nasnet", "test-resnet"]


def test_all_times_every_architecture_untrained_where_needed(
    runs_dir: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "list_models", lambda: TINY_REGISTRY)
    folders = bench.bench_targets(runs_dir, all_models=True, data_dir=tiny_dataset)
    names = [folder.name for folder in folders]
    assert RUN in names
    untrained = {name.removesuffix("--untrained") for name in names if name.endswith("--untrained")}
    assert untrained == set(TINY_REGISTRY) - {"cnn-manual"}
    result = _bench(folders, _options(tmp_path, backends=("torch",), repeats=1, latency_samples=1))
    assert result.failures == []
    assert {record.identity.arch for record in result.records} == set(TINY_REGISTRY)
    for record in result.records:
        assert record.identity.trained == (record.identity.run_name == RUN)
        assert (record.scores.test_rmse is None) == (not record.identity.trained)


def test_options_are_checked() -> None:
    with pytest.raises(bench.BenchError, match="unknown backend 'tensorrt'"):
        BenchOptions(backends=("tensorrt",))
    with pytest.raises(bench.BenchError, match="repeats must be at least 1"):
        BenchOptions(repeats=0)
    with pytest.raises(bench.BenchError, match="threads must be between 1 and"):
        BenchOptions(threads=0)
    with pytest.raises(bench.BenchError, match="nothing to measure"):
        bench.bench_targets(Path("no-runs-here"))


# -- the command line (real clock, real calibration) --------------------------------------


def _cli_bench(runs_dir: Path, results: Path, *extra: str, run: str = RUN):
    return runner.invoke(
        app,
        [
            "bench",
            run,
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
    # One repeat against one: no test can decide, so the ratio does, and the gate says so.
    assert "1 vs 1 samples can never be significant" in slow.output
    assert "gate: FAILED" in slow.output
    assert len(results.read_text().splitlines()) == 3


def test_cli_failed_target_is_recorded_and_exits_1(runs_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "bench.jsonl"
    missing = runner.invoke(app, ["bench", "no-such-run", "--runs-dir", str(runs_dir)])
    assert missing.exit_code == 1 and "no such run" in missing.output
    assert "Traceback" not in missing.output

    # An interrupted run cannot be exported: its ONNX target is recorded, then exit 1.
    (runs_dir / RUN / runs.METRICS_FILE).unlink()
    interrupted = _cli_bench(runs_dir, results)
    assert interrupted.exit_code == 1, interrupted.output
    assert "training was interrupted" in interrupted.output
    assert "1 of 1 targets failed" in interrupted.output
    assert "Traceback" not in interrupted.output
    [record] = read_records(results)
    assert record.failed and "training was interrupted" in record.error

    no_baseline = _cli_bench(runs_dir, results, "--baseline", str(tmp_path / "missing.json"))
    assert no_baseline.exit_code == 1 and "no such baseline" in no_baseline.output


@pytest.mark.parametrize(
    ("suffix", "changes", "recipe"),
    [
        ("--wing", {"loss": "wing"}, ("wing",)),
        # A backbone pretrained here is set against the same model from scratch.
        (
            "--frozen--pretrained-autoencoder",
            {"pretrain": "autoencoder", "weights_mode": "frozen"},
            ("pretrained-autoencoder",),
        ),
    ],
)
def test_skip_existing_times_a_new_lever_beside_its_twin(
    runs_dir: Path, tmp_path: Path, suffix: str, changes: dict, recipe: tuple
) -> None:
    """A lever's cost is a ratio to its twin's: a ratio of one bench run, so a new lever
    brings its already-timed twin back into the run."""
    lever = runs_dir / f"{RUN}{suffix}"
    shutil.copytree(runs_dir / RUN, lever)
    config = json.loads((lever / runs.CONFIG_FILE).read_text())
    config["run_name"] = lever.name
    config["train"].update(changes)
    config["weights_mode"] = changes.get("weights_mode", "scratch")
    (lever / runs.CONFIG_FILE).write_text(json.dumps(config))
    options = _options(tmp_path, backends=("torch",), skip_existing=True)
    _bench([runs_dir / RUN], options)
    both = _bench([runs_dir / RUN, lever], options)
    timed = {(r.identity.run_name, r.identity.recipe) for r in both.records}
    assert timed == {(RUN, ()), (lever.name, recipe)}
    # Nothing new: nothing timed, the twin included.
    assert _bench([runs_dir / RUN, lever], options).records == []
