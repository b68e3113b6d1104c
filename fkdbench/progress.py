"""Progress display: rich bars with ETA for long work, silent with ``quiet=True``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Progress and status go to stderr so that stdout stays clean for results.
console = Console(stderr=True)


def make_progress(quiet: bool = False) -> Progress:
    """A progress display with description, bar, count, elapsed time and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )


@contextlib.contextmanager
def progress_bar(description: str, total: int, quiet: bool = False) -> Iterator[callable]:
    """Context manager yielding ``advance(n=1)`` for one bar."""
    with make_progress(quiet) as progress:
        task = progress.add_task(description, total=total)

        def advance(amount: int = 1) -> None:
            progress.advance(task, amount)

        yield advance


def say(message: str, quiet: bool = False) -> None:
    """One status line on stderr unless quiet."""
    if not quiet:
        console.print(message)
