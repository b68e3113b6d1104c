"""The report's Tuned CNN section: tuning studies and the paper's Keras Optimized CNN.

Nothing is trained or tuned: study folders and run folders are written by hand and bench
records built from the record type (:mod:`report_factory`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_factory import (
    BROKEN,
    MASKED,
    NONE_RMSE,
    ORT_SECONDS,
    SPEC_SOURCE,
    TUNE_RUNS,
    png,
    write_run,
    write_tune_inputs,
)

from fkdbench import reference, report
from fkdbench.report.common import BYTES_PER_MB
from fkdbench.report.studies import TUNE_FIGURES


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_tune_inputs(tmp_path_factory.mktemp("report-tune"))


@pytest.fixture(scope="module")
def built(inputs: dict[str, Path]) -> report.ReportResult:
    return report.build_report(inputs["runs"], inputs["bench"], inputs["root"] / "out", quiet=True)


def _section(markdown: str) -> str:
    return markdown.split("## Tuned CNN\n")[1].split("\n## ")[0]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


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
    assert row["best_onnx_mb"] == best["onnx_bytes"] / BYTES_PER_MB
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
    rmse, keras, model_bytes = TUNE_RUNS[("cnn-tuned", "masked")]
    assert masked["run_name"] == "cnn-tuned--masked"
    assert masked["spec_source"] == SPEC_SOURCE
    assert masked["params_keras"] == keras
    assert masked["state_dict_mb"] == model_bytes / BYTES_PER_MB
    assert masked["test_rmse"] == rmse
    assert masked["seconds_per_100"] == ORT_SECONDS["cnn-tuned--masked"]
    assert masked["manual_test_rmse"] == TUNE_RUNS[("cnn-manual", "masked")][0]
    assert masked["manual_seconds_per_100"] == ORT_SECONDS["cnn-manual--masked"]
    assert masked["baseline_test_rmse"] == TUNE_RUNS[("cnn-baseline", "masked")][0]
    assert pd.isna(masked["baseline_seconds_per_100"])  # never benched
    none = table.loc["none"]
    assert none["test_rmse"] == TUNE_RUNS[("cnn-tuned", "none")][0]
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
        caption = TUNE_FIGURES[name]
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


def test_rebuilt_from_records_gives_the_same_tuned_tables(
    built: report.ReportResult, inputs: dict, tmp_path: Path
) -> None:
    copy = tmp_path / "results"
    shutil.copytree(built.out_dir, copy)
    (copy / "REPORT.md").unlink()
    stray = copy / "figures" / "tune-gone-history.png"  # not ours to delete when rebuilding
    png(stray, 0)

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


def test_no_studies_and_no_tuned_runs_still_show_the_paper(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "cnn-manual", "masked", None)  # a run, but not a tuned one
    result = report.build_report(
        tmp_path / "runs", tmp_path / "absent.jsonl", tmp_path / "out", quiet=True
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
