"""The run folder: names, files, checkpoints read only with weights_only, and the layouts
of config.json and metrics.json. No training here: folders are written by hand."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.data.augment import AugmentConfig
from fkdbench.data.schemes import KAGGLE15
from fkdbench.models import count_parameters, create_model
from fkdbench.models.cnn import DEFAULT_SPEC_PATH, variant_spec_path

IMAGE_SIZE = 48


def _model_folder(folder: Path, arch: str = "cnn-manual", seed: int = 0) -> tuple[Path, dict]:
    """A run folder with config.json (model section only) and model.pt, as train writes."""
    kwargs = runs.resolve_model_kwargs({}, arch, IMAGE_SIZE)
    model_section = runs.model_record(arch, KAGGLE15, IMAGE_SIZE, kwargs)
    torch.manual_seed(seed)
    model = runs.build_model(model_section)
    folder.mkdir(parents=True)
    runs.save_checkpoint(folder / runs.MODEL_FILE, model.state_dict())
    (folder / runs.CONFIG_FILE).write_text(
        json.dumps({"run_name": folder.name, "model": model_section})
    )
    return folder, model_section


def test_run_names_say_arch_variant_and_weights() -> None:
    assert runs.run_name("cnn-manual", "masked") == "cnn-manual--masked"
    assert runs.run_name("resnet50", "aug", "frozen") == "resnet50--aug--frozen"
    assert runs.run_dir(Path("r"), "resnet50", "aug", "finetuned") == Path(
        "r/resnet50--aug--finetuned"
    )
    with pytest.raises(ValueError, match="unknown weights mode 'warm'"):
        runs.run_name("resnet50", "aug", "warm")
    assert runs.untrained_run_name("ae-cnn") == "ae-cnn--untrained"
    # One of several seeds names its seed; a single-seed run keeps the plain name.
    assert runs.run_name("resnet50", "aug", "frozen", seed=3) == "resnet50--aug--frozen--s3"
    assert runs.run_dir(Path("r"), "cnn-manual", "none", seed=0) == Path("r/cnn-manual--none--s0")
    seeded = TrainConfig(arch="cnn-manual", variant="knn", seed=7, seed_in_name=True)
    assert runs.config_run_name(seeded, "scratch") == "cnn-manual--knn--s7"
    assert runs.config_run_name(TrainConfig(arch="cnn-manual", seed=7), "scratch") == (
        "cnn-manual--none"
    )
    assert runs.tuned_best_file(Path("r"), "knn") == Path("r/tune/cnn-tuned-knn/best.json")


def test_a_run_is_finished_once_metrics_weights_and_config_are_there(tmp_path: Path) -> None:
    folder, _ = _model_folder(tmp_path / "cnn-manual--none")
    assert not runs.is_finished(folder) and runs.finished_runs(tmp_path) == []
    (folder / runs.METRICS_FILE).write_text("{}")
    assert runs.is_finished(folder) and runs.finished_runs(tmp_path) == [folder]
    assert runs.finished_runs(tmp_path / "absent") == []
    assert runs.find_run(tmp_path, "cnn-manual--none") == folder
    assert runs.find_run(tmp_path, str(folder)) == folder
    with pytest.raises(runs.CheckpointError, match="no such run"):
        runs.find_run(tmp_path, "nope--none")


def test_load_model_rebuilds_the_saved_model_exactly(tmp_path: Path) -> None:
    folder, model_section = _model_folder(tmp_path / "run")
    torch.manual_seed(0)
    original = runs.build_model(model_section).eval()
    loaded, config = runs.load_model(folder)
    assert config["model"] == model_section and not loaded.training
    images = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), original(images), rtol=0, atol=0)


def test_bad_run_files_raise_checkpoint_error_naming_the_file(tmp_path: Path) -> None:
    folder, _ = _model_folder(tmp_path / "run")
    weights = folder / runs.MODEL_FILE
    full = weights.read_bytes()
    weights.write_bytes(full[:100])
    with pytest.raises(runs.CheckpointError, match=f"{weights}: not a readable checkpoint"):
        runs.load_model(folder)
    with pytest.raises(runs.CheckpointError, match="no such checkpoint"):
        runs.load_checkpoint(tmp_path / "absent.pt")
    torch.save([1, 2], weights)
    with pytest.raises(runs.CheckpointError, match="expected a dict of tensors, got list"):
        runs.load_checkpoint(weights)
    # Weights of another architecture do not fit.
    other, _ = _model_folder(tmp_path / "other", arch="cnn-baseline")
    weights.write_bytes((other / runs.MODEL_FILE).read_bytes())
    with pytest.raises(runs.CheckpointError, match=f"{weights}: does not fit cnn-manual"):
        runs.load_model(folder)
    (folder / runs.CONFIG_FILE).write_text("{}")
    with pytest.raises(runs.CheckpointError, match="no 'model' section"):
        runs.load_model(folder)
    (folder / runs.CONFIG_FILE).write_text('{"model": {"arch": "cnn-manual", "in_chans": 1}}')
    with pytest.raises(runs.CheckpointError, match="section lacks num_outputs, input_size"):
        runs.load_model(folder)


def test_checkpoints_refuse_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "thing": Path("x")}, path)
    with pytest.raises(runs.CheckpointError, match=str(path)):
        runs.load_checkpoint(path)


def test_resolved_kwargs_rebuild_a_spec_model_without_its_file() -> None:
    kwargs = runs.resolve_model_kwargs({"spec": str(DEFAULT_SPEC_PATH)}, "cnn-tuned", IMAGE_SIZE)
    assert isinstance(kwargs["spec"], dict) and kwargs["input_size"] == IMAGE_SIZE
    assert json.loads(json.dumps(kwargs)) == kwargs, "plain JSON"
    assert runs.resolve_model_kwargs({}, "mobilenetv2", IMAGE_SIZE) == {}


def test_choose_spec_prefers_given_then_tuned_then_the_package_default(tmp_path: Path) -> None:
    given = {"spec": str(tmp_path / "mine.json")}
    assert runs.choose_spec(given, "cnn-tuned", "masked", tmp_path) == (given, str(given["spec"]))
    kwargs, source = runs.choose_spec({}, "cnn-tuned", "masked", tmp_path)
    assert kwargs["spec"] == str(variant_spec_path("masked"))
    assert "package's tuned default for masked" in source and "trial" in source
    kwargs, source = runs.choose_spec({}, "cnn-tuned", "knn", tmp_path)
    assert kwargs["spec"] == str(DEFAULT_SPEC_PATH) and "no tune" in source
    tuned = runs.tuned_best_file(tmp_path, "knn")
    tuned.parent.mkdir(parents=True)
    tuned.write_text(json.dumps({"study": "cnn-tuned-knn", "trial": 7}))
    kwargs, source = runs.choose_spec({}, "cnn-tuned", "knn", tmp_path)
    assert kwargs["spec"] == str(tuned)
    assert "this runs directory's tune" in source and "(study cnn-tuned-knn, trial 7)" in source
    assert runs.choose_spec({}, "cnn-manual", "masked", tmp_path) == ({}, None)


def test_config_record_layout() -> None:
    config = TrainConfig(arch="cnn-manual", variant="aug", data_dir="d", epochs=2)
    data = runs.data_record(
        data_dir=Path("d"),
        manifest={"seed": 3, "source": "synthetic", "other": "not copied"},
        manifest_sha256="ab" * 32,
        scheme=KAGGLE15,
        image_size=IMAGE_SIZE,
        train_split_rows=10,
        train_rows=30,
        val_rows=4,
        test_rows=5,
        variant_summary={"copies": 2},
        online_augmentation=False,
        augment=AugmentConfig(),
    )
    assert data["rows"] == {"train_split": 10, "train_used": 30, "val_used": 4, "test_used": 5}
    assert (data["seed"], data["source"], data["scheme"]) == (3, "synthetic", "kaggle15")
    assert data["augment"] == json.loads(json.dumps(dataclasses.asdict(AugmentConfig())))
    model = runs.model_record("cnn-manual", KAGGLE15, IMAGE_SIZE, {})
    record = runs.config_record(
        run_name="cnn-manual--aug",
        weights_mode="scratch",
        model=model,
        train=config,
        weights=None,
        data=data,
        optimisation={"loss": "x"},
    )
    assert set(record) == {
        "format_version", "run_name", "weights_mode", "model", "train", "weights", "data",
        "optimisation", "environment",
    }  # fmt: skip
    assert record["format_version"] == runs.RUN_FORMAT_VERSION
    assert record["train"]["epochs"] == 2 and record["train"]["data_dir"] == "d"
    assert json.loads(json.dumps(record)) == record, "plain JSON"


def test_metrics_record_layout(tmp_path: Path) -> None:
    model = create_model("cnn-manual", num_outputs=30, in_chans=1)
    model_file = tmp_path / runs.MODEL_FILE
    runs.save_checkpoint(model_file, model.state_dict())
    arguments = dict(
        run_name="cnn-manual--none",
        arch="cnn-manual",
        variant="none",
        weights_mode="scratch",
        recipe=["heatmap", "flip"],
        scores={"test_rmse": 1.5, "mean_shape_rmse": 2.0},
        best_val_rmse=float("nan"),
        best_epoch=None,
        epochs_run=3,
        pretrain_epochs_run=0,
        stop_reason="completed",
        convergence={"converged": True, "rule": "r", "detail": "d"},
        seed=4,
        parameters=count_parameters(model),
        model_file=model_file,
        train_rows=20,
        val_rows=4,
        test_rows=5,
    )
    record = runs.metrics_record(**arguments)
    assert record["recipe"] == ["heatmap", "flip"]
    assert record["test_rmse"] == 1.5 and record["mean_shape_rmse"] == 2.0
    assert record["best_val_rmse"] is None, "JSON has no NaN"
    assert record["pretrain"] is None and record["format_version"] == runs.RUN_FORMAT_VERSION
    assert record["model_file_bytes"] == model_file.stat().st_size
    assert record["parameters"]["pytorch"] == count_parameters(model).pytorch
    assert record["rows"] == {"train": 20, "val": 4, "test": 5}
    assert record["seed"] == 4 and record["convergence"]["converged"] is True
    # Nothing that depends on the machine: that is training.json's.
    assert not {"environment", "training_seconds"} & set(record)
    with pytest.raises(ValueError, match="unknown stop reason 'time-limit'"):
        runs.metrics_record(**{**arguments, "stop_reason": "time-limit"})


def test_training_record_holds_what_depends_on_the_machine() -> None:
    history = [
        {"phase": "pretrain", "images_per_second": 1000.0},
        {"phase": "keypoints", "images_per_second": 10.0},
        {"phase": "keypoints", "images_per_second": 30.0},
    ]
    record = runs.training_record(run_name="a--none", training_seconds=2.5, history=history)
    assert record["format_version"] == runs.RUN_FORMAT_VERSION and record["run_name"] == "a--none"
    assert record["training_seconds"] == 2.5
    assert record["images_per_second"] == 20.0, "the keypoint phase's mean"
    assert "cpu_model" in record["environment"] and "load_average" in record["environment"]
    assert runs.mean_images_per_second([]) is None


def test_old_runs_are_read_under_the_current_layout(tmp_path: Path) -> None:
    """A format-1 run: seconds and environment in metrics.json, "time-limit", no
    convergence, no training.json."""
    folder = tmp_path / "cnn-manual--none"
    folder.mkdir()
    old = {
        "format_version": 1,
        "run_name": folder.name,
        "stop_reason": "time-limit",
        "training_seconds": 12.5,
        "environment": {"cpu_model": "Old CPU"},
    }
    (folder / runs.METRICS_FILE).write_text(json.dumps(old))
    (folder / runs.HISTORY_FILE).write_text(
        "epoch,phase,train_loss,val_rmse,lr,seconds,images_per_second\n"
        "1,keypoints,0.5,3.0,0.001,1.0,40.0\n2,keypoints,0.4,2.0,0.001,1.0,60.0\n"
    )
    training = runs.read_training(folder)
    assert training["training_seconds"] == 12.5 and training["images_per_second"] == 50.0
    assert training["environment"] == {"cpu_model": "Old CPU"}
    assert runs.stop_reason_of(old) == "time-limited"
    assert runs.stop_reason_of({"stop_reason": "completed"}) == "completed"
    assert runs.stop_reason_of({}) is None
    convergence = runs.convergence_of(old)
    assert convergence["converged"] is False and convergence["detail"].startswith("unknown")
    recorded = {"converged": True, "rule": "r", "detail": "d"}
    assert runs.convergence_of({"convergence": recorded}) == recorded
    # A new run's training.json wins over anything in metrics.json.
    (folder / runs.TRAINING_FILE).write_text(json.dumps({"training_seconds": 1.0}))
    assert runs.read_training(folder)["training_seconds"] == 1.0


def test_finite_or_none() -> None:
    assert runs.finite_or_none(2) == 2.0 and isinstance(runs.finite_or_none(2), float)
    for undefined in (None, math.nan, math.inf, -math.inf):
        assert runs.finite_or_none(undefined) is None


def test_first_line_keeps_errors_to_one_short_line() -> None:
    assert runs.first_line(RuntimeError("one\ntwo")) == "one"
    assert runs.first_line(RuntimeError("")) == "RuntimeError"
    long = runs.first_line(RuntimeError("x" * 500), limit=20)
    assert len(long) == 20 and long.endswith("...")
