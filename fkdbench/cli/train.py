"""``fkdbench train`` and ``fkdbench models`` (fkdbench.train.run_training, the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import (
    DataOption,
    Device,
    ForceOption,
    PresetOption,
    QuietOption,
    RunsDirOption,
    SeedsOption,
    ThreadsOption,
    Variant,
    VariantOption,
    WeightsMode,
    value,
)
from fkdbench.cli.output import echo_runs, user_errors
from fkdbench.config import TrainConfig
from fkdbench.models import count_parameters, create_model, get_arch_info, list_models
from fkdbench.train import run_training

# The defaults, read from the options dataclass (the one place they are set).
_TRAIN = TrainConfig()

# Shared by train and reproduce (cli/reproduce.py imports it from here).


def train(
    arch: Annotated[
        str | None, typer.Argument(help="Architecture (see `fkdbench models`); omit with --all.")
    ] = None,
    variant: VariantOption = Variant[_TRAIN.variant],
    all_runs: Annotated[
        bool,
        typer.Option(
            "--all", help="Train every run of --preset; finished runs with the same settings skip."
        ),
    ] = False,
    preset: PresetOption = "quick",
    data: DataOption = _TRAIN.data_dir,
    runs_dir: RunsDirOption = _TRAIN.runs_dir,
    epochs: Annotated[
        int | None, typer.Option(min=1, help=f"Most epochs [{_TRAIN.epochs}; preset's].")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help=f"Batch size [{_TRAIN.batch_size}].")
    ] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate [{_TRAIN.lr}].")] = (None),
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of the run [{_TRAIN.seed}; preset's].")
    ] = None,
    seeds: SeedsOption = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="Safety stop per run, wall-clock minutes [none]; a run it stops is "
            "time-limited, not a result."
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help=f"Early stopping: epochs without improvement [{_TRAIN.patience}]."),
    ] = None,
    ae_pretrain_epochs: Annotated[
        int | None,
        typer.Option(
            help=f"ae-cnn: reconstruction epochs before keypoints [{_TRAIN.ae_pretrain_epochs}]."
        ),
    ] = None,
    device: Annotated[Device, typer.Option(help="Where to train.")] = Device[_TRAIN.device],
    weights: Annotated[
        Path | None,
        typer.Option(help="Local pretrained backbone weights (.pth/.safetensors, timm keys)."),
    ] = None,
    weights_mode: Annotated[
        WeightsMode, typer.Option(help="With --weights: frozen (head only) or finetuned (all).")
    ] = WeightsMode[_TRAIN.weights_mode],
    spec: Annotated[
        Path | None, typer.Option(help="cnn-tuned: the architecture spec JSON file.")
    ] = None,
    threads: ThreadsOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train one architecture on one data variant, or a whole preset with --all."""
    with user_errors():
        results = run_training(
            arch,
            all_runs=all_runs,
            preset=preset,
            variant=value(variant),
            data_dir=data,
            runs_dir=runs_dir,
            weights=weights,
            weights_mode=value(weights_mode),
            spec=spec,
            device=value(device),
            num_threads=threads,
            force=force,
            quiet=quiet,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_minutes=max_minutes,
            patience=patience,
            ae_pretrain_epochs=ae_pretrain_epochs,
            seeds=seeds,
        )
    echo_runs(results)


def models() -> None:
    """List the registered architectures with their parameter counts."""
    for name in list_models():
        info = get_arch_info(name)
        counts = count_parameters(create_model(name))
        typer.echo(
            f"{name:14s} {counts.pytorch:>12,d} params ({counts.keras:,d} Keras)  "
            f"{info.description}"
        )
