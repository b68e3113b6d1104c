"""Progress display: rich bars with ETA for long work, silent with ``quiet=True``.

One display at a time: while :func:`flow_progress` is open (``reproduce`` runs the whole
flow under one), every :func:`make_progress` inside adds its bars to that display and
removes them when done, instead of starting a second live display.
"""

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


_shared: Progress | None = None


class _NestedProgress:
    """The open flow display, seen through one step: its bars vanish when the step ends."""

    def __init__(self, display: Progress) -> None:
        self._display = display
        self._tasks: list = []

    def __enter__(self) -> Progress:
        original = self._display.add_task

        def add_task(*args, **kwargs):
            task = original(*args, **kwargs)
            self._tasks.append(task)
            return task

        self._proxy = _TaskTracking(self._display, add_task)
        return self._proxy  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            self._display.remove_task(task)


class _TaskTracking:
    def __init__(self, display: Progress, add_task) -> None:
        self._display = display
        self.add_task = add_task

    def __getattr__(self, name: str):
        return getattr(self._display, name)


@contextlib.contextmanager
def flow_progress(quiet: bool = False) -> Iterator[Progress]:
    """One display for a multi-step flow; steps' own bars join it while it is open."""
    global _shared
    with _new_progress(quiet) as display:
        _shared = display if not quiet else None
        try:
            yield display
        finally:
            _shared = None


def make_progress(quiet: bool = False) -> Progress:
    """A progress display with description, bar, count, elapsed time and ETA."""
    if _shared is not None and not quiet:
        return _NestedProgress(_shared)  # type: ignore[return-value]
    return _new_progress(quiet)


def _new_progress(quiet: bool) -> Progress:
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
