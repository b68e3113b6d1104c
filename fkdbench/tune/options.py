"""One worker's options, what a ``tune`` call returns, and the names and limits shared by
the rest of the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fkdbench import runs
from fkdbench.provenance import check_threads
from fkdbench.tune.space import SearchSpace

ARCH = "cnn-tuned"
# Per-trial run folders, under the study's folder.
TRIALS_DIR = "trials"

# The objectives, by --objective; the study's directions follow (both minimised).
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "rmse": ("val_rmse",),
    "rmse+latency": ("val_rmse", "seconds_per_100_images"),
}
DEFAULT_OBJECTIVE = "rmse+latency"
# The tuned spec must not outgrow the paper's untuned baseline CNN (1.89M Keras params).
DEFAULT_MAX_PARAMS = 2_000_000


class TuneError(ValueError):
    """A study that cannot run as asked; the message names the study, storage or file."""


@dataclass
class TuneOptions:
    """One worker's part in a study: what to search, on what data, for how long."""

    # Data variant of the training split (as ``fkdbench train --variant``).
    variant: str = "none"
    # Trials the study should have trained in all, every worker's (complete, pruned while
    # training, running); specs rejected before training do not count.
    trials: int = 20
    # "rmse" (validation RMSE alone) or "rmse+latency" (both: a Pareto front).
    objective: str = DEFAULT_OBJECTIVE
    # Study name; default ``cnn-tuned-<variant>``, the study ``train cnn-tuned`` looks for.
    study: str | None = None
    # Any database URL Optuna supports; default ``sqlite:///<runs_dir>/tune/<study>.db``.
    storage: str | None = None
    data_dir: Path = Path("data/synthetic")
    runs_dir: Path = Path("runs")
    # Training budget of every trial: epochs, all run (no early stopping on patience).
    epochs_per_trial: int = 4
    # Specs above this many parameters (Keras count) are rejected before training.
    max_params: int | None = DEFAULT_MAX_PARAMS
    # Specs slower than this (ONNX Runtime s/100 images, timed before training) are
    # rejected before training; None: no limit.
    max_seconds_per_100_images: float | None = None
    # Wall-clock cap on each trial's training, minutes; None: none.
    trial_minutes: float | None = None
    # Train each trial on a seeded subset of at most this many rows; None: all.
    max_train_rows: int | None = None
    # Validate each trial on the first this-many validation rows; None: all.
    max_val_rows: int | None = None
    # Seed of every trial's training (the same for all: trials differ only in settings).
    seed: int = 0
    # Seed of the sampler; None: ``seed``. Concurrent workers need different ones, or they
    # propose the same settings.
    sampler_seed: int | None = None
    # Trials sampled at random before the TPE model, and finished before pruning starts.
    startup_trials: int = 5
    # Epochs every trial trains before it may be stopped early.
    prune_warmup_epochs: int = 2
    # Threads for training and for timing; None: every core this process may use.
    threads: int | None = None
    # Test images timed per trial (whole passes in batches of 32) and timed passes.
    latency_images: int = 512
    latency_repeats: int = 5
    search_space: SearchSpace = field(default_factory=SearchSpace)
    quiet: bool = False

    def __post_init__(self) -> None:
        self.data_dir, self.runs_dir = Path(self.data_dir), Path(self.runs_dir)
        if self.objective not in OBJECTIVES:
            raise TuneError(f"unknown objective {self.objective!r}; known: {', '.join(OBJECTIVES)}")
        for name in ("trials", "epochs_per_trial", "latency_images", "latency_repeats"):
            value = getattr(self, name)
            minimum = 0 if name == "trials" else 1
            if value < minimum:
                raise TuneError(f"{name} must be at least {minimum}, got {value}")
        if self.max_params is not None and self.max_params < 1:
            raise TuneError(f"max_params must be at least 1, got {self.max_params}")
        check_threads(self.threads)

    @property
    def study_name(self) -> str:
        return self.study or runs.tuned_study_name(self.variant)

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{self.runs_dir / runs.TUNE_DIR / self.study_name}.db"

    @property
    def folder(self) -> Path:
        """``<runs_dir>/tune/<study>/``: outputs, figures and this worker's trial runs."""
        return study_folder(self.runs_dir, self.study_name)

    @property
    def multi_objective(self) -> bool:
        return len(OBJECTIVES[self.objective]) > 1


@dataclass
class TuneResult:
    """What one ``tune`` call did, and where the study's outputs are."""

    study: str
    storage: str  # password hidden
    folder: Path
    # Trial numbers this worker finished, in order, and each one's state.
    trials_here: list[int]
    states_here: list[str]
    # Trials of the whole study by state ("complete", "pruned", "fail", "running").
    counts: dict[str, int]
    best: dict[str, Any] | None
    pareto_size: int
    written: list[Path]
    seconds: float


def study_folder(runs_dir: Path, study: str) -> Path:
    """``<runs_dir>/tune/<study>/``."""
    return Path(runs_dir) / runs.TUNE_DIR / study
