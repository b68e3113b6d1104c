"""How a number becomes a Markdown cell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fkdbench.report.cells import (
    bench_file_status,
    fmt,
    fmt_int,
    markdown_table,
    printed,
    text_or,
)
from fkdbench.report.common import NO_PAPER, NOT_MEASURED


def test_cells() -> None:
    assert fmt(1.23456, ".3f", NOT_MEASURED) == "1.235"
    assert fmt(None, ".3f", NOT_MEASURED) == fmt(float("nan"), ".3f", NOT_MEASURED) == NOT_MEASURED
    assert fmt_int(235834, NOT_MEASURED) == "235,834"
    assert fmt_int(pd.NA, "none") == "none"
    assert text_or("aug", "untrained") == "aug" and text_or(None, "untrained") == "untrained"
    assert printed(7.6) == "7.6" and printed(18.48) == "18.48" and printed(3) == "3.0"
    assert printed(None) == NO_PAPER


def test_markdown_table_keeps_the_text_as_formatted() -> None:
    text = markdown_table(pd.DataFrame({"model": ["a"], "MB": ["1.50"], "n": ["1,000"]}))
    header, _, row = text.splitlines()
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["model", "MB", "n"]
    # Not re-parsed as 1.5 or 1000, and no index column.
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["a", "1.50", "1,000"]


def test_bench_file_status(tmp_path: Path) -> None:
    assert bench_file_status(None) == "no bench file given"
    assert bench_file_status(tmp_path / "b.jsonl") == f"`{tmp_path / 'b.jsonl'}` absent"
    (tmp_path / "b.jsonl").write_text("")
    assert bench_file_status(tmp_path / "b.jsonl") == f"`{tmp_path / 'b.jsonl'}` empty"
