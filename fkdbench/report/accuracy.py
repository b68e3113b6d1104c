"""The "Accuracy" section: test RMSE and NME per architecture and variant, the field's
landmark metrics, and the Kaggle RMSEs the paper cites; their numbers and their text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fkdbench.data.variants import VARIANTS
from fkdbench.report.cells import fmt, markdown_table
from fkdbench.report.common import (
    MEAN_SHAPE_ROW,
    NOT_MEASURED,
    NOT_RUN,
    is_missing,
    label_key,
)
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult


def _mean_shape_floors(trained: Sequence[RunSummary], variants: Sequence[str]) -> pd.Series:
    """Per variant, the median mean-shape RMSE of its runs: the floor any model must beat."""
    floors = {}
    for variant in variants:
        values = [run.mean_shape_rmse for run in trained if run.variant == variant]
        values = [value for value in values if value is not None]
        floors[variant] = float(np.median(values)) if values else np.nan
    return pd.Series(floors)


def accuracy_table(run_summaries: Sequence[RunSummary], metric: str = "test_rmse") -> pd.DataFrame:
    """Rows = architecture (+ weights mode), columns = data variants; NaN where not run.

    ``metric`` is a :class:`RunSummary` field (``test_rmse`` or ``test_nme``). The RMSE table
    ends with the mean-shape row (predict the training mean for every face), the floor any
    model must beat; for a column with several runs it is their median.
    """
    trained = [run for run in run_summaries if run.trained]
    labels = sorted({run.label for run in trained}, key=label_key)
    variants = list(VARIANTS) + sorted(
        {run.variant for run in trained if run.variant not in VARIANTS}
    )
    frame = pd.DataFrame(np.nan, index=pd.Index(labels, name="model"), columns=variants)
    for run in trained:
        value = getattr(run, metric)
        frame.loc[run.label, run.variant] = np.nan if value is None else float(value)
    if metric == "test_rmse" and trained:
        frame.loc[MEAN_SHAPE_ROW] = _mean_shape_floors(trained, variants)
    frame.columns.name = "variant"
    return frame.astype(float)


def landmark_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """The field's landmark metrics per trained run: NME, FR and AUC at the failure
    threshold, and NME per subset where the data has subsets (WFLW's attributes)."""
    trained = [run for run in run_summaries if run.trained]
    subsets = sorted({name for run in trained for name in run.test_nme_per_subset})
    rows = []
    for run in trained:
        row = {
            "model": run.label,
            "variant": run.variant,
            "scheme": run.scheme,
            "nme": run.test_nme,
            "fr": run.test_fr,
            "auc": run.test_auc,
            "threshold": run.failure_threshold,
        }
        row.update({f"nme_{name}": run.test_nme_per_subset.get(name) for name in subsets})
        rows.append(row)
    columns = ["model", "variant", "scheme", "nme", "fr", "auc", "threshold"]
    frame = pd.DataFrame(rows, columns=columns + [f"nme_{name}" for name in subsets])
    numeric = [column for column in frame.columns if column not in ("model", "variant", "scheme")]
    frame[numeric] = frame[numeric].astype(float)
    return frame


def _accuracy_cell(value: float, label: str, best: float, spec: str) -> str:
    if is_missing(value):
        return NOT_MEASURED if label == MEAN_SHAPE_ROW else NOT_RUN
    text = format(value, spec)
    is_best = label != MEAN_SHAPE_ROW and value == best
    return f"**{text}**" if is_best else text


def accuracy_markdown(table: pd.DataFrame, spec: str) -> str:
    """An accuracy table with the lowest value per variant in bold."""
    models = table.drop(index=MEAN_SHAPE_ROW, errors="ignore")
    best = models.min(axis=0, skipna=True)
    shown = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    for label in table.index:
        for variant in table.columns:
            value = table.loc[label, variant]
            shown.loc[label, variant] = _accuracy_cell(value, label, best[variant], spec)
    return markdown_table(shown.reset_index().rename(columns={"index": "model"}))


def landmark_markdown(table: pd.DataFrame) -> str:
    """The landmark table as REPORT.md shows it."""
    shown = table.astype(object).copy()
    for column in table.columns:
        if column in ("model", "variant", "scheme"):
            continue
        spec = ".2f" if column == "threshold" else ".4f"
        shown[column] = [fmt(value, spec, NOT_MEASURED) for value in table[column]]
    return markdown_table(shown)


def _measured_lines(tables: dict[str, pd.DataFrame]) -> list[str]:
    """RMSE, NME and landmark tables, each with what it measures."""
    return [
        "Test RMSE in pixels over labelled coordinates (Kaggle's metric); the lowest per "
        "variant in bold; `mean shape` predicts the training set's mean face.",
        "",
        accuracy_markdown(tables["accuracy_rmse"], ".3f"),
        "",
        "NME (mean error / inter-ocular distance):",
        "",
        accuracy_markdown(tables["accuracy_nme"], ".4f"),
        "",
        "Landmark metrics as the field reports them: NME normalised by each scheme's two "
        "points (Kaggle: the eye centres; 300-W: outer eye corners 36/45; WFLW: 60/72), "
        "FR = share of faces with NME above the threshold, AUC = area under the CED up "
        "to the threshold / threshold (1 is perfect); NME per WFLW subset where the data "
        "has them:",
        "",
        landmark_markdown(tables["landmark_metrics"]),
    ]


def accuracy_section(result: ReportResult) -> list[str]:
    """The lines of "Accuracy" after its heading."""
    tables = result.tables
    if tables["accuracy_rmse"].empty:
        lines = [f"No trained runs: test RMSE and NME {NOT_MEASURED}."]
    else:
        lines = _measured_lines(tables)
    lines += [
        "",
        "Paper RMSE: paper 003 shows its RMSEs only as bar charts (Fig. 6-7) with no printed "
        "values, and paper 000 prints Keras 'accuracy' only, so there is no paper RMSE to set "
        "beside ours. The Kaggle RMSEs paper 003 cites from earlier work:",
    ]
    cited = tables["cited_rmse"].copy()
    cited["rmse"] = cited["rmse"].map(lambda v: f"{v:.2f}")
    lines += ["", markdown_table(cited), ""]
    return lines
