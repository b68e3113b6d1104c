"""What :func:`fkdbench.report.build_report` returns: the files it wrote, the tables it wrote
them from and the inputs those came from, which is all a section writer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fkdbench.report.inputs import RunSummary
from fkdbench.report.studies import TuneSummary


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and the tables it wrote them from."""

    out_dir: Path
    markdown: Path | None
    csv_files: list[Path]
    json_file: Path | None
    # Figure stem -> file, for the figures drawn.
    figures: dict[str, Path]
    # Figure stem -> why it was not drawn.
    missing_figures: dict[str, str]
    sections: list[str]
    # Table name -> the numbers (what the CSV of the same name holds).
    tables: dict[str, pd.DataFrame]
    # Inputs skipped and why.
    problems: list[str] = field(default_factory=list)
    # The tuning studies reported (their figures: the copies under figures/).
    tune_studies: list[TuneSummary] = field(default_factory=list)
    # The runs reported, and the bench records (the latest per measurement) and their file.
    run_summaries: list[RunSummary] = field(default_factory=list)
    bench_records: list[dict[str, Any]] = field(default_factory=list)
    bench_file: Path | None = None
    # The other report's runs.jsonl the rankings were compared with (--compare-with).
    compare_with: Path | None = None

    @property
    def paths(self) -> list[Path]:
        """Every file written."""
        written = [self.markdown, self.json_file, *self.csv_files, *self.figures.values()]
        return [path for path in written if path is not None]
