"""``fkdbench report``: our measurements beside the papers', as Markdown, CSV, JSON and PNG.

The report is a pure function of its inputs: the run folders (``config.json``,
``metrics.json``, ``history.csv``, ``export.json``), the tuning studies
(``<runs>/tune/<study>/``), the bench records (``results/bench.jsonl``) and the papers'
numbers (:mod:`fkdbench.reference`). It adds no timestamp of its own, sorts everything and
formats every float with a fixed format, so the same inputs give byte-identical
``REPORT.md`` and CSVs (the PNGs are written without the Software stamp, and are stable in
practice but not promised).

Shape (pyperf's habit): records are loaded once into plain values (:class:`RunSummary`,
bench dicts), each table is a small function from those values to a numeric
``pandas.DataFrame`` (what the CSVs and JSON hold, and what tests compare with the records),
and only the Markdown layer turns numbers into text ("not run", bold, units).
Tables are rendered with ``DataFrame.to_markdown`` (tabulate), never glued by hand.

Where an input is missing (no bench file, an untrained model, a backend that was not timed,
a paper that prints no number) the cell or section says so; nothing is filled in.

The modules, inputs first:

- ``common``: the words for a missing cell, row orders, labels, units (a leaf);
  ``cells``: how a number becomes a Markdown cell.
- ``inputs``: run folders / ``runs.jsonl`` and ``bench.jsonl`` in; ``studies``: the tune
  studies and the report's snapshot of them; ``paper``: which paper row a model sits beside.
- ``statistics``: every interval and test (t, bootstraps, Wilcoxon, Spearman);
  ``uncertainty``: the seeds of a run grouped into a row, each cell's interval and marks.
- One module per section, each with its tables, their Markdown and the section's writer:
  ``size``, ``accuracy`` (and Not finished results), ``differences``, ``agreement``
  (synthetic vs real faces), ``gains``, ``timing``, ``tuned``, ``figures``, ``environment``.
- ``markdown``: REPORT.md, the Summary and the ``SECTION_WRITERS`` (heading -> writer);
  ``json_report``: report.json; ``result``: :class:`ReportResult`; here: :func:`build_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fkdbench import runs
from fkdbench.edge import is_unavailable
from fkdbench.io import write_text_atomic
from fkdbench.progress import say
from fkdbench.report.accuracy import accuracy_table, landmark_table, not_finished_table
from fkdbench.report.agreement import agreement_table, rank_correlation_table
from fkdbench.report.common import FIGURES_DIR, ReportError, without_empty_recipe
from fkdbench.report.differences import differences_table
from fkdbench.report.environment import environment_table
from fkdbench.report.figures import draw_figures
from fkdbench.report.gains import gains_table, ratio_table
from fkdbench.report.inputs import (
    RUN_RECORDS_FILE,
    RunSummary,
    latest_records,
    load_bench_records,
    load_runs,
    read_run_records,
    write_run_records,
)
from fkdbench.report.json_report import render_json
from fkdbench.report.levers import LEVERS_TABLE, levers_table
from fkdbench.report.markdown import SECTIONS, render_markdown
from fkdbench.report.paper import cited_table, paper_gains_table
from fkdbench.report.peers import (
    PEERS_TABLE,
    PeerSummary,
    keep_peer_records,
    peer_table,
    read_peers,
)
from fkdbench.report.result import ReportResult
from fkdbench.report.runtimes import RUNTIMES_TABLE, runtimes_table
from fkdbench.report.size import size_table
from fkdbench.report.studies import TuneSummary, load_tune_studies, snapshot_tune_studies
from fkdbench.report.throughput import THROUGHPUT_TABLE, throughput_table
from fkdbench.report.timing import timing_table
from fkdbench.report.tuned import tuned_studies_table, tuned_vs_paper_table
from fkdbench.report.uncertainty import accuracy_cells
from fkdbench.report.video import VIDEO_TABLE, read_video_beside, video_table

__all__ = [
    "FORMATS",
    "JSON_FILE",
    "MARKDOWN_FILE",
    "SECTIONS",
    "ReportError",
    "ReportResult",
    "build_report",
    "build_tables",
]

FORMATS = ("md", "csv", "json")
MARKDOWN_FILE = "REPORT.md"
JSON_FILE = "report.json"
CSV_FLOAT_FORMAT = "%.6g"


def build_tables(
    run_summaries: Sequence[RunSummary],
    bench_records: Sequence[dict[str, Any]],
    tune_studies: Sequence[TuneSummary],
    other_runs: Sequence[RunSummary] = (),
    peers: Sequence[PeerSummary] = (),
    video_records: Sequence[Any] = (),
) -> dict[str, pd.DataFrame]:
    """Every table of the report, by the name of its CSV, in the order they are written.

    ``other_runs``: the runs of the report compared with (``--compare-with``), if any.
    ``peers`` (off-the-shelf predictors' records) and ``video_records`` (``video.jsonl``)
    add their tables only when there are some, so a report without them keeps its files.
    """
    size = size_table(run_summaries, bench_records)
    timing = timing_table(bench_records)
    agreement = agreement_table(run_summaries, other_runs)
    optional = {}
    if peers:
        optional[PEERS_TABLE] = peer_table(peers, run_summaries)
    if video_records:
        optional[VIDEO_TABLE] = video_table(video_records, bench_records)
    throughput = throughput_table(run_summaries)
    if not throughput.empty:
        optional[THROUGHPUT_TABLE] = throughput
    levers = levers_table(run_summaries, timing)
    if not levers.empty:
        optional[LEVERS_TABLE] = levers
    tables = {
        "size": size,
        "accuracy_rmse": accuracy_table(run_summaries, "test_rmse"),
        "accuracy_nme": accuracy_table(run_summaries, "test_nme"),
        "accuracy_intervals": accuracy_cells(run_summaries),
        "not_finished": not_finished_table(run_summaries),
        "differences": differences_table(run_summaries),
        "agreement": agreement,
        "rank_correlation": rank_correlation_table(agreement),
        "landmark_metrics": landmark_table(run_summaries),
        "gains": gains_table(run_summaries),
        "paper_gains": paper_gains_table(),
        "finetune_ratios": ratio_table(run_summaries),
        "cited_rmse": cited_table(),
        "timing": timing,
        "tuned_studies": tuned_studies_table(tune_studies),
        "tuned_vs_paper": tuned_vs_paper_table(run_summaries, size, timing),
        "environment": environment_table(run_summaries, bench_records),
        **optional,
    }
    return {name: without_empty_recipe(table) for name, table in tables.items()}


def _read_runs(
    runs_dir: Path | None, out_dir: Path, run_records: Path | None, problems: list[str]
) -> list[RunSummary]:
    """The runs of ``runs_dir``, or with no ``runs_dir`` the records under ``out_dir``.

    A ``runs_dir`` that is missing or holds no run is refused before anything is written:
    a typo'd ``--runs-dir`` must not replace a report (and its snapshot) with an empty one.
    """
    if runs_dir is None:
        return read_run_records(run_records or out_dir / RUN_RECORDS_FILE)
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ReportError(f"{runs_dir}: no such runs folder (--runs-dir); nothing written")
    run_summaries = load_runs(runs_dir, problems)
    if not run_summaries:
        unread = f", {len(problems)} could not be read ({problems[0]})" if problems else ""
        raise ReportError(
            f"{runs_dir}: no finished or untrained run folder{unread} (--runs-dir); nothing written"
        )
    return run_summaries


def _tune_studies(runs_dir: Path | None, out_dir: Path, problems: list[str]) -> list[TuneSummary]:
    """From the run folders, snapshotting their studies into ``out_dir`` (keeping the
    copies already there of studies they do not hold); with no ``runs_dir``, the snapshot."""
    if runs_dir is None:
        return load_tune_studies(
            out_dir / runs.TUNE_DIR, problems, figures_dir=out_dir / FIGURES_DIR
        )
    source = Path(runs_dir) / runs.TUNE_DIR
    return snapshot_tune_studies(load_tune_studies(source, problems), source, out_dir, problems)


def _latest_bench_records(
    bench_file: Path | None, run_summaries: Sequence[RunSummary], quiet: bool, problems: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The latest measured record per measurement and the latest failed ones, and a line
    saying what the report is built from. A target whose latest attempt failed is a
    problem line (a runtime not installed is a cell of the runtimes table instead); an
    older good timing of it, if any, is still shown."""
    all_records = load_bench_records(bench_file)
    failed = [record for record in latest_records(all_records) if record.get("error")]
    problems.extend(
        f"bench: {record.get('run_name')} {record.get('backend')} failed: {record['error']}"
        for record in failed
        if not is_unavailable(str(record["error"]))
    )
    records = latest_records([record for record in all_records if not record.get("error")])
    say(
        f"report: {sum(r.trained for r in run_summaries)} trained runs, "
        f"{len(records)} bench records (latest of {len(all_records)})",
        quiet,
    )
    return records, failed


# Tables only a report with their inputs has: a rebuild without them removes their CSVs,
# so an earlier build's peers or video rows do not linger beside the new report.
OPTIONAL_TABLES = (PEERS_TABLE, VIDEO_TABLE, LEVERS_TABLE, RUNTIMES_TABLE)


def _write_csvs(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    for name in OPTIONAL_TABLES:
        if name not in tables:
            (out_dir / f"{name}.csv").unlink(missing_ok=True)
    paths = []
    for name, table in tables.items():
        path = out_dir / f"{name}.csv"
        text = table.to_csv(
            index=table.index.name is not None,
            float_format=CSV_FLOAT_FORMAT,
            lineterminator="\n",
        )
        write_text_atomic(path, text)
        paths.append(path)
    return paths


def _write_outputs(result: ReportResult, formats: Sequence[str]) -> None:
    """The CSVs, REPORT.md and report.json that ``formats`` asks for."""
    if "csv" in formats:
        result.csv_files = _write_csvs(result.tables, result.out_dir)
    if "md" in formats:
        result.markdown = result.out_dir / MARKDOWN_FILE
        write_text_atomic(result.markdown, render_markdown(result))
    if "json" in formats:
        result.json_file = result.out_dir / JSON_FILE
        write_text_atomic(result.json_file, render_json(result))


def _check_formats(formats: Sequence[str]) -> None:
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ReportError(f"unknown report format {unknown[0]!r}; known: {', '.join(FORMATS)}")


def build_report(
    runs_dir: Path | None,
    bench_file: Path | None,
    out_dir: Path,
    formats: Sequence[str] = FORMATS,
    quiet: bool = False,
    run_records: Path | None = None,
    compare_with: Path | None = None,
    peers_from: Path | None = None,
) -> ReportResult:
    """Read run folders and bench records; write REPORT.md (+ figures), CSVs and JSON.

    ``formats`` picks among ``md`` (REPORT.md and figures/*.png), ``csv`` (one file per
    table) and ``json`` (report.json: every table and what is missing); whatever is absent
    is said to be absent. A ``runs_dir`` that is missing or holds no run (finished, or
    untrained for timing) is a :class:`ReportError`, raised before anything is written.

    From ``runs_dir`` the runs' summaries are also written to ``out_dir/runs.jsonl`` (and
    the off-the-shelf peers' records, ``runs_dir/peers/``, to ``out_dir/peers.jsonl``), and
    the tuning studies (``runs_dir/tune/``) copied to ``out_dir/tune/`` with their figures;
    copies already there of studies ``runs_dir`` does not hold are kept and reported (see
    :func:`fkdbench.report.studies.snapshot_tune_studies`).
    ``compare_with``: another report's ``runs.jsonl`` (the same matrix on other data, e.g.
    real faces) whose ranking is set beside this one's, with their rank correlation.
    ``peers_from``: a runs folder whose peer records (``peers/``) to report instead of
    ``runs_dir``'s (e.g. a peer scored on data whose runs are only records now).
    With ``runs_dir=None`` both are read back from there (the runs from ``run_records``,
    default that file; the peers from ``peers.jsonl``): the report is rebuilt from records
    alone, and the one figure that
    needs the models themselves (predictions) is kept as it is when present.
    """
    _check_formats(formats)
    out_dir = Path(out_dir)
    problems: list[str] = []
    # Every input is read before the first file (the snapshot) is written; the problems
    # keep the order runs, studies, bench.
    run_summaries = _read_runs(runs_dir, out_dir, run_records, problems)
    other_runs = read_run_records(compare_with) if compare_with is not None else []
    bench_problems: list[str] = []
    records, failed = _latest_bench_records(bench_file, run_summaries, quiet, bench_problems)
    tune_studies = _tune_studies(runs_dir, out_dir, problems)
    peers = read_peers(peers_from or runs_dir, out_dir, problems)
    video_records = read_video_beside(bench_file)
    problems += bench_problems
    tables = build_tables(run_summaries, records, tune_studies, other_runs, peers, video_records)
    runtimes = runtimes_table(records, failed)
    if runtimes is not None:
        tables[RUNTIMES_TABLE] = runtimes
    figures: dict[str, Path] = {}
    missing: dict[str, str] = {}
    if "md" in formats:
        # Rebuilt from records, the models are looked for beside the records.
        models_dir = out_dir if runs_dir is None else Path(runs_dir)
        figures, missing, partial = draw_figures(run_summaries, tables, models_dir, out_dir, quiet)
        problems += partial
    result = ReportResult(
        out_dir=out_dir, markdown=None, csv_files=[], json_file=None, figures=figures,
        missing_figures=missing, sections=list(SECTIONS), tables=tables, problems=problems,
        tune_studies=tune_studies, run_summaries=run_summaries, bench_records=records,
        bench_file=bench_file, compare_with=compare_with,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    if run_records is None and any(run.folder is not None for run in run_summaries):
        write_run_records(run_summaries, out_dir / RUN_RECORDS_FILE)
    if runs_dir is not None or peers_from is not None:
        keep_peer_records(peers, out_dir)
    _write_outputs(result, formats)
    say(f"report: wrote {len(result.paths)} files to {out_dir}", quiet)
    return result
