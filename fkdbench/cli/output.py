"""What every command shares beyond its options: errors as one line, and run summaries."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import typer

from fkdbench.progress import console


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's errors into one line on stderr and a non-zero exit.

    Errors a user can fix are ValueErrors (DataError and friends) or OSErrors: exit 1.
    Ctrl-C exits 130; every command writes atomically, so nothing half-written is kept.
    """
    try:
        yield
    except KeyboardInterrupt as interrupt:
        # A library may say what was kept (tune: the finished trials).
        said = str(interrupt) or "nothing half-written was kept"
        console.print(f"[red]interrupted[/red]: {said}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except (ValueError, OSError) as error:
        console.print(f"[red]error[/red]: {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def pixels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} px"


def fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def echo_runs(results: Sequence[Any], exit_on_failure: bool = True) -> None:
    """One line per training run; exit 1 when any run failed (the others are kept)."""
    for result in results:
        metrics = result.metrics or {}
        if result.status == "failed":
            typer.echo(f"{result.run_name}: failed: {result.error}")
            continue
        typer.echo(
            f"{result.run_name}: {result.status}; test RMSE "
            f"{pixels(metrics.get('test_rmse'))} (mean shape "
            f"{pixels(metrics.get('mean_shape_rmse'))}), NME "
            f"{fraction(metrics.get('test_nme'))}, FR@0.1 {fraction(metrics.get('test_fr'))}, "
            f"AUC@0.1 {fraction(metrics.get('test_auc'))}"
        )
    if exit_on_failure and any(result.status == "failed" for result in results):
        raise typer.Exit(1)
