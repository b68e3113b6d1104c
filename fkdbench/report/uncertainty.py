"""Results, not runs: the seeds of one (architecture, variant, weights mode, recipe) grouped
into a row, each accuracy cell's mean and 95% interval, and the marks a row earns (not finished,
not converged, barely better than the mean face).

One place decides what a row is and how its interval is made; the accuracy tables, the
differences, the real-faces comparison and the Summary read it from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fkdbench.report.common import RECIPE_COLUMN, label_key, model_label, recipe_text, variant_key
from fkdbench.report.inputs import Row, RunSummary
from fkdbench.report.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    Interval,
    bootstrap_rmse,
    t_interval,
)

# A row whose RMSE is above this share of its mean-shape RMSE is barely better than
# predicting the mean face for everyone (issue 13: every reported row must beat it).
BARELY_BETTER_FRACTION = 0.75

# How a cell's interval was made (the CSV's ``method`` column).
OVER_SEEDS = "t over seeds"
OVER_FACES = "bootstrap over test faces"
NO_INTERVAL = "no interval"

INTERVAL_METHODS = (
    f"{int(CONFIDENCE * 100)}% intervals: with several seeds, the mean over seeds and its "
    f"Student-t interval ({OVER_SEEDS}); with one seed, a percentile bootstrap over the "
    f"test faces ({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}; RMSE only, from "
    f"the per-face errors); `{NO_INTERVAL}` where one seed recorded no per-face errors."
)

_CELL_COLUMNS = [
    "metric", "model", "arch", "weights_mode", RECIPE_COLUMN, "variant", "mean", "low", "high",
    "n_seeds", "method", "time_limited_seeds", "converged", "convergence_rule",
    "convergence_detail", "mean_shape_rmse", "barely_better",
]  # fmt: skip


def row_key(row: Row) -> tuple:
    """Rows in table order: architecture, weights mode, recipe, then variant."""
    return (*label_key(_label(row)), variant_key(row.variant))


def _label(row: Row) -> str:
    return model_label(row.arch, row.weights_mode, row.recipe)


def rows_of(run_summaries: Sequence[RunSummary]) -> dict[Row, list[RunSummary]]:
    """Every trained run under its row (arch, variant, weights mode, recipe), seeds by run
    name."""
    rows: dict[Row, list[RunSummary]] = {}
    for run in sorted((run for run in run_summaries if run.trained), key=lambda r: r.run_name):
        rows.setdefault(run.row, []).append(run)
    return dict(sorted(rows.items(), key=lambda item: row_key(item[0])))


def finished_rows(run_summaries: Sequence[RunSummary]) -> dict[Row, list[RunSummary]]:
    """Each row's finished seeds; a row with none (every seed time-limited) is left out."""
    rows = {
        row: [run for run in seeds if run.finished] for row, seeds in rows_of(run_summaries).items()
    }
    return {row: seeds for row, seeds in rows.items() if seeds}


def cell_interval(seeds: Sequence[RunSummary], metric: str) -> tuple[Interval, str]:
    """A row's value of ``metric`` over its finished ``seeds`` and how its interval was made."""
    values = [getattr(run, metric) for run in seeds if getattr(run, metric) is not None]
    if len(values) >= 2:
        return t_interval(values), OVER_SEEDS
    if len(values) == 1 and metric == "test_rmse" and seeds[0].has_per_face:
        run = seeds[0]
        faces = bootstrap_rmse(run.per_face_squared_errors, run.per_face_coordinates)
        return Interval(values[0], faces.low, faces.high), OVER_FACES
    return Interval(values[0] if values else np.nan, None, None), NO_INTERVAL


def mean_shape_of(seeds: Sequence[RunSummary]) -> float | None:
    """The row's mean-shape RMSE (the median over its seeds; they share the data)."""
    values = [run.mean_shape_rmse for run in seeds if run.mean_shape_rmse is not None]
    return float(np.median(values)) if values else None


def is_barely_better(rmse: float | None, mean_shape: float | None) -> bool:
    """RMSE above BARELY_BETTER_FRACTION x the mean-shape RMSE."""
    if rmse is None or mean_shape is None or np.isnan(rmse):
        return False
    return rmse > BARELY_BETTER_FRACTION * mean_shape


def convergence_note(seeds: Sequence[RunSummary]) -> tuple[str, str] | None:
    """Why a row is not converged: (the rule, the detail) of its first seed that is not, or
    None when every seed converged."""
    for run in seeds:
        if run.converged is not True:
            return run.convergence_rule or "no rule recorded", run.convergence_detail or ""
    return None


def _cell_row(row: Row, seeds: list[RunSummary], metric: str) -> dict:
    finished = [run for run in seeds if run.finished]
    interval, method = (
        cell_interval(finished, metric) if finished else (Interval(np.nan, None, None), NO_INTERVAL)
    )
    rmse = cell_interval(finished, "test_rmse")[0].value if finished else None
    mean_shape = mean_shape_of(seeds)
    note = convergence_note(finished)
    return {
        "metric": metric, "model": _label(row), "arch": row.arch,
        "weights_mode": row.weights_mode, RECIPE_COLUMN: recipe_text(row.recipe),
        "variant": row.variant, "mean": interval.value,
        "low": interval.low, "high": interval.high, "n_seeds": len(finished), "method": method,
        "time_limited_seeds": len(seeds) - len(finished),
        "converged": note is None if finished else None,
        "convergence_rule": note[0] if note else None,
        "convergence_detail": note[1] if note else None,
        "mean_shape_rmse": mean_shape, "barely_better": is_barely_better(rmse, mean_shape),
    }  # fmt: skip


def accuracy_cells(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per (metric, model, variant): the mean, its 95% interval, the number of
    finished seeds, the method, and the row's marks (what ``accuracy_intervals.csv`` holds)."""
    rows = [
        _cell_row(row, seeds, metric)
        for metric in ("test_rmse", "test_nme")
        for row, seeds in rows_of(run_summaries).items()
    ]
    frame = pd.DataFrame(rows, columns=_CELL_COLUMNS)
    for column in ("mean", "low", "high", "mean_shape_rmse"):
        frame[column] = frame[column].astype(float)
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    frame["time_limited_seeds"] = frame["time_limited_seeds"].astype("Int64")
    return frame
