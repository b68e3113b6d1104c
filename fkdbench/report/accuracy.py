"""The "Accuracy" section: test RMSE and NME per architecture and variant (the mean over
finished seeds with its 95% interval, see :mod:`fkdbench.report.uncertainty`), the field's
landmark metrics, and the Kaggle RMSEs the paper cites; their numbers and their text. And
the "Not finished results" section: the runs the time limit stopped, kept out of the ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fkdbench.data.variants import VARIANTS
from fkdbench.report.cells import fmt, fmt_int, markdown_table
from fkdbench.report.common import (
    MEAN_SHAPE_ROW,
    NOT_FINISHED,
    NOT_MEASURED,
    NOT_RUN,
    is_missing,
    label_key,
    pretrained_weights_note,
)
from fkdbench.report.inputs import RunSummary
from fkdbench.report.peers import (
    accuracy_cells_of_peers,
    accuracy_peer_lines,
    landmark_rows_of_peers,
    peers_of,
)
from fkdbench.report.result import ReportResult
from fkdbench.report.uncertainty import (
    BARELY_BETTER_FRACTION,
    INTERVAL_METHODS,
    NO_INTERVAL,
    cell_interval,
    finished_rows,
)

NOT_CONVERGED_MARK = "\u2020"  # dagger
BARELY_BETTER_MARK = "\u2021"  # double dagger


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

    ``metric`` is a :class:`RunSummary` field (``test_rmse`` or ``test_nme``); a cell is
    the mean over the row's finished seeds (a time-limited run is no result: NaN). The RMSE
    table ends with the mean-shape row (predict the training mean for every face), the
    floor any model must beat; for a column with several runs it is their median.
    """
    trained = [run for run in run_summaries if run.trained]
    labels = sorted({run.label for run in trained}, key=label_key)
    variants = list(VARIANTS) + sorted(
        {run.variant for run in trained if run.variant not in VARIANTS}
    )
    frame = pd.DataFrame(np.nan, index=pd.Index(labels, name="model"), columns=variants)
    for seeds in finished_rows(run_summaries).values():
        value = cell_interval(seeds, metric)[0].value
        frame.loc[seeds[0].label, seeds[0].variant] = np.nan if value is None else float(value)
    if metric == "test_rmse" and trained:
        frame.loc[MEAN_SHAPE_ROW] = _mean_shape_floors(trained, variants)
    frame.columns.name = "variant"
    return frame.astype(float)


def landmark_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """The field's landmark metrics per finished run (a time-limited one is no result):
    NME, FR and AUC at the failure threshold, and NME per subset where the data has subsets
    (WFLW's attributes)."""
    trained = [run for run in run_summaries if run.finished]
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


def _interval_text(cell: pd.Series | None, spec: str) -> str:
    """`` [low, high]``, `` (no interval)``, or nothing when there are no cells at all."""
    if cell is None:
        return ""
    if is_missing(cell["low"]) or is_missing(cell["high"]):
        return f" ({NO_INTERVAL})"
    return f" [{format(cell['low'], spec)}, {format(cell['high'], spec)}]"


def _marks(cell: pd.Series | None) -> str:
    if cell is None:
        return ""
    marks = "" if cell["converged"] is not False else NOT_CONVERGED_MARK
    return marks + (BARELY_BETTER_MARK if cell["barely_better"] else "")


def _accuracy_cell(value: float, label: str, best: float, spec: str, cell: pd.Series | None) -> str:
    if is_missing(value):
        if label == MEAN_SHAPE_ROW:
            return NOT_MEASURED
        return NOT_FINISHED if cell is not None and cell["time_limited_seeds"] else NOT_RUN
    text = format(value, spec)
    is_best = label != MEAN_SHAPE_ROW and value == best
    shown = f"**{text}**" if is_best else text
    return shown + _interval_text(cell, spec) + _marks(cell)


def _cells_by_place(cells: pd.DataFrame | None) -> dict[tuple[str, str], pd.Series]:
    if cells is None:
        return {}
    return {(row["model"], row["variant"]): row for _, row in cells.iterrows()}


def accuracy_markdown(
    table: pd.DataFrame,
    spec: str,
    cells: pd.DataFrame | None = None,
    peers: pd.DataFrame | None = None,
    metric: str = "test_rmse",
) -> str:
    """An accuracy table with the lowest value per variant in bold; with ``cells`` (one
    metric's rows of :func:`~fkdbench.report.uncertainty.accuracy_cells`), each value with
    its interval and marks, and "not finished" where only time-limited runs exist. With
    ``peers`` (the peers table), their marked rows last: the bold is computed from the
    trained rows before they are added, so a peer is never bold or ranked."""
    models = table.drop(index=MEAN_SHAPE_ROW, errors="ignore")
    best = models.min(axis=0, skipna=True)
    by_place = _cells_by_place(cells)
    shown = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    for label in table.index:
        for variant in table.columns:
            value = table.loc[label, variant]
            cell = by_place.get((label, variant))
            shown.loc[label, variant] = _accuracy_cell(value, label, best[variant], spec, cell)
    shown = shown.reset_index().rename(columns={"index": "model"})
    if peers is not None:
        scored = {variant for variant in models.columns if models[variant].notna().any()}
        rows = accuracy_cells_of_peers(peers, metric, spec, list(table.columns), scored)
        shown = pd.concat([shown, pd.DataFrame(rows, columns=shown.columns)], ignore_index=True)
    return markdown_table(shown)


def _mark_lines(cells: pd.DataFrame) -> list[str]:
    """The footnotes of the marks: which rows are not converged (and by which rule), and
    which are barely better than the mean face."""
    rmse = cells[(cells["metric"] == "test_rmse") & (cells["n_seeds"] > 0)]
    lines = []
    not_converged = rmse[rmse["converged"] == False]  # noqa: E712 (None: no finished seed)
    # The rule once per rule (every run of one fkdbench states the same), then each row's
    # own evidence.
    for rule, group in not_converged.groupby("convergence_rule", sort=True):
        lines.append(f"{NOT_CONVERGED_MARK} not converged, by the rule: {rule}.")
        lines.extend(
            f"  - {row.model} {row.variant}: {row.convergence_detail or 'no detail recorded'}"
            for row in group.itertuples()
        )
    barely = rmse[rmse["barely_better"].astype(bool)]
    if not barely.empty:
        places = ", ".join(f"{row.model} {row.variant}" for row in barely.itertuples())
        lines.append(
            f"{BARELY_BETTER_MARK} barely better than the mean face (RMSE above "
            f"{BARELY_BETTER_FRACTION} x its mean-shape RMSE): {places}."
        )
    return lines


def landmark_markdown(table: pd.DataFrame, peers: pd.DataFrame | None = None) -> str:
    """The landmark table as REPORT.md shows it (the peers' marked rows last)."""
    shown = table.astype(object).copy()
    for column in table.columns:
        if column in ("model", "variant", "scheme"):
            continue
        spec = ".2f" if column == "threshold" else ".4f"
        shown[column] = [fmt(value, spec, NOT_MEASURED) for value in table[column]]
    if peers is not None:
        rows = landmark_rows_of_peers(peers, list(shown.columns))
        shown = pd.concat([shown, pd.DataFrame(rows, columns=shown.columns)], ignore_index=True)
    return markdown_table(shown)


def _seed_line(cells: pd.DataFrame) -> str:
    counts = cells[cells["metric"] == "test_rmse"]["n_seeds"]
    counts = sorted({int(count) for count in counts if count > 0})
    seeds = " or ".join(str(count) for count in counts) or "no"
    return f"Finished seeds per row: {seeds}."


def _measured_lines(tables: dict[str, pd.DataFrame]) -> list[str]:
    """RMSE, NME and landmark tables, each with what it measures."""
    cells = tables["accuracy_intervals"]
    peers = peers_of(tables)
    rmse_cells, nme_cells = (
        cells[cells["metric"] == metric] for metric in ("test_rmse", "test_nme")
    )
    return [
        "Test RMSE in pixels over labelled coordinates (Kaggle's metric): the mean over a "
        "row's finished seeds and its 95% interval; the lowest per variant in bold (finished "
        "results only: a time-limited run is `not finished` and listed apart); `mean shape` "
        "predicts the training set's mean face.",
        "",
        accuracy_markdown(tables["accuracy_rmse"], ".3f", rmse_cells, peers, "test_rmse"),
        "",
        INTERVAL_METHODS + " " + _seed_line(cells),
        *(["", *_mark_lines(cells)] if _mark_lines(cells) else []),
        *(["", *accuracy_peer_lines(peers)] if peers is not None else []),
        "",
        "NME (mean error / inter-ocular distance), the same rows:",
        "",
        accuracy_markdown(tables["accuracy_nme"], ".4f", nme_cells, peers, "test_nme"),
        "",
        "Landmark metrics as the field reports them: NME normalised by each scheme's two "
        "points (Kaggle: the eye centres; 300-W: outer eye corners 36/45; WFLW: 60/72), "
        "FR = share of faces with NME above the threshold, AUC = area under the CED up "
        "to the threshold / threshold (1 is perfect); NME per WFLW subset where the data "
        "has them:",
        "",
        landmark_markdown(tables["landmark_metrics"], peers),
    ]


def accuracy_section(result: ReportResult) -> list[str]:
    """The lines of "Accuracy" after its heading."""
    tables = result.tables
    if tables["accuracy_rmse"].empty:
        lines = [f"No trained runs: test RMSE and NME {NOT_MEASURED}."]
        peers = peers_of(tables)
        if peers is not None:
            lines += ["", landmark_markdown(tables["landmark_metrics"], peers), ""]
            lines += accuracy_peer_lines(peers)
    else:
        lines = _measured_lines(tables)
    recipes = [run.recipe for run in result.run_summaries if run.trained]
    lines += ["", *pretrained_weights_note(recipes)]
    lines += [
        "Paper RMSE: paper 003 shows its RMSEs only as bar charts (Fig. 6-7) with no printed "
        "values, and paper 000 prints Keras 'accuracy' only, so there is no paper RMSE to set "
        "beside ours. The Kaggle RMSEs paper 003 cites from earlier work:",
    ]
    cited = tables["cited_rmse"].copy()
    cited["rmse"] = cited["rmse"].map(lambda v: f"{v:.2f}")
    lines += ["", markdown_table(cited), ""]
    return lines


# -- runs the time limit stopped --------------------------------------------------------------


def not_finished_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """Every trained run that is not a finished result: its name, why and when it stopped."""
    rows = [
        {
            "run_name": run.run_name,
            "model": run.label,
            "variant": run.variant,
            "seed": run.seed,
            "stop_reason": run.stop_reason,
            "epochs_run": run.epochs_run,
            "test_rmse": run.test_rmse,
        }
        for run in run_summaries
        if run.trained and not run.finished
    ]
    columns = ["run_name", "model", "variant", "seed", "stop_reason", "epochs_run", "test_rmse"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = frame["seed"].astype("Int64")
    frame["epochs_run"] = frame["epochs_run"].astype("Int64")
    frame["test_rmse"] = frame["test_rmse"].astype(float)
    return frame


def not_finished_section(result: ReportResult) -> list[str]:
    """The lines of "Not finished results" after its heading."""
    table = result.tables["not_finished"]
    if table.empty:
        return ["Every trained run finished: none was stopped by the time limit.", ""]
    shown = pd.DataFrame(
        {
            "run": table["run_name"],
            "reason": table["stop_reason"],
            "epochs run": table["epochs_run"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "test RMSE (not a result)": table["test_rmse"].map(
                lambda v: fmt(v, ".3f", NOT_MEASURED)
            ),
        }
    )
    return [
        "Runs stopped by the wall-clock safety stop (`max_minutes`) before their budget in "
        "epochs was spent: their scores say how far they got, not what the model can do, so "
        "they are in no ranking, bold, difference or Pareto front.",
        "",
        markdown_table(shown),
        "",
    ]
