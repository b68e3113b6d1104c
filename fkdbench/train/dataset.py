"""A run's data in memory: the variant of the train split, and val and test with their
real labels, as uint8 tensors that batches index into (floats are made per batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fkdbench.config import TrainConfig
from fkdbench.data.augment import AugmentConfig
from fkdbench.data.schemes import KeypointScheme, get_scheme
from fkdbench.data.splits import SplitArrays, load_split, read_manifest
from fkdbench.data.variants import VariantData, make_variant
from fkdbench.metrics import mean_shape
from fkdbench.models import normalise_keypoints
from fkdbench.train.result import RunError


@dataclass
class TrainingData:
    """The splits of one run, and the training rows it uses as tensors on its device."""

    manifest: dict[str, Any]
    scheme: KeypointScheme
    train_split: SplitArrays  # as prepared; the autoencoder phase learns from all of it
    val_split: SplitArrays  # its first ``max_val_rows`` rows
    test_split: SplitArrays  # always whole
    variant: VariantData  # the data variant made from ``train_split``
    augment: AugmentConfig
    train_rows: np.ndarray  # indices of the variant's rows this run trains on
    images: Tensor  # uint8 (N, 1, H, W) of those rows
    keypoints: Tensor  # pixels (N, K, 2); 0 where unlabelled (the mask says which)
    mask: Tensor  # bool (N, K)
    flip_permutation: Tensor  # keypoint order after a horizontal flip

    @property
    def image_size(self) -> int:
        return self.train_split.image_size

    def mean_shape_coordinates(self) -> np.ndarray:
        """The variant's mean labelled shape as normalised float32 (2K,): the model's start."""
        labels = np.where(self.variant.mask[..., None], self.variant.keypoints, np.nan)
        shape = np.nan_to_num(mean_shape(labels), nan=(self.image_size - 1) / 2)
        return normalise_keypoints(shape, self.image_size).reshape(-1).astype(np.float32)


def load_training_data(config: TrainConfig, name: str, device: torch.device) -> TrainingData:
    """Read the prepared splits, make the variant, and move the training rows to ``device``."""
    manifest = read_manifest(config.data_dir)
    scheme = get_scheme(manifest.get("scheme", "kaggle15"))
    train_split = load_split(config.data_dir, "train")
    val_split = first_rows(load_split(config.data_dir, "val"), config.max_val_rows)
    test_split = load_split(config.data_dir, "test")
    augment = AugmentConfig()
    variant = make_variant(
        train_split,
        config.variant,
        scheme,
        seed=config.seed,
        augment_copies=config.augment_copies,
        augment=augment,
    )
    train_rows = row_subset(len(variant.images), config.max_train_rows, config.seed)
    if len(variant.images) < 2 or len(val_split) == 0 or len(test_split) == 0:
        raise RunError(
            f"{name}: {config.data_dir} leaves {len(variant.images)} training rows "
            f"({config.variant}), {len(val_split)} val, {len(test_split)} test; "
            "need at least 2, 1, 1"
        )
    return TrainingData(
        manifest=manifest,
        scheme=scheme,
        train_split=train_split,
        val_split=val_split,
        test_split=test_split,
        variant=variant,
        augment=augment,
        train_rows=train_rows,
        images=image_tensor(variant.images[train_rows]).to(device),
        keypoints=torch.from_numpy(variant.keypoints[train_rows]).to(device),
        mask=torch.from_numpy(variant.mask[train_rows]).to(device),
        flip_permutation=torch.as_tensor(scheme.flip_permutation(), dtype=torch.long),
    )


def image_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W) -> uint8 (N, 1, H, W); floats are made per batch to save memory."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)


def first_rows(split: SplitArrays, limit: int | None) -> SplitArrays:
    """The first ``limit`` rows: every run scored with the same limit sees the same rows."""
    if limit is None or limit >= len(split):
        return split
    return SplitArrays(split.images[:limit], split.keypoints[:limit], split.ids[:limit])


def row_subset(rows: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of all rows, or of a seeded random ``limit`` of them in their order."""
    if limit is None or limit >= rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
