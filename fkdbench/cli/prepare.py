"""``fkdbench prepare``: make a data set (fkdbench.data.prepare.prepare)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import (
    DataRootOption,
    ForceOption,
    NTestOption,
    NTrainOption,
    QuietOption,
    Scheme,
    SeedOption,
    Source,
    value,
)
from fkdbench.cli.output import user_errors
from fkdbench.data.prepare import PrepareOptions, PrepareResult
from fkdbench.data.prepare import prepare as prepare_data

# The defaults, read from the options dataclass (the one place they are set).
_PREPARE = PrepareOptions()

# The options of prepare alone (the shared ones are in cli/options.py).
_SourceOption = Annotated[Source, typer.Option(help="Where the data comes from.")]
_PathOption = Annotated[
    Path | None,
    typer.Option(
        help="kaggle: folder with training.csv/.zip (or one zip); wflw: the annotation "
        "list (list_98pt_rect_attr_*.txt); 300w: folder of images with .pts files; "
        "csv: the landmark CSV."
    ),
]
_ImagesOption = Annotated[
    Path | None, typer.Option(help="wflw, csv: the folder image paths are relative to.")
]
_SchemeOption = Annotated[
    Scheme, typer.Option(help="Keypoint scheme (synthetic and csv; fixed by the others).")
]
_MarginOption = Annotated[
    float,
    typer.Option(
        help="wflw, 300w, csv: crop margin around the landmarks, a fraction of the box side."
    ),
]
_NameOption = Annotated[
    str | None, typer.Option(help="Data set folder name under --data-root [the source].")
]
_SizeOption = Annotated[int, typer.Option(min=8, help="Image side in pixels.")]
_ValFractionOption = Annotated[float, typer.Option(help="Share held out for validation.")]
_TestFractionOption = Annotated[float, typer.Option(help="Share held out for test.")]
_SkipBadRowsOption = Annotated[
    bool, typer.Option(help="Drop malformed rows and report them instead of stopping.")
]
_GroupsOption = Annotated[
    Path | None,
    typer.Option(
        help="kaggle, csv: a row,group CSV naming the group (person) of each source row "
        "(0-based); the split is then by group, no group in two splits."
    ),
]
_PreviewOption = Annotated[
    Path | None, typer.Option(help="Also save a PNG grid of samples with keypoints.")
]
_WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Processes drawing faces [all cores].")
]


def prepare(
    source: _SourceOption = Source[_PREPARE.source],
    path: _PathOption = None,
    images: _ImagesOption = None,
    scheme: _SchemeOption = Scheme[_PREPARE.scheme],
    margin: _MarginOption = _PREPARE.margin,
    name: _NameOption = None,
    data_root: DataRootOption = _PREPARE.data_root,
    n_train: NTrainOption = _PREPARE.n_train,
    n_test: NTestOption = _PREPARE.n_test,
    size: _SizeOption = _PREPARE.image_size,
    seed: SeedOption = _PREPARE.seed,
    val_fraction: _ValFractionOption = _PREPARE.val_fraction,
    test_fraction: _TestFractionOption = _PREPARE.test_fraction,
    skip_bad_rows: _SkipBadRowsOption = False,
    groups: _GroupsOption = None,
    preview: _PreviewOption = None,
    workers: _WorkersOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Make a data set: draw synthetic faces, or read Kaggle, WFLW, 300-W or landmark CSV."""
    options = PrepareOptions(
        source=value(source),
        path=path,
        images=images,
        scheme=value(scheme),
        margin=margin,
        name=name,
        data_root=data_root,
        n_train=n_train,
        n_test=n_test,
        image_size=size,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        skip_bad_rows=skip_bad_rows,
        groups=groups,
        preview=preview,
        workers=workers,
        force=force,
        quiet=quiet,
    )
    with user_errors():
        result = prepare_data(options)
    if not result.skipped_existing:
        _echo_prepared(result)


def _echo_prepared(result: PrepareResult) -> None:
    manifest = result.manifest
    counts = manifest["counts"]
    splits = ", ".join(_split_text(split, info) for split, info in counts["splits"].items())
    if "split" in manifest:
        splits += f"; split {manifest['split']['rule']}"
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


def _split_text(split: str, info: dict) -> str:
    groups = f" in {info['groups']} groups" if "groups" in info else ""
    return f"{split} {info['rows']}{groups}"
