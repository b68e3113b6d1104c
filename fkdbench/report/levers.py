"""The "What each lever buys" section: every row trained with another head, loss or the flip
test (its ``recipe``, ``runs.recipe_parts``) beside its twin, the same architecture, data,
weights and seeds trained the papers' way, on the same test faces.

A lever's gain is RMSE(lever) - RMSE(twin) with its 95% paired bootstrap interval over the
test faces and the Wilcoxon signed-rank p of the per-face RMSEs
(``statistics.paired_difference``): "better" or "worse" only when the interval excludes 0,
else "tie (not significant)", and the two tests' disagreement is said. Its cost is the
ONNX Runtime batch-1 latency and time per 100 images of both, with their ratio; a ratio of
records from two bench runs (two machine states) is marked as such.
The section and ``levers.csv`` exist only when a lever row does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fkdbench.report.cells import fmt, fmt_int, markdown_table
from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.differences import TIE, mean_rmse, per_face_of
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult
from fkdbench.report.statistics import BOOTSTRAP_RESAMPLES, paired_difference
from fkdbench.report.uncertainty import finished_rows

LEVERS_TABLE = "levers"
BETTER, WORSE = "better", "worse"
# The backend whose times stand beside each lever: what an edge deployment runs.
COST_BACKEND = "onnxruntime"
# Wilcoxon p under which the test calls a difference real, beside the interval's verdict.
ALPHA = 0.05

_COLUMNS = [
    "model", "twin", "variant", "n_seeds", "rmse_twin", "rmse", "difference", "low", "high",
    "wilcoxon_p", "verdict", "tests_disagree", "nme_twin", "nme", "params", "params_twin",
    "latency_p50_ms", "latency_p50_ms_twin", "seconds_per_100", "seconds_per_100_twin",
    "same_bench_run",
]  # fmt: skip
# Beside a cost ratio of records from two bench runs: the ratio mixes two machine states.
OTHER_RUN_MARK = "*"


def _same_faces(first: Sequence[RunSummary], second: Sequence[RunSummary]) -> bool:
    """Both rows recorded per-face errors on one test split and the same faces."""
    reference = first[0]
    return all(
        run.has_per_face
        and run.manifest_sha256 == reference.manifest_sha256
        and run.per_face_coordinates == reference.per_face_coordinates
        for run in (*first, *second)
    )


def _mean(seeds: Sequence[RunSummary], field: str) -> float:
    values = [getattr(run, field) for run in seeds if getattr(run, field) is not None]
    return float(np.mean(values)) if values else float("nan")


def _cost(timing: pd.DataFrame, seeds: Sequence[RunSummary]) -> dict[str, Any]:
    """The first seed's ONNX Runtime batch-1 p50 and its largest batch's s/100 images, and
    when that record was made (one bench run stamps all its records alike)."""
    if timing.empty:
        return {}
    of_run = timing["run_name"] == seeds[0].run_name
    measured = timing[of_run & (timing["backend"] == COST_BACKEND)]
    if measured.empty:
        return {}
    largest = measured.sort_values("batch_size").iloc[-1]
    return {
        "latency_p50_ms": float(largest["latency_p50_ms"]),
        "seconds_per_100": float(largest["seconds_per_100"]),
        "timestamp": largest["timestamp"],
    }


def _lever_row(
    seeds: list[RunSummary], twin: list[RunSummary], variant: Any, timing: pd.DataFrame
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": seeds[0].label, "twin": twin[0].label, "variant": variant,
        "n_seeds": len(seeds), "rmse_twin": mean_rmse(twin), "rmse": mean_rmse(seeds),
        "nme_twin": _mean(twin, "test_nme"), "nme": _mean(seeds, "test_nme"),
        "params": seeds[0].params_pytorch, "params_twin": twin[0].params_pytorch,
    }  # fmt: skip
    cost, twin_cost = _cost(timing, seeds), _cost(timing, twin)
    entry.update({key: value for key, value in cost.items() if key != "timestamp"})
    entry.update({f"{key}_twin": value for key, value in twin_cost.items() if key != "timestamp"})
    if cost and twin_cost:
        entry["same_bench_run"] = cost["timestamp"] == twin_cost["timestamp"]
    if not _same_faces(seeds, twin):
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
        tests_disagree=compared.real != (compared.wilcoxon_p < ALPHA),
    )  # fmt: skip
    return entry


def levers_table(run_summaries: Sequence[RunSummary], timing: pd.DataFrame) -> pd.DataFrame:
    """One row per finished lever row that has a finished twin (see the module doc)."""
    rows = finished_rows(run_summaries)
    entries = []
    for row, seeds in rows.items():
        twin = rows.get(row._replace(recipe=())) if row.recipe else None
        if twin:
            entries.append(_lever_row(seeds, twin, row.variant, timing))
    frame = pd.DataFrame(entries, columns=_COLUMNS)
    numbers = [c for c in _COLUMNS if c not in ("model", "twin", "variant", "verdict")]
    for column in numbers:
        if column not in ("n_seeds", "params", "params_twin", "tests_disagree"):
            frame[column] = frame[column].astype(float)
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
    mark = "" if pd.notna(same_run) and bool(same_run) else OTHER_RUN_MARK
    return f"{format(value, spec)} ({value / twin:.2f}x{mark})"


def levers_section(result: ReportResult) -> list[str] | None:
    """The lines of "What each lever buys" after its heading; None without lever rows."""
    table = result.tables.get(LEVERS_TABLE)
    if table is None or table.empty:
        return None
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
                _cost_cell(r.latency_p50_ms, r.latency_p50_ms_twin, r.same_bench_run, ".3f")
                for r in table.itertuples()
            ],
            "ORT s/100 (x beside)": [
                _cost_cell(r.seconds_per_100, r.seconds_per_100_twin, r.same_bench_run, ".4f")
                for r in table.itertuples()
            ],
        }
    )
    lines = [
        "Each row trained with another head, loss or the flip test beside its twin: the same "
        "architecture, data variant, weights, budget and seeds trained the papers' way (dense "
        "head, MSE, no flip), scored on the same test faces. The gain is RMSE(lever) - "
        "RMSE(twin) with a 95% paired bootstrap interval over the test faces "
        f"({BOOTSTRAP_RESAMPLES:,} resamples) and the Wilcoxon signed-rank p of the per-face "
        "RMSEs; a verdict is better or worse only when the interval excludes 0. The cost is "
        f"{COST_BACKEND}'s batch-1 p50 latency and seconds per 100 images at its largest "
        "batch, as a ratio to the twin's (a flip test runs every image twice).",
        "",
        markdown_table(shown),
        "",
    ]
    if not table["same_bench_run"].eq(True).all():
        lines += [
            f"{OTHER_RUN_MARK} The lever and its twin were timed by different bench runs, so "
            "the ratio mixes two states of the machine; `fkdbench bench LEVER TWIN` times "
            "them in one run.",
            "",
        ]
    disagree = table[table["tests_disagree"].fillna(False).astype(bool)]
    for row in disagree.itertuples():
        lines.append(
            f"- {row.model} ({row.variant}): the interval says {row.verdict}, the Wilcoxon "
            f"test (p = {row.wilcoxon_p:.3g}) says otherwise; the per-face errors move in "
            "a direction the pooled RMSE does not show, or the reverse."
        )
    if len(disagree):
        lines.append("")
    return lines
