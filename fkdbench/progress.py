"""Progress display: rich bars with ETA for long work, silent with ``quiet=True``.

One display at a time: while :func:`flow_progress` is open (``reproduce`` runs the whole
flow under one), every :func:`make_progress` inside adds its bars to that display and
removes them when done, instead of starting a second live display.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Progress and status go to stderr so that stdout stays clean for results.
console = Console(stderr=True)


# The display flow_progress holds open, if any.
_shared: Progress | None = None


class FlowStep:
    """The open flow display, seen through one step: the bars the step adds vanish when it
    ends. Everything but ``add_task`` goes to the display itself."""

    def __init__(self, display: Progress) -> None:
        self._display = display
        self._tasks: list[TaskID] = []

    def __enter__(self) -> FlowStep:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            self._display.remove_task(task)
        self._tasks.clear()

    def add_task(self, *args: Any, **kwargs: Any) -> TaskID:
        task = self._display.add_task(*args, **kwargs)
        self._tasks.append(task)
        return task

    def __getattr__(self, name: str) -> Any:
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


def make_progress(quiet: bool = False) -> Progress | FlowStep:
    """A progress display with description, bar, count, elapsed time and ETA, to use as a
    context manager; inside :func:`flow_progress`, a view of the flow's display."""
    if _shared is not None and not quiet:
        return FlowStep(_shared)
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


def say(message: str, quiet: bool = False) -> None:
    """One status line on stderr unless quiet, never wrapped (rich wraps at the terminal's
    width, 80 columns when it is not one, which would split a line meant to be grepped)."""
    if not quiet:
        console.print(message, soft_wrap=True, highlight=False)
