"""The command line. Each command parses its options and calls one library function;
no logic lives here. Errors the user can fix print one line and exit 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from fkdbench import __version__
from fkdbench.progress import console

app = typer.Typer(
    name="fkdbench",
    help="Benchmark facial keypoint detection models: accuracy, size and CPU speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


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


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's errors into one line on stderr and a non-zero exit."""
    try:
        yield
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: nothing half-written was kept")
        raise typer.Exit(130) from None
    except (ValueError, OSError) as error:  # DataError and friends are ValueErrors
        console.print(f"[red]error[/red]: {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def prepare(
    source: Annotated[
        str, typer.Option(help="Where the data comes from: synthetic | kaggle.")
    ] = "synthetic",
    path: Annotated[
        Path | None,
        typer.Option(help="Kaggle files: a folder with training.csv/.zip (or one zip)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Data set folder name under --data-root [source].")
    ] = None,
    data_root: Annotated[Path, typer.Option(help="Where data sets live.")] = Path("data"),
    n_train: Annotated[int, typer.Option(help="Synthetic labelled rows.")] = 7049,
    n_test: Annotated[int, typer.Option(help="Synthetic unlabelled rows (test.csv).")] = 1783,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 96,
    seed: Annotated[int, typer.Option(help="Seed of faces, missing labels and split.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share held out for validation.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share held out for test.")] = 0.15,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Drop malformed rows and report them instead of stopping.")
    ] = False,
    preview: Annotated[
        Path | None, typer.Option(help="Also save a PNG grid of samples with keypoints.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes drawing faces [all cores].")
    ] = None,
    force: Annotated[bool, typer.Option(help="Redo even if already prepared.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Make a data set: draw synthetic faces in the Kaggle layout, or read Kaggle's files."""
    from fkdbench.data.prepare import PrepareOptions
    from fkdbench.data.prepare import prepare as run_prepare

    options = PrepareOptions(
        source=source,
        path=path,
        name=name,
        data_root=data_root,
        n_train=n_train,
        n_test=n_test,
        image_size=size,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        skip_bad_rows=skip_bad_rows,
        preview=preview,
        workers=workers,
        force=force,
        quiet=quiet,
    )
    with _user_errors():
        result = run_prepare(options)
    if result.skipped_existing:
        return
    manifest = result.manifest
    counts = manifest["counts"]
    splits = ", ".join(f"{split} {info['rows']}" for split, info in counts["splits"].items())
    typer.echo(
        f"prepared {result.data_dir} in {result.seconds:.1f} s: "
        f"{counts['labelled_rows']} labelled ({splits}), "
        f"{counts['unlabelled_rows']} unlabelled; "
        f"complete rows {manifest['complete_row_fraction']:.1%}; "
        f"mean-shape test RMSE {manifest['mean_shape_rmse']['test']:.2f} px"
    )
    if result.bad_rows:
        first = result.bad_rows[0]
        typer.echo(
            f"skipped {len(result.bad_rows)} bad row(s); first: line {first.line}: {first.reason}"
        )
    if result.preview:
        typer.echo(f"preview: {result.preview}")


def main() -> None:
    app()
