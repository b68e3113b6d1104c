"""How a number becomes the text of a Markdown cell: fixed formats, and a word (``not run``,
``not measured``...) where there is no number. Only the Markdown layer uses these; the tables,
CSVs and JSON keep the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fkdbench.report.common import NO_PAPER, is_missing


def fmt(value: Any, spec: str, missing: str) -> str:
    """``value`` formatted with ``spec``, or ``missing`` when there is none."""
    return missing if is_missing(value) else format(value, spec)


def fmt_int(value: Any, missing: str) -> str:
    """An integer with thousands separators (235,834), or ``missing``."""
    return missing if is_missing(value) else f"{int(value):,}"


def text_or(value: Any, missing: str) -> Any:
    """``value`` itself (a label, a name), or ``missing`` when there is none."""
    return missing if is_missing(value) else value


def printed(value: Any) -> str:
    """A paper's number as printed: the shortest text that round-trips (7.6, 18.48)."""
    return NO_PAPER if is_missing(value) else repr(float(value))


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table of already-formatted text: tabulate must not re-parse the numbers."""
    return frame.to_markdown(index=False, disable_numparse=True)


def bench_file_status(bench_file: Path | None) -> str:
    """Why there are no bench records, for "no bench records (...)"."""
    if bench_file is None:
        return "no bench file given"
    if not Path(bench_file).is_file():
        return f"`{bench_file}` absent"
    return f"`{bench_file}` empty"
