"""Where pretrained checkpoints live and how one is reused: a folder per recipe checksum
under ``<runs_dir>/pretrain/``, holding ``backbone.safetensors`` and ``pretrain.json``.

A folder is reused only when its ``pretrain.json`` names the same recipe checksum and the
weights file still has the sha256 it recorded; anything else (an edited file, a crash
before the record, another recipe) is made again. Folders are written whole or not at
all (``io.atomic_directory``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import Tensor

from fkdbench.io import (
    atomic_directory,
    atomic_path,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from fkdbench.pretrain.options import PretrainError

PRETRAIN_DIR = "pretrain"
WEIGHTS_FILE = "backbone.safetensors"
RECORD_FILE = "pretrain.json"
# Beside a checkpoint written with --out: <stem>.pretrain.json (two checkpoints may share
# a folder, so a bare pretrain.json there would be overwritten by the second).
OUT_RECORD_SUFFIX = ".pretrain.json"
# safetensors metadata key naming what made the file.
METADATA_KEY = "fkdbench.pretrain.recipe_sha256"


def cache_folder(runs_dir: Path, arch: str, method: str, checksum: str) -> Path:
    """``<runs_dir>/pretrain/<arch>--<method>--<first 12 of the checksum>``."""
    return Path(runs_dir) / PRETRAIN_DIR / f"{arch}--{method}--{checksum[:12]}"


def record_beside(weights: Path) -> Path:
    """The ``pretrain.json`` that describes a checkpoint file (cache or --out layout)."""
    weights = Path(weights)
    if weights.name == WEIGHTS_FILE:
        return weights.with_name(RECORD_FILE)
    return weights.with_name(weights.stem + OUT_RECORD_SUFFIX)


def read_record(weights: Path) -> dict[str, Any] | None:
    """The record beside ``weights`` if it is readable and still matches the file."""
    path = record_beside(weights)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not Path(weights).is_file():
        return None
    return record if record.get("weights_sha256") == sha256_file(weights) else None


def made_by(weights: Path) -> dict[str, Any] | None:
    """What a run's config.json says of a checkpoint fkdbench made: the method, the
    recipe checksum, and whether it is ImageNet; None for files of the user's."""
    record = read_record(weights)
    if record is None:
        return None
    keys = ("recipe_sha256", "method_description", "not_imagenet", "timm_model")
    return {
        "method": (record.get("recipe") or {}).get("method") or record.get("method"),
        **{key: record[key] for key in keys if key in record},
    }


def reusable(weights: Path, checksum: str) -> dict[str, Any] | None:
    """The record of ``weights`` when it holds the recipe ``checksum`` unchanged."""
    record = read_record(weights)
    return record if record and record.get("recipe_sha256") == checksum else None


def weights_bytes(tensors: dict[str, Tensor], checksum: str) -> bytes:
    """The backbone's tensors as safetensors, keyed by the backbone's own names."""
    from safetensors.torch import save

    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    return save(contiguous, metadata={METADATA_KEY: checksum})


def save_weights(path: Path, tensors: dict[str, Tensor], checksum: str) -> None:
    """:func:`weights_bytes` written to ``path``, atomically."""
    write_bytes_atomic(Path(path), weights_bytes(tensors, checksum))


def write_cache(folder: Path, tensors: dict[str, Tensor], record: dict[str, Any]) -> Path:
    """Write ``folder`` whole (weights, then the record naming their sha256)."""
    weights = weights_bytes(tensors, record["recipe_sha256"])
    record["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    return write_folder(folder, weights, record)


def write_folder(folder: Path, weights: bytes, record: dict[str, Any]) -> Path:
    """Write ``folder`` whole, atomically: the weights' bytes, then their record (made
    here by :func:`write_cache`, or on a Ray worker and installed by ``pretrain.install``)."""
    with atomic_directory(folder) as staging:
        write_bytes_atomic(staging / WEIGHTS_FILE, weights)
        write_json_atomic(staging / RECORD_FILE, record)
    return folder / WEIGHTS_FILE


def check_out(out: Path) -> None:
    """Refuse an --out that is not a .safetensors name, before any pretraining is done."""
    if Path(out).suffix != ".safetensors":
        raise PretrainError(f"{out}: the checkpoint is written as .safetensors; name it so")


def copy_out(weights: Path, record: dict[str, Any], out: Path, force: bool) -> Path:
    """Put the checkpoint at ``out`` (record beside it); an existing ``out`` holding other
    weights is refused unless ``force``: nothing a user has is silently replaced."""
    out = Path(out)
    check_out(out)
    if out.exists() and not force and not reusable(out, record["recipe_sha256"]):
        raise PretrainError(
            f"{out}: exists and holds other weights; pass --force to replace it, or another --out"
        )
    with atomic_path(out) as temporary:
        temporary.write_bytes(Path(weights).read_bytes())
    write_json_atomic(record_beside(out), {**record, "copied_from": str(weights)})
    return out
