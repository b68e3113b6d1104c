"""The runtimes table: every run on every backend it was benched on, with "not installed"
where a runtime of the optional ``edge`` extra was asked for but absent, and the fastest
backend per run at batch 1 (a camera's latency) and at batch 32 (throughput).

It is written only when some record is of an edge runtime (or says one is missing), so a
report of the three core backends keeps its files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fkdbench.edge import EDGE_BACKENDS, NO_COMPILER, NOT_INSTALLED, is_unavailable
from fkdbench.export import PARITY_TOLERANCE_PIXELS
from fkdbench.int8 import INT8_RMSE_TOLERANCE
from fkdbench.report.cells import fmt, markdown_table
from fkdbench.report.common import (
    NOT_MEASURED,
    as_recipe,
    backend_key,
    display_name,
    is_missing,
    number,
)

RUNTIMES_TABLE = "runtimes"
# The batch whose seconds per 100 images rank throughput (the bench's default, the paper's).
THROUGHPUT_BATCH = 32
_COLUMNS = [
    "run_name",
    "model",
    "backend",
    "status",
    "batch_size",
    "threads",
    "latency_p50_ms",
    "latency_p99_ms",
    "seconds_per_100",
    "test_rmse",
    "parity_max_abs_diff_pixels",
    "timestamp",
]


def _row(record: dict[str, Any], status: str) -> dict[str, Any]:
    arch, mode = str(record.get("arch")), record.get("weights_mode") or "scratch"
    trained = bool(record.get("trained", True))
    return {
        "run_name": record.get("run_name"),
        "model": display_name(arch, mode, trained, as_recipe(record.get("recipe"))),
        "backend": record.get("backend"),
        "status": status,
        "batch_size": record.get("batch_size"),
        "threads": record.get("threads"),
        "latency_p50_ms": number(record.get("latency_batch1_p50_ms")),
        "latency_p99_ms": number(record.get("latency_batch1_p99_ms")),
        "seconds_per_100": number(record.get("seconds_per_100_images")),
        "test_rmse": number(record.get("test_rmse")),
        "parity_max_abs_diff_pixels": number(record.get("parity_max_abs_diff_pixels")),
        "timestamp": record.get("timestamp"),
    }


def runtimes_table(
    measured: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]]
) -> pd.DataFrame | None:
    """One row per run x backend x batch x threads measured (the latest), plus one per
    runtime asked for but not installed where that run has no measurement of it; None
    when no record is of an edge runtime."""
    unavailable = [r for r in failed if is_unavailable(str(r.get("error") or ""))]
    if not unavailable and not any(r.get("backend") in EDGE_BACKENDS for r in measured):
        return None
    rows = [_row(record, "measured") for record in measured]
    seen = {(row["run_name"], row["backend"]) for row in rows}
    for record in unavailable:
        if (record.get("run_name"), record.get("backend")) not in seen:
            error = str(record["error"])
            rows.append(_row(record, NOT_INSTALLED if NOT_INSTALLED in error else NO_COMPILER))
            seen.add((record.get("run_name"), record.get("backend")))
    rows.sort(key=lambda row: (str(row["run_name"]), backend_key(str(row["backend"]))))
    return pd.DataFrame(rows, columns=_COLUMNS)


def _cell(rows: pd.DataFrame) -> str:
    """A run x backend cell: batch-1 p50 and seconds per 100 images, or why there is none."""
    measured = rows[rows["status"] == "measured"]
    if measured.empty:
        return str(rows["status"].iloc[0])
    best = measured.sort_values("batch_size").iloc[-1]
    return (
        f"{fmt(best.latency_p50_ms, '.2f', NOT_MEASURED)} ms / "
        f"{fmt(best.seconds_per_100, '.4f', NOT_MEASURED)} s"
    )


def _first(rows: pd.DataFrame, by: str) -> tuple[str | None, float | None]:
    """(backend, value) of the row with the least ``by``; (None, None) when none has one."""
    rows = rows.dropna(subset=[by]).sort_values(by, kind="stable")
    return (str(rows["backend"].iloc[0]), float(rows[by].iloc[0])) if len(rows) else (None, None)


def fastest(table: pd.DataFrame) -> pd.DataFrame:
    """Per run, the backend with the lowest batch-1 p50 and the one with the fewest seconds
    per 100 images at batch 32, among those its latest bench call timed (one timestamp:
    ratios are fair only within one state of the machine)."""
    rows = []
    measured = table[table["status"] == "measured"]
    for run, group in measured.groupby("run_name", sort=True):
        latest = group[group["timestamp"] == group["timestamp"].max()]
        batch1, batch1_ms = _first(latest, "latency_p50_ms")
        at_batch = latest[latest["batch_size"] == THROUGHPUT_BATCH]
        batch32, batch32_seconds = _first(at_batch, "seconds_per_100")
        rows.append(
            {
                "run_name": run,
                "fastest_batch1": batch1,
                "fastest_batch1_p50_ms": batch1_ms,
                "fastest_batch32": batch32,
                "fastest_batch32_seconds_per_100": batch32_seconds,
                "backends_compared": len(latest),
            }
        )
    return pd.DataFrame(rows, columns=_FASTEST_COLUMNS)


_FASTEST_COLUMNS = [
    "run_name",
    "fastest_batch1",
    "fastest_batch1_p50_ms",
    "fastest_batch32",
    "fastest_batch32_seconds_per_100",
    "backends_compared",
]


def _named(backend: Any, value: Any, spec: str, missing: str) -> str:
    return missing if is_missing(backend) else f"{backend} ({value:{spec}})"


def _grid(table: pd.DataFrame) -> pd.DataFrame:
    """Run x backend: each cell :func:`_cell`, "not asked" where that run was not."""
    backends = sorted(set(table["backend"]), key=backend_key)
    rows = []
    for run, group in table.groupby("run_name", sort=True):
        cells = {b: _cell(group[group.backend == b]) for b in backends if b in set(group.backend)}
        rows.append({"run": run, **cells})
    return pd.DataFrame(rows, columns=["run", *backends]).fillna("not asked")


def runtimes_lines(table: pd.DataFrame) -> list[str]:
    """The runtimes part of "Inference time": the run x backend grid, then the fastest."""
    best = fastest(table)
    at_batch = f"not measured at batch {THROUGHPUT_BATCH}"
    shown = pd.DataFrame(
        {
            "run": best["run_name"],
            "fastest at batch 1 (p50 ms)": [
                _named(row.fastest_batch1, row.fastest_batch1_p50_ms, ".2f", NOT_MEASURED)
                for row in best.itertuples()
            ],
            f"fastest at batch {THROUGHPUT_BATCH} (s / 100 images)": [
                _named(row.fastest_batch32, row.fastest_batch32_seconds_per_100, ".4f", at_batch)
                for row in best.itertuples()
            ],
            "backends compared": best["backends_compared"],
        }
    )
    return [
        "Every backend each run was benched on: batch-1 p50 latency / seconds per 100 test "
        "images (at the largest batch measured). A runtime of the optional `edge` extra "
        'that was asked for but is absent reads "not installed"; each edge runtime\'s '
        "predictions were checked against PyTorch's before it was timed (FP32 within "
        f"{PARITY_TOLERANCE_PIXELS:g} px, INT8 within {100 * INT8_RMSE_TOLERANCE:g}% of its "
        "RMSE; `runtimes.csv` has the differences).",
        "",
        markdown_table(_grid(table)),
        "",
        "The fastest backend per run, among those timed in its latest bench call:",
        "",
        markdown_table(shown),
    ]
