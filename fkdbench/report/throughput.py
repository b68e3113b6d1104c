"""Training throughput: images per second of each trained run, from its training.json.

It depends on the machine and its load, so it is kept out of metrics.json (which must be
the same bytes on any machine) and shown here beside the load each run trained under.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fkdbench.report.cells import fmt, markdown_table
from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult

THROUGHPUT_TABLE = "training_throughput"
_COLUMNS = [
    "run_name",
    "arch",
    "variant",
    "images_per_second",
    "training_seconds",
    "load_average_1min",
]


def throughput_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per trained run with a measured throughput, by run name."""
    rows = []
    for run in sorted(run_summaries, key=lambda run: run.run_name):
        if not run.trained or run.images_per_second is None:
            continue
        load = run.environment.get("load_average") or [None]
        rows.append(
            {
                "run_name": run.run_name,
                "arch": run.arch,
                "variant": run.variant,
                "images_per_second": run.images_per_second,
                "training_seconds": run.training_seconds,
                "load_average_1min": load[0],
            }
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


def throughput_section(result: ReportResult) -> list[str] | None:
    """The lines of "Training throughput"; None when no run recorded its throughput."""
    table = result.tables.get(THROUGHPUT_TABLE)
    if table is None or table.empty:
        return None
    shown = pd.DataFrame(
        {
            "run": table["run_name"],
            "images/s (training)": table["images_per_second"].map(
                lambda v: fmt(v, ".1f", NOT_MEASURED)
            ),
            "training s": table["training_seconds"].map(lambda v: fmt(v, ".1f", NOT_MEASURED)),
            "load (1 min) at the end": table["load_average_1min"].map(
                lambda v: fmt(v, ".2f", NOT_MEASURED)
            ),
        }
    )
    return [
        "Training images per second of each run (the mean over its keypoint epochs, "
        "validation excluded), from `training.json`. They depend on the machine and on "
        "what else ran on it: compare them only between runs trained side by side on one "
        "calm machine. `metrics.json` holds none of them, so accuracy does not move with "
        "the load.",
        "",
        markdown_table(shown),
        "",
    ]
