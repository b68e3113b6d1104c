"""TrainConfig: a leaf module of plain defaults that every other module can import."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import fkdbench.config
from fkdbench.config import FREE_ON_RESUME, TrainConfig, seeded_configs


def test_config_imports_nothing_of_fkdbench() -> None:
    """The leaf that breaks the presets <-> train cycle must stay a leaf."""
    tree = ast.parse(Path(fkdbench.config.__file__).read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if name.startswith("fkdbench")]


def test_paths_given_as_strings_become_paths() -> None:
    config = TrainConfig(data_dir="data/x", runs_dir="runs/y", weights="w.pth")
    assert config.data_dir == Path("data/x") and config.runs_dir == Path("runs/y")
    assert config.weights == Path("w.pth")
    assert TrainConfig().weights is None


def test_defaults() -> None:
    config = TrainConfig()
    assert (config.arch, config.variant, config.weights_mode) == (
        "cnn-baseline",
        "none",
        "finetuned",
    )
    assert (config.epochs, config.batch_size, config.lr, config.seed) == (30, 64, 1e-3, 0)
    assert (config.patience, config.ae_pretrain_epochs, config.augment_copies) == (10, 10, 3)
    assert config.model_kwargs == {} and config.model_kwargs is not TrainConfig().model_kwargs


def test_fields_free_on_resume_are_fields_that_change_no_result() -> None:
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    assert set(FREE_ON_RESUME) <= names
    # What the run computes depends on these: a resume must refuse to change them.
    for computed in ("arch", "variant", "epochs", "batch_size", "lr", "seed", "model_kwargs"):
        assert computed not in FREE_ON_RESUME


def test_seeded_configs_count_up_from_the_seed() -> None:
    base = TrainConfig(arch="cnn-manual", seed=10)
    assert seeded_configs(base, 1) == [base] and not base.seed_in_name
    seeded = seeded_configs(base, 3)
    assert [(c.seed, c.seed_in_name, c.arch) for c in seeded] == [
        (10, True, "cnn-manual"),
        (11, True, "cnn-manual"),
        (12, True, "cnn-manual"),
    ]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
            seeded_configs(base, bad)
