"""``build_report`` end to end: every section, figure and file written, tables equal to the
records they came from, nothing invented, and the committed report rebuilt byte for byte.

Nothing is trained: run folders are an untrained cnn-manual (real config.json and model.pt)
copied under run names, with hand-written metrics.json and history.csv; bench records are
built from the record type itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from bench_factory import make_bench_record
from report_factory import PNG_MAGIC, write_bench_file

from fkdbench import report, runs
from fkdbench.bench import BenchRecord
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.data.variants import VARIANTS
from fkdbench.report.common import MEAN_SHAPE_ROW
from fkdbench.report.figures import FIGURES

# The predictions figure runs every architecture's model on a few faces.
pytestmark = pytest.mark.usefixtures("single_cpu_thread")

# Hand-made scores: none 2.0 and aug 1.0 make a +50% gain ("+++").
SCORES = {"none": (2.0, 0.06), "aug": (1.0, 0.03), "knn": (1.9, 0.055)}


def _metrics(run_name: str, variant: str, rmse: float, nme: float, model_bytes: int) -> dict:
    return {
        "arch": "cnn-manual",
        "run_name": run_name,
        "variant": variant,
        "weights_mode": "scratch",
        "test_rmse": rmse,
        "test_nme": nme,
        "test_fr": nme / 0.2,
        "test_auc": 1 - nme * 10,
        "failure_threshold": 0.1,
        "test_ced": [min(1.0, step / 50) for step in range(101)],
        "test_per_keypoint_rmse": {"nose_tip": rmse},
        "mean_shape_rmse": 4.0,
        "parameters": {"pytorch": 234_622, "keras": 235_102, "trainable": 234_622},
        "model_file_bytes": model_bytes,
        "best_epoch": 3,
        "best_val_rmse": rmse + 0.1,
        "epochs_run": 3,
        "stop_reason": "completed",
        "training_seconds": 12.5,
        "rows": {"train": 40, "val": 9, "test": 9},
        "environment": {"cpu_model": "Test CPU", "cpu_cores": 2, "git_commit": "abc123"},
    }


def _bench_record(run_name: str, backend: str, seconds: float, **overrides) -> BenchRecord:
    trained = not run_name.endswith("--untrained")
    fields = {
        "run_name": run_name,
        "arch": "cnn-manual",
        "variant": run_name.split("--")[1] if trained else None,
        "trained": trained,
        "backend": backend,
        "batch_size": 32,
        "threads": 1,
        "images": 9,
        "repeats": 5,
        "seconds_per_100_images": [seconds] * 5,
        "latency_batch1_ms": [1.5] * 20,
        "latency_samples": 20,
        "flops_per_image": 50_000_000,
        "parameters_pytorch": 234_622,
        "parameters_keras": 235_102,
        "model_pt_bytes": 956_965,
        "onnx_bytes": 983_283 if backend != "torch" else None,
        "int8_onnx_bytes": None,
        "test_rmse": 2.01 if trained else None,
        "test_nme": 0.06 if trained else None,
        "test_fr": 0.01 if trained else None,
        "test_auc": 0.6 if trained else None,
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
    return make_bench_record(**{**fields, **overrides})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data set, an untrained folder, three fabricated cnn-manual runs, a bench file."""
    root = tmp_path_factory.mktemp("report")
    data_dir = prepare(
        PrepareOptions(data_root=root / "data", n_train=60, n_test=10, workers=1, quiet=True)
    ).data_dir
    runs_dir = root / "runs"
    untrained = runs.create_untrained_run(runs_dir, "cnn-manual", data_dir)
    base_config = runs.read_config(untrained)
    for variant, (rmse, nme) in SCORES.items():
        name = runs.run_name("cnn-manual", variant)
        folder = runs_dir / name
        folder.mkdir()
        shutil.copy(untrained / runs.MODEL_FILE, folder / runs.MODEL_FILE)
        config = {k: v for k, v in base_config.items() if k != "trained"}
        config["run_name"] = name
        config["train"] = {"variant": variant, "epochs": 3}
        config["data"] = {**config["data"], "source": "synthetic", "seed": 0}
        (folder / runs.CONFIG_FILE).write_text(json.dumps(config))
        size = (folder / runs.MODEL_FILE).stat().st_size
        (folder / runs.METRICS_FILE).write_text(
            json.dumps(_metrics(name, variant, rmse, nme, size))
        )
        history = pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "phase": ["keypoints"] * 3,
                "train_loss": [0.01, 0.005, 0.004],
                "val_rmse": [rmse + 1.0, rmse + 0.5, rmse + 0.1],
                "lr": [1e-3, 5e-4, 1e-4],
                "seconds": [1.0, 1.0, 1.0],
                "images_per_second": [100.0, 100.0, 100.0],
            }
        )
        history.to_csv(folder / runs.HISTORY_FILE, index=False)
    bench_file = root / "bench.jsonl"
    records = [
        # An older re-run of the same measurement: the report must use the later one.
        _bench_record("cnn-manual--none", "torch", 9.0, timestamp="2025-01-01T00:00:00+00:00"),
        _bench_record("cnn-manual--none", "torch", 0.5),
        _bench_record("cnn-manual--none", "onnxruntime", 0.25),
        _bench_record("cnn-manual--aug", "onnxruntime", 0.3, test_rmse=1.02),
        _bench_record("cnn-manual--untrained", "torch", 0.45),
    ]
    write_bench_file(bench_file, records)
    return {"root": root, "data": data_dir, "runs": runs_dir, "bench": bench_file}


@pytest.fixture(scope="module")
def built(inputs: dict[str, Path]) -> report.ReportResult:
    return report.build_report(inputs["runs"], inputs["bench"], inputs["root"] / "out", quiet=True)


def _with_throughput(sections: tuple[str, ...]) -> list[str]:
    """The sections, with the optional "Training throughput" where the runs' training.json
    recorded one (these do), after the section it follows."""
    expected = list(sections)
    expected.insert(expected.index("Not finished results") + 1, "Training throughput")
    return expected


def _headings(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def test_every_section_and_figure_is_written(built: report.ReportResult) -> None:
    markdown = built.markdown.read_text()
    assert _headings(markdown) == _with_throughput(report.SECTIONS)
    assert set(built.figures) == set(FIGURES)
    for name, path in built.figures.items():
        assert path == built.out_dir / "figures" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert f"](figures/{name}.png)" in markdown
    for name in built.tables:
        assert (built.out_dir / f"{name}.csv").is_file()
    payload = json.loads((built.out_dir / "report.json").read_text())
    assert payload["sections"] == list(report.SECTIONS)
    assert payload["tables"]["accuracy_rmse"][0]["model"] == "cnn-manual"


def test_accuracy_table_is_the_metrics(built: report.ReportResult, inputs: dict) -> None:
    rmse = built.tables["accuracy_rmse"]
    nme = built.tables["accuracy_nme"]
    for variant in SCORES:
        metrics = runs.read_metrics(inputs["runs"] / f"cnn-manual--{variant}")
        assert rmse.loc["cnn-manual", variant] == metrics["test_rmse"]
        assert nme.loc["cnn-manual", variant] == metrics["test_nme"]
        landmark = built.tables["landmark_metrics"].set_index("variant")
        assert landmark.loc[variant, "fr"] == metrics["test_fr"]
        assert landmark.loc[variant, "auc"] == metrics["test_auc"]
    assert rmse.loc[MEAN_SHAPE_ROW, "none"] == 4.0
    assert list(rmse.columns) == list(VARIANTS)
    assert pd.isna(rmse.loc["cnn-manual", "ffill"])
    markdown = built.markdown.read_text()
    accuracy = markdown.split("## Accuracy")[1].split("NME")[0]
    row = next(line for line in accuracy.splitlines() if line.startswith("| cnn-manual"))
    assert "| **2.000** " in row and "| **1.000** " in row and "| not run " in row
    csv = pd.read_csv(built.out_dir / "accuracy_rmse.csv", index_col="model")
    assert csv.loc["cnn-manual", "aug"] == 1.0


def test_timing_uses_the_latest_record_and_says_what_is_missing(
    built: report.ReportResult,
) -> None:
    timing = built.tables["timing"].set_index(["run_name", "backend"])
    assert timing.loc[("cnn-manual--none", "torch"), "seconds_per_100"] == 0.5
    assert timing.loc[("cnn-manual--none", "torch"), "paper_seconds_per_100"] == 1.4
    assert timing.loc[("cnn-manual--none", "torch"), "speedup_vs_paper"] == pytest.approx(2.8)
    assert timing.loc[("cnn-manual--untrained", "torch"), "trained"] == False  # noqa: E712
    assert len(timing) == 4
    markdown = built.markdown.read_text()
    section = markdown.split("## Inference time")[1].split("## Figures")[0]
    assert "cnn-manual (untrained)" in section
    assert "ONNX Runtime INT8: not measured" in section
    size = markdown.split("## Parameters and size")[1].split("## Accuracy")[0]
    assert "not exported" in size and "235,834" in size


def test_report_regenerates_byte_identically(inputs: dict, built: report.ReportResult) -> None:
    again = report.build_report(
        inputs["runs"], inputs["bench"], inputs["root"] / "again", formats=("md", "csv")
    )
    assert again.markdown.read_bytes() == built.markdown.read_bytes()
    for path in built.csv_files:
        assert (again.out_dir / path.name).read_bytes() == path.read_bytes()


def test_runs_only_without_a_bench_file(inputs: dict, tmp_path: Path) -> None:
    result = report.build_report(
        inputs["runs"], tmp_path / "absent.jsonl", tmp_path / "out", formats=("md",), quiet=True
    )
    markdown = result.markdown.read_text()
    assert _headings(markdown) == _with_throughput(report.SECTIONS)
    assert "inference time not measured" in markdown
    assert "accuracy_vs_speed" in result.missing_figures
    assert not (tmp_path / "out/figures/accuracy_vs_speed.png").exists()
    assert result.tables["timing"].empty


def test_bench_records_of_untrained_models_only(inputs: dict, tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    write_bench_file(bench, [_bench_record("cnn-manual--untrained", "torch", 0.4)])
    # What `bench --all` leaves for an architecture nobody trained: its untrained folder.
    untrained_only = tmp_path / "runs"
    shutil.copytree(
        inputs["runs"] / "cnn-manual--untrained", untrained_only / "cnn-manual--untrained"
    )
    result = report.build_report(
        untrained_only, bench, tmp_path / "out", formats=("md", "json"), quiet=True
    )
    markdown = result.markdown.read_text()
    assert _headings(markdown) == list(report.SECTIONS)
    assert "No trained runs" in markdown
    assert "cnn-manual (untrained)" in markdown
    assert set(result.figures) == {"params_vs_size"}
    assert result.tables["accuracy_rmse"].empty


def test_inputs_that_cannot_be_used_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(report.ReportError, match="unknown report format 'pdf'; known: md, csv"):
        report.build_report(tmp_path, None, tmp_path / "out", formats=("md", "pdf"))
    with pytest.raises(report.ReportError, match=f"{tmp_path / 'out' / 'runs.jsonl'}: no run rec"):
        report.build_report(None, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


COMMITTED_RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.skipif(
    not (COMMITTED_RESULTS / "runs.jsonl").is_file(), reason="no committed results/ yet"
)
def test_committed_report_is_regenerated_identically_from_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """results/REPORT.md and its CSVs are what `report --from-records` makes of the
    committed runs.jsonl and bench.jsonl (and the run records it was compared with, named
    in report.json as given, relative to the checkout): nobody edited them by hand."""
    copy = tmp_path / "results"
    copy.mkdir()
    for name in ("runs.jsonl", "bench.jsonl"):
        shutil.copy(COMMITTED_RESULTS / name, copy / name)
    # The peers' and the video bench's records, where the report has them.
    for name in ("peers.jsonl", "video.jsonl"):
        if (COMMITTED_RESULTS / name).is_file():
            shutil.copy(COMMITTED_RESULTS / name, copy / name)
    # The one figure drawn from the models themselves is kept, as the report keeps it.
    (copy / "figures").mkdir()
    shutil.copy(COMMITTED_RESULTS / "figures" / "predictions.png", copy / "figures")
    # So are the tune studies' records and figures, snapshotted from runs/tune.
    if (COMMITTED_RESULTS / runs.TUNE_DIR).is_dir():
        shutil.copytree(COMMITTED_RESULTS / runs.TUNE_DIR, copy / runs.TUNE_DIR)
        for figure in (COMMITTED_RESULTS / "figures").glob("tune-*.png"):
            shutil.copy(figure, copy / "figures")

    compared = json.loads((COMMITTED_RESULTS / "report.json").read_text()).get("compare_with")
    monkeypatch.chdir(COMMITTED_RESULTS.parent)

    result = report.build_report(
        None,
        copy / "bench.jsonl",
        copy,
        formats=("md", "csv"),
        quiet=True,
        compare_with=Path(compared) if compared else None,
    )

    assert result.markdown.read_text() == (COMMITTED_RESULTS / "REPORT.md").read_text()
    for path in result.csv_files:
        assert path.read_text() == (COMMITTED_RESULTS / path.name).read_text(), path.name
