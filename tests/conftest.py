"""Shared fixtures: small generated data sets, made once per session, and CPU settings."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fkdbench.config import TrainConfig
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.export import export_run

SHARED_REAL_FACES = Path(__file__).resolve().parents[2] / "shared/data/real-faces-kaggle15"


@pytest.fixture(scope="module")
def single_cpu_thread() -> Iterator[None]:
    """Run a test module's model passes on one intra-op thread, without oneDNN.

    Use with ``pytestmark = pytest.mark.usefixtures("single_cpu_thread")``. The test machine
    is small and shared: two OpenMP threads fighting other processes for two cores stall at
    barriers (a 50 ms pass takes seconds), and oneDNN JIT-compiles a kernel per new conv
    shape, which for a handful of one-off passes costs far more than running them. (The flag
    is set directly because ``mkldnn.flags()`` also touches TF32 and warns on CPU builds.)
    Timing tests must not use it: it changes what they would measure.
    """
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


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
    # Imported here: the trainer takes seconds to import and most test modules never train.
    from fkdbench.train import train_run

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


@pytest.fixture(scope="module")
def exported_run(trained_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``trained_runs``' cnn-manual run, exported to FP32 ONNX (TorchScript, the
    faster exporter), one per test module, so a module may change it."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("exported") / "cnn-manual--none"
    shutil.copytree(trained_runs / "cnn-manual--none", folder)
    export_run(folder, exporter="torchscript", int8=False, quiet=True)
    return folder
