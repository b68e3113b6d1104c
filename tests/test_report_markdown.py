"""REPORT.md: the sections in order, each written by its writer, and the Summary."""

from __future__ import annotations

from pathlib import Path

from report_factory import result_of, timed

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
    assert lines[1] == f"- Timing: no bench records (`{absent}` absent): not measured."
    assert lines[2].startswith("- Machine (training): not measured")
    assert "source synthetic" in lines[3] and "9 test faces" in lines[3]
    records = [timed("cnn-manual--none", "onnxruntime", 0.2).flat()]
    result = result_of(bench_records=records)
    result.problems.append("skipped run folder x: broken")
    lines = summary_section(result)
    assert lines[1].startswith("- Timing: 1 bench record (the latest per run")
    assert lines[2] == "- Machine: Test CPU, 2 cores, threads 1."
    assert lines[3] == "- Data: data/synthetic."
    assert lines[-2:] == ["- Skipped: skipped run folder x: broken.", ""]
