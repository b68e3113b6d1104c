"""Off-the-shelf peers in the report: their records read in, one table of their numbers,
and the marked rows the accuracy, timing and figure sections add for them.

A peer (:mod:`fkdbench.peers`) is scored on a data set's test split by the project's own
metrics but was trained elsewhere (300-W), so its rows carry :data:`~fkdbench.peers.PEER_MARK`
and are never ranked: no bold, no rank, no place on the Pareto front. Where a trained row
was scored on the same test faces (the same manifest sha256 and labelled coordinates), the
peer is set against the best trained row by the report's paired test.

Records come from ``<runs_dir>/peers/*.json`` (:func:`load_peer_records`), or rebuilt from
records, from ``peers.jsonl`` beside ``runs.jsonl`` (:data:`PEER_RECORDS_FILE`), which is
written only when there are peer records. A report with no peer record has no ``peers``
table, and every section reads exactly as it did before peers existed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fkdbench import io
from fkdbench.peers import NOT_INSTALLED, PEER_MARK
from fkdbench.peers.score import PEERS_DIR
from fkdbench.report.cells import fmt
from fkdbench.report.common import NO_PAPER, NOT_MEASURED, ReportError, is_missing
from fkdbench.report.differences import REAL, TIE, leading_rows, per_face_of, split_verdict
from fkdbench.report.inputs import RunSummary
from fkdbench.report.statistics import bootstrap_rmse, paired_difference

# Under the report's out dir, beside runs.jsonl: every peer record's summary.
PEER_RECORDS_FILE = "peers.jsonl"
# The table's name (peers.csv, report.json's tables.peers).
PEERS_TABLE = "peers"
# A cell of a variant column whose runs were scored on other test faces than the peer.
OTHER_TEST_SPLIT = "other test split"
PEER_BACKEND = "dlib (own runtime), 1 face at a time"
# report.json's word on the peers (only in a report that has some).
PEER_POLICY = (
    "Peers are scored on the same test split by the same metrics but were trained "
    "elsewhere: their rows are marked, never bold, ranked or on the Pareto front. The "
    "accuracy and timing tables hold trained runs only; the peers' numbers are in the "
    "peers table (its same_test_split column says whether a trained run shares their faces)."
)


@dataclass(frozen=True)
class PeerSummary:
    """What the report needs from one peer record, as plain values."""

    peer: str
    mark: str = PEER_MARK
    trained_on: str | None = None
    installed: bool = False
    error: str | None = None
    data_dir: str | None = None
    manifest_sha256: str | None = None
    scheme: str | None = None
    test_rows: int | None = None
    detected: int | None = None
    given_box: int | None = None
    test_rmse: float | None = None
    test_nme: float | None = None
    test_fr: float | None = None
    test_auc: float | None = None
    failure_threshold: float | None = None
    mean_shape_rmse: float | None = None
    test_rmse_detected: float | None = None
    test_rmse_given_box: float | None = None
    per_face_squared_errors: tuple[float, ...] = field(default=(), compare=False)
    per_face_coordinates: tuple[int, ...] = field(default=(), compare=False)
    # Raw timing samples, seconds per face: detection (upscale + HOG) and shape apart.
    detect_seconds: tuple[float, ...] = field(default=(), compare=False)
    shape_seconds: tuple[float, ...] = field(default=(), compare=False)
    threads: int | None = None
    cpu_model: str | None = None

    @property
    def label(self) -> str:
        """The peer's row label in every table: its name and the mark."""
        return f"{self.peer} ({self.mark})"

    @property
    def scored(self) -> bool:
        return self.error is None and self.test_rmse is not None

    @property
    def why_no_score(self) -> str:
        """The cell text of a peer without scores: "not installed", or its error."""
        if not self.installed:
            return NOT_INSTALLED.split(" (")[0]
        return self.error or NOT_MEASURED


# -- reading records -----------------------------------------------------------------------

# Counts (rows, faces, threads, coordinates) fit pandas' Int64.
_COUNT_LIMIT = 2**63
_FIELD_TYPES = {item.name: str(item.type) for item in fields(PeerSummary)}
_KIND_WORDS = {
    "str": "text", "bool": "true or false", "int": "a count (a whole number, 0 to 2**63)",
    "float": "a number", "tuple[float, ...]": "a list of numbers",
    "tuple[int, ...]": "a list of counts",
}  # fmt: skip


def _json_type(value: Any) -> str:
    """JSON's name for the type of a parsed value."""
    for kind, name in ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"),
                       (list, "array"), (dict, "object")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < _COUNT_LIMIT


def _as_float(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (bools, text, huge integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _field_value(name: str, value: Any) -> Any:
    """``value`` as :class:`PeerSummary`'s field ``name`` holds it (NaN scores as None);
    ValueError, naming the field, when it is of another type."""
    kind = _FIELD_TYPES[name]
    if value is None and kind.endswith(" | None"):
        return None
    base = kind.removesuffix(" | None")
    if (base, type(value)) in (("str", str), ("bool", bool)):
        return value
    if base == "int" and _is_count(value):
        return value
    as_float = _as_float(value)
    if base == "float" and as_float is not None:
        return None if math.isnan(as_float) else as_float
    if base.startswith("tuple[") and isinstance(value, (list, tuple)):
        items = _tuple_items(base, value)
        if items is not None:
            return items
    or_null = " or null" if kind.endswith(" | None") else ""
    raise ValueError(f"{name} is not {_KIND_WORDS[base]}{or_null} (a JSON {_json_type(value)})")


def _tuple_items(kind: str, values: Sequence[Any]) -> tuple[Any, ...] | None:
    """``values`` as ``tuple[int, ...]`` (counts) or ``tuple[float, ...]``; None when not."""
    if kind == "tuple[int, ...]":
        return tuple(values) if all(_is_count(value) for value in values) else None
    floats = tuple(_as_float(value) for value in values)
    return None if None in floats else floats


def _checked_summary(values: dict[str, Any]) -> PeerSummary:
    """A summary of ``values`` (PeerSummary's fields; others ignored), each of its field's
    type and the per-face and timing samples paired; ValueError (one line) when not."""
    if not isinstance(values.get("peer"), str):
        raise ValueError("no peer name")
    checked = {
        name: _field_value(name, value) for name, value in values.items() if name in _FIELD_TYPES
    }
    summary = PeerSummary(**checked)
    for first, second in (
        ("per_face_squared_errors", "per_face_coordinates"),
        ("detect_seconds", "shape_seconds"),
    ):
        if len(getattr(summary, first)) != len(getattr(summary, second)):
            raise ValueError(f"{first} and {second} differ in length")
    return summary


def _section(record: dict[str, Any], key: str) -> dict[str, Any]:
    """``record[key]``, a JSON object; {} when absent or null."""
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} is a JSON {_json_type(value)}, not an object")
    return value


def _summary_from_record(record: Any) -> PeerSummary:
    """The summary of one ``<runs_dir>/peers/<name>.json`` (:mod:`fkdbench.peers.score`)."""
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {_json_type(record)}, not an object")
    data, faces, timing = (_section(record, key) for key in ("data", "faces", "timing"))
    metrics = _section(record, "metrics")
    per_face = _section(metrics, "test_per_face")
    values = {key: record.get(key) for key in ("peer", "trained_on", "error")}
    values.update({key: data.get(key) for key in ("data_dir", "manifest_sha256", "scheme")})
    values.update({key: metrics.get(key) for key in _METRIC_KEYS})
    installed = record.get("installed")
    values.update(
        mark=record.get("mark") or PEER_MARK,
        installed=False if installed is None else installed,
        test_rows=data.get("test_rows"),
        detected=faces.get("detected"),
        given_box=faces.get("given_box"),
        per_face_squared_errors=per_face.get("squared_error_sum") or (),
        per_face_coordinates=per_face.get("coordinates") or (),
        detect_seconds=timing.get("detect_seconds") or (),
        shape_seconds=timing.get("shape_seconds") or (),
        threads=timing.get("threads"),
        cpu_model=_section(record, "environment").get("cpu_model"),
    )  # fmt: skip
    return _checked_summary(values)


_METRIC_KEYS = (
    "test_rmse", "test_nme", "test_fr", "test_auc", "failure_threshold", "mean_shape_rmse",
    "test_rmse_detected", "test_rmse_given_box",
)  # fmt: skip


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def load_peer_records(runs_dir: Path, problems: list[str] | None = None) -> list[PeerSummary]:
    """Every ``<runs_dir>/peers/*.json``, by peer name; an unreadable one is skipped and
    described in ``problems`` (one line naming it)."""
    folder = Path(runs_dir) / PEERS_DIR
    problems = [] if problems is None else problems
    peers = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            peers.append(_summary_from_record(io.read_json(path, ReportError)))
        except ReportError as error:  # read_json names the path
            problems.append(f"skipped peer record: {_first_line(error)}")
        except ValueError as error:
            problems.append(f"skipped peer record {path}: {_first_line(error)}")
    return sorted(peers, key=lambda peer: peer.peer)


def write_peer_records(peers: Sequence[PeerSummary], path: Path) -> Path:
    """The peers as JSON lines (``peers.jsonl``): the report rebuilds from them."""
    lines = [json.dumps(_json_ready(asdict(peer)), sort_keys=True) + "\n" for peer in peers]
    io.write_text_atomic(Path(path), "".join(lines))
    return Path(path)


def _json_ready(record: dict[str, Any]) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in record.items()
    }


def _peer_line(line: str) -> PeerSummary:
    """One line of ``peers.jsonl``; ValueError when it is not a peer summary."""
    try:
        record = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {_json_type(record)}, not an object")
    return _checked_summary(record)


def read_peer_records(path: Path) -> list[PeerSummary]:
    """Summaries written by :func:`write_peer_records`; [] when the file is absent (a
    report built before peers, or with none); a :class:`ReportError` naming the file and
    line when one is not a peer summary."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReportError(f"{path}: not UTF-8 text ({error})") from None
    peers = []
    for number_, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            peers.append(_peer_line(line))
        except ValueError as error:  # json.JSONDecodeError is one
            raise ReportError(
                f"{path}: line {number_}: not a peer record ({_first_line(error)})"
            ) from None
    return sorted(peers, key=lambda peer: peer.peer)


def read_peers(
    runs_dir: Path | None, out_dir: Path, problems: list[str] | None = None
) -> list[PeerSummary]:
    """The report's peers: from ``runs_dir``'s records, or (``runs_dir`` None: rebuilt
    from records) from ``out_dir/peers.jsonl``."""
    if runs_dir is None:
        return read_peer_records(Path(out_dir) / PEER_RECORDS_FILE)
    return load_peer_records(runs_dir, problems)


def keep_peer_records(peers: Sequence[PeerSummary], out_dir: Path) -> Path | None:
    """Write ``out_dir/peers.jsonl`` when there are peers; with none, remove a stale one
    (an earlier build's peers must not reappear in a rebuild from records)."""
    path = Path(out_dir) / PEER_RECORDS_FILE
    if peers:
        return write_peer_records(peers, path)
    path.unlink(missing_ok=True)
    return None


# -- the table ------------------------------------------------------------------------------

_COLUMNS = [
    "peer", "mark", "trained_on", "installed", "error", "data_dir", "manifest_sha256",
    "same_test_split", "scheme", "test_rows", "detected", "given_box", "test_rmse",
    "rmse_low", "rmse_high", "test_nme", "test_fr", "test_auc", "failure_threshold",
    "mean_shape_rmse", "test_rmse_detected", "test_rmse_given_box", "threads",
    "detect_ms_p50", "shape_ms_p50", "ms_per_face_p50", "ms_per_face_p99",
    "seconds_per_100", "seconds_per_100_shape_only", "cpu_model", "vs_model", "vs_variant",
    "vs_rmse", "difference", "difference_low", "difference_high", "wilcoxon_p", "verdict",
]  # fmt: skip


def _timing_numbers(peer: PeerSummary) -> dict[str, float | None]:
    """Statistics of the raw samples: medians per stage, and seconds per 100 images as
    Equation 1 makes them (all faces' time / faces x 100)."""
    if not peer.detect_seconds or len(peer.detect_seconds) != len(peer.shape_seconds):
        return {}
    detect = np.asarray(peer.detect_seconds, dtype=float)
    shape = np.asarray(peer.shape_seconds, dtype=float)
    total = detect + shape
    return {
        "detect_ms_p50": 1e3 * float(np.median(detect)),
        "shape_ms_p50": 1e3 * float(np.median(shape)),
        "ms_per_face_p50": 1e3 * float(np.median(total)),
        "ms_per_face_p99": 1e3 * float(np.percentile(total, 99)),
        "seconds_per_100": 100 * float(total.mean()),
        "seconds_per_100_shape_only": 100 * float(shape.mean()),
    }


def _against_best(peer: PeerSummary, run_summaries: Sequence[RunSummary]) -> dict[str, Any]:
    """RMSE(peer) - RMSE(best trained row) on the same faces, by the paired test."""
    leading = leading_rows(run_summaries)
    if not leading or not peer.per_face_squared_errors:
        return {}
    row, seeds = leading[0]
    best = seeds[0]
    if (
        best.manifest_sha256 != peer.manifest_sha256
        or best.per_face_coordinates != peer.per_face_coordinates
    ):
        return {}
    compared = paired_difference(
        per_face_of(seeds), peer.per_face_squared_errors, best.per_face_coordinates
    )
    return {
        "vs_model": best.label, "vs_variant": row.variant,
        "vs_rmse": float(np.mean([run.test_rmse for run in seeds])),
        "difference": compared.difference.value, "difference_low": compared.difference.low,
        "difference_high": compared.difference.high, "wilcoxon_p": compared.wilcoxon_p,
        "verdict": REAL if compared.real else TIE,
    }  # fmt: skip


def _peer_row(peer: PeerSummary, run_summaries: Sequence[RunSummary]) -> dict[str, Any]:
    manifests = {run.manifest_sha256 for run in run_summaries if run.trained}
    interval = (
        bootstrap_rmse(peer.per_face_squared_errors, peer.per_face_coordinates)
        if peer.scored and peer.per_face_squared_errors
        else None
    )
    row = {name: getattr(peer, name, None) for name in _COLUMNS if hasattr(peer, name)}
    row.update(
        same_test_split=peer.manifest_sha256 in manifests if peer.manifest_sha256 else False,
        rmse_low=interval.low if interval else None,
        rmse_high=interval.high if interval else None,
        **_timing_numbers(peer),
        **(_against_best(peer, run_summaries) if peer.scored else {}),
    )
    return row


def peer_table(
    peers: Sequence[PeerSummary], run_summaries: Sequence[RunSummary] = ()
) -> pd.DataFrame:
    """One row per peer record: its scores with a bootstrap interval over test faces,
    whether trained runs were scored on the same test split, its timing statistics, and
    the paired comparison with the best trained row where the faces are the same."""
    rows = [_peer_row(peer, run_summaries) for peer in peers]
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    for column in ("test_rows", "detected", "given_box", "threads"):
        frame[column] = frame[column].astype("Int64")
    numeric = _COLUMNS[_COLUMNS.index("test_rmse") : _COLUMNS.index("failure_threshold") + 1]
    numeric += [c for c in _COLUMNS if c.endswith(("_rmse", "_p50", "_p99", "_100", "_only"))]
    numeric += ["difference", "difference_low", "difference_high", "wilcoxon_p"]
    for column in dict.fromkeys(numeric):
        frame[column] = frame[column].astype(float)
    return frame


def peers_of(tables: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """The report's peers table, or None when the report has no peer record."""
    table = tables.get(PEERS_TABLE)
    return None if table is None or table.empty else table


# -- Markdown rows --------------------------------------------------------------------------


def _no_score(row: Any) -> str:
    if is_missing(row.installed) or not bool(row.installed):
        return NOT_INSTALLED.split(" (")[0]
    return str(row.error) if not is_missing(row.error) else NOT_MEASURED


def _interval(row: Any, value: float, spec: str, metric: str) -> str:
    if metric != "test_rmse" or is_missing(row.rmse_low) or is_missing(row.rmse_high):
        return format(value, spec)
    return f"{format(value, spec)} [{format(row.rmse_low, spec)}, {format(row.rmse_high, spec)}]"


def accuracy_cells_of_peers(
    peers: pd.DataFrame, metric: str, spec: str, variants: Sequence[str], scored: set[str]
) -> list[dict[str, str]]:
    """The peers' rows of an accuracy table: the same value in every variant column whose
    runs share the peer's test split (variants change training data only), never bold.

    ``scored``: the variant columns that hold a trained value.
    """
    rows = []
    for row in peers.itertuples():
        value = getattr(row, metric)
        if is_missing(value):
            text = _no_score(row)
        elif not row.same_test_split:
            text = OTHER_TEST_SPLIT
        else:
            text = _interval(row, value, spec, metric)
        cells = {variant: text if variant in scored or is_missing(value) else "" for variant in
                 variants}  # fmt: skip
        rows.append({"model": f"{row.peer} ({row.mark})", **cells})
    return rows


def accuracy_peer_lines(peers: pd.DataFrame) -> list[str]:
    """What the peer rows are, and the paired test against the best trained row."""
    lines = []
    for row in peers.itertuples():
        lines.append(
            f"`{row.peer}` ({row.mark}: {row.trained_on or 'unknown data'}) is not trained "
            "here: it is scored on the same test faces by the same metrics, its RMSE "
            "interval a bootstrap over those faces, and it is never bold or ranked (the "
            "bold is the lowest trained value even where the peer is lower)." + _face_counts(row)
        )
        if not is_missing(row.difference):
            lines.append(
                f"  - vs the best trained row ({row.vs_model}, {row.vs_variant}): RMSE "
                f"{row.test_rmse:.3f} - {row.vs_rmse:.3f} = {row.difference:+.3f} px "
                f"[{row.difference_low:+.3f}, {row.difference_high:+.3f}], Wilcoxon "
                f"p = {row.wilcoxon_p:.3g}: {row.verdict}."
                f"{split_verdict(row.verdict == REAL, row.wilcoxon_p)}"
            )
    return lines


def _face_counts(row: Any) -> str:
    if is_missing(row.detected) or is_missing(row.given_box):
        return ""
    return (
        f" Its face boxes: {row.detected} of {row.detected + row.given_box} from its "
        f"detector (RMSE {fmt(row.test_rmse_detected, '.3f', NOT_MEASURED)}), "
        f"{row.given_box} from the median of its detected boxes where it found none "
        f"(RMSE {fmt(row.test_rmse_given_box, '.3f', NOT_MEASURED)})."
    )


def landmark_rows_of_peers(peers: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, str]]:
    """The peers' rows of the landmark-metrics table (already-formatted text)."""
    rows = []
    for row in peers.itertuples():
        cells = {column: "" for column in columns}
        cells.update(model=f"{row.peer} ({row.mark})", variant="", scheme=str(row.scheme))
        for column, metric in (("nme", "test_nme"), ("fr", "test_fr"), ("auc", "test_auc")):
            value = getattr(row, metric)
            cells[column] = _no_score(row) if is_missing(value) else format(value, ".4f")
        cells["threshold"] = fmt(row.failure_threshold, ".2f", NOT_MEASURED)
        rows.append({column: cells[column] for column in columns})
    return rows


def timing_rows_of_peers(peers: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, str]]:
    """The peers' rows of the timing table, in the Markdown table's ``columns``: seconds
    per 100 images from the raw per-face samples (one face at a time, one thread)."""
    rows = []
    for row in peers.itertuples():
        seconds = fmt(row.seconds_per_100, ".4f", _no_score(row))
        cells = {column: NOT_MEASURED for column in columns}
        cells.update({
            "model": f"{row.peer} ({row.mark})", "variant": "", "backend": PEER_BACKEND,
            "batch": "1", "threads": fmt(row.threads, "d", NOT_MEASURED),
            "s / 100 images (median)": seconds, "paper s / 100": NO_PAPER,
            "speed-up vs paper": NO_PAPER,
            "batch-1 p50 ms": fmt(row.ms_per_face_p50, ".2f", NOT_MEASURED),
            "batch-1 p99 ms": fmt(row.ms_per_face_p99, ".2f", NOT_MEASURED),
            "test RMSE (this backend)": fmt(row.test_rmse, ".3f", _no_score(row)),
            "timed as": "itself", "unstable": "",
        })  # fmt: skip
        rows.append({column: cells[column] for column in columns})
    return rows


def timing_peer_lines(peers: pd.DataFrame) -> list[str]:
    """How the peers were timed, apart from the bench."""
    lines = []
    for row in peers.itertuples():
        if is_missing(row.seconds_per_100):
            continue
        lines.append(
            f"`{row.peer}` ({row.mark}) is timed by `fkdbench peer`, not the bench: each "
            "test face alone on one thread, its s / 100 images = the mean time per face x "
            f"100 (Equation 1's form); median ms per face: detection {row.detect_ms_p50:.2f} "
            f"(3x upscale + HOG), shape {row.shape_ms_p50:.2f} (the column's batch-1 p50/p99 "
            "are per face, both stages). Without its detector, 100 faces take "
            f"{row.seconds_per_100_shape_only:.4f} s on "
            f"{row.cpu_model or 'an unrecorded CPU'}."
        )
    return lines


def peer_points(tables: dict[str, pd.DataFrame]) -> list[tuple[str, float, float]]:
    """(label, seconds per 100 images, test RMSE) of each peer scored on the trained runs'
    test split, for the accuracy-vs-speed figure (drawn apart, off the Pareto front)."""
    peers = peers_of(tables)
    if peers is None:
        return []
    return [
        (str(row.peer), float(row.seconds_per_100), float(row.test_rmse))
        for row in peers.itertuples()
        if row.same_test_split
        and not is_missing(row.seconds_per_100)
        and not is_missing(row.test_rmse)
    ]


def peer_summary_lines(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The Summary's line about the peers (nothing without a peer record)."""
    peers = peers_of(tables)
    if peers is None:
        return []
    described = []
    for row in peers.itertuples():
        if is_missing(row.test_rmse):
            described.append(f"{row.peer}: {_no_score(row)}")
        else:
            split = "the runs' test split" if row.same_test_split else OTHER_TEST_SPLIT
            described.append(
                f"{row.peer}: RMSE {row.test_rmse:.3f} px on {row.test_rows} faces of {split}"
            )
    return [f"- Peers ({PEER_MARK}, not ranked): {'; '.join(described)}."]
