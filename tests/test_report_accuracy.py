"""Accuracy: the RMSE and NME grids, the mean-shape floor, the landmark metrics."""

from __future__ import annotations

import pandas as pd
from report_factory import result_of

from fkdbench.data.variants import VARIANTS
from fkdbench.report.accuracy import (
    accuracy_markdown,
    accuracy_section,
    accuracy_table,
    landmark_markdown,
    landmark_table,
)
from fkdbench.report.common import MEAN_SHAPE_ROW, NOT_MEASURED, NOT_RUN
from fkdbench.report.inputs import RunSummary

RUNS = [
    RunSummary("m--none", "cnn-manual", "none", test_rmse=2.0, mean_shape_rmse=4.0),
    RunSummary("b--none", "cnn-baseline", "none", test_rmse=1.5, mean_shape_rmse=5.0),
    RunSummary("b--none-2", "cnn-baseline", "new", test_rmse=1.2, test_nme=0.04),
    RunSummary("f--none", "mobilenetv2", "none", "frozen", test_rmse=3.0, mean_shape_rmse=6.0),
    RunSummary("u", "cnn-manual", None, trained=False, test_rmse=0.1),
]


def test_rows_are_models_and_columns_variants() -> None:
    rmse = accuracy_table(RUNS)
    models = ["cnn-baseline", "cnn-manual", "mobilenetv2 (frozen)"]
    assert list(rmse.index) == [*models, MEAN_SHAPE_ROW]
    assert list(rmse.columns) == [*VARIANTS, "new"]  # unknown variants after ours
    assert rmse.loc["cnn-baseline", "none"] == 1.5 and rmse.loc["cnn-baseline", "new"] == 1.2
    assert rmse.loc[MEAN_SHAPE_ROW, "none"] == 5.0  # the median of 4, 5 and 6
    assert pd.isna(rmse.loc[MEAN_SHAPE_ROW, "new"]) and pd.isna(rmse.loc["cnn-manual", "aug"])
    nme = accuracy_table(RUNS, "test_nme")
    assert MEAN_SHAPE_ROW not in nme.index and nme.loc["cnn-baseline", "new"] == 0.04
    assert accuracy_table([]).empty


def test_the_best_per_variant_is_bold() -> None:
    text = accuracy_markdown(accuracy_table(RUNS), ".3f")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert "| **1.500** " in rows["cnn-baseline"] and "| 2.000 " in rows["cnn-manual"]
    assert f"| {NOT_RUN} " in rows["cnn-manual"]
    assert "| 5.000 " in rows[MEAN_SHAPE_ROW] and f"| {NOT_MEASURED} " in rows[MEAN_SHAPE_ROW]


def test_landmark_metrics_per_run_and_subset() -> None:
    runs = [
        RunSummary("w", "cnn-manual", "none", test_nme=0.05, test_fr=0.1, test_auc=0.5,
                   failure_threshold=0.1, test_nme_per_subset={"pose": 0.08, "blur": None}),
        RunSummary("k", "cnn-manual", "aug", test_nme=0.04),
    ]  # fmt: skip
    table = landmark_table(runs)
    assert list(table.columns)[-2:] == ["nme_blur", "nme_pose"]
    assert table.loc[0, "nme_pose"] == 0.08 and pd.isna(table.loc[1, "nme_pose"])
    text = landmark_markdown(table)
    assert "| 0.0800 " in text and "| 0.10 " in text and f"| {NOT_MEASURED} " in text


def test_the_section_without_runs_still_cites_earlier_work() -> None:
    lines = accuracy_section(result_of())
    assert lines[0] == f"No trained runs: test RMSE and NME {NOT_MEASURED}."
    assert any(line.startswith("| work ") for line in "\n".join(lines).splitlines())
