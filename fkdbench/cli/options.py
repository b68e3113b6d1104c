"""Every option the commands share, declared once as a Typer ``Annotated`` alias.

Choices are ``str`` Enums built from the registries that own them (variants, schemes,
sources, backends, ...), so a new variant or backend shows up in ``--help`` and is
validated without touching the CLI. Defaults are read from the library: a command module
makes one instance of its options dataclass (``_BENCH = BenchOptions()``) and takes its
fields, or asks :func:`parameter_default` of a library function; none is restated here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from fkdbench.bench import BACKENDS
from fkdbench.config import DEVICES, EXECUTORS, LOSSES, PRETRAINED_WEIGHTS_MODES, TrainConfig
from fkdbench.data.prepare import SOURCES
from fkdbench.data.schemes import SCHEMES
from fkdbench.data.variants import VARIANTS
from fkdbench.export import EXPORTERS, INT8_ACTIVATIONS
from fkdbench.faces.detect import DETECTORS
from fkdbench.int8 import INT8_RMSE_TOLERANCE
from fkdbench.models.heads import HEADS
from fkdbench.presets import list_presets
from fkdbench.pretrain.options import METHODS as PRETRAIN_METHODS
from fkdbench.provenance import available_cores
from fkdbench.report import FORMATS
from fkdbench.tune import OBJECTIVES


def parameter_default(function: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of a library function (the one place it is set)."""
    parameter = inspect.signature(function).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise KeyError(f"{function.__name__} has no default for {name!r}")
    return parameter.default


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A ``str`` Enum whose members are ``values``: Typer lists and checks them."""
    return Enum(name, [(value, value) for value in values], type=str)


def value(choice: Enum | str | None) -> Any:
    """The plain string of a choice (Typer passes Enum members; Python callers strings)."""
    return choice.value if isinstance(choice, Enum) else choice


# The face detectors (fkdbench.faces.detect), for predict and bench --video.
DetectorChoice = choices("Detector", DETECTORS)


def values(chosen: Iterable[Enum | str] | None) -> tuple[str, ...] | None:
    """Plain strings of a repeated choice; None when the option was not given."""
    return tuple(value(choice) for choice in chosen) if chosen else None


Executor = choices("Executor", EXECUTORS)
ExecutorOption = Annotated[
    Executor,
    typer.Option(
        help="Where the runs train: local (here, one after another) or ray (each run a Ray "
        "task with --threads CPUs [1], results written here; uv sync --extra ray)."
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        help="With --executor ray: the cluster to join (auto, or head-host:6379) "
        "[start Ray on this machine for the matrix]."
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
Int8SearchOption = Annotated[
    bool,
    typer.Option(
        "--int8-search",
        help="Make model.int8.onnx by trying the INT8 choices (format, weight scales, ops "
        "left FP32, calibration) and keeping the fastest within "
        f"{100 * INT8_RMSE_TOLERANCE:g}% of FP32's test RMSE.",
    ),
]
ForceOption = Annotated[
    bool, typer.Option(help="Redo work that is already done and up to date instead of reusing it.")
]
# Bounded by the cores this process may use: more only oversubscribes them (and the
# library checks the same bound, provenance.check_threads, for callers from Python).
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=available_cores(),
        help="CPU threads for torch and ONNX Runtime, 1 to the usable cores [all cores].",
    ),
]
SeedsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Train each run with N seeds (seed, seed+1, ...), folders <run>--s<seed> "
        "[preset's seeds; 1].",
    ),
]
DataOption = Annotated[Path, typer.Option(help="Prepared data folder (fkdbench prepare).")]
DataOverrideOption = Annotated[
    Path | None,
    typer.Option("--data", help="Prepared data folder to score and time on [each run's own]."),
]
DataRootOption = Annotated[Path, typer.Option(help="Where data sets live.")]
RunsDirOption = Annotated[Path, typer.Option(help="Where run folders live.")]
# Where run folders live unless --runs-dir says otherwise (TrainConfig's default).
RUNS_DIR = TrainConfig().runs_dir
RunNamesArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Run names (folders under --runs-dir) or run folders; or use --all."),
]
SeedOption = Annotated[int, typer.Option(help="Random seed: the same seed gives the same result.")]
PresetOption = Annotated[
    str, typer.Option(help=f"{' | '.join(list_presets())}, or a preset JSON file.")
]
NTrainOption = Annotated[int, typer.Option(min=1, help="Synthetic labelled rows (training.csv).")]
NTestOption = Annotated[int, typer.Option(min=0, help="Synthetic unlabelled rows (test.csv).")]


# -- choices, from the registries that own them ----------------------------------------------
Variant = choices("Variant", VARIANTS)
Scheme = choices("Scheme", SCHEMES)
Source = choices("Source", SOURCES)
Backend = choices("Backend", BACKENDS)
Exporter = choices("Exporter", EXPORTERS)
Int8Activations = choices("Int8Activations", INT8_ACTIVATIONS)
Objective = choices("Objective", OBJECTIVES)
ReportFormat = choices("ReportFormat", FORMATS)
Device = choices("Device", DEVICES)
WeightsMode = choices("WeightsMode", PRETRAINED_WEIGHTS_MODES)
Head = choices("Head", HEADS)
Loss = choices("Loss", LOSSES)
PretrainMethod = choices("PretrainMethod", PRETRAIN_METHODS)

VariantOption = Annotated[Variant, typer.Option(help="Data variant of the training split.")]
