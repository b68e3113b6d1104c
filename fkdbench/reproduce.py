"""``fkdbench reproduce``: the whole flow on the embedded default, one command.

Today the flow is ``prepare -> train --all``; export, bench and report join it as they
land. Every step is resumable: prepared data and finished runs are reused, so running it
again after an interruption continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fkdbench.data.prepare import (
    KAGGLE_LABELLED_ROWS,
    KAGGLE_UNLABELLED_ROWS,
    PrepareOptions,
    prepare,
)
from fkdbench.progress import say
from fkdbench.train import RunResult, train_matrix


@dataclass
class ReproduceResult:
    data_dir: Path
    runs: list[RunResult]
    seconds: float


def reproduce(
    preset: str = "quick",
    data_root: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    seed: int = 0,
    n_train: int = KAGGLE_LABELLED_ROWS,
    n_test: int = KAGGLE_UNLABELLED_ROWS,
    force: bool = False,
    quiet: bool = False,
) -> ReproduceResult:
    """Prepare the synthetic default data set, then train every run of ``preset``.

    ``n_train``/``n_test`` shrink the data set (tests, trials); a data set prepared with
    other sizes is an error rather than silently reused.
    """
    started = time.perf_counter()
    say("[bold]step 1/2[/]: prepare the synthetic data set", quiet)
    prepared = prepare(
        PrepareOptions(data_root=data_root, seed=seed, n_train=n_train, n_test=n_test, quiet=quiet)
    )
    say(f"[bold]step 2/2[/]: train preset {preset}", quiet)
    results = train_matrix(
        preset, data_dir=prepared.data_dir, runs_dir=runs_dir, force=force, quiet=quiet
    )
    return ReproduceResult(prepared.data_dir, results, time.perf_counter() - started)
