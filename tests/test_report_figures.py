"""The report's figures: what each needs, why one is not drawn, and the Figures section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from report_factory import PNG_MAGIC, png, result_of

from fkdbench.report import build_tables
from fkdbench.report.figures import FIGURES, draw_figures, figures_section, prediction_faces
from fkdbench.report.inputs import RunSummary


def test_prediction_faces_prefer_fully_labelled_rows() -> None:
    keypoints = np.zeros((6, 3, 2))
    keypoints[0, 0] = np.nan  # two of three labelled
    keypoints[2, :2] = np.nan  # one of three
    assert list(prediction_faces(keypoints, count=3)) == [1, 3, 4]
    assert list(prediction_faces(keypoints, count=6)) == [0, 1, 2, 3, 4, 5]
    assert list(prediction_faces(keypoints[:2], count=8)) == [0, 1]


def test_figures_say_why_they_are_not_drawn(tmp_path: Path) -> None:
    stale = tmp_path / "figures" / "ced.png"
    png(stale, 0)  # an earlier report's: must not pass for this one's
    figures, missing, problems = draw_figures(
        [], build_tables([], [], []), tmp_path, tmp_path, True
    )
    # With no runs and no records, only the paper's Table 1 points can be drawn.
    assert set(figures) == {"params_vs_size"}
    assert figures["params_vs_size"].read_bytes()[:8] == PNG_MAGIC
    assert missing == {
        "rmse_by_variant": "no trained runs",
        "training_curves": "no trained run has a history.csv",
        "predictions": "no trained run could be drawn; no run's data set (test split) was found",
        "accuracy_vs_speed": "no onnxruntime bench records of trained runs",
        "ced": "no trained run recorded its error distribution",
    }
    assert problems == []
    assert not stale.exists()


def test_rebuilt_from_records_keeps_the_predictions_figure(tmp_path: Path) -> None:
    runs = [RunSummary("m--none", "cnn-manual", "none", test_rmse=2.0, history=((1, 3.0),))]
    tables = build_tables(runs, [], [])
    figures, missing, _ = draw_figures(runs, tables, tmp_path, tmp_path, True)
    assert "predictions" in missing and "rebuilt from records" in missing["predictions"]
    assert {"rmse_by_variant", "training_curves"} <= set(figures)
    kept = tmp_path / "figures" / "predictions.png"
    png(kept, 10)
    before = kept.read_bytes()
    figures, missing, _ = draw_figures(runs, tables, tmp_path, tmp_path, True)
    assert figures["predictions"] == kept and kept.read_bytes() == before
    assert "predictions" not in missing


def test_the_section_shows_each_figure_or_why_not() -> None:
    result = result_of()
    result.figures = {"ced": Path("out/figures/ced.png")}
    result.missing_figures = {"rmse_by_variant": "no trained runs"}
    text = "\n".join(figures_section(result))
    assert f"![ced](figures/ced.png)\n\n*{FIGURES['ced']}*" in text
    assert "- `figures/rmse_by_variant.png`: not drawn (no trained runs)." in text
    assert "- `figures/predictions.png`: not drawn (figures were not requested)." in text
