"""What a training run returns, and the errors it raises."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.progress import console


@dataclass
class RunResult:
    """The outcome of one run, as ``train_matrix`` reports it: a failure is a row too."""

    run_name: str
    run_dir: Path
    arch: str
    variant: str
    weights_mode: str
    # "finished" (trained now), "skipped" (already finished) or "failed".
    status: str
    # metrics.json's content for finished and skipped runs.
    metrics: dict[str, Any] | None = None
    # One line saying why, for failed runs.
    error: str | None = None
    # Wall-clock seconds this call spent on the run.
    seconds: float = 0.0


class RunError(ValueError):
    """A run cannot start or continue; the message names the run or the file."""


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; the message names the run, phase and epoch."""


def weights_mode_of(config: TrainConfig) -> str:
    """``scratch`` without a weights file, else the configured frozen/finetuned."""
    return "scratch" if config.weights is None else config.weights_mode


def run_identity(config: TrainConfig) -> tuple[str, str]:
    """The run name ``config`` trains under, and its weights mode; ``ValueError`` when
    the config cannot be named."""
    weights_mode = weights_mode_of(config)
    return runs.config_run_name(config, weights_mode), weights_mode


def failed_result(config: TrainConfig, error: Exception, started: float) -> RunResult:
    """A result row for a run that raised; the message is the error's first line."""
    weights_mode = weights_mode_of(config)
    try:
        name, _ = run_identity(config)
    except ValueError:
        name = f"{config.arch}--{config.variant}"
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    console.print(f"[bold red]failed:[/] {name}: {type(error).__name__}: {message}")
    return RunResult(
        run_name=name,
        run_dir=Path(config.runs_dir) / name,
        arch=config.arch,
        variant=config.variant,
        weights_mode=weights_mode,
        status="failed",
        error=f"{type(error).__name__}: {message}",
        seconds=time.monotonic() - started,
    )
