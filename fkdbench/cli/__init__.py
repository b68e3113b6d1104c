"""The command line: one module per command, each parsing its options and calling one
library function (asv, Typer). Options shared by several commands live in
:mod:`fkdbench.cli.options`; errors a user can fix print one line and exit 1 (usage errors
exit 2, Ctrl-C 130), in :mod:`fkdbench.cli.output`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fkdbench import __version__
from fkdbench.cli import (
    bench,
    export,
    peer,
    predict,
    prepare,
    pretrain,
    report,
    reproduce,
    train,
    tune,
)

app = typer.Typer(
    name="fkdbench",
    help="Benchmark facial keypoint detection models: accuracy, size and CPU speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts use [brackets] for defaults; rich markup would swallow them.
    rich_markup_mode=None,
)

# In the order of the flow; `fkdbench --help` lists them sorted.
for command in (
    prepare.prepare,
    pretrain.pretrain,
    train.train,
    train.models,
    tune.tune,
    export.export,
    bench.bench,
    peer.peer,
    predict.predict,
    report.report,
    reproduce.reproduce,
):
    app.command()(command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fkdbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Benchmark facial keypoint detection models: accuracy, size and CPU speed."""


def main() -> None:
    app()
