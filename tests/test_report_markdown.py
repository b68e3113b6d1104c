"""REPORT.md: the sections in order, each written by its writer, and the Summary."""

from __future__ import annotations

from pathlib import Path

from report_factory import result_of, summary, timed

from fkdbench import report
from fkdbench.report.inputs import RunSummary
from fkdbench.report.markdown import SECTION_WRITERS, SECTIONS, render_markdown, summary_section


def test_every_heading_has_its_writer_in_order() -> None:
    assert SECTIONS == tuple(SECTION_WRITERS) == report.SECTIONS
    assert SECTIONS[0] == "Summary" and SECTIONS[-1] == "Environment"
    markdown = render_markdown(result_of())
    assert markdown.startswith("# fkdbench report\n\n## Summary\n\n- Runs: 0 trained runs")
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    for heading, write in SECTION_WRITERS.items():
        body = "\n".join(write(result_of()))
        assert f"## {heading}\n\n{body}" in markdown


def test_the_summary_counts_what_went_in(tmp_path: Path) -> None:
    runs = [
        RunSummary("a", "cnn-manual", "aug", data_source="synthetic", test_rows=9),
        RunSummary("b", "cnn-manual", "none", data_source="synthetic", test_rows=9),
        RunSummary("u", "cnn-baseline", None, trained=False),
    ]
    absent = tmp_path / "absent.jsonl"
    lines = summary_section(result_of(runs, bench_file=absent))
    assert lines[0] == (
        "- Runs: 2 trained runs of 1 architecture (cnn-manual) on variants none, aug; "
        "1 untrained (timing-only) folder."
    )
    # Records older than convergence judging: "not judged" is not converged.
    assert lines[1].startswith("- Rows: 2 rows") and "2 finished but not converged" in lines[1]
    assert lines[2] == f"- Timing: no bench records (`{absent}` absent): not measured."
    assert lines[3].startswith("- Machine (training): not measured")
    assert "source synthetic" in lines[4] and "9 test faces" in lines[4]
    records = [timed("cnn-manual--none", "onnxruntime", 0.2).flat()]
    result = result_of(bench_records=records)
    result.problems.append("skipped run folder x: broken")
    lines = summary_section(result)
    assert lines[1].startswith("- Timing: 1 bench record (the latest per run")
    assert lines[2] == "- Machine: Test CPU, 2 cores, threads 1."
    assert lines[3] == "- Data: data/synthetic."
    assert lines[-2:] == ["- Skipped: skipped run folder x: broken.", ""]


def test_the_summary_counts_seeds_unfinished_and_unconverged_rows() -> None:
    runs = [
        summary("cnn-manual", "none", 2.0, seed=1),
        summary("cnn-manual", "none", 2.1, seed=2),
        summary("cnn-manual", "aug", 2.0, seed=1, converged=False),
        summary("cnn-manual", "aug", 2.0, seed=2),
        summary("cnn-baseline", "none", 3.0, seed=1, stop_reason="time-limited"),
        summary("cnn-baseline", "none", 3.0, seed=2, stop_reason="time-limited"),
    ]
    rows = summary_section(result_of(runs))[1]
    assert rows.startswith("- Rows: 3 rows (architecture x variant x weights mode), 2 seed(s)")
    assert "1 time-limited" in rows and "1 finished but not converged" in rows
