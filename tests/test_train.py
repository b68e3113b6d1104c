"""Training runs, resume, the loop's pieces and the train command's entry point: on tiny
data sets, a second or two a run. (Run folders: test_runs.py; presets: test_presets.py.)

The data: small gray images with one bright blob; every keypoint sits at a fixed offset
from the blob's centre, so a small CNN can learn the task in a few epochs, and odd rows
keep only the four "sparse" keypoints, like Kaggle's, so every variant has work to do.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fkdbench import allocator, runs, train
from fkdbench.data.schemes import KAGGLE15, KAGGLE15_SPARSE_KEYPOINTS
from fkdbench.data.splits import DataError, SplitArrays, save_split
from fkdbench.data.variants import VARIANTS
from fkdbench.models import create_model, get_arch_info, list_models
from fkdbench.train import (
    FINAL_LR_FRACTION,
    RunError,
    TrainConfig,
    TrainingDiverged,
    learning_rate_at,
    masked_mse,
    run_training,
    train_matrix,
    train_run,
)
from fkdbench.train import losses as train_losses
from fkdbench.train import matrix as train_matrix_module

IMAGE_SIZE = 48
# The cheapest architecture in the registry keeps each run to about a second.
SMALL_ARCH = "cnn-manual"


def write_blob_data(folder: Path, rows: dict[str, int], seed: int = 0) -> Path:
    """Prepared-data folder with train/val/test splits of blob images and a manifest."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-0.22, 0.22, size=(KAGGLE15.num_keypoints, 2)) * IMAGE_SIZE
    sparse = [KAGGLE15.index(name) for name in KAGGLE15_SPARSE_KEYPOINTS]
    grid_y, grid_x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    first_id = 0
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in rows.items():
        centres = rng.uniform(0.36, 0.64, size=(count, 2)) * IMAGE_SIZE
        keypoints = (centres[:, None, :] + offsets[None]).astype(np.float32)
        keypoints[1::2, [k for k in range(KAGGLE15.num_keypoints) if k not in sparse]] = np.nan
        squared_distance = (grid_x[None] - centres[:, 0, None, None]) ** 2 + (
            grid_y[None] - centres[:, 1, None, None]
        ) ** 2
        images = 40 + 200 * np.exp(-squared_distance / (2 * (0.06 * IMAGE_SIZE) ** 2))
        images += rng.normal(0, 8, size=images.shape)
        save_split(
            folder / f"{split}.npz",
            SplitArrays(
                images=np.clip(images, 0, 255).astype(np.uint8),
                keypoints=keypoints,
                ids=np.arange(first_id, first_id + count, dtype=np.int64),
            ),
        )
        first_id += count
    (folder / "manifest.json").write_text(
        json.dumps(
            {"scheme": "kaggle15", "image_size": IMAGE_SIZE, "seed": seed, "source": "test-blobs"}
        )
    )
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_data(tmp_path_factory.mktemp("data"), {"train": 24, "val": 8, "test": 8})


def tiny_config(data_dir: Path, runs_dir: Path, **changes) -> TrainConfig:
    settings = dict(
        arch=SMALL_ARCH,
        variant="none",
        data_dir=data_dir,
        runs_dir=runs_dir,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        device="cpu",
        quiet=True,
        seed=0,
        ae_pretrain_epochs=1,
        augment_copies=1,
        # One thread: on a shared 2-core machine a second one mostly waits for the other.
        num_threads=1,
    )
    return TrainConfig(**{**settings, **changes})


def read_history(folder: Path) -> list[dict[str, str]]:
    with open(folder / runs.HISTORY_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def test_short_run_writes_every_output(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if nothing had set the allocator yet in this process: training must set it.
    monkeypatch.setattr(allocator, "_described", None)
    monkeypatch.setattr(allocator, "_configure", lambda: "set by the run")
    result = train_run(tiny_config(data_dir, tmp_path))

    folder = tmp_path / f"{SMALL_ARCH}--none"
    assert result.status == "finished" and result.run_dir == folder
    assert runs.is_finished(folder) and runs.finished_runs(tmp_path) == [folder]
    assert not (folder / runs.RESUME_FILE).exists()  # resume state goes once finished

    config = json.loads((folder / runs.CONFIG_FILE).read_text())
    assert config["model"]["arch"] == SMALL_ARCH
    assert config["model"]["num_outputs"] == 30 and config["model"]["in_chans"] == 1
    assert config["model"]["input_size"] == IMAGE_SIZE and config["model"]["scheme"] == "kaggle15"
    assert config["train"]["epochs"] == 2 and config["weights_mode"] == "scratch"
    assert len(config["data"]["manifest_sha256"]) == 64 and config["data"]["seed"] == 0
    assert "cpu_model" in config["environment"]
    assert config["environment"]["allocator"] == "set by the run"

    metrics = json.loads((folder / runs.METRICS_FILE).read_text())
    for key in (
        "test_rmse",
        "test_nme",
        "mean_shape_rmse",
        "best_val_rmse",
        "best_epoch",
        "epochs_run",
        "stop_reason",
        "convergence",
        "seed",
        "test_per_face",
        "parameters",
    ):
        assert key in metrics, key
    # What depends on the machine lives in training.json, written before metrics.json.
    assert "training_seconds" not in metrics and "environment" not in metrics
    training = runs.read_training(folder)
    assert training["run_name"] == folder.name and training["training_seconds"] > 0
    assert training["images_per_second"] > 0 and "cpu_model" in training["environment"]
    assert "load_average" in training["environment"]
    assert training["environment"]["allocator"] == "set by the run"
    assert metrics["seed"] == 0 and metrics["format_version"] == runs.RUN_FORMAT_VERSION
    assert set(metrics["test_per_keypoint_rmse"]) == set(KAGGLE15.keypoints)
    assert metrics["stop_reason"] == "completed" and metrics["epochs_run"] == 2
    assert set(metrics["parameters"]) == {"pytorch", "keras", "trainable"}
    assert metrics["test_rmse"] > 0 and metrics["mean_shape_rmse"] > 0

    history = read_history(folder)
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert list(history[0]) == list(train.HISTORY_COLUMNS)
    assert all(row["phase"] == "keypoints" and float(row["val_rmse"]) > 0 for row in history)

    # model.pt is a plain state dict: loads with weights_only and nothing else.
    state = torch.load(folder / runs.MODEL_FILE, map_location="cpu", weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())


def test_finished_run_is_skipped_and_force_reruns(data_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(data_dir, tmp_path, epochs=1)
    first = train_run(config)
    written = (first.run_dir / runs.METRICS_FILE).stat().st_mtime_ns

    skipped = train_run(config)
    assert skipped.status == "skipped" and skipped.metrics == first.metrics
    assert (first.run_dir / runs.METRICS_FILE).stat().st_mtime_ns == written

    forced = train_run(tiny_config(data_dir, tmp_path, epochs=1, force=True))
    assert forced.status == "finished"
    assert (first.run_dir / runs.METRICS_FILE).stat().st_mtime_ns != written


@pytest.mark.parametrize(
    ("arch", "interrupt_phase"),
    [(SMALL_ARCH, "keypoints"), ("ae-cnn", "pretrain"), ("ae-cnn", "keypoints")],
)
def test_interrupted_run_resumes_to_the_same_result(
    data_dir: Path, tmp_path: Path, arch: str, interrupt_phase: str
) -> None:
    settings = dict(arch=arch, epochs=3, ae_pretrain_epochs=2, patience=None)
    whole = train_run(tiny_config(data_dir, tmp_path / "whole", **settings))

    def interrupt_after_first_epoch(row: dict) -> None:
        if row["phase"] == interrupt_phase and row["epoch"] == 1:
            raise KeyboardInterrupt

    config = tiny_config(data_dir, tmp_path / "cut", **settings)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, on_epoch_end=interrupt_after_first_epoch)
    folder = tmp_path / "cut" / f"{arch}--none"
    assert (folder / runs.RESUME_FILE).is_file() and not runs.is_finished(folder)
    rows_before = len(read_history(folder))
    assert not list(folder.glob(".*.tmp"))  # nothing half-written left behind

    resumed = train_run(config)
    assert resumed.status == "finished"
    history = read_history(folder)
    assert len(history) > rows_before
    assert [(row["phase"], row["epoch"]) for row in history] == [
        (row["phase"], row["epoch"]) for row in read_history(whole.run_dir)
    ]
    # Same seed, same data, RNG states restored: the very same weights on the CPU.
    assert resumed.metrics["best_val_rmse"] == whole.metrics["best_val_rmse"]
    resumed_state = runs.load_checkpoint(folder / runs.MODEL_FILE)
    whole_state = runs.load_checkpoint(whole.run_dir / runs.MODEL_FILE)
    for key, value in whole_state.items():
        torch.testing.assert_close(resumed_state[key], value, rtol=0, atol=0)


def test_resume_with_other_settings_is_refused(data_dir: Path, tmp_path: Path) -> None:
    def interrupt(row: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_config(data_dir, tmp_path, epochs=3), on_epoch_end=interrupt)
    with pytest.raises(RunError, match="lr"):
        train_run(tiny_config(data_dir, tmp_path, epochs=3, lr=5e-3))
    # force discards the old state and starts again.
    assert train_run(tiny_config(data_dir, tmp_path, epochs=1, force=True)).status == "finished"


def test_corrupt_resume_state_raises_checkpoint_error_naming_the_file(
    data_dir: Path, tmp_path: Path
) -> None:
    def interrupt(row: dict) -> None:
        raise KeyboardInterrupt

    config = tiny_config(data_dir, tmp_path, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, on_epoch_end=interrupt)
    resume_state = tmp_path / f"{SMALL_ARCH}--none" / runs.RESUME_FILE
    resume_state.write_bytes(b"not a checkpoint")
    with pytest.raises(runs.CheckpointError, match=str(resume_state)):
        train_run(config)


def test_trained_run_loads_back_with_identical_outputs(data_dir: Path, tmp_path: Path) -> None:
    result = train_run(tiny_config(data_dir, tmp_path, epochs=1))
    model, config = runs.load_model(result.run_dir)
    assert config["run_name"] == result.run_name and not model.training

    direct = create_model(SMALL_ARCH, num_outputs=30, in_chans=1, **config["model"]["kwargs"])
    direct.load_state_dict(torch.load(result.run_dir / runs.MODEL_FILE, weights_only=True))
    direct.eval()
    images = torch.rand(3, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(images), direct(images), rtol=0, atol=0)


def test_config_json_alone_rebuilds_a_spec_built_model(data_dir: Path, tmp_path: Path) -> None:
    spec = {
        "conv_blocks": [{"filters": 8, "pool": "max"}, {"filters": 16, "pool": "max"}],
        "dense_units": [32],
        "dropout": 0.0,
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    config = tiny_config(
        data_dir, tmp_path, arch="cnn-tuned", epochs=1, model_kwargs={"spec": spec_file}
    )
    result = train_run(config)
    spec_file.unlink()  # the run must not need it any more
    model, saved = runs.load_model(result.run_dir)
    assert saved["model"]["kwargs"]["spec"]["dense_units"] == [32]
    assert saved["model"]["kwargs"]["input_size"] == IMAGE_SIZE
    assert model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)).shape == (1, 30)


def test_nan_loss_diverges_and_the_matrix_goes_on(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    losses_computed = 0
    real_loss = masked_mse

    def first_loss_is_nan(predicted, target, mask):
        nonlocal losses_computed
        losses_computed += 1
        loss = real_loss(predicted, target, mask)
        return loss * float("nan") if losses_computed == 1 else loss

    monkeypatch.setattr(train_losses, "masked_mse", first_loss_is_nan)
    preset_file = tmp_path / "two.json"
    preset_file.write_text(
        json.dumps(
            {
                "name": "two",
                "defaults": {"epochs": 1, "batch_size": 8, "device": "cpu"},
                "runs": [{"arch": SMALL_ARCH, "variants": ["none", "masked"]}],
            }
        )
    )
    results = train_matrix(
        preset_file, data_dir=data_dir, runs_dir=tmp_path / "runs", quiet=True, num_threads=1
    )
    assert [result.status for result in results] == ["failed", "finished"]
    assert "TrainingDiverged" in results[0].error and "epoch 1" in results[0].error
    assert f"{SMALL_ARCH}--none" in results[0].error

    losses_computed = 0
    with pytest.raises(TrainingDiverged, match=f"{SMALL_ARCH}--none.*epoch 1"):
        train_run(tiny_config(data_dir, tmp_path / "single"))


def test_every_variant_trains_through_one_loop(data_dir: Path, tmp_path: Path) -> None:
    preset_file = tmp_path / "variants.json"
    preset_file.write_text(
        json.dumps(
            {
                "name": "variants",
                "defaults": {"epochs": 1, "batch_size": 16, "device": "cpu", "augment_copies": 1},
                "runs": [{"arch": SMALL_ARCH, "variants": list(VARIANTS)}],
            }
        )
    )
    results = train_matrix(
        preset_file, data_dir=data_dir, runs_dir=tmp_path, quiet=True, num_threads=1
    )
    assert [result.status for result in results] == ["finished"] * len(VARIANTS)
    rows = {result.variant: result.metrics["rows"]["train"] for result in results}
    assert rows["masked"] == rows["knn"] == 24 and rows["none"] == 12
    assert rows["aug"] > rows["none"]
    # A second matrix skips everything.
    again = train_matrix(
        preset_file, data_dir=data_dir, runs_dir=tmp_path, quiet=True, num_threads=1
    )
    assert {result.status for result in again} == {"skipped"}


def test_validation_rmse_falls_when_there_is_something_to_learn(tmp_path: Path) -> None:
    data = write_blob_data(tmp_path / "data", {"train": 128, "val": 32, "test": 32}, seed=3)
    config = tiny_config(data, tmp_path / "runs", epochs=8, batch_size=16, lr=1e-2, patience=None)
    result = train_run(config)
    val_rmse = [float(row["val_rmse"]) for row in read_history(result.run_dir)]
    # Training starts at the mean shape (start_at_shape), so learning shows as a clear
    # margin under the mean-shape baseline, on validation and on test.
    assert min(val_rmse) < 0.8 * val_rmse[0], val_rmse
    assert result.metrics["test_rmse"] < 0.8 * result.metrics["mean_shape_rmse"], result.metrics


def test_time_limit_stops_inside_an_epoch(data_dir: Path, tmp_path: Path) -> None:
    result = train_run(tiny_config(data_dir, tmp_path, epochs=50, max_minutes=1e-6))
    assert result.metrics["stop_reason"] == "time-limited"
    assert result.metrics["epochs_run"] == 1
    assert result.metrics["convergence"]["converged"] is False


def test_autoencoder_arch_runs_both_phases(data_dir: Path, tmp_path: Path) -> None:
    arch = next(name for name in list_models() if get_arch_info(name).pretrain == "autoencoder")
    result = train_run(tiny_config(data_dir, tmp_path, arch=arch, epochs=1, ae_pretrain_epochs=2))
    phases = [row["phase"] for row in read_history(result.run_dir)]
    assert phases == ["pretrain", "pretrain", "keypoints"]
    assert result.metrics["pretrain_epochs_run"] == 2 and result.metrics["epochs_run"] == 1


def test_frozen_backbone_is_left_unchanged(data_dir: Path, tmp_path: Path) -> None:
    pretrained = create_model("test-mobilenetv2", num_outputs=30, in_chans=1)
    weights_file = tmp_path / "backbone.pt"
    torch.save(pretrained.backbone.state_dict(), weights_file)

    result = train_run(
        tiny_config(
            data_dir,
            tmp_path,
            arch="test-mobilenetv2",
            epochs=1,
            weights=weights_file,
            weights_mode="frozen",
        )
    )
    assert result.run_name == "test-mobilenetv2--none--frozen"
    assert result.metrics["weights_mode"] == "frozen"
    trained, config = runs.load_model(result.run_dir)
    assert config["weights"]["path"] == str(weights_file)
    for key, value in pretrained.backbone.state_dict().items():
        torch.testing.assert_close(
            trained.backbone.state_dict()[key], value, rtol=0, atol=0, msg=f"backbone {key} changed"
        )
    head_changed = any(
        not torch.equal(value, pretrained.head.state_dict()[key])
        for key, value in trained.head.state_dict().items()
    )
    assert head_changed


def test_backbone_arch_without_weights_is_scratch_loudly(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Not quiet, so the progress display runs too.
    result = train_run(
        tiny_config(data_dir, tmp_path, arch="test-mobilenetv2", epochs=1, quiet=False)
    )
    assert (
        result.run_name == "test-mobilenetv2--none" and result.metrics["weights_mode"] == "scratch"
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "SCRATCH" in err and "test RMSE" in err


def test_bad_inputs_fail_with_one_line_naming_the_problem(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        train_run(tiny_config(tmp_path / "nowhere", tmp_path))
    with pytest.raises(RunError, match="unknown architecture 'nope'"):
        train_run(tiny_config(data_dir, tmp_path, arch="nope"))
    with pytest.raises(RunError, match="unknown data variant 'nope'"):
        train_run(tiny_config(data_dir, tmp_path, variant="nope"))
    missing = tmp_path / "missing-weights.pt"
    with pytest.raises(RunError, match=str(missing)):
        train_run(tiny_config(data_dir, tmp_path, arch="test-mobilenetv2", weights=missing))
    # Every architecture's backbone takes weights (fkdbench pretrain makes them for any).
    with pytest.raises(RunError, match="no such weights file"):
        train_run(tiny_config(data_dir, tmp_path, weights=missing))
    bad_weights = tmp_path / "bad-weights.pt"
    bad_weights.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=str(bad_weights)):
        train_run(tiny_config(data_dir, tmp_path, arch="test-mobilenetv2", weights=bad_weights))


# -- the loop's pure pieces -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "total_steps", "expected"),
    [
        # 100 planned steps: 5 of linear warm-up, reaching the peak on the fifth.
        (0, 100, 0.2),
        (1, 100, 0.4),
        (4, 100, 1.0),
        # The cosine starts at the peak, is halfway at its middle, ends at the floor.
        (5, 100, 1.0),
        (5 + 50, 105, FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5),
        (100, 100, FINAL_LR_FRACTION),
        # Past the plan (a resumed run with more epochs) it stays at the floor.
        (250, 100, FINAL_LR_FRACTION),
        # A plan too short to warm up still starts at the peak: one warm-up step at least.
        (0, 3, 1.0),
    ],
)
def test_learning_rate_schedule(step: int, total_steps: int, expected: float) -> None:
    assert learning_rate_at(step, total_steps, peak_lr=1.0) == pytest.approx(expected, abs=1e-12)
    assert learning_rate_at(step, total_steps, peak_lr=3e-3) == pytest.approx(
        3e-3 * expected, abs=1e-15
    )


def test_learning_rate_rises_then_falls_monotonically() -> None:
    rates = [learning_rate_at(step, 200, 1.0) for step in range(201)]
    warmup = 10  # 5% of 200
    assert rates[:warmup] == sorted(rates[:warmup])
    assert rates[warmup - 1 :] == sorted(rates[warmup - 1 :], reverse=True)


def test_masked_mse_counts_labelled_coordinates_only() -> None:
    predicted = torch.zeros(1, 3, 2, requires_grad=True)
    target = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [2.0, 0.0]]])
    mask = torch.tensor([[True, False, True]])
    loss = masked_mse(predicted, target, mask)
    # (1 + 1 + 4 + 0) / 4 labelled coordinates; the unlabelled 3s would make it 4.5.
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert torch.equal(predicted.grad[0, 1], torch.zeros(2)), "masked keypoint has no gradient"
    assert predicted.grad[0, 0].abs().sum() > 0


def test_masked_mse_of_an_all_masked_batch_is_zero_not_nan() -> None:
    predicted = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(0))
    loss = masked_mse(predicted, torch.ones(2, 4, 2), torch.zeros(2, 4, dtype=torch.bool))
    assert loss.item() == 0.0


# -- the train command's entry point ---------------------------------------------------------


def _command(data_dir: Path, runs_dir: Path, **changes) -> dict:
    """run_training's keyword arguments as the CLI passes them, with nothing overridden."""
    arguments = dict(
        all_runs=False,
        preset="quick",
        variant="none",
        data_dir=data_dir,
        runs_dir=runs_dir,
        weights=None,
        weights_mode="finetuned",
        spec=None,
        device="cpu",
        num_threads=1,
        force=False,
        quiet=True,
    )
    return {**arguments, **changes}


def _capture_train_run(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    configs: list[TrainConfig] = []

    def record(config: TrainConfig) -> train.RunResult:
        configs.append(config)
        return train.RunResult(config.arch, config.runs_dir, config.arch, config.variant,
                               "scratch", "finished")  # fmt: skip

    monkeypatch.setattr(train_matrix_module, "train_run", record)
    return configs


def test_run_training_checks_its_arguments(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^give either ARCH or --all, not both$"):
        run_training(SMALL_ARCH, **_command(data_dir, tmp_path, all_runs=True))
    with pytest.raises(
        ValueError, match=r"^name an architecture \(e.g. cnn-manual\) or use --all$"
    ):
        run_training(None, **_command(data_dir, tmp_path))


def test_run_training_overrides_only_what_is_given(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = _capture_train_run(monkeypatch)
    spec = tmp_path / "spec.json"
    run_training(
        "cnn-tuned", **_command(data_dir, tmp_path, variant="masked", spec=spec), epochs=2, lr=None
    )
    (config,) = configs
    defaults = TrainConfig()
    assert (config.arch, config.variant, config.epochs) == ("cnn-tuned", "masked", 2)
    # Not given: the dataclass's defaults, not None.
    assert config.lr == defaults.lr and config.patience == defaults.patience
    assert config.batch_size == defaults.batch_size
    assert config.model_kwargs == {"spec": str(spec)}
    assert (config.data_dir, config.runs_dir, config.num_threads) == (data_dir, tmp_path, 1)


def test_run_training_all_takes_the_presets_settings_under_the_given_ones(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = _capture_train_run(monkeypatch)
    preset_file = tmp_path / "two.json"
    preset_file.write_text(
        json.dumps(
            {
                "name": "two",
                "defaults": {"epochs": 3, "batch_size": 8, "lr": 0.01},
                "runs": [{"arch": SMALL_ARCH, "variants": ["none", "masked"], "epochs": 5}],
            }
        )
    )
    arguments = _command(data_dir, tmp_path, all_runs=True, preset=str(preset_file))
    results = run_training(None, **arguments, batch_size=4, seed=None)
    assert [result.variant for result in results] == ["none", "masked"]
    assert [(c.epochs, c.batch_size, c.lr, c.seed) for c in configs] == [(5, 4, 0.01, 0)] * 2
    assert all(c.quiet and c.device == "cpu" and c.num_threads == 1 for c in configs)


def test_run_training_trains_one_run(data_dir: Path, tmp_path: Path) -> None:
    (result,) = run_training(SMALL_ARCH, **_command(data_dir, tmp_path), epochs=1, batch_size=8)
    assert result.status == "finished" and result.run_dir == tmp_path / f"{SMALL_ARCH}--none"
    assert runs.read_config(result.run_dir)["train"]["epochs"] == 1


def test_run_training_with_seeds_trains_one_named_run_per_seed(
    data_dir: Path, tmp_path: Path
) -> None:
    results = run_training(
        SMALL_ARCH, **_command(data_dir, tmp_path), epochs=1, batch_size=8, seed=4, seeds=2
    )
    assert [result.status for result in results] == ["finished", "finished"]
    assert [result.run_dir.name for result in results] == [
        f"{SMALL_ARCH}--none--s4",
        f"{SMALL_ARCH}--none--s5",
    ]
    assert [runs.read_metrics(result.run_dir)["seed"] for result in results] == [4, 5]
    first, second = (runs.read_metrics(result.run_dir)["test_rmse"] for result in results)
    assert first != second, "each seed trains its own model"


def test_the_matrix_expands_the_presets_seeds(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = _capture_train_run(monkeypatch)
    preset_file = tmp_path / "seeded.json"
    preset_file.write_text(
        json.dumps(
            {
                "name": "seeded",
                "seeds": 2,
                "runs": [{"arch": SMALL_ARCH, "variants": ["none", "knn"]}],
            }
        )
    )
    train_matrix(preset_file, data_dir=data_dir, runs_dir=tmp_path, quiet=True)
    assert [(c.variant, c.seed, c.seed_in_name) for c in configs] == [
        ("none", 0, True),
        ("none", 1, True),
        ("knn", 0, True),
        ("knn", 1, True),
    ]
    configs.clear()
    train_matrix(preset_file, data_dir=data_dir, runs_dir=tmp_path, quiet=True, seeds=1)
    assert [(c.variant, c.seed_in_name) for c in configs] == [("none", False), ("knn", False)]


def test_mixed_precision_is_bfloat16_on_cuda_that_has_it_and_float32_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fkdbench.train.loop import autocast_for, precision_of

    cpu = torch.device("cpu")
    assert precision_of(cpu) == "float32"
    with autocast_for(cpu):
        assert not torch.is_autocast_enabled("cpu")
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision_of(cuda).startswith("bfloat16 autocast")
    context = autocast_for(cuda)
    assert isinstance(context, torch.autocast)
    assert context.fast_dtype == torch.bfloat16 and context.device == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision_of(cuda) == "float32"  # e.g. a V100 or T4: float32, as stated
