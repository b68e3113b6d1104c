"""``fkdbench pretrain`` (fkdbench.pretrain.pretrain)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import (
    DataOption,
    ForceOption,
    PretrainMethod,
    QuietOption,
    RunsDirOption,
    ThreadsOption,
    value,
)
from fkdbench.cli.output import user_errors
from fkdbench.pretrain import PretrainOptions
from fkdbench.pretrain import pretrain as make_pretrained

# The defaults, read from the options dataclass (the one place they are set).
_PRETRAIN = PretrainOptions()

_ArchArgument = Annotated[str, typer.Argument(help="Architecture whose backbone to pretrain.")]
_MethodOption = Annotated[
    PretrainMethod,
    typer.Option(
        help="synthetic-landmarks: 68 dense landmarks on generated faces; autoencoder: "
        "rebuild the data's train and unlabelled images with patches hidden."
    ),
]
_OutOption = Annotated[
    Path | None,
    typer.Option(
        help="Also write the checkpoint here (.safetensors; <stem>.pretrain.json beside it) "
        "[the cache in <runs-dir>/pretrain/ only]."
    ),
]
_EpochsOption = Annotated[
    int, typer.Option(min=1, help=f"Passes over the pretraining images [{_PRETRAIN.epochs}].")
]
_FacesOption = Annotated[
    int, typer.Option(min=2, help=f"synthetic-landmarks: faces to draw [{_PRETRAIN.faces}].")
]
_BatchSizeOption = Annotated[
    int, typer.Option(min=2, help=f"Images per step [{_PRETRAIN.batch_size}].")
]
_LrOption = Annotated[float, typer.Option(help=f"Peak learning rate [{_PRETRAIN.lr}].")]
_MaskOption = Annotated[
    float,
    typer.Option(
        min=0.0, max=0.99, help=f"autoencoder: share of patches hidden [{_PRETRAIN.mask_fraction}]."
    ),
]
_SeedOption = Annotated[int, typer.Option(help=f"Seed [{_PRETRAIN.seed}].")]


def pretrain(
    arch: _ArchArgument,
    method: _MethodOption = PretrainMethod[_PRETRAIN.method],
    out: _OutOption = None,
    data: DataOption = _PRETRAIN.data_dir,
    runs_dir: RunsDirOption = _PRETRAIN.runs_dir,
    epochs: _EpochsOption = _PRETRAIN.epochs,
    faces: _FacesOption = _PRETRAIN.faces,
    batch_size: _BatchSizeOption = _PRETRAIN.batch_size,
    lr: _LrOption = _PRETRAIN.lr,
    mask_fraction: _MaskOption = _PRETRAIN.mask_fraction,
    seed: _SeedOption = _PRETRAIN.seed,
    threads: ThreadsOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Pretrain a backbone here (no download) into a checkpoint train --weights reads."""
    with user_errors():
        result = make_pretrained(
            PretrainOptions(
                arch=arch,
                method=value(method),
                data_dir=data,
                runs_dir=runs_dir,
                out=out,
                epochs=epochs,
                faces=faces,
                batch_size=batch_size,
                lr=lr,
                mask_fraction=mask_fraction,
                seed=seed,
                num_threads=threads,
                quiet=quiet,
                force=force,
            )
        )
    state = "reused" if result.reused else "made"
    typer.echo(
        f"{result.out or result.weights} ({state}; recipe {result.record['recipe_sha256'][:12]})"
    )
