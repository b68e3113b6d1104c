"""report.json: every table as records, the figures and what is missing, as one document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fkdbench.peers import PEER_MARK
from fkdbench.report.common import FIGURES_DIR, is_missing
from fkdbench.report.figures import FIGURES
from fkdbench.report.gains import GAIN_LABEL_THRESHOLDS, SIMILAR_BAND_PERCENT, WORSE_LABEL
from fkdbench.report.peers import PEER_POLICY, PEERS_TABLE
from fkdbench.report.result import ReportResult
from fkdbench.report.studies import TUNE_FIGURES, tune_figure_link

# 2: intervals, not finished runs, differences, the --compare-with file and agreement.
REPORT_FORMAT_VERSION = 2


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars unwrapped, paths as text, NaN/NA as null."""
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if is_missing(value):
        return None
    return value


def _figures(result: ReportResult) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "file": f"{FIGURES_DIR}/{name}.png" if name in result.figures else None,
            "caption": caption,
            "missing": result.missing_figures.get(name),
        }
        for name, caption in FIGURES.items()
    }


def _tune_figures(result: ReportResult) -> dict[str, dict[str, dict[str, str]]]:
    return {
        study.study: {
            name: {"file": tune_figure_link(study.study, name), "caption": caption}
            for name, caption in TUNE_FIGURES.items()
            if name in study.figures
        }
        for study in result.tune_studies
    }


def render_json(result: ReportResult) -> str:
    """report.json's text: sorted keys, no NaN, deterministic for the same inputs."""
    tables = {}
    for name, table in result.tables.items():
        frame = table.reset_index() if table.index.name is not None else table
        frame = frame.astype(object).where(frame.notna(), None)
        tables[name] = frame.to_dict(orient="records")
    payload = {
        "format_version": REPORT_FORMAT_VERSION,
        "compare_with": result.compare_with,
        "sections": result.sections,
        "figures": _figures(result),
        "gain_thresholds": {
            "similar_band_percent": SIMILAR_BAND_PERCENT,
            "labels": [list(pair) for pair in GAIN_LABEL_THRESHOLDS],
            "worse": WORSE_LABEL,
        },
        "problems": result.problems,
        "tables": tables,
        "tune_figures": _tune_figures(result),
    }
    if PEERS_TABLE in result.tables:
        # Only with peer records, so a report without any keeps its bytes.
        payload["peers"] = {"mark": PEER_MARK, "policy": PEER_POLICY, "table": PEERS_TABLE}
    return json.dumps(_json_value(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
