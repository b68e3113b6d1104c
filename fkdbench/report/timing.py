"""The "Inference time" section: paper Table 4 beside our bench records, its numbers and its
text; and the rows that stand for each trained run's speed elsewhere in the report (the
accuracy-vs-speed figure, the Tuned CNN table).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from fkdbench import reference
from fkdbench.report.cells import bench_file_status, fmt, fmt_int, markdown_table, printed, text_or
from fkdbench.report.common import (
    NO_PAPER,
    NOT_MEASURED,
    NOT_RECORDED,
    RECIPE_COLUMN,
    UNTRAINED_LABEL,
    as_recipe,
    display_name,
    is_missing,
    number,
    recipe_text,
)
from fkdbench.report.inputs import RunSummary, latest_records
from fkdbench.report.paper import paper_row_beside
from fkdbench.report.peers import peers_of, timing_peer_lines, timing_rows_of_peers
from fkdbench.report.result import ReportResult
from fkdbench.report.runtimes import RUNTIMES_TABLE, runtimes_lines

# The backend whose records stand for a trained run's speed.
SPEED_BACKEND = "onnxruntime"

_TIMING_COLUMNS = [
    "model",
    "run_name",
    "arch",
    "variant",
    "weights_mode",
    RECIPE_COLUMN,
    "trained",
    "backend",
    "batch_size",
    "threads",
    "images",
    "repeats",
    "seconds_per_100",
    "seconds_per_100_q1",
    "seconds_per_100_q3",
    "seconds_per_100_iqr",
    "paper_model",
    "paper_seconds_per_100",
    "speedup_vs_paper",
    "latency_p50_ms",
    "latency_p99_ms",
    "gflops_per_image",
    "achieved_gflops",
    "fraction_of_peak",
    "test_rmse",
    "paper_citation",
    "graph_key",
    "timed_as",
    "unstable",
    "unstable_reasons",
    "timestamp",
]
# Timing column -> the bench record's field, for the numbers copied as they are.
_RECORD_NUMBERS = {
    "seconds_per_100_q1": "seconds_per_100_images_q1",
    "seconds_per_100_q3": "seconds_per_100_images_q3",
    "seconds_per_100_iqr": "seconds_per_100_images_iqr",
    "latency_p50_ms": "latency_batch1_p50_ms",
    "latency_p99_ms": "latency_batch1_p99_ms",
    "achieved_gflops": "achieved_gflops",
    "fraction_of_peak": "fraction_of_peak",
    "test_rmse": "test_rmse",
}


def _timing_row(record: dict[str, Any]) -> dict[str, Any]:
    """One bench record as a timing row, beside the paper's Table 4 row."""
    arch = str(record.get("arch"))
    trained = bool(record.get("trained", True))
    weights_mode = record.get("weights_mode") or "scratch"
    recipe = as_recipe(record.get("recipe"))
    paper = paper_row_beside(
        arch, record.get("variant"), weights_mode, trained, reference.TABLE4, recipe
    )
    seconds = number(record.get("seconds_per_100_images"))
    paper_seconds = paper.seconds_per_100 if paper else None
    flops = number(record.get("flops_per_image"))
    row = {
        "model": display_name(arch, weights_mode, trained, recipe),
        "run_name": record.get("run_name"),
        "arch": arch,
        "variant": record.get("variant"),
        "weights_mode": weights_mode,
        RECIPE_COLUMN: recipe_text(recipe),
        "trained": trained,
        **{key: record.get(key) for key in ("backend", "batch_size", "threads", "images")},
        "repeats": record.get("repeats"),
        "seconds_per_100": seconds,
        "paper_model": paper.model if paper else None,
        "paper_seconds_per_100": paper_seconds,
        "speedup_vs_paper": paper_seconds / seconds
        if paper_seconds is not None and seconds
        else None,
        "gflops_per_image": flops / 1e9 if flops is not None else None,
        "paper_citation": paper.citation if paper else None,
        # Absent in records older than bench format 3: unknown.
        "graph_key": record.get("graph_key"),
        "timed_as": record.get("timed_as"),
        "unstable": record.get("unstable"),
        "unstable_reasons": "; ".join(record.get("unstable_reasons") or ()) or None,
        # One bench run stamps all its records alike: ratios are fair within one stamp.
        "timestamp": record.get("timestamp"),
    }
    row.update({ours: number(record.get(theirs)) for ours, theirs in _RECORD_NUMBERS.items()})
    return row


def timing_table(bench_records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Paper Table 4 beside ours: the latest record per run x backend x batch x threads.

    ``speedup_vs_paper`` = the paper's seconds / ours (the paper timed Keras on a Colab CPU,
    so this compares set-ups, not only models).
    """
    rows = [_timing_row(record) for record in latest_records(bench_records)]
    frame = pd.DataFrame(rows, columns=_TIMING_COLUMNS)
    for column in ("batch_size", "threads", "images", "repeats"):
        frame[column] = frame[column].astype("Int64")
    return frame


def speed_rows(timing: pd.DataFrame) -> pd.DataFrame:
    """The timing rows that stand for trained runs' speed: ONNX Runtime, at the batch size
    and threads most such records share (so that every model is timed alike)."""
    rows = timing[(timing["backend"] == SPEED_BACKEND) & timing["trained"].astype(bool)]
    rows = rows.dropna(subset=["seconds_per_100"])
    if rows.empty:
        return rows
    settings = Counter(zip(rows["batch_size"], rows["threads"], strict=True))
    chosen = min(settings.items(), key=lambda item: (-item[1], item[0]))[0]
    return rows[(rows["batch_size"] == chosen[0]) & (rows["threads"] == chosen[1])]


def speed_points(
    run_summaries: Sequence[RunSummary], timing: pd.DataFrame
) -> list[tuple[str, float, float]]:
    """(model, seconds per 100 images, test RMSE) per trained run timed on ONNX Runtime,
    at the batch size and threads most records share; RMSE is that backend's own where the
    record has it, else the run's."""
    rows = speed_rows(timing)
    # A time-limited run is no result: it has no place on the accuracy/speed front.
    rmse = {run.run_name: run.test_rmse for run in run_summaries if run.finished}
    unfinished = {run.run_name for run in run_summaries if run.trained and not run.finished}
    points = []
    for row in rows.itertuples():
        if row.run_name in unfinished:
            continue
        value = row.test_rmse if not is_missing(row.test_rmse) else rmse.get(row.run_name)
        if value is not None and not is_missing(value):
            points.append((str(row.run_name), float(row.seconds_per_100), float(value)))
    return sorted(points)


def timing_markdown(table: pd.DataFrame, peers: pd.DataFrame | None = None) -> str:
    """The timing table as REPORT.md shows it; with ``peers`` (the peers table), their
    marked rows last, timed apart (:func:`~fkdbench.report.peers.timing_rows_of_peers`)."""
    shown = pd.DataFrame(
        {
            "model": table["model"],
            "variant": table["variant"].map(lambda v: text_or(v, UNTRAINED_LABEL)),
            "backend": table["backend"],
            "batch": table["batch_size"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "threads": table["threads"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "s / 100 images (median)": [
                fmt(row.seconds_per_100, ".4f", NOT_MEASURED) for row in table.itertuples()
            ],
            "IQR": table["seconds_per_100_iqr"].map(lambda v: fmt(v, ".4f", NOT_MEASURED)),
            "paper s / 100": table["paper_seconds_per_100"].map(printed),
            "speed-up vs paper": table["speedup_vs_paper"].map(
                lambda v: NO_PAPER if is_missing(v) else f"{v:.1f}x"
            ),
            "batch-1 p50 ms": table["latency_p50_ms"].map(lambda v: fmt(v, ".2f", NOT_MEASURED)),
            "batch-1 p99 ms": table["latency_p99_ms"].map(lambda v: fmt(v, ".2f", NOT_MEASURED)),
            "GFLOPs / image": table["gflops_per_image"].map(lambda v: fmt(v, ".3f", NOT_MEASURED)),
            "% of peak": table["fraction_of_peak"].map(
                lambda v: NOT_MEASURED if is_missing(v) else f"{100 * v:.1f}%"
            ),
            "test RMSE (this backend)": [
                UNTRAINED_LABEL if not row.trained else fmt(row.test_rmse, ".3f", NOT_MEASURED)
                for row in table.itertuples()
            ],
        }
    )
    if table["graph_key"].notna().any():
        shown.insert(3, "timed as", [_timed_as(row) for row in table.itertuples()])
    if table["unstable"].fillna(False).astype(bool).any():
        shown["unstable"] = [
            f"yes: {row.unstable_reasons or 'no reason recorded'}" if row.unstable is True else ""
            for row in table.itertuples()
        ]
    if peers is not None:
        rows = timing_rows_of_peers(peers, list(shown.columns))
        shown = pd.concat([shown, pd.DataFrame(rows, columns=shown.columns)], ignore_index=True)
    return markdown_table(shown)


def _timed_as(row: Any) -> str:
    """Whose timing a record carries: its own, another run's of the same graph, or unknown."""
    if is_missing(row.graph_key):
        return NOT_RECORDED
    return "itself" if is_missing(row.timed_as) else str(row.timed_as)


def _peak_samples(record: dict[str, Any]) -> tuple[float, ...]:
    samples = record.get("machine_peak_samples_gflops") or record.get("peak_samples") or ()
    return tuple(float(value) for value in samples)


def peak_lines(bench_records: Sequence[dict[str, Any]]) -> list[str]:
    """The machine peak as the best of its measurements: N and their spread, per distinct
    set of measurements; nothing for records older than the samples."""
    found = sorted({samples for record in bench_records if (samples := _peak_samples(record))})
    return [
        f"FP32 matmul peak (the % of peak column): the best of {len(samples)} measurements "
        f"through the bench, {max(samples):.1f} GFLOP/s (spread {min(samples):.1f} to "
        f"{max(samples):.1f}, {100 * (max(samples) - min(samples)) / max(samples):.0f}% below "
        "the best at worst)."
        for samples in found
    ]


def _shared_timing_lines(table: pd.DataFrame) -> list[str]:
    """Which records share one timing (bench format 3), or nothing for older records."""
    if not table["graph_key"].notna().any():
        return []
    shared = table.dropna(subset=["timed_as"])
    groups = sorted({(row.timed_as, row.run_name) for row in shared.itertuples()})
    listed = "; ".join(f"{run} as {source}" for source, run in groups)
    return [
        "Latency depends on the graph, not the weights: each distinct graph (architecture, "
        "spec, input size, channels) is timed once per bench call, and every run that "
        "shares it carries that timing (`timed as`)"
        + (f": {listed}." if listed else "; no two runs here share a graph."),
        "",
    ]


def _unstable_lines(table: pd.DataFrame) -> list[str]:
    unstable = table[table["unstable"].fillna(False).astype(bool)]
    if unstable.empty:
        return []
    return [
        f"**Warning: {len(unstable)} of {len(table)} records were timed on an unsteady "
        "machine** (other processes using the CPU, or repeats or peaks spread beyond the "
        "bound; see the `unstable` column): their times are not to be trusted, rerun on a "
        "calm machine.",
        "",
    ]


_TIMING_EXPLAINED = (
    "Paper Table 4 beside ours: seconds per 100 test images (Equation 1: the whole "
    "test split in batches, / images x 100), the median of the timed passes and its "
    "interquartile range; batch-1 latency percentiles; work per image (multiply-add "
    "= 2 FLOPs) and the fraction of this machine's measured FP32 matmul peak. The "
    "paper timed Keras on a Colab CPU, and fed MobileNetV2 and NASNetMobile 3-channel "
    "images (NASNetMobile at 224x224) where ours take the data's gray images: "
    "speed-up = paper seconds / ours, a comparison of set-ups, not of models alone. "
    "For INT8, a % of the FP32 peak above 100 is possible: the integer units are "
    "faster. A transfer architecture not fine-tuned (or untrained) sits beside the "
    "paper's non-fine-tuned row, an untrained model beside the No-imputation column."
)


def timing_section(result: ReportResult) -> list[str]:
    """The lines of "Inference time" after its heading."""
    timing = result.tables["timing"]
    peers = peers_of(result.tables)
    if timing.empty:
        lines = [
            f"No bench records ({bench_file_status(result.bench_file)}): inference time "
            f"{NOT_MEASURED}. Run `fkdbench bench` to measure it.",
            "",
        ]
        if peers is not None:
            lines += [timing_markdown(timing, peers), "", *timing_peer_lines(peers), ""]
        return lines
    lines = [
        *_unstable_lines(timing),
        _TIMING_EXPLAINED,
        "",
        *_shared_timing_lines(timing),
        timing_markdown(timing, peers),
    ]
    if peers is not None and timing_peer_lines(peers):
        lines += ["", *timing_peer_lines(peers)]
    peaks = peak_lines(result.bench_records)
    if peaks:
        lines += ["", *peaks]
    if "onnxruntime-int8" not in set(timing["backend"]):
        lines += ["", f"ONNX Runtime INT8: {NOT_MEASURED} (no records for that backend)."]
    if RUNTIMES_TABLE in result.tables:
        lines += ["", *runtimes_lines(result.tables[RUNTIMES_TABLE])]
    lines.append("")
    return lines
