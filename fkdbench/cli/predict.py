"""``fkdbench predict`` (fkdbench.predict.predict)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fkdbench.cli.options import (
    DetectorChoice,
    QuietOption,
    ThreadsOption,
    parameter_default,
    value,
)
from fkdbench.cli.output import user_errors
from fkdbench.predict import OVERLAY_DIR, PredictResult
from fkdbench.predict import predict as run_predict

if TYPE_CHECKING:
    from fkdbench.faces.video import VideoResult

_DETECTOR = parameter_default(run_predict, "detector")


def _echo_images(result: PredictResult, out: Path) -> None:
    typer.echo(
        f"{result.faces} face(s) in {result.images} image(s) in {result.seconds:.1f} s: "
        f"{result.keypoints_csv}"
        + (f", {len(result.overlays)} overlays in {out / OVERLAY_DIR}" if result.overlays else "")
    )
    for problem in result.no_face:
        typer.echo(f"no face: {problem}")
    for problem in result.skipped:
        typer.echo(f"skipped: {problem}")


def _echo_video(result: VideoResult) -> None:
    typer.echo(
        f"{result.frames} frame(s), a face in {result.faces_found_frames}, in "
        f"{result.seconds:.1f} s: {result.keypoints_csv}"
        + (f", overlay video {result.out_video}" if result.out_video else "")
    )
    if result.pipeline_fps is not None:
        typer.echo(f"{result.pipeline_fps:.0f} frames per second from decoded frame to overlay")
    for problem in result.problems:
        typer.echo(f"problem: {problem}")


def predict(
    model: Annotated[
        Path, typer.Argument(help="model.onnx / model.int8.onnx, a run folder, or model.pt.")
    ],
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files or folders (searched recursively), or one video file."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Where keypoints.csv and overlays/ go; for a video, a file such as "
            "overlay.mp4 takes the overlay video, with overlay.keypoints.csv beside it."
        ),
    ] = Path("predictions"),
    overlays: Annotated[bool, typer.Option(help="Write one PNG per face.")] = True,
    detector: Annotated[
        DetectorChoice,
        typer.Option(help="Face detector; 'none': each image is already a face crop."),
    ] = _DETECTOR,
    camera: Annotated[
        int | None, typer.Option(help="Read the live camera with this index instead of files.")
    ] = None,
    out_video: Annotated[
        Path | None,
        typer.Option(help="The overlay video (default for a video file: OUT/overlay.mp4)."),
    ] = None,
    redetect_every: Annotated[
        int | None,
        typer.Option(
            min=1, help="Video: detect again every N frames (default: fkdbench.faces.video's)."
        ),
    ] = None,
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
    """Run a trained model on your own images or video (every face found; keypoints in
    the pictures' pixels)."""
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
            detector=value(detector),
            camera=camera,
            out_video=out_video,
            redetect_every=redetect_every,
        )
    if isinstance(result, Path):
        typer.echo(f"submission: {result}")
    elif isinstance(result, PredictResult):
        _echo_images(result, out)
    else:
        _echo_video(result)
