"""The report's Tuned CNN section: tuning studies and the paper's Keras Optimized CNN.

Nothing is trained or tuned: study folders (study.json, best.json, pareto.json, trials.csv,
figures) and run folders (config.json, metrics.json, a stand-in model.pt) are written by
hand, and bench records are hand-written JSON lines.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fkdbench import reference, report, runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MASKED = "cnn-tuned-masked"  # two objectives, every figure
NONE_RMSE = "cnn-tuned-none-rmse"  # one objective: no pareto.json, no importances figure
BROKEN = "broken"  # a malformed best.json
SPEC_SOURCE = "tune:cnn-tuned-masked#17"
# (arch, variant) -> (test RMSE, Keras parameters, model.pt bytes)
RUNS = {
    ("cnn-tuned", "masked"): (1.7, 250_100, 1_004_000),
    ("cnn-tuned", "none"): (2.1, 300_000, 1_200_000),
    ("cnn-manual", "masked"): (1.8, 235_102, 956_965),
    ("cnn-baseline", "masked"): (1.9, 1_890_846, 7_600_000),  # never benched
}
# The bench records the report must pick: ONNX Runtime at batch 32, 1 thread.
ORT_SECONDS = {"cnn-tuned--masked": 0.02, "cnn-tuned--none": 0.025, "cnn-manual--masked": 0.015}


def _png(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 3), shade).save(path)


def _trial(number: int, val_rmse: float, seconds: float, variant: str) -> dict:
    return {
        "variant": variant,
        "trial": number,
        "val_rmse": val_rmse,
        "seconds_per_100_images": seconds,
        "parameters": {"pytorch": 249_000 + number, "keras": 250_000 + number},
        "onnx_bytes": 1_000_000 + number,
        "train": {"lr": 0.002, "batch_size": 64, "epochs": 3},
        "spec": {"conv_blocks": [{"filters": 16}], "dense_units": [64], "dropout": 0.2},
    }


def _write_study(
    tune_dir: Path,
    study: str,
    variant: str,
    objective: str,
    front: list[dict],
    figures: tuple[str, ...],
) -> Path:
    """A study folder as `fkdbench tune` writes it; the best trial is the front's lowest RMSE."""
    folder = tune_dir / study
    folder.mkdir(parents=True)
    best = min(front, key=lambda trial: trial["val_rmse"])
    (folder / "study.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "study": study,
                "storage": f"sqlite:///runs/tune/{study}.db",
                "objective": objective,
                "variant": variant,
                "data_dir": "data/synthetic",
                "epochs_per_trial": 3,
                "max_params": 2_000_000,
                "trials": {"complete": 24, "pruned": 5, "failed": 1, "running": 0},
                "wall_seconds": 1234.5,
                "first_trial_start": "2026-01-01T00:00:00+00:00",
                "last_trial_end": "2026-01-01T00:30:00+00:00",
                "environment": {"cpu_model": "Test CPU"},
            }
        )
    )
    (folder / "best.json").write_text(
        json.dumps({"format_version": 1, "study": study, **best}, indent=2)
    )
    if objective == "rmse+latency":
        pareto = {
            "format_version": 1,
            "study": study,
            "objectives": ["val_rmse", "seconds_per_100_images"],
            "trials": sorted(front, key=lambda trial: trial["seconds_per_100_images"]),
        }
        (folder / "pareto.json").write_text(json.dumps(pareto))
    rows = [
        {
            "number": trial["trial"],
            "state": "COMPLETE",
            "val_rmse": trial["val_rmse"],
            "seconds_per_100_images": trial["seconds_per_100_images"],
            "params_keras": trial["parameters"]["keras"],
            "params_pytorch": trial["parameters"]["pytorch"],
            "onnx_bytes": trial["onnx_bytes"],
        }
        for trial in front
    ]
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    for shade, name in enumerate(figures):
        _png(folder / "figures" / f"{name}.png", 40 * shade)
    return folder


def _write_run(runs_dir: Path, arch: str, variant: str, spec_source: str | None) -> Path:
    rmse, keras, model_bytes = RUNS[(arch, variant)]
    name = runs.run_name(arch, variant)
    folder = runs_dir / name
    folder.mkdir(parents=True)
    model = {"arch": arch, "input_size": 96, "scheme": "kaggle15"}
    if spec_source is not None:
        model["spec_source"] = spec_source
    config = {"run_name": name, "model": model, "train": {"variant": variant}, "data": {}}
    (folder / runs.CONFIG_FILE).write_text(json.dumps(config))
    metrics = {
        "arch": arch,
        "run_name": name,
        "variant": variant,
        "weights_mode": "scratch",
        "test_rmse": rmse,
        "parameters": {"pytorch": keras - 480, "keras": keras},
        "model_file_bytes": model_bytes,
    }
    (folder / runs.METRICS_FILE).write_text(json.dumps(metrics))
    (folder / runs.MODEL_FILE).write_bytes(b"not read by the report")
    return folder


def _bench_record(run_name: str, backend: str, seconds: float, batch_size: int = 32) -> dict:
    arch, variant = run_name.split("--")
    return {
        "run_name": run_name,
        "arch": arch,
        "variant": variant,
        "weights_mode": "scratch",
        "trained": True,
        "backend": backend,
        "batch_size": batch_size,
        "threads": 1,
        "seconds_per_100_images": seconds,
        "timestamp": "2026-01-01T00:00:00+00:00",
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report-tune")
    runs_dir = root / "runs"
    tune_dir = runs_dir / "tune"
    masked_front = [
        _trial(17, 1.61, 0.0123, "masked"),
        _trial(4, 1.75, 0.0081, "masked"),
        _trial(9, 1.68, 0.0100, "masked"),
    ]
    _write_study(
        tune_dir, MASKED, "masked", "rmse+latency", masked_front,
        ("history", "pareto", "importances"),
    )  # fmt: skip
    _write_study(tune_dir, NONE_RMSE, "none", "rmse", [_trial(2, 2.2, 0.03, "none")], ("history",))
    _write_study(tune_dir, BROKEN, "knn", "rmse", [_trial(1, 2.0, 0.02, "knn")], ())
    (tune_dir / BROKEN / "best.json").write_text('{"format_version": 1, "trial": ')
    (tune_dir / "notes").mkdir()  # a folder without study.json is not a study
    (tune_dir / f"{MASKED}.db").write_bytes(b"")  # the Optuna storage beside the folders
    for arch, variant in RUNS:
        _write_run(runs_dir, arch, variant, SPEC_SOURCE if arch == "cnn-tuned" else None)
    bench_file = root / "bench.jsonl"
    records = [_bench_record(name, "onnxruntime", seconds) for name, seconds in ORT_SECONDS.items()]
    records += [
        # Another backend, and a setting fewer records share: neither is the ORT number.
        _bench_record("cnn-tuned--masked", "torch", 0.5),
        _bench_record("cnn-tuned--masked", "onnxruntime", 0.9, batch_size=1),
    ]
    bench_file.write_text("".join(json.dumps(record) + "\n" for record in records))
    return {"root": root, "runs": runs_dir, "tune": tune_dir, "bench": bench_file}


@pytest.fixture(scope="module")
def built(inputs: dict[str, Path]) -> report.ReportResult:
    return report.build_report(inputs["runs"], inputs["bench"], inputs["root"] / "out", quiet=True)


def _section(markdown: str) -> str:
    return markdown.split("## Tuned CNN\n")[1].split("\n## ")[0]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_studies_are_read_from_their_files(inputs: dict[str, Path]) -> None:
    problems: list[str] = []
    studies = report.load_tune_studies(inputs["tune"], problems)
    assert [study.study for study in studies] == [MASKED, NONE_RMSE]
    masked = studies[0]
    best = _json(inputs["tune"] / MASKED / "best.json")
    study = _json(inputs["tune"] / MASKED / "study.json")
    assert masked.variant == study["variant"] == "masked"
    assert masked.objective == "rmse+latency"
    assert (masked.trials_complete, masked.trials_pruned, masked.trials_failed) == (24, 5, 1)
    assert masked.wall_seconds == study["wall_seconds"]
    assert masked.epochs_per_trial == study["epochs_per_trial"]
    assert masked.best_trial == best["trial"] == 17
    assert masked.best_val_rmse == best["val_rmse"]
    assert masked.best_seconds_per_100_images == best["seconds_per_100_images"]
    assert masked.best_params_keras == best["parameters"]["keras"]
    assert masked.best_onnx_bytes == best["onnx_bytes"]
    assert (masked.best_lr, masked.best_batch_size) == (0.002, 64)
    assert masked.pareto_size == 3
    assert set(masked.figures) == {"history", "pareto", "importances"}
    assert masked.figures["pareto"] == str(inputs["tune"] / MASKED / "figures/pareto.png")
    assert studies[1].pareto_size is None and set(studies[1].figures) == {"history"}
    assert len(problems) == 1
    assert problems[0].startswith(f"skipped tune study {BROKEN}: ")
    assert str(inputs["tune"] / BROKEN / "best.json") in problems[0]


@pytest.mark.parametrize(
    ("file", "text", "says"),
    [
        ("best.json", "[1, 2]", "expected a JSON object"),
        ("best.json", '{"format_version": 1, "trial": 3}', "no 'val_rmse'"),
        ("best.json", '{"format_version": 1, "trial": 3, "val_rmse": "low"}', "not a number"),
        ("study.json", '{"format_version": 2, "trials": {}}', "format_version 2"),
        ("study.json", '{"format_version": 1, "trials": [3]}', "list"),
        ("pareto.json", '{"format_version": 1, "trials": {"a": 1}}', "expected a list"),
    ],
)
def test_a_malformed_study_is_skipped_and_named(
    tmp_path: Path, file: str, text: str | None, says: str
) -> None:
    tune_dir = tmp_path / "tune"
    for study in ("a-good", "b-bad", "c-good"):
        _write_study(tune_dir, study, "none", "rmse+latency", [_trial(1, 2.0, 0.02, "none")], ())
    path = tune_dir / "b-bad" / file
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    problems: list[str] = []
    studies = report.load_tune_studies(tune_dir, problems)
    assert [study.study for study in studies] == ["a-good", "c-good"]
    assert len(problems) == 1
    assert f"skipped tune study b-bad: {path}" in problems[0]
    assert says in problems[0]


def test_a_study_with_no_finished_trial_yet_is_listed(tmp_path: Path) -> None:
    tune_dir = tmp_path / "tune"
    _write_study(tune_dir, "early", "none", "rmse+latency", [_trial(1, 2.0, 0.02, "none")], ())
    (tune_dir / "early" / "best.json").unlink()  # tune writes none until a trial finishes
    problems: list[str] = []
    (study,) = report.load_tune_studies(tune_dir, problems)
    assert problems == []
    assert study.best_trial is None and study.best_val_rmse is None
    assert report.tuned_studies_table([study])["best_trial"].isna().all()


def test_tuned_studies_table_is_the_files(built: report.ReportResult, inputs: dict) -> None:
    table = built.tables["tuned_studies"].set_index("study")
    assert list(table.index) == [MASKED, NONE_RMSE]
    best = _json(inputs["tune"] / MASKED / "best.json")
    row = table.loc[MASKED]
    assert (row["variant"], row["objective"]) == ("masked", "rmse+latency")
    assert (row["trials_complete"], row["trials_pruned"], row["trials_failed"]) == (24, 5, 1)
    assert row["wall_minutes"] == pytest.approx(1234.5 / 60)
    assert row["best_trial"] == best["trial"]
    assert row["best_val_rmse"] == best["val_rmse"]
    assert row["best_seconds_per_100"] == best["seconds_per_100_images"]
    assert row["best_params_keras"] == best["parameters"]["keras"]
    assert row["best_onnx_mb"] == best["onnx_bytes"] / report.BYTES_PER_MB
    assert (row["best_lr"], row["best_batch_size"]) == (0.002, 64)
    assert row["pareto_size"] == 3
    assert pd.isna(table.loc[NONE_RMSE, "pareto_size"])
    csv = pd.read_csv(built.out_dir / "tuned_studies.csv")
    assert list(csv.columns) == list(built.tables["tuned_studies"].columns)
    assert csv.loc[0, "best_trial"] == 17
    payload = _json(built.out_dir / "report.json")
    assert payload["tables"]["tuned_studies"][1]["pareto_size"] is None


def test_tuned_vs_paper_sets_our_runs_beside_the_papers(built: report.ReportResult) -> None:
    table = built.tables["tuned_vs_paper"].set_index("variant")
    assert list(table.index) == ["none", "ffill", "knn", "aug", "masked"]
    # The paper's numbers are reference.py's, for every variant it has.
    for variant in ("none", "ffill", "knn", "aug"):
        sizes = reference.paper_row("cnn-tuned", variant, "scratch", reference.TABLE1)
        times = reference.paper_row("cnn-tuned", variant, "scratch", reference.TABLE4)
        assert table.loc[variant, "paper_model"] == sizes.model
        assert table.loc[variant, "paper_params"] == sizes.params
        assert table.loc[variant, "paper_mb"] == sizes.size_mb
        assert table.loc[variant, "paper_seconds_per_100"] == times.seconds_per_100
    masked = table.loc["masked"]
    assert pd.isna(masked["paper_params"]) and pd.isna(masked["paper_seconds_per_100"])
    # Ours come from the run folders and the ONNX Runtime record at the common setting.
    rmse, keras, model_bytes = RUNS[("cnn-tuned", "masked")]
    assert masked["run_name"] == "cnn-tuned--masked"
    assert masked["spec_source"] == SPEC_SOURCE
    assert masked["params_keras"] == keras
    assert masked["state_dict_mb"] == model_bytes / report.BYTES_PER_MB
    assert masked["test_rmse"] == rmse
    assert masked["seconds_per_100"] == ORT_SECONDS["cnn-tuned--masked"]
    assert masked["manual_test_rmse"] == RUNS[("cnn-manual", "masked")][0]
    assert masked["manual_seconds_per_100"] == ORT_SECONDS["cnn-manual--masked"]
    assert masked["baseline_test_rmse"] == RUNS[("cnn-baseline", "masked")][0]
    assert pd.isna(masked["baseline_seconds_per_100"])  # never benched
    none = table.loc["none"]
    assert none["test_rmse"] == RUNS[("cnn-tuned", "none")][0]
    assert none["seconds_per_100"] == ORT_SECONDS["cnn-tuned--none"]
    assert pd.isna(none["manual_test_rmse"])
    assert table["run_name"].isna().sum() == 3  # ffill, knn, aug: the paper's only


def test_section_tables_and_figure_links(built: report.ReportResult) -> None:
    markdown = built.markdown.read_text()
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == list(report.SECTIONS)
    assert headings.index("Tuned CNN") == headings.index("Inference time") + 1
    assert headings.index("Figures") == headings.index("Tuned CNN") + 1
    section = _section(markdown)
    assert "validation RMSE" in section and "ONNX Runtime" in section
    assert "Keras tuner" in section and "no `masked` variant" in section
    study_row = next(line for line in section.splitlines() if line.startswith(f"| {MASKED} "))
    for cell in ("masked", "rmse+latency", "24 / 5 / 1", "20.6", "17", "1.610", "0.0123"):
        assert f"| {cell} " in study_row
    assert "| 250,017 " in study_row
    masked_row = next(line for line in section.splitlines() if line.startswith("| masked "))
    assert f"`{SPEC_SOURCE}`" in masked_row and "| 1.700 " in masked_row
    assert "| \u2014 " in masked_row  # no paper number for masked
    assert "| not measured " in masked_row  # cnn-baseline never benched
    knn_row = next(line for line in section.splitlines() if line.startswith("| knn "))
    assert "| 246,062 " in knn_row and "| 1.58 " in knn_row and "| 4.19 " in knn_row
    assert "| not run " in knn_row
    for name in ("history", "pareto", "importances"):
        caption = report.TUNE_FIGURES[name]
        assert f"![{MASKED}: {caption}](figures/tune-{MASKED}-{name}.png)" in section
    assert f"](figures/tune-{NONE_RMSE}-history.png)" in section
    assert f"- {NONE_RMSE}: not drawn by `fkdbench tune`: pareto, importances." in section
    none_row = next(line for line in section.splitlines() if line.startswith(f"| {NONE_RMSE} "))
    assert "| one objective " in none_row
    assert BROKEN not in section
    summary = markdown.split("## Summary")[1].split("\n## ")[0]
    assert f"- Skipped: skipped tune study {BROKEN}: " in summary and "best.json" in summary
    payload = _json(built.out_dir / "report.json")
    assert payload["sections"] == list(report.SECTIONS)
    files = payload["tune_figures"][MASKED]
    assert files["history"]["file"] == f"figures/tune-{MASKED}-history.png"


def test_snapshot_holds_the_study_files_and_figures(
    built: report.ReportResult, inputs: dict
) -> None:
    out = built.out_dir
    for study in (MASKED, NONE_RMSE):
        for name in report.TUNE_FILES:
            source = inputs["tune"] / study / name
            copy = out / "tune" / study / name
            assert copy.is_file() == source.is_file(), copy
            if source.is_file():
                assert copy.read_bytes() == source.read_bytes()
    assert not (out / "tune" / NONE_RMSE / "pareto.json").exists()
    assert not (out / "tune" / BROKEN).exists()
    assert not (out / "tune" / "notes").exists()
    copies = sorted(path.name for path in (out / "figures").glob("tune-*.png"))
    assert copies == [
        f"tune-{MASKED}-history.png",
        f"tune-{MASKED}-importances.png",
        f"tune-{MASKED}-pareto.png",
        f"tune-{NONE_RMSE}-history.png",
    ]
    for study in built.tune_studies:
        for name, path in study.figures.items():
            assert Path(path) == out / "figures" / f"tune-{study.study}-{name}.png"
            source = inputs["tune"] / study.study / "figures" / f"{name}.png"
            assert Path(path).read_bytes() == source.read_bytes()
            assert Path(path).read_bytes()[:8] == PNG_MAGIC


def test_rebuilt_from_records_gives_the_same_tuned_tables(
    built: report.ReportResult, inputs: dict, tmp_path: Path
) -> None:
    copy = tmp_path / "results"
    shutil.copytree(built.out_dir, copy)
    (copy / "REPORT.md").unlink()
    stray = copy / "figures" / "tune-gone-history.png"  # not ours to delete when rebuilding
    _png(stray, 0)

    again = report.build_report(None, inputs["bench"], copy, quiet=True)

    for name in ("tuned_studies", "tuned_vs_paper"):
        pd.testing.assert_frame_equal(again.tables[name], built.tables[name])
        assert (copy / f"{name}.csv").read_bytes() == (built.out_dir / f"{name}.csv").read_bytes()
    assert [s.study for s in again.tune_studies] == [s.study for s in built.tune_studies]
    assert [set(s.figures) for s in again.tune_studies] == [
        set(s.figures) for s in built.tune_studies
    ]
    assert _section(again.markdown.read_text()) == _section(built.markdown.read_text())
    assert again.problems == []  # the broken study was never snapshotted
    assert stray.is_file()


def test_a_study_gone_from_the_runs_leaves_the_snapshot(inputs: dict, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    shutil.copytree(inputs["runs"], runs_dir)
    out = tmp_path / "out"
    report.build_report(runs_dir, inputs["bench"], out, formats=("csv",), quiet=True)
    assert (out / "tune" / NONE_RMSE / "study.json").is_file()
    assert (out / "figures" / f"tune-{NONE_RMSE}-history.png").is_file()
    (out / "tune" / NONE_RMSE / "mine.txt").write_text("not the snapshot's")
    shutil.rmtree(runs_dir / "tune" / NONE_RMSE)
    (runs_dir / "tune" / MASKED / "figures" / "importances.png").unlink()

    result = report.build_report(runs_dir, inputs["bench"], out, formats=("csv",), quiet=True)

    assert [study.study for study in result.tune_studies] == [MASKED]
    assert sorted(path.name for path in (out / "tune" / NONE_RMSE).iterdir()) == ["mine.txt"]
    assert sorted(path.name for path in (out / "figures").glob("tune-*.png")) == [
        f"tune-{MASKED}-history.png",
        f"tune-{MASKED}-pareto.png",
    ]
    rebuilt = report.build_report(None, inputs["bench"], out, formats=("csv",), quiet=True)
    assert list(rebuilt.tables["tuned_studies"]["study"]) == [MASKED]


def test_no_studies_and_no_tuned_runs_still_show_the_paper(tmp_path: Path) -> None:
    result = report.build_report(
        tmp_path / "no-runs", tmp_path / "absent.jsonl", tmp_path / "out", quiet=True
    )
    section = _section(result.markdown.read_text())
    assert "No tuning studies (`tune/`) and no trained `cnn-tuned` run: not run." in section
    assert "Keras tuner" not in section
    assert result.tables["tuned_studies"].empty
    assert (tmp_path / "out" / "tuned_studies.csv").read_text().startswith("study,variant,")
    versus = result.tables["tuned_vs_paper"]
    paper = reference.paper_rows(table=reference.TABLE1, arch="cnn-tuned")
    assert list(versus["variant"]) == [row.variant for row in paper]
    assert list(versus["paper_params"]) == [row.params for row in paper]
    assert list(versus["paper_mb"]) == [row.size_mb for row in paper]
    seconds = [
        reference.paper_row("cnn-tuned", row.variant, "scratch", reference.TABLE4).seconds_per_100
        for row in paper
    ]
    assert list(versus["paper_seconds_per_100"]) == seconds
    assert versus["run_name"].isna().all()
    assert "| 306,750 " in section and "| 2.72 " in section


def test_spec_source_round_trips_through_run_records(inputs: dict, tmp_path: Path) -> None:
    summaries = report.load_runs(inputs["runs"])
    tuned = next(run for run in summaries if run.run_name == "cnn-tuned--masked")
    assert tuned.spec_source == SPEC_SOURCE
    manual = next(run for run in summaries if run.run_name == "cnn-manual--masked")
    assert manual.spec_source is None
    path = report.write_run_records(summaries, tmp_path / "runs.jsonl")
    assert report.read_run_records(path) == summaries
    # A runs.jsonl written before the field existed still loads.
    old = [json.loads(line) for line in path.read_text().splitlines()]
    for record in old:
        del record["spec_source"]
    path.write_text("".join(json.dumps(record) + "\n" for record in old))
    assert {run.spec_source for run in report.read_run_records(path)} == {None}
