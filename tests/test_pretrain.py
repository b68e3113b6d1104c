"""fkdbench pretrain: a checkpoint made here that train loads (frozen and fine-tuned), its
cache by recipe checksum, its records, and the refusals (a bad step, an --out that holds
other weights, timm's tags offline), each one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from typer.testing import CliRunner

from fkdbench import runs
from fkdbench.cli import app
from fkdbench.config import TrainConfig
from fkdbench.data.splits import load_split
from fkdbench.models import create_model, load_backbone_weights
from fkdbench.pretrain import (
    PretrainError,
    PretrainOptions,
    cache,
    install,
    options_from_preset,
    plan,
    pretrain,
)
from fkdbench.pretrain.methods import hide_patches
from fkdbench.train import train_run

pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def _options(data_dir: Path, runs_dir: Path, **changes) -> PretrainOptions:
    settings_ = dict(
        arch="cnn-manual", method="synthetic-landmarks", data_dir=data_dir, runs_dir=runs_dir,
        epochs=1, faces=16, batch_size=8, num_threads=1, quiet=True,
    )  # fmt: skip
    return PretrainOptions(**{**settings_, **changes})


def _train(data_dir: Path, runs_dir: Path, **changes) -> TrainConfig:
    settings_ = dict(
        arch="cnn-manual", variant="none", data_dir=data_dir, runs_dir=runs_dir, epochs=1,
        batch_size=16, device="cpu", quiet=True, num_threads=1,
    )  # fmt: skip
    return TrainConfig(**{**settings_, **changes})


@pytest.fixture(scope="module")
def checkpoints(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder whose cache holds cnn-manual's checkpoints by both methods."""
    runs_dir = tmp_path_factory.mktemp("pretrain-runs")
    for method in ("synthetic-landmarks", "autoencoder"):
        assert not pretrain(_options(tiny_dataset, runs_dir, method=method)).reused
    return runs_dir


@pytest.mark.parametrize("method", ["synthetic-landmarks", "autoencoder"])
def test_a_checkpoint_holds_the_backbone_under_its_own_names(
    checkpoints: Path, tiny_dataset: Path, method: str
) -> None:
    result = pretrain(_options(tiny_dataset, checkpoints, method=method))
    assert result.reused
    tensors = load_file(str(result.weights))
    model = create_model("cnn-manual", input_size=96)
    assert set(tensors) == set(model.backbone.state_dict())
    report = load_backbone_weights(model, result.weights)
    assert report.missing == () and report.ignored == ()
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, tensors[name])
    record = json.loads((result.weights.parent / cache.RECORD_FILE).read_text())
    assert record["recipe"]["method"] == method and record["not_imagenet"] is True
    assert record["weights_sha256"] == runs.io.sha256_file(result.weights)
    assert record["epoch_losses"] and record["seconds"] > 0 and record["environment"]
    if method == "autoencoder":
        # Never the validation or test faces: the train split (and unlabelled, if any).
        train = len(load_split(tiny_dataset, "train"))
        assert record["data_read"]["splits"] == ["train", "unlabelled"]
        assert record["data_read"]["images"] == train + 12


def test_the_cache_is_reused_and_another_recipe_is_another_checkpoint(
    checkpoints: Path, tiny_dataset: Path
) -> None:
    first = pretrain(_options(tiny_dataset, checkpoints))
    stamp = first.weights.stat().st_mtime_ns
    again = pretrain(_options(tiny_dataset, checkpoints))
    assert again.reused and again.weights == first.weights
    assert again.weights.stat().st_mtime_ns == stamp
    other = pretrain(_options(tiny_dataset, checkpoints, seed=1))
    assert not other.reused and other.weights.parent != first.weights.parent


def test_an_edited_checkpoint_is_made_again_not_reused(tiny_dataset: Path, tmp_path: Path) -> None:
    first = pretrain(_options(tiny_dataset, tmp_path))
    original = first.weights.read_bytes()
    first.weights.write_bytes(original[:-8] + b"\0" * 8)
    again = pretrain(_options(tiny_dataset, tmp_path))
    assert not again.reused
    # Same seed, same data: the remade checkpoint has the first one's bytes.
    assert again.weights.read_bytes() == original


def test_a_checkpoint_made_elsewhere_is_installed_only_when_it_is_of_the_recipe(
    checkpoints: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    """A Ray worker's checkpoint comes back as the bytes of its cache folder."""
    made = pretrain(_options(tiny_dataset, checkpoints)).weights
    files = {path.name: path.read_bytes() for path in made.parent.iterdir()}
    planned = plan(_options(tiny_dataset, tmp_path))
    assert planned.folder.name == made.parent.name and planned.cached() is None
    damaged = {**files, cache.WEIGHTS_FILE: files[cache.WEIGHTS_FILE][:-1] + b"!"}
    with pytest.raises(PretrainError, match="damaged"):
        install(planned, damaged, {"host": "elsewhere"})
    with pytest.raises(PretrainError, match="another recipe"):
        install(plan(_options(tiny_dataset, tmp_path, seed=1)), files, {"host": "elsewhere"})
    with pytest.raises(PretrainError, match=f"came back without {cache.RECORD_FILE}"):
        install(planned, {cache.WEIGHTS_FILE: files[cache.WEIGHTS_FILE]}, {})
    with pytest.raises(PretrainError, match="is not JSON"):
        install(planned, {**files, cache.RECORD_FILE: b"{half"}, {})
    assert not planned.folder.exists()
    weights = install(planned, files, {"host": "elsewhere"})
    assert weights.read_bytes() == made.read_bytes()
    assert planned.cached()["made_on"] == {"host": "elsewhere"}
    again = pretrain(_options(tiny_dataset, tmp_path))
    assert again.reused and again.weights == weights


@pytest.mark.parametrize("mode", ["frozen", "finetuned"])
def test_train_starts_from_a_pretraining_step(
    checkpoints: Path, tiny_dataset: Path, tmp_path: Path, mode: str
) -> None:
    weights = pretrain(_options(tiny_dataset, checkpoints)).weights
    step = {"method": "synthetic-landmarks", "epochs": 1, "faces": 16, "batch_size": 8}
    runs_dir = tmp_path / "runs"
    (runs_dir / cache.PRETRAIN_DIR).mkdir(parents=True)
    # The cached checkpoint travels with the runs folder: the run reuses it.
    cached = weights.parent
    (runs_dir / cache.PRETRAIN_DIR / cached.name).symlink_to(cached, target_is_directory=True)
    result = train_run(_train(tiny_dataset, runs_dir, pretrain=step, weights_mode=mode))
    assert result.status == "finished", result.error
    assert result.run_name == f"cnn-manual--none--{mode}--pretrained-synthetic-landmarks"
    config = runs.read_config(result.run_dir)
    assert config["weights"]["sha256"] == runs.io.sha256_file(weights)
    assert config["weights"]["made_by"]["method"] == "synthetic-landmarks"
    assert runs.recipe_of(config) == ["pretrained-synthetic-landmarks"]
    model, _ = runs.load_model(result.run_dir)
    start = load_file(str(weights))
    backbone = model.backbone.state_dict()
    changed = [name for name in start if not torch.equal(backbone[name], start[name])]
    if mode == "frozen":
        # Head only: every backbone tensor, BatchNorm statistics included, is the checkpoint's.
        assert changed == []
    else:
        assert any(name.endswith("weight") for name in changed)


def test_frozen_training_changes_only_the_head(
    checkpoints: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    weights = pretrain(_options(tiny_dataset, checkpoints)).weights
    config = _train(tiny_dataset, tmp_path, weights=weights, weights_mode="frozen")
    result = train_run(config)
    assert result.status == "finished", result.error
    model, _ = runs.load_model(result.run_dir)
    fresh = create_model("cnn-manual", input_size=96)
    load_backbone_weights(fresh, weights)
    for name, tensor in fresh.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name
    head_before = create_model("cnn-manual", input_size=96).head.state_dict()
    assert any(
        not torch.equal(tensor, head_before[name])
        for name, tensor in model.head.state_dict().items()
    )


def _backbone_change(model: torch.nn.Module, weights: Path) -> float:
    """The summed absolute change of a trained model's backbone parameters from the
    checkpoint (not BatchNorm's running statistics, which move with the data, not the lr)."""
    start = create_model("cnn-manual", input_size=96)
    load_backbone_weights(start, weights)
    after = dict(model.backbone.named_parameters())
    with torch.no_grad():
        return sum(
            float((after[name] - tensor).abs().sum())
            for name, tensor in start.backbone.named_parameters()
        )


def test_a_lower_backbone_lr_moves_a_finetuned_backbone_less(
    checkpoints: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    weights = pretrain(_options(tiny_dataset, checkpoints)).weights
    change, folders = {}, {}
    for scale in (1.0, 0.01):
        runs_dir = tmp_path / f"scale-{scale}"
        config = _train(tiny_dataset, runs_dir, weights=weights, backbone_lr_scale=scale)
        result = train_run(config)
        assert result.status == "finished", result.error
        model, record = runs.load_model(result.run_dir)
        change[scale], folders[scale] = _backbone_change(model, weights), result.run_dir
        assert record["train"]["backbone_lr_scale"] == scale
    # AdamW's steps scale with the learning rate: a hundredth of it, about a hundredth the move.
    assert 0 < change[0.01] < 0.1 * change[1.0]
    assert "0.01 x the head's lr" in record["optimisation"]["backbone_lr"]
    # The scale is part of the run's recipe: its own folder and report row, set against
    # the same run at the full rate.
    assert folders[1.0].name == "cnn-manual--none--finetuned"
    assert folders[0.01].name == "cnn-manual--none--finetuned--backbone-lr0.01"
    metrics = json.loads((folders[0.01] / runs.METRICS_FILE).read_text())
    assert metrics["recipe"] == ["backbone-lr0.01"] == runs.recipe_of(record)
    assert runs.twin_recipe("finetuned", metrics["recipe"]) == ("finetuned", ())
    # Another scale beside a finished run trains its own folder and leaves that one alone.
    before = (folders[0.01] / runs.METRICS_FILE).read_bytes()
    other = _train(tiny_dataset, tmp_path / "scale-0.01", weights=weights, backbone_lr_scale=0.5)
    assert train_run(other).run_dir.name.endswith("--backbone-lr0.5")
    assert (folders[0.01] / runs.METRICS_FILE).read_bytes() == before


def test_the_backbone_lr_scale_is_checked_and_only_finetuning_reads_it(
    checkpoints: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    weights = pretrain(_options(tiny_dataset, checkpoints)).weights
    for bad in (0.0, 1.5, float("nan"), "0.1"):  # a preset's string: one line, no TypeError
        with pytest.raises(ValueError, match="backbone_lr_scale must be in \\(0, 1\\]"):
            train_run(_train(tiny_dataset, tmp_path, weights=weights, backbone_lr_scale=bad))
    assert list(tmp_path.iterdir()) == []
    frozen = _train(tiny_dataset, tmp_path, weights=weights, weights_mode="frozen")
    assert train_run(frozen).status == "finished"
    again = _train(
        tiny_dataset, tmp_path, weights=weights, weights_mode="frozen", backbone_lr_scale=0.1
    )
    assert train_run(again).status == "skipped"


def test_a_timm_backbone_is_pretrained_by_both_methods(tiny_dataset: Path, tmp_path: Path) -> None:
    for method in ("synthetic-landmarks", "autoencoder"):
        result = pretrain(_options(tiny_dataset, tmp_path, arch="test-mobilenetv2", method=method))
        model = create_model("test-mobilenetv2")
        report = load_backbone_weights(model, result.weights)
        assert report.missing == ()


def test_out_copies_the_checkpoint_and_never_replaces_other_weights(
    checkpoints: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mine.safetensors"
    result = pretrain(_options(tiny_dataset, checkpoints, out=out))
    assert result.out == out and out.read_bytes() == result.weights.read_bytes()
    beside = json.loads((tmp_path / "mine.pretrain.json").read_text())
    assert beside["recipe_sha256"] == result.record["recipe_sha256"]
    # The same recipe again: up to date, nothing refused.
    assert pretrain(_options(tiny_dataset, checkpoints, out=out)).out == out
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"the user's own weights")
    with pytest.raises(PretrainError, match="exists and holds other weights"):
        pretrain(_options(tiny_dataset, checkpoints, out=other))
    assert other.read_bytes() == b"the user's own weights"
    # A wrong name is refused before any work: no cache folder is made for it.
    with pytest.raises(PretrainError, match="written as .safetensors"):
        pretrain(_options(tiny_dataset, tmp_path / "fresh", out=tmp_path / "w.pt"))
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"method": "jigsaw"}, "unknown pretraining method 'jigsaw'"),
        ({"method": "autoencoder", "epoch": 2}, "unknown keys \\['epoch'\\]"),
        ({"epochs": 2}, "no 'method'"),
        ({"method": "autoencoder", "epochs": 0}, "pretrain epochs must be an integer >= 1"),
    ],
)
def test_a_bad_step_is_one_line_before_any_write(
    tiny_dataset: Path, tmp_path: Path, step: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train_run(_train(tiny_dataset, tmp_path, pretrain=step))
    assert list(tmp_path.iterdir()) == []


def test_a_step_and_a_weights_file_together_are_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(ValueError, match="not both"):
        train_run(_train(tiny_dataset, tmp_path, pretrain="autoencoder", weights=file))


def test_a_preset_step_may_be_a_method_name(tiny_dataset: Path, tmp_path: Path) -> None:
    options = options_from_preset("autoencoder", "cnn-manual", tiny_dataset, tmp_path)
    assert options.method == "autoencoder" and options.arch == "cnn-manual"


def test_timm_tags_offline_fail_at_once_with_one_line(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    arguments = [
        "train", "test-mobilenetv2", "--variant", "none", "--data", str(tiny_dataset),
        "--runs-dir", str(tmp_path), "--epochs", "1", "--weights", "timm:imagenet", "-q",
    ]  # fmt: skip
    outcome = CliRunner().invoke(app, arguments)
    assert outcome.exit_code == 1
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and "no download is possible" in lines[0]
    assert "--weights FILE" in lines[0]
    assert not (tmp_path / "test-mobilenetv2--none--finetuned").exists()
    # Fetched before: the kept file is used, no download; edited since: fetched again.
    from fkdbench.pretrain.timm_weights import timm_weights

    kept = tmp_path / cache.PRETRAIN_DIR / "test-mobilenetv2--timm-imagenet" / cache.WEIGHTS_FILE
    cache.save_weights(kept, create_model("test-mobilenetv2").backbone.state_dict(), "timm")
    record = {"method": "timm", "weights_sha256": runs.io.sha256_file(kept)}
    (kept.parent / cache.RECORD_FILE).write_text(json.dumps(record))
    assert timm_weights("test-mobilenetv2", "timm:imagenet", tmp_path) == kept
    kept.write_bytes(b"edited")
    with pytest.raises(PretrainError, match="no download is possible"):
        timm_weights("test-mobilenetv2", "timm:imagenet", tmp_path)
    # A backbone timm does not have: said as plainly, whatever the network.
    arguments[1] = "cnn-manual"
    outcome = CliRunner().invoke(app, arguments)
    assert outcome.exit_code == 1 and "not a timm model" in outcome.output


def test_cli_pretrain_then_train_from_its_out_file(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "backbone.out.safetensors"
    made = CliRunner().invoke(
        app,
        [
            "pretrain",
            "cnn-manual",
            "--method",
            "autoencoder",
            "--data",
            str(tiny_dataset),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "-q",
        ],  # fmt: skip
    )
    assert made.exit_code == 0, made.output
    assert str(out) in made.output and "made" in made.output
    trained = CliRunner().invoke(
        app,
        [
            "train",
            "cnn-manual",
            "--variant",
            "none",
            "--data",
            str(tiny_dataset),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--epochs",
            "1",
            "--weights",
            str(out),
            "--weights-mode",
            "frozen",
            "--threads",
            "1",
            "-q",
        ],  # fmt: skip
    )
    assert trained.exit_code == 0, trained.output
    config = runs.read_config(tmp_path / "runs" / "cnn-manual--none--frozen")
    assert config["weights"]["made_by"]["method"] == "autoencoder"


def test_hidden_patches_cover_about_the_fraction_asked() -> None:
    images = torch.zeros(64, 1, 96, 96)
    hidden = hide_patches(images, 0.5, torch.Generator().manual_seed(0))
    share = float((hidden == 0.5).float().mean())
    assert 0.4 < share < 0.6
    assert torch.equal(hide_patches(images, 0.0, torch.Generator()), images)


@settings(max_examples=40, deadline=None)
@given(content=st.binary(max_size=200))
def test_any_bytes_in_a_record_never_make_a_checkpoint_reusable(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    folder = tmp_path_factory.mktemp("record")
    weights = folder / cache.WEIGHTS_FILE
    weights.write_bytes(b"weights")
    (folder / cache.RECORD_FILE).write_bytes(content)
    assert cache.reusable(weights, "a" * 64) is None


@pytest.mark.slow
def test_a_preset_with_a_pretraining_step_runs_end_to_end(tmp_path: Path) -> None:
    """reproduce on a tiny preset: the step is made once, the pretrained row trains from
    it, is exported, timed in one bench call with its scratch twin, and reported beside
    it, its weights said not to be ImageNet's; a second call reuses everything."""
    step = {"method": "autoencoder", "epochs": 1, "batch_size": 8}
    preset = {
        "name": "tiny-pretrain",
        "description": "a scratch run and a frozen run from a backbone pretrained here",
        "defaults": {"epochs": 1, "batch_size": 8, "patience": None, "max_train_rows": 32},
        "runs": [
            {"arch": "cnn-manual", "variant": "none"},
            {"arch": "cnn-manual", "variant": "none", "pretrain": step, "weights_mode": "frozen"},
        ],
        "bench": {"repeats": 1, "latency_samples": 3, "time_untrained": False,
                  "backends": ["onnxruntime"]},
    }  # fmt: skip
    path = tmp_path / "tiny-pretrain.json"
    path.write_text(json.dumps(preset))
    results, runs_dir = tmp_path / "results", tmp_path / "runs"
    arguments = [
        "reproduce", "--preset", str(path), "--data-root", str(tmp_path / "data"),
        "--runs-dir", str(runs_dir), "--results-dir", str(results), "--n-train", "60",
        "--n-test", "6", "--quiet",
    ]  # fmt: skip
    outcome = CliRunner().invoke(app, arguments)
    assert outcome.exit_code == 0, outcome.output
    pretrained = "cnn-manual--none--frozen--pretrained-autoencoder"
    assert (runs_dir / pretrained / "model.onnx").is_file()
    (cached,) = (runs_dir / cache.PRETRAIN_DIR).iterdir()
    assert (cached / cache.WEIGHTS_FILE).is_file() and (cached / cache.RECORD_FILE).is_file()
    levers = pd.read_csv(results / "levers.csv")
    assert list(levers["model"]) == ["cnn-manual (frozen) + pretrained-autoencoder"]
    assert list(levers["twin"]) == ["cnn-manual"] and levers["same_bench_run"].all()
    report = (results / "REPORT.md").read_text()
    assert "not ImageNet" in report and "pretrained-autoencoder" in report
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0 and again.output.count(": skipped") == 2
    assert [path.name for path in (runs_dir / cache.PRETRAIN_DIR).iterdir()] == [cached.name]
