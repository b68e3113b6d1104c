"""The levers through the whole run: a run with another head, loss or the flip test trains,
is named and recorded as such, rebuilds from its config.json alone and exports with
parity; the papers' runs keep the names, kwargs and settings they always had."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fkdbench import export, runs
from fkdbench.cli import app
from fkdbench.config import TrainConfig
from fkdbench.data.splits import load_split
from fkdbench.train import RunError, train_run
from fkdbench.train.scoring import predict_pixels

pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def _config(data_dir: Path, runs_dir: Path, **changes) -> TrainConfig:
    settings = dict(
        arch="cnn-manual",
        variant="masked",
        data_dir=data_dir,
        runs_dir=runs_dir,
        epochs=1,
        batch_size=16,
        device="cpu",
        quiet=True,
        num_threads=1,
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def lever_runs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run per lever kind, on the masked variant (missing keypoints)."""
    runs_dir = tmp_path_factory.mktemp("lever-runs")
    for changes in (
        dict(head="heatmap", loss="adaptive-wing"),
        dict(arch="test-unet", flip_test=True),
        dict(loss="wing"),
    ):
        result = train_run(_config(tiny_dataset, runs_dir, **changes))
        assert result.status == "finished", result.error
    return runs_dir


def test_lever_runs_are_named_and_recorded_by_their_recipe(lever_runs: Path) -> None:
    names = sorted(path.name for path in lever_runs.iterdir())
    assert names == [
        "cnn-manual--masked--heatmap--adaptive-wing",
        "cnn-manual--masked--wing",
        "test-unet--masked--flip",
    ]
    heatmap = lever_runs / names[0]
    metrics = json.loads((heatmap / runs.METRICS_FILE).read_text())
    config = runs.read_config(heatmap)
    assert metrics["recipe"] == ["heatmap", "adaptive-wing"] == runs.recipe_of(config)
    assert config["model"]["kwargs"]["head"] == "heatmap"
    assert "adaptive-wing on Gaussian heatmaps" in config["optimisation"]["loss"]
    flipped = runs.read_config(lever_runs / names[2])
    # The U-Net's own head is integral: not a recipe part, not a kwarg.
    assert "head" not in flipped["model"]["kwargs"]
    assert len(flipped["model"]["kwargs"]["flip_permutation"]) == 15


@pytest.mark.parametrize(
    "name", ["cnn-manual--masked--heatmap--adaptive-wing", "test-unet--masked--flip"]
)
def test_lever_runs_rebuild_from_config_json_and_export_with_parity(
    lever_runs: Path, tiny_dataset: Path, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / name
    shutil.copytree(lever_runs / name, folder)
    model, _ = runs.load_model(folder)
    test = load_split(tiny_dataset, "test")
    # The rebuilt model scores what the run scored.
    predicted = predict_pixels(model, test.images, torch.device("cpu"))
    metrics = runs.read_metrics(folder)
    squared = np.nansum((predicted - test.keypoints) ** 2)
    assert np.sqrt(squared / np.isfinite(test.keypoints).sum()) == pytest.approx(
        metrics["test_rmse"], rel=1e-4
    )
    # Decoding (arg-max or soft-argmax) and the flip test are inside the ONNX graph.
    record = export.export_run(folder, exporter="torchscript", int8=False, quiet=True)
    assert record.parity_max_abs_diff_pixels <= export.PARITY_TOLERANCE_PIXELS
    assert record.test_rmse_onnx == pytest.approx(metrics["test_rmse"], abs=1e-3)


def test_the_papers_recipe_keeps_its_name_kwargs_and_settings(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    explicit = _config(tiny_dataset, tmp_path, head="regression", loss="mse")
    assert runs.config_run_name(explicit, "scratch") == "cnn-manual--masked"
    assert runs.config_recipe(explicit, "scratch") == []
    # A config.json of before the levers reads as the papers' recipe.
    assert runs.recipe_of({"model": {"arch": "cnn-manual"}, "train": {"arch": "cnn-manual"}}) == []


def test_a_loss_that_does_not_fit_the_head_is_refused_before_any_write(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(RunError, match="'wing' is for coordinates; the heatmap head"):
        train_run(_config(tiny_dataset, tmp_path, head="heatmap", loss="wing"))
    with pytest.raises(RunError, match="unknown head 'dense'"):
        train_run(_config(tiny_dataset, tmp_path, head="dense"))
    assert not any(tmp_path.iterdir())


def test_cli_train_passes_the_levers(tiny_dataset: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train", "cnn-manual", "--variant", "none", "--data", str(tiny_dataset),
            "--runs-dir", str(tmp_path), "--epochs", "1", "--batch-size", "16",
            "--head", "integral", "--loss", "l1", "--flip-test", "--quiet", "--threads", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "cnn-manual--none--integral--l1--flip"
    assert runs.read_metrics(folder)["recipe"] == ["integral", "l1", "flip"]
    refused = CliRunner().invoke(app, ["train", "cnn-manual", "--loss", "huber"])
    assert refused.exit_code != 0 and "huber" in refused.output


def test_lever_rows_are_benched_and_reported_beside_their_twin(
    lever_runs: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    from bench_factory import fake_clock
    from test_bench import CALIBRATION, STEP

    from fkdbench import bench
    from fkdbench.bench import BenchOptions, read_records
    from fkdbench.report import build_report

    runs_dir = tmp_path / "runs"
    levers = ("cnn-manual--masked--heatmap--adaptive-wing", "cnn-manual--masked--wing")
    for name in levers:
        shutil.copytree(lever_runs / name, runs_dir / name)
    assert train_run(_config(tiny_dataset, runs_dir)).status == "finished"
    options = BenchOptions(
        backends=("onnxruntime",), threads=1, repeats=2, latency_samples=3,
        latency_warmup=1, batch_size=4, results=tmp_path / "bench.jsonl", quiet=True,
    )  # fmt: skip
    folders = sorted(path for path in runs_dir.iterdir() if path.is_dir())
    bench.bench(folders, options, calibration=CALIBRATION, clock=fake_clock(STEP))
    recipes = {r.identity.run_name: r.identity.recipe for r in read_records(options.results)}
    assert recipes == {
        "cnn-manual--masked": (),
        levers[0]: ("heatmap", "adaptive-wing"),
        levers[1]: ("wing",),
    }
    result = build_report(runs_dir, options.results, tmp_path / "report", quiet=True)
    # Three rows, not three seeds of one: each lever is its own row, labelled by its parts.
    labels = list(result.tables["accuracy_rmse"].index)
    assert {"cnn-manual", "cnn-manual + heatmap + adaptive-wing", "cnn-manual + wing"} <= set(
        labels
    )
    table = result.tables["levers"].set_index("model")
    assert list(table.index) == ["cnn-manual + heatmap + adaptive-wing", "cnn-manual + wing"]
    assert (table["twin"] == "cnn-manual").all() and (table["variant"] == "masked").all()
    assert table["verdict"].isin(["better", "worse", "tie (not significant)"]).all()
    # Its RMSE and its cost are the lever's own, beside the twin's from the same bench run.
    metrics = runs.read_metrics(runs_dir / levers[1])
    assert table.loc["cnn-manual + wing", "rmse"] == pytest.approx(metrics["test_rmse"])
    assert table["seconds_per_100_twin"].notna().all()
    timing = result.tables["timing"].set_index("run_name")
    assert timing.loc[levers[0], "recipe"] == "heatmap+adaptive-wing"
    assert timing.loc[levers[0], "model"] == "cnn-manual + heatmap + adaptive-wing"
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert text.index("## Which differences are real") < text.index("## What each lever buys")
    assert (tmp_path / "report" / "levers.csv").is_file()
