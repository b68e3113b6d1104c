"""Shared fixtures: small generated data sets, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fkdbench.data.prepare import PrepareOptions, prepare

SHARED_REAL_FACES = Path(__file__).resolve().parents[2] / "shared/data/real-faces-kaggle15"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared synthetic data set of 120 labelled and 12 unlabelled faces."""
    root = tmp_path_factory.mktemp("data")
    result = prepare(
        PrepareOptions(data_root=root, n_train=120, n_test=12, seed=3, workers=1, quiet=True)
    )
    return result.data_dir


@pytest.fixture(scope="session")
def trained_runs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with one finished cnn-manual run (one epoch on ``tiny_dataset``).

    Shared by the export and bench tests: copy it (``shutil.copytree``) before changing it.
    """
    from fkdbench.train import TrainConfig, train_run

    runs_dir = tmp_path_factory.mktemp("runs")
    result = train_run(
        TrainConfig(
            arch="cnn-manual",
            variant="none",
            data_dir=tiny_dataset,
            runs_dir=runs_dir,
            epochs=1,
            batch_size=16,
            device="cpu",
            quiet=True,
            num_threads=1,
        )
    )
    assert result.status == "finished", result.error
    return runs_dir
