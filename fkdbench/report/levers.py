"""The "What each lever buys" section: every row trained with another head, loss or the flip
test (its ``recipe``, ``runs.recipe_parts``) beside its twin, the same architecture, data,
weights and seeds trained the papers' way, on the same test faces; every row whose
backbone was pretrained here (``pretrained-<method>``, frozen or fine-tuned) beside the
same model trained from scratch; and every fine-tuned row whose backbone trained at a
fraction of the learning rate (``backbone-lr<fraction>``) beside the same row at the full
rate (:func:`twin_of`).

A lever's gain is RMSE(lever) - RMSE(twin) with its 95% paired bootstrap interval over the
test faces and the Wilcoxon signed-rank p of the per-face RMSEs
(``statistics.paired_difference``): "better" or "worse" only when the interval excludes 0,
else "tie (not significant)", and the two tests' disagreement is said. Its cost is the
ONNX Runtime batch-1 latency and time per 100 images of both, from the records that stand
for a run's speed elsewhere in the report (``timing.speed_rows``), with their ratio; a
ratio of records from two bench runs (two machine states) is marked as such.
The section and ``levers.csv`` exist only when a lever row does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fkdbench import runs
from fkdbench.report.cells import fmt, fmt_int, markdown_table
from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.differences import TIE, comparable, mean_rmse, per_face_of, split_verdict
from fkdbench.report.inputs import Row, RunSummary
from fkdbench.report.result import ReportResult
from fkdbench.report.statistics import BOOTSTRAP_RESAMPLES, paired_difference
from fkdbench.report.timing import SPEED_BACKEND, speed_rows
from fkdbench.report.uncertainty import cell_interval, finished_rows

LEVERS_TABLE = "levers"
BETTER, WORSE = "better", "worse"

_COLUMNS = [
    "model", "twin", "variant", "n_seeds", "rmse_twin", "rmse", "difference", "low", "high",
    "wilcoxon_p", "verdict", "tests_disagree", "nme_twin", "nme", "params", "params_twin",
    "latency_p50_ms", "latency_p50_ms_twin", "seconds_per_100", "seconds_per_100_twin",
    "same_bench_run",
]  # fmt: skip
_FLOAT_COLUMNS = [
    "rmse_twin", "rmse", "difference", "low", "high", "wilcoxon_p", "nme_twin", "nme",
    "latency_p50_ms", "latency_p50_ms_twin", "seconds_per_100", "seconds_per_100_twin",
]  # fmt: skip
# Beside a cost ratio of records from two bench runs: the ratio mixes two machine states.
OTHER_RUN_MARK = "*"


def _cost(speed: pd.DataFrame, seeds: Sequence[RunSummary]) -> dict[str, Any]:
    """The first seed's batch-1 p50 and s/100 images in its speed record, and when that
    record was made (one bench run stamps all its records alike); {} when not timed."""
    measured = speed[speed["run_name"] == seeds[0].run_name]
    if measured.empty:
        return {}
    record = measured.iloc[-1]
    return {
        "latency_p50_ms": float(record["latency_p50_ms"]),
        "seconds_per_100": float(record["seconds_per_100"]),
        "timestamp": record["timestamp"],
    }


def _mean_nme(seeds: Sequence[RunSummary]) -> float:
    return float(cell_interval(seeds, "test_nme")[0].value)


def _lever_row(
    seeds: list[RunSummary], twin: list[RunSummary], variant: Any, speed: pd.DataFrame
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": seeds[0].label, "twin": twin[0].label, "variant": variant,
        "n_seeds": len(seeds), "rmse_twin": mean_rmse(twin), "rmse": mean_rmse(seeds),
        "nme_twin": _mean_nme(twin), "nme": _mean_nme(seeds),
        "params": seeds[0].params_pytorch, "params_twin": twin[0].params_pytorch,
    }  # fmt: skip
    cost, twin_cost = _cost(speed, seeds), _cost(speed, twin)
    entry.update({key: value for key, value in cost.items() if key != "timestamp"})
    entry.update({f"{key}_twin": value for key, value in twin_cost.items() if key != "timestamp"})
    if cost and twin_cost:
        entry["same_bench_run"] = cost["timestamp"] == twin_cost["timestamp"]
    if not comparable([*twin, *seeds]):
        entry["verdict"] = "not compared (no per-face errors on the same faces)"
        return entry
    compared = paired_difference(
        per_face_of(twin), per_face_of(seeds), twin[0].per_face_coordinates
    )
    difference = compared.difference
    verdict = TIE
    if compared.real:
        verdict = BETTER if difference.value < 0 else WORSE
    entry.update(
        difference=difference.value, low=difference.low, high=difference.high,
        wilcoxon_p=compared.wilcoxon_p, verdict=verdict,
        tests_disagree=compared.tests_disagree,
    )  # fmt: skip
    return entry


def twin_of(row: Row) -> Row | None:
    """The row a lever row is set against (``runs.twin_recipe``); None for no lever."""
    twin = runs.twin_recipe(row.weights_mode, row.recipe)
    return row._replace(weights_mode=twin[0], recipe=twin[1]) if twin else None


def levers_table(run_summaries: Sequence[RunSummary], timing: pd.DataFrame) -> pd.DataFrame:
    """One row per finished lever row that has a finished twin (see the module doc)."""
    rows = finished_rows(run_summaries)
    speed = speed_rows(timing)
    entries = []
    for row, seeds in rows.items():
        twin_row = twin_of(row)
        twin = rows.get(twin_row) if twin_row else None
        if twin:
            entries.append(_lever_row(seeds, twin, row.variant, speed))
    frame = pd.DataFrame(entries, columns=_COLUMNS)
    frame[_FLOAT_COLUMNS] = frame[_FLOAT_COLUMNS].astype(float)
    return frame


def _gain(row: Any) -> str:
    if pd.isna(row.difference):
        return NOT_MEASURED
    return f"{row.difference:+.3f} [{row.low:+.3f}, {row.high:+.3f}]"


def _cost_cell(value: Any, twin: Any, same_run: Any, spec: str) -> str:
    if pd.isna(value):
        return NOT_MEASURED
    if pd.isna(twin) or twin <= 0:
        return format(value, spec)
    mark = "" if same_run is True else OTHER_RUN_MARK
    return f"{format(value, spec)} ({value / twin:.2f}x{mark})"


def _backbone_lr_clause(table: pd.DataFrame) -> str:
    """Said only where a row has one, so reports without it keep their bytes."""
    if not table["model"].str.contains(runs.BACKBONE_LR_PREFIX, regex=False).any():
        return ""
    return (
        ", and a fine-tuned row whose backbone trained at a fraction of the learning rate "
        "(backbone-lr<fraction>) beside the same row with every layer at the full rate"
    )


def levers_section(result: ReportResult) -> list[str] | None:
    """The lines of "What each lever buys" after its heading; None without lever rows."""
    table = result.tables.get(LEVERS_TABLE)
    if table is None or table.empty:
        return None
    # True, False or missing (a side not timed): a plain bool only where it is one.
    same_runs = [None if pd.isna(value) else bool(value) for value in table["same_bench_run"]]
    shown = pd.DataFrame(
        {
            "lever": table["model"],
            "beside": table["twin"],
            "variant": table["variant"],
            "seeds": table["n_seeds"].astype(str),
            "RMSE beside -> lever": [
                f"{fmt(r.rmse_twin, '.3f', NOT_MEASURED)} -> {fmt(r.rmse, '.3f', NOT_MEASURED)}"
                for r in table.itertuples()
            ],
            "lever - beside [95% interval]": [_gain(r) for r in table.itertuples()],
            "Wilcoxon p": table["wilcoxon_p"].map(lambda v: fmt(v, ".3g", "\u2014")),
            "verdict": table["verdict"],
            "NME": table["nme"].map(lambda v: fmt(v, ".4f", NOT_MEASURED)),
            "params": table["params"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "ORT batch-1 p50 ms (x beside)": [
                _cost_cell(r.latency_p50_ms, r.latency_p50_ms_twin, same, ".3f")
                for r, same in zip(table.itertuples(), same_runs, strict=True)
            ],
            "ORT s/100 (x beside)": [
                _cost_cell(r.seconds_per_100, r.seconds_per_100_twin, same, ".4f")
                for r, same in zip(table.itertuples(), same_runs, strict=True)
            ],
        }
    )
    lines = [
        "Each row trained with another head, loss or the flip test beside its twin: the same "
        "architecture, data variant, weights, budget and seeds trained the papers' way (dense "
        "head, MSE, no flip), scored on the same test faces; a row whose backbone was "
        "pretrained here (pretrained-<method>) sits beside the same model from scratch"
        f"{_backbone_lr_clause(table)}. The gain is RMSE(lever) - "
        "RMSE(twin) with a 95% paired bootstrap interval over the test faces "
        f"({BOOTSTRAP_RESAMPLES:,} resamples) and the Wilcoxon signed-rank p of the per-face "
        "RMSEs; a verdict is better or worse only when the interval excludes 0. The cost is "
        f"{SPEED_BACKEND}'s batch-1 p50 latency and seconds per 100 images at the batch size "
        "and threads most of its records share (as in the accuracy-vs-speed figure), as a "
        "ratio to the twin's (a flip test runs every image twice).",
        "",
        markdown_table(shown),
        "",
    ]
    if False in same_runs:
        lines += [
            f"{OTHER_RUN_MARK} The lever and its twin were timed by different bench runs, so "
            "the ratio mixes two states of the machine; `fkdbench bench LEVER TWIN` times "
            "them in one run.",
            "",
        ]
    # True, False or missing (not compared): missing is no disagreement.
    disagree = table[
        [False if pd.isna(value) else bool(value) for value in table["tests_disagree"]]
    ]
    for row in disagree.itertuples():
        real = row.verdict in (BETTER, WORSE)
        lines.append(
            f"- {row.model} ({row.variant}): {row.verdict}, Wilcoxon p = "
            f"{row.wilcoxon_p:.3g}.{split_verdict(real, row.wilcoxon_p)}"
        )
    if len(disagree):
        lines.append("")
    return lines
