"""What a pretraining is: :class:`PretrainOptions`, the methods, and the recipe whose
checksum names the cached checkpoint.

A leaf of the pretrain package: it imports only the config-level pieces of fkdbench, so
the run folders (``runs.recipe_parts``) and the presets can read the method names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fkdbench.config import below_minimum

# What each method teaches the backbone (the code: fkdbench.pretrain.methods).
METHODS = {
    "synthetic-landmarks": "supervised: 68 dense landmarks on faces drawn by the synthetic "
    "generator (a stream of its own, never the prepared data's faces)",
    "autoencoder": "self-supervised (paper 000's idea, any backbone): rebuild the face "
    "images of the data's train and unlabelled splits with patches hidden",
}
# The keypoint scheme synthetic-landmarks draws: dense labels teach more geometry per face.
SYNTHETIC_SCHEME = "ibug68"
# The generator seed of the pretraining faces is this plus the pretraining seed: a stream
# no prepared synthetic data set uses (prepare seeds 0, 1, ...), so no test face is seen.
SYNTHETIC_SEED_OFFSET = 7_000_003
# Side of the square patches the autoencoder hides, in pixels.
MASK_PATCH = 12
# Layout of pretrain.json; bump it when its fields or the recipe change meaning.
PRETRAIN_FORMAT_VERSION = 1


class PretrainError(ValueError):
    """A pretraining that cannot run or a checkpoint that cannot be used; one line."""


@dataclass
class PretrainOptions:
    """Everything one pretraining needs; ``pretrain.json`` records it."""

    # Architecture from the model registry whose backbone is pretrained.
    arch: str = "mobilenetv2"
    # One of METHODS.
    method: str = "synthetic-landmarks"
    # Prepared data folder: the autoencoder's images (train + unlabelled splits); for
    # synthetic-landmarks only its image size.
    data_dir: Path = Path("data/synthetic")
    # The cache lives in <runs_dir>/pretrain/<arch>--<method>--<checksum>/.
    runs_dir: Path = Path("runs")
    # Also write the checkpoint here (and <stem>.pretrain.json beside it); None: cache only.
    out: Path | None = None
    # Passes over the pretraining images.
    epochs: int = 3
    # synthetic-landmarks: faces generated for pretraining.
    faces: int = 4000
    # Images per optimiser step.
    batch_size: int = 64
    # Peak learning rate (warm-up then cosine, as in training).
    lr: float = 2e-3
    # AdamW decoupled weight decay on weight matrices and kernels.
    weight_decay: float = 1e-4
    # autoencoder: share of MASK_PATCH-pixel patches hidden from the encoder.
    mask_fraction: float = 0.5
    # Seeds initialisation, the order of batches, the hidden patches and the faces drawn.
    seed: int = 0
    # torch CPU threads; None keeps torch's default.
    num_threads: int | None = None
    quiet: bool = False
    # Pretrain again even when the cache holds this recipe.
    force: bool = False

    def __post_init__(self) -> None:
        self.data_dir, self.runs_dir = Path(self.data_dir), Path(self.runs_dir)
        if self.out is not None:
            self.out = Path(self.out)


# Fields that change what comes out, per method (the rest are where and how to run).
_COMMON_RECIPE = ("arch", "method", "epochs", "batch_size", "lr", "weight_decay", "seed")
_METHOD_RECIPE = {"synthetic-landmarks": ("faces",), "autoencoder": ("mask_fraction",)}
# The TrainConfig.pretrain keys a preset may set: the recipe, less what the run decides.
PRESET_KEYS = tuple(
    sorted({*_COMMON_RECIPE, *(key for keys in _METHOD_RECIPE.values() for key in keys)} - {"arch"})
)


def check_options(options: PretrainOptions) -> None:
    """Refuse an unknown method or an impossible budget before any work."""
    if options.method not in METHODS:
        raise PretrainError(
            f"unknown pretraining method {options.method!r}; known: {', '.join(METHODS)}"
        )
    problem = below_minimum(options, {"epochs": 1, "faces": 2, "batch_size": 2})
    if problem:
        raise PretrainError(f"pretrain {problem}")
    if not options.lr > 0:
        raise PretrainError(f"pretrain lr must be positive, got {options.lr!r}")
    if not 0.0 <= options.mask_fraction < 1.0:
        raise PretrainError(f"mask_fraction must be in [0, 1), got {options.mask_fraction!r}")


def recipe(options: PretrainOptions, data: dict[str, Any], backbone: str) -> dict[str, Any]:
    """What the checkpoint depends on: the method's settings, the data it read (the
    manifest's sha256, or the generator's stream) and the backbone's layout (names and
    shapes of its tensors), so a changed architecture never reuses a stale checkpoint."""
    fields = dataclasses.asdict(options)
    chosen = {key: fields[key] for key in (*_COMMON_RECIPE, *_METHOD_RECIPE[options.method])}
    return {
        "format_version": PRETRAIN_FORMAT_VERSION,
        **chosen,
        "data": data,
        "backbone_layout_sha256": backbone,
    }


def recipe_checksum(recipe_record: dict[str, Any]) -> str:
    """sha256 of the recipe as canonical JSON."""
    text = json.dumps(recipe_record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def options_from_preset(
    step: dict[str, Any] | str, arch: str, data_dir: Path, runs_dir: Path, **fields: Any
) -> PretrainOptions:
    """A run's pretraining step (``TrainConfig.pretrain``: a method name or a dict of
    :data:`PRESET_KEYS`) as the options of its architecture and data."""
    step = {"method": step} if isinstance(step, str) else dict(step)
    unknown = sorted(set(step) - set(PRESET_KEYS))
    if unknown or "method" not in step:
        problem = f"unknown keys {unknown}" if unknown else "no 'method'"
        raise PretrainError(f"pretrain step {step!r}: {problem}; it takes {', '.join(PRESET_KEYS)}")
    return PretrainOptions(arch=arch, data_dir=data_dir, runs_dir=runs_dir, **step, **fields)
