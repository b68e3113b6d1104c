"""The "Environment" section: where the numbers came from (machine, threads, versions,
commits, data, settings), its table and its text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from fkdbench.report.cells import markdown_table
from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult

# Item -> the bench record's field, in the table's order (the package versions follow).
_BENCH_ITEMS = (
    ("CPU model", "cpu_model"),
    ("CPU cores", "cpu_cores"),
    ("CPU features", "cpu_features"),
    ("threads", "threads"),
    ("batch size", "batch_size"),
    ("timed passes (repeats)", "repeats"),
    ("warm-up passes", "warmup_passes"),
    ("batch-1 latency samples", "latency_samples"),
    ("test images timed", "images"),
    ("ONNX exporter", "exporter"),
    ("git commit (bench)", "git_commit"),
    ("data set (bench)", "data_dir"),
    ("data manifest sha256 (bench)", "data_manifest_sha256"),
)
# Item -> the field of a run's environment record (metrics.json or config.json).
_TRAINING_ENVIRONMENT_ITEMS = (
    ("CPU model (training)", "cpu_model"),
    ("CPU cores (training)", "cpu_cores"),
    ("git commit (training)", "git_commit"),
)
# Item -> the RunSummary field.
_TRAINING_DATA_ITEMS = (
    ("data source", "data_source"),
    ("data seed", "data_seed"),
    ("data set", "data_dir"),
    ("data manifest sha256", "manifest_sha256"),
    ("keypoint scheme", "scheme"),
    ("image size", "image_size"),
)
_BENCH_SOURCE = "bench records"
_TRAINING_SOURCE = "run folders"


def _item(item: str, values: Iterable[Any], source: str) -> list[dict[str, str]]:
    """One row listing every distinct value given; none when no value is."""
    distinct = sorted({str(value) for value in values if value not in (None, "")})
    if not distinct:
        return []
    return [{"item": item, "value": "; ".join(distinct), "source": source}]


def _version_items(
    versions: Sequence[dict[str, Any]], suffix: str, source: str
) -> list[dict[str, str]]:
    """A row per package any record names, with every version recorded."""
    rows = []
    for package in sorted({name for entry in versions for name in entry}):
        values = (entry.get(package) for entry in versions)
        rows += _item(f"{package} ({suffix})", values, source)
    return rows


def _bench_value(record: dict[str, Any], key: str) -> Any:
    value = record.get(key)
    return " ".join(value or []) if key == "cpu_features" else value


def _bench_items(bench: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for item, key in _BENCH_ITEMS:
        rows += _item(item, (_bench_value(record, key) for record in bench), _BENCH_SOURCE)
    versions = [record.get("versions") or {} for record in bench]
    return rows + _version_items(versions, "bench", _BENCH_SOURCE)


def _training_items(trained: Sequence[RunSummary]) -> list[dict[str, str]]:
    environments = [run.environment for run in trained]
    rows = []
    for item, key in _TRAINING_ENVIRONMENT_ITEMS:
        rows += _item(item, (entry.get(key) for entry in environments), _TRAINING_SOURCE)
    for item, key in _TRAINING_DATA_ITEMS:
        rows += _item(item, (getattr(run, key) for run in trained), _TRAINING_SOURCE)
    versions = [entry.get("versions") or {} for entry in environments]
    return rows + _version_items(versions, "training", _TRAINING_SOURCE)


def environment_table(
    run_summaries: Sequence[RunSummary], bench_records: Sequence[dict[str, Any]] = ()
) -> pd.DataFrame:
    """Where the numbers came from: machine, threads, versions, commits, data, settings.

    One row per item; a value that differs between records lists every distinct value.
    """
    trained = [run for run in run_summaries if run.trained]
    rows = _bench_items(list(bench_records)) + _training_items(trained)
    return pd.DataFrame(rows, columns=["item", "value", "source"])


def environment_section(result: ReportResult) -> list[str]:
    """The lines of "Environment" after its heading."""
    environment = result.tables["environment"]
    if environment.empty:
        return [f"No run folders or bench records: {NOT_MEASURED}.", ""]
    return [markdown_table(environment), ""]
