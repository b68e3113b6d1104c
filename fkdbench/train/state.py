"""What a run keeps between epochs: the resume state ``last.pt``, ``history.csv`` and the
best epoch's ``model.pt``, and the settings a resumed run must share with the first one."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fkdbench import runs
from fkdbench.config import FREE_ON_RESUME, TrainConfig
from fkdbench.data.splits import MANIFEST_NAME
from fkdbench.io import plain, sha256_file, write_text_atomic
from fkdbench.models import get_arch_info, list_models
from fkdbench.train.loop import Progress
from fkdbench.train.result import RunError

# Columns of history.csv, in order.
HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "train_loss",
    "val_rmse",
    "lr",
    "seconds",
    "images_per_second",
)


@dataclass
class Trainables:
    """What ``last.pt`` saves besides :class:`Progress`: modules, optimisers, random streams."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    # The autoencoder of the pretrain phase (ae-cnn), else None.
    pretrainer: nn.Module | None
    pretrain_optimizer: torch.optim.Optimizer | None
    # Shuffles and augments; the global torch RNG (dropout) is saved beside it.
    generator: torch.Generator
    device: torch.device


def settings_fingerprint(
    config: TrainConfig,
    model_kwargs: dict[str, Any],
    weights_mode: str,
    weights_record: dict[str, Any] | None,
) -> dict[str, Any]:
    """The settings a resumed or skipped run must share with the first one (plain Python)."""
    return _fingerprint(
        plain(dataclasses.asdict(config)),
        model_kwargs,
        weights_mode,
        weights_record["sha256"] if weights_record else None,
        sha256_file(Path(config.data_dir) / MANIFEST_NAME),
    )


def recorded_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The :func:`settings_fingerprint` of a run, rebuilt from its ``config.json``."""
    # A field added to TrainConfig after the run was trained had its default then.
    train_fields = {**plain(dataclasses.asdict(TrainConfig())), **record.get("train", {})}
    weights = record.get("weights")
    return _fingerprint(
        train_fields,
        record.get("model", {}).get("kwargs", {}),
        record.get("weights_mode"),
        weights.get("sha256") if isinstance(weights, dict) else None,
        record.get("data", {}).get("manifest_sha256"),
    )


def _fingerprint(
    train_fields: dict[str, Any],
    model_kwargs: dict[str, Any],
    weights_mode: str | None,
    weights_sha256: str | None,
    manifest_sha256: str | None,
) -> dict[str, Any]:
    """The one definition of a run's settings, whether from a config or from config.json."""
    settings = {key: value for key, value in train_fields.items() if key not in FREE_ON_RESUME}
    settings["weights"] = weights_sha256
    settings["model_kwargs"] = json.dumps(model_kwargs, sort_keys=True)
    settings["weights_mode"] = weights_mode
    settings["manifest_sha256"] = manifest_sha256
    return settings


def setting_differences(saved: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """``"<setting> <old> -> <new>"`` for each difference that changes what the run
    computes, the data's checksum first."""
    keys = set(settings) | set(saved)
    keys -= _unused_settings(settings)
    keys = sorted(keys, key=lambda key: (key != "manifest_sha256", key))
    return [
        f"{_SETTING_LABELS.get(key, key)} {_short(saved.get(key))} -> {_short(settings.get(key))}"
        for key in keys
        if settings.get(key) != saved.get(key)
    ]


def _unused_settings(settings: dict[str, Any]) -> set[str]:
    """Settings the run's architecture and variant never read: a difference in them is
    none (a preset's ae_pretrain_epochs does not make a cnn-manual run stale)."""
    unused = set()
    arch = settings.get("arch")
    if arch in list_models(include_tests=True) and get_arch_info(arch).pretrain != "autoencoder":
        unused.add("ae_pretrain_epochs")
    if settings.get("variant") != "aug":
        unused.add("augment_copies")
    if settings.get("weights_mode") != "finetuned":
        unused.add("backbone_lr_scale")
    return unused


_SETTING_LABELS = {
    "manifest_sha256": "data (manifest.json sha256)",
    "weights": "weights file sha256",
}


def _short(value: Any, limit: int = 40) -> str:
    """A setting for a one-line message: checksums and specs are cut, not printed whole."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_finished_settings(folder: Path, name: str, settings: dict[str, Any]) -> None:
    """Refuse to skip a finished run whose config.json records other settings or data."""
    differences = setting_differences(recorded_settings(runs.read_config(folder)), settings)
    if differences:
        raise RunError(
            f"{name}: finished with other settings ({differences[0]}); train with --force to "
            "replace it, or use another --runs-dir"
        )


def save_resume_state(
    path: Path, settings: dict[str, Any], progress: Progress, trainables: Trainables
) -> None:
    """Write ``last.pt``: everything :func:`restore_resume_state` puts back."""
    in_pretrain = progress.phase == "pretrain"
    pretrainer, pretrain_optimizer = trainables.pretrainer, trainables.pretrain_optimizer
    runs.save_checkpoint(
        path,
        {
            "format_version": runs.RUN_FORMAT_VERSION,
            "settings": settings,
            "progress": dataclasses.asdict(progress),
            "model": trainables.model.state_dict(),
            "optimizer": trainables.optimizer.state_dict(),
            "pretrainer": pretrainer.state_dict() if in_pretrain else None,
            "pretrain_optimizer": pretrain_optimizer.state_dict() if in_pretrain else None,
            "generator": trainables.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all()
            if trainables.device.type == "cuda"
            else None,
        },
    )


def restore_resume_state(path: Path, settings: dict[str, Any], trainables: Trainables) -> Progress:
    """Put model, optimisers and random streams back where ``last.pt`` left them."""
    payload = runs.load_checkpoint(path)
    _check_same_settings(path, settings, payload.get("settings", {}))
    try:
        progress = Progress(**payload["progress"])
        trainables.model.load_state_dict(payload["model"])
        trainables.optimizer.load_state_dict(payload["optimizer"])
        if progress.phase == "pretrain" and trainables.pretrainer is not None:
            trainables.pretrainer.load_state_dict(payload["pretrainer"])
            trainables.pretrain_optimizer.load_state_dict(payload["pretrain_optimizer"])
        trainables.generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        if trainables.device.type == "cuda" and payload.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise runs.CheckpointError(f"{path}: not a resume state of this run ({error})") from None
    return progress


def _check_same_settings(path: Path, settings: dict[str, Any], saved: dict[str, Any]) -> None:
    differences = setting_differences(saved, settings)
    if differences:
        raise RunError(
            f"{path}: an unfinished run with other settings ({', '.join(differences[:3])}); "
            "train with force to start it again"
        )


def track_best(
    progress: Progress, val_rmse: float, epoch: int, model: nn.Module, folder: Path
) -> None:
    """Keep the best epoch's weights in model.pt and count epochs without improvement."""
    best = progress.best_val_rmse
    if math.isfinite(val_rmse) and (best is None or val_rmse < best):
        progress.best_val_rmse, progress.best_epoch, progress.epochs_since_best = val_rmse, epoch, 0
        runs.save_checkpoint(folder / runs.MODEL_FILE, cpu_state_dict(model))
    else:
        progress.epochs_since_best += 1


def cpu_state_dict(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """history.csv: one row per epoch and phase; an undefined value (NaN) is empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(
            {
                key: "" if isinstance(value, float) and math.isnan(value) else value
                for key, value in row.items()
            }
        )
    write_text_atomic(path, buffer.getvalue())
