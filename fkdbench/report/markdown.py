"""REPORT.md: its sections in order, each heading beside the function that writes it.

Every section writer takes the :class:`ReportResult` (the tables and the inputs they came
from) and returns the section's lines after its heading; the writer of a table's section
lives beside the table (``timing.timing_section`` beside ``timing.timing_table``). Only the
Summary, which reads every input, is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fkdbench import reference, runs
from fkdbench.report.accuracy import accuracy_section, not_finished_section
from fkdbench.report.agreement import agreement_section
from fkdbench.report.cells import bench_file_status
from fkdbench.report.common import NOT_MEASURED, backend_key, variant_key
from fkdbench.report.differences import differences_section
from fkdbench.report.environment import environment_section
from fkdbench.report.figures import figures_section
from fkdbench.report.gains import gains_section
from fkdbench.report.inputs import RunSummary
from fkdbench.report.levers import levers_section
from fkdbench.report.peers import peer_summary_lines
from fkdbench.report.result import ReportResult
from fkdbench.report.size import size_section
from fkdbench.report.throughput import throughput_section
from fkdbench.report.timing import timing_section
from fkdbench.report.tuned import tuned_section
from fkdbench.report.uncertainty import rows_of
from fkdbench.report.video import video_section

MARKDOWN_TITLE = "# fkdbench report"


def _count(amount: int, noun: str) -> str:
    return f"{amount} {noun}" if amount == 1 else f"{amount} {noun}s"


def _distinct(values: Iterable[Any]) -> str:
    found = sorted({str(value) for value in values if value not in (None, "")})
    return ", ".join(found) if found else NOT_MEASURED


def _runs_line(run_summaries: list[RunSummary]) -> str:
    trained = [run for run in run_summaries if run.trained]
    archs = sorted({run.arch for run in trained})
    variants = sorted({run.variant for run in trained}, key=variant_key)
    untrained_folders = sum(not run.trained for run in run_summaries)
    return (
        f"- Runs: {_count(len(trained), 'trained run')} of "
        f"{_count(len(archs), 'architecture')} ({', '.join(archs) or 'none'}) on variants "
        f"{', '.join(variants) or 'none'}; "
        f"{_count(untrained_folders, 'untrained (timing-only) folder')}."
    )


def _rows_line(run_summaries: list[RunSummary]) -> list[str]:
    """Seeds per row, and how many rows are not finished results or not converged."""
    rows = rows_of(run_summaries)
    if not rows:
        return []
    seeds = sorted({len(runs) for runs in rows.values()})
    time_limited = sum(not any(run.finished for run in runs) for runs in rows.values())
    not_converged = sum(
        any(run.finished for run in runs)
        and any(run.converged is not True for run in runs if run.finished)
        for runs in rows.values()
    )
    levers = sum(bool(runs.lever_parts(row.recipe)) for row in rows)
    pretrained = sum(bool(runs.pretrained_by(row.recipe)) for row in rows)
    key = "architecture x variant x weights mode" + (" x recipe" if levers or pretrained else "")
    kinds = [
        f"{levers} with another head, loss or the flip test" if levers else "",
        f"{pretrained} from a backbone pretrained here" if pretrained else "",
    ]
    lever_text = "; ".join(kind for kind in kinds if kind)
    lever_text = f"; {lever_text}: see What each lever buys" if lever_text else ""
    return [
        f"- Rows: {_count(len(rows), 'row')} ({key}{lever_text}), "
        f"{' or '.join(str(count) for count in seeds)} seed(s) each; "
        f"{time_limited} time-limited (no finished seed: not ranked, see Not finished "
        f"results); {not_converged} finished but not converged (marked \u2020)."
    ]


def _timing_lines(result: ReportResult) -> list[str]:
    """What was timed and on which machine; without records, the training machine."""
    records = result.bench_records
    trained = [run for run in result.run_summaries if run.trained]
    if not records:
        status = bench_file_status(result.bench_file)
        lines = [f"- Timing: no bench records ({status}): {NOT_MEASURED}."]
        if trained:
            environments = [run.environment for run in trained]
            lines.append(
                f"- Machine (training): {_distinct(e.get('cpu_model') for e in environments)}, "
                f"{_distinct(e.get('cpu_cores') for e in environments)} cores."
            )
        return lines
    models = sorted({str(r.get("run_name")) for r in records})
    backends = sorted({str(r.get("backend")) for r in records}, key=backend_key)
    untrained_records = [r for r in records if not r.get("trained", True)]
    return [
        f"- Timing: {_count(len(records), 'bench record')} (the latest per run, backend, "
        f"batch size and threads) of {_count(len(models), 'model')} "
        f"({_count(len(untrained_records), 'record')} of untrained models), "
        f"backends {', '.join(backends)}.",
        f"- Machine: {_distinct(r.get('cpu_model') for r in records)}, "
        f"{_distinct(r.get('cpu_cores') for r in records)} cores, "
        f"threads {_distinct(r.get('threads') for r in records)}.",
    ]


def _data_lines(result: ReportResult) -> list[str]:
    trained = [run for run in result.run_summaries if run.trained]
    if trained:
        return [
            f"- Data: source {_distinct(run.data_source for run in trained)}, "
            f"seed {_distinct(run.data_seed for run in trained)}, "
            f"scheme {_distinct(run.scheme for run in trained)}, "
            f"{_distinct(run.test_rows for run in trained)} test faces."
        ]
    if result.bench_records:
        return [f"- Data: {_distinct(r.get('data_dir') for r in result.bench_records)}."]
    return []


def summary_section(result: ReportResult) -> list[str]:
    """The lines of "Summary" after its heading: what went in, and what was skipped."""
    return [
        _runs_line(result.run_summaries),
        *_rows_line(result.run_summaries),
        *_timing_lines(result),
        *_data_lines(result),
        *peer_summary_lines(result.tables),
        "- Paper numbers: `fkdbench/reference.py`, transcribed from "
        f"`{reference.MAIN_PAPER}` and `{reference.AE_PAPER}`; \u2014 means the paper prints "
        "no such number.",
        *(f"- Skipped: {problem}." for problem in result.problems),
        "",
    ]


SectionWriter = Callable[[ReportResult], list[str]]

# The ## sections of REPORT.md, in order: heading -> the function that writes the section.
SECTION_WRITERS: dict[str, SectionWriter] = {
    "Summary": summary_section,
    "Parameters and size": size_section,
    "Accuracy": accuracy_section,
    "Not finished results": not_finished_section,
    "Which differences are real": differences_section,
    "Synthetic vs real faces": agreement_section,
    "Gains by variant": gains_section,
    "Inference time": timing_section,
    "Tuned CNN": tuned_section,
    "Figures": figures_section,
    "Environment": environment_section,
}
# The headings alone (report.json lists them; tests check REPORT.md against them).
SECTIONS = tuple(SECTION_WRITERS)

OptionalWriter = Callable[[ReportResult], list[str] | None]
# Sections written only when their input exists, each after the section it follows; the
# writer returns None to leave it out, so a report without that input (the committed one)
# reads exactly as before: heading -> (the heading it follows, its writer).
OPTIONAL_SECTION_WRITERS: dict[str, tuple[str, OptionalWriter]] = {
    "What each lever buys": ("Which differences are real", levers_section),
    "End-to-end on video": ("Inference time", video_section),
    "Training throughput": ("Not finished results", throughput_section),
}


def render_markdown(result: ReportResult) -> str:
    """REPORT.md: the sections of SECTIONS (and each optional section whose input is
    there, after the one it follows), deterministic for the same inputs."""
    lines = [MARKDOWN_TITLE, ""]
    for heading, write_section in SECTION_WRITERS.items():
        lines += [f"## {heading}", "", *write_section(result)]
        for optional, (after, write_optional) in OPTIONAL_SECTION_WRITERS.items():
            body = write_optional(result) if after == heading else None
            if body is not None:
                lines += [f"## {optional}", "", *body]
    return "\n".join(lines)
