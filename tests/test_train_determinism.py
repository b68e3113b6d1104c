"""Budgets in work, not minutes: the same config and seed give the same metrics.json, byte
for byte, whether the machine is idle or busy (issue 13, item 1)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.train import train_run

pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def _train(data_dir: Path, runs_dir: Path) -> Path:
    config = TrainConfig(
        arch="cnn-manual",
        variant="none",
        data_dir=data_dir,
        runs_dir=runs_dir,
        epochs=2,
        batch_size=16,
        device="cpu",
        num_threads=1,
        quiet=True,
    )
    result = train_run(config)
    assert result.status == "finished", result.error
    return result.run_dir


def test_metrics_are_identical_beside_a_cpu_burning_process(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    calm = _train(tiny_dataset, tmp_path / "calm")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = _train(tiny_dataset, tmp_path / "busy")
    finally:
        burner.kill()
        burner.wait()

    metrics = (calm / runs.METRICS_FILE).read_bytes()
    assert metrics == (busy / runs.METRICS_FILE).read_bytes()
    calm_weights = runs.load_checkpoint(calm / runs.MODEL_FILE)
    busy_weights = runs.load_checkpoint(busy / runs.MODEL_FILE)
    assert calm_weights.keys() == busy_weights.keys()
    assert all(torch.equal(calm_weights[key], busy_weights[key]) for key in calm_weights)
    # The machine's share of the run went to training.json, one per run.
    assert runs.read_training(busy)["training_seconds"] > 0


def test_per_face_errors_add_up_to_the_test_rmse(tiny_dataset: Path, tmp_path: Path) -> None:
    metrics = runs.read_metrics(_train(tiny_dataset, tmp_path))
    per_face = metrics["test_per_face"]
    sums, coordinates = per_face["squared_error_sum"], per_face["coordinates"]
    assert len(sums) == len(coordinates) == metrics["rows"]["test"]
    assert all(isinstance(count, int) and count % 2 == 0 for count in coordinates)
    assert all(isinstance(value, float) and value >= 0 for value in sums)
    pooled = math.sqrt(sum(sums) / sum(coordinates))
    assert pooled == pytest.approx(metrics["test_rmse"], rel=1e-6)
