"""``fkdbench train`` and ``fkdbench models`` (fkdbench.train.run_training, the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import (
    DataOption,
    Device,
    Executor,
    ExecutorOption,
    ForceOption,
    Head,
    Loss,
    PresetOption,
    PretrainMethod,
    QuietOption,
    RayAddressOption,
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

# The options of train alone (the shared ones are in cli/options.py).
_ArchOption = Annotated[
    str | None, typer.Argument(help="Architecture (see `fkdbench models`); omit with --all.")
]
_AllRunsOption = Annotated[
    bool,
    typer.Option(
        "--all", help="Train every run of --preset; finished runs with the same settings skip."
    ),
]
_EpochsOption = Annotated[
    int | None, typer.Option(min=1, help=f"Most epochs [{_TRAIN.epochs}; preset's].")
]
_BatchSizeOption = Annotated[
    int | None, typer.Option(min=1, help=f"Batch size [{_TRAIN.batch_size}].")
]
_LrOption = Annotated[float | None, typer.Option(help=f"Peak learning rate [{_TRAIN.lr}].")]
_BackboneLrScaleOption = Annotated[
    float | None,
    typer.Option(
        help="Finetuned runs: the backbone's learning rate as a fraction of the head's, in "
        f"(0, 1] [{_TRAIN.backbone_lr_scale:g}; preset's].",
    ),
]
_SeedOption = Annotated[
    int | None, typer.Option(help=f"Seed of the run [{_TRAIN.seed}; preset's].")
]
_MaxMinutesOption = Annotated[
    float | None,
    typer.Option(
        help="Safety stop per run, wall-clock minutes [none]; a run it stops is "
        "time-limited, not a result."
    ),
]
_PatienceOption = Annotated[
    int | None,
    typer.Option(help=f"Early stopping: epochs without improvement [{_TRAIN.patience}]."),
]
_AePretrainEpochsOption = Annotated[
    int | None,
    typer.Option(
        help=f"ae-cnn: reconstruction epochs before keypoints [{_TRAIN.ae_pretrain_epochs}]."
    ),
]
_DeviceOption = Annotated[Device, typer.Option(help="Where to train.")]
_WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="Pretrained backbone weights: a local .pth/.safetensors file (timm keys; "
        "fkdbench pretrain makes one), or timm:imagenet (timm downloads it; fails at once "
        "offline)."
    ),
]
_PretrainOption = Annotated[
    PretrainMethod | None,
    typer.Option(
        help="Start from a backbone pretrained here by this method (made once, cached in "
        "<runs-dir>/pretrain/; fkdbench pretrain for its settings) [preset's; none]."
    ),
]
_WeightsModeOption = Annotated[
    WeightsMode, typer.Option(help="With --weights: frozen (head only) or finetuned (all).")
]
_HeadOption = Annotated[
    Head | None,
    typer.Option(
        help="The model's head: the papers' dense regression, Gaussian heatmaps, or "
        "integral (soft-argmax) [the architecture's own; preset's]."
    ),
]
_LossOption = Annotated[
    Loss | None,
    typer.Option(
        help=f"Keypoint loss; wing is for coordinates, adaptive-wing for heatmaps "
        f"[{_TRAIN.loss}; preset's]."
    ),
]
_FlipTestOption = Annotated[
    bool,
    typer.Option(
        "--flip-test",
        help="Average every prediction with that of the mirrored image (the exported "
        "model too: about twice the inference time).",
    ),
]
_SpecOption = Annotated[
    Path | None, typer.Option(help="cnn-tuned: the architecture spec JSON file.")
]


def train(
    arch: _ArchOption = None,
    variant: VariantOption = Variant[_TRAIN.variant],
    all_runs: _AllRunsOption = False,
    preset: PresetOption = "quick",
    data: DataOption = _TRAIN.data_dir,
    runs_dir: RunsDirOption = _TRAIN.runs_dir,
    epochs: _EpochsOption = None,
    batch_size: _BatchSizeOption = None,
    lr: _LrOption = None,
    backbone_lr_scale: _BackboneLrScaleOption = None,
    seed: _SeedOption = None,
    seeds: SeedsOption = None,
    max_minutes: _MaxMinutesOption = None,
    patience: _PatienceOption = None,
    ae_pretrain_epochs: _AePretrainEpochsOption = None,
    device: _DeviceOption = Device[_TRAIN.device],
    weights: _WeightsOption = None,
    weights_mode: _WeightsModeOption = WeightsMode[_TRAIN.weights_mode],
    pretrain: _PretrainOption = None,
    spec: _SpecOption = None,
    head: _HeadOption = None,
    loss: _LossOption = None,
    flip_test: _FlipTestOption = False,
    threads: ThreadsOption = None,
    executor: ExecutorOption = Executor.local,
    ray_address: RayAddressOption = None,
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
            backbone_lr_scale=backbone_lr_scale,
            seed=seed,
            max_minutes=max_minutes,
            patience=patience,
            ae_pretrain_epochs=ae_pretrain_epochs,
            seeds=seeds,
            head=value(head),
            loss=value(loss),
            # An absent flag keeps the preset's choice.
            flip_test=True if flip_test else None,
            pretrain=value(pretrain),
            executor=value(executor),
            ray_address=ray_address,
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
