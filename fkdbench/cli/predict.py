"""``fkdbench predict`` (fkdbench.predict.predict)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import QuietOption, ThreadsOption
from fkdbench.cli.output import user_errors
from fkdbench.predict import OVERLAY_DIR
from fkdbench.predict import predict as run_predict


def predict(
    model: Annotated[
        Path, typer.Argument(help="model.onnx / model.int8.onnx, a run folder, or model.pt.")
    ],
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders (searched recursively).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where keypoints.csv and overlays/ go.")] = Path(
        "predictions"
    ),
    overlays: Annotated[bool, typer.Option(help="Write one PNG per image.")] = True,
    submission: Annotated[
        Path | None,
        typer.Option(
            help="Kaggle folder/zip with test.csv + IdLookupTable.csv: write "
            "--out/submission.csv instead."
        ),
    ] = None,
    threads: ThreadsOption = None,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Skip unreadable images and report them.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Run a trained model on your own images (any size; keypoints in their pixels)."""
    with user_errors():
        result = run_predict(
            model,
            images or [],
            out,
            submission=submission,
            threads=threads,
            overlays=overlays,
            skip_bad_images=skip_bad_images,
            quiet=quiet,
        )
    if isinstance(result, Path):
        typer.echo(f"submission: {result}")
        return
    typer.echo(
        f"{result.images} image(s) in {result.seconds:.1f} s: {result.keypoints_csv}"
        + (f", {len(result.overlays)} overlays in {out / OVERLAY_DIR}" if result.overlays else "")
    )
    for problem in result.skipped:
        typer.echo(f"skipped: {problem}")
