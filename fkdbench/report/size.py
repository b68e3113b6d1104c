"""The "Parameters and size" section: paper Table 1 beside ours, its numbers and its text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fkdbench import reference
from fkdbench.report.cells import fmt, fmt_int, markdown_table, printed, text_or
from fkdbench.report.common import (
    NO_PAPER,
    NOT_EXPORTED,
    NOT_MEASURED,
    RECIPE_COLUMN,
    UNTRAINED_LABEL,
    as_recipe,
    display_name,
    mb,
    recipe_text,
    run_key,
)
from fkdbench.report.inputs import RunSummary
from fkdbench.report.paper import paper_row_beside
from fkdbench.report.result import ReportResult

_SIZE_COLUMNS = [
    "model",
    "run_name",
    "arch",
    "variant",
    "weights_mode",
    RECIPE_COLUMN,
    "trained",
    "params_pytorch",
    "params_keras",
    "state_dict_mb",
    "onnx_mb",
    "int8_mb",
    "paper_model",
    "paper_params",
    "paper_mb",
    "paper_citation",
]
# The size fields a bench record fills where the run folder has none: ours -> the record's.
_BENCH_SIZE_FIELDS = {
    "params_pytorch": "parameters_pytorch",
    "params_keras": "parameters_keras",
    "model_pt_bytes": "model_pt_bytes",
    "onnx_bytes": "onnx_bytes",
    "int8_bytes": "int8_onnx_bytes",
}


def _sizes_of_runs(run_summaries: Sequence[RunSummary]) -> dict[str, dict[str, Any]]:
    """Run name -> what the run folder says of its model's size."""
    return {
        run.run_name: {
            "run_name": run.run_name,
            "arch": run.arch,
            "variant": run.variant,
            "weights_mode": run.weights_mode,
            "recipe": run.recipe,
            "trained": run.trained,
            "params_pytorch": run.params_pytorch,
            "params_keras": run.params_keras,
            "model_pt_bytes": run.model_pt_bytes,
            "onnx_bytes": run.onnx_bytes,
            "int8_bytes": run.int8_bytes,
        }
        for run in run_summaries
    }


def _gaps_filled(row: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The size fields ``row`` lacks that ``record`` has."""
    return {
        ours: record[theirs]
        for ours, theirs in _BENCH_SIZE_FIELDS.items()
        if row.get(ours) is None and record.get(theirs) is not None
    }


def _fill_from_bench(
    by_name: dict[str, dict[str, Any]], bench_records: Sequence[dict[str, Any]]
) -> None:
    """Add the benched models no run folder has, and fill each gap from the latest record."""
    ordered = sorted(
        enumerate(bench_records), key=lambda item: (str(item[1].get("timestamp") or ""), item[0])
    )
    for _, record in reversed(ordered):  # newest first: fill each gap from the latest
        name = record.get("run_name")
        row = by_name.setdefault(
            name,
            {
                "run_name": name,
                "arch": record.get("arch"),
                "variant": record.get("variant"),
                "weights_mode": record.get("weights_mode") or "scratch",
                "recipe": as_recipe(record.get("recipe")),
                "trained": bool(record.get("trained", True)),
            },
        )
        row.update(_gaps_filled(row, record))


def _size_row(row: dict[str, Any]) -> dict[str, Any]:
    """One model's row of the size table, beside the paper's Table 1 row."""
    recipe = row["recipe"]
    paper = paper_row_beside(
        row["arch"], row["variant"], row["weights_mode"], row["trained"], reference.TABLE1, recipe
    )
    return {
        "model": display_name(row["arch"], row["weights_mode"], row["trained"], recipe),
        "run_name": row["run_name"],
        "arch": row["arch"],
        "variant": row["variant"],
        "weights_mode": row["weights_mode"],
        RECIPE_COLUMN: recipe_text(recipe),
        "trained": row["trained"],
        "params_pytorch": row.get("params_pytorch"),
        "params_keras": row.get("params_keras"),
        "state_dict_mb": mb(row.get("model_pt_bytes")),
        "onnx_mb": mb(row.get("onnx_bytes")),
        "int8_mb": mb(row.get("int8_bytes")),
        "paper_model": paper.model if paper else None,
        "paper_params": paper.params if paper else None,
        "paper_mb": paper.size_mb if paper else None,
        "paper_citation": paper.citation if paper else None,
    }


def size_table(
    run_summaries: Sequence[RunSummary], bench_records: Sequence[dict[str, Any]] = ()
) -> pd.DataFrame:
    """Paper Table 1 beside ours: one row per model (run folder or benched model).

    Parameters come from metrics.json, else from bench records; file sizes from the run
    folder (metrics, export.json), else from the bench records. MB = 10^6 bytes.
    """
    by_name = _sizes_of_runs(run_summaries)
    _fill_from_bench(by_name, bench_records)
    ordered = sorted(
        by_name.values(),
        key=lambda r: run_key(
            r["arch"], r["variant"], r["weights_mode"], r["trained"], r["recipe"]
        ),
    )
    rows = [_size_row(row) for row in ordered]
    frame = pd.DataFrame(rows, columns=_SIZE_COLUMNS)
    for column in ("params_pytorch", "params_keras", "paper_params"):
        frame[column] = frame[column].astype("Int64")
    return frame


def size_markdown(table: pd.DataFrame) -> str:
    """The size table as REPORT.md shows it."""
    shown = pd.DataFrame(
        {
            "model": table["model"],
            "variant": table["variant"].map(lambda v: text_or(v, UNTRAINED_LABEL)),
            "params (PyTorch)": table["params_pytorch"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "params (Keras)": table["params_keras"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "state dict MB": table["state_dict_mb"].map(lambda v: fmt(v, ".2f", NOT_MEASURED)),
            "ONNX MB": table["onnx_mb"].map(lambda v: fmt(v, ".2f", NOT_EXPORTED)),
            "INT8 MB": table["int8_mb"].map(lambda v: fmt(v, ".2f", NOT_EXPORTED)),
            "paper model": table["paper_model"].map(lambda v: text_or(v, NO_PAPER)),
            "paper params": table["paper_params"].map(lambda v: fmt_int(v, NO_PAPER)),
            "paper MB": table["paper_mb"].map(printed),
        }
    )
    return markdown_table(shown)


def size_section(result: ReportResult) -> list[str]:
    """The lines of "Parameters and size" after its heading."""
    lines = [
        "Paper Table 1 beside ours. Parameters counted the PyTorch way (learnable) and the "
        "Keras way (learnable + BatchNorm running statistics, the paper's). MB = 10^6 bytes "
        "of the saved file: state dict (`model.pt`), ONNX (`model.onnx`), INT8 ONNX. "
        "Untrained models sit beside the paper's No-imputation row, transfer architectures "
        "beside its single MobileNetV2 / NASNetMobile row.",
        "",
    ]
    size = result.tables["size"]
    lines.append(size_markdown(size) if not size.empty else f"No models: {NOT_MEASURED}.")
    notes = [row for row in reference.paper_rows(table=reference.TABLE1) if row.note]
    if notes:
        lines.append("")
        lines += [f"- Paper row *{row.model}*: {row.note}." for row in notes]
    lines.append("")
    return lines
