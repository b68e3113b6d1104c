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
