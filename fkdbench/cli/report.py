"""``fkdbench report`` (fkdbench.report.build_report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.bench import DEFAULT_RESULTS
from fkdbench.cli.options import RUNS_DIR, QuietOption, ReportFormat, RunsDirOption, values
from fkdbench.cli.output import user_errors
from fkdbench.report import FORMATS, build_report


def report(
    runs_dir: RunsDirOption = RUNS_DIR,
    bench_file: Annotated[Path, typer.Option(help="Bench records (JSON lines).")] = (
        DEFAULT_RESULTS
    ),
    out: Annotated[Path, typer.Option(help="Where REPORT.md, the CSVs and figures/ go.")] = (
        DEFAULT_RESULTS.parent
    ),
    report_format: Annotated[
        list[ReportFormat] | None,
        typer.Option("--format", help="Output to write; repeat for several [all]."),
    ] = None,
    from_records: Annotated[
        bool,
        typer.Option(help="Rebuild from --out/runs.jsonl instead of the run folders."),
    ] = False,
    compare_with: Annotated[
        Path | None,
        typer.Option(
            help="Another report's runs.jsonl (the same matrix on other data, e.g. real "
            "faces): set its ranking beside this one's, with their rank correlation."
        ),
    ] = None,
    peers_from: Annotated[
        Path | None,
        typer.Option(
            help="A runs folder whose off-the-shelf peer records (peers/, fkdbench peer) to "
            "report [default: --runs-dir's; with --from-records, --out/peers.jsonl]."
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Write the papers' tables and figures, measured here, beside the papers' numbers."""
    with user_errors():
        result = build_report(
            None if from_records else runs_dir,
            bench_file,
            out,
            formats=values(report_format) or FORMATS,
            quiet=quiet,
            compare_with=compare_with,
            peers_from=peers_from,
        )
    for path in result.paths:
        typer.echo(str(path))
    for name, reason in result.missing_figures.items():
        typer.echo(f"figure {name} not drawn: {reason}")
