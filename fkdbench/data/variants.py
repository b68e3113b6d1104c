"""Data variants: how the training split treats missing keypoints (the paper's columns).

In the Kaggle data about 70% of rows label only 4 of the 15 keypoints. A variant decides
what the model learns from:

- ``none``: complete rows only (every keypoint labelled).
- ``ffill``: the paper's forward fill. Rows in file order (sorted by ``ids``), each
  coordinate column filled with the previous row's value. Rows before the first label of a
  column stay unlabelled there.
- ``knn``: scikit-learn's ``KNNImputer`` (``KNN_NEIGHBOURS`` neighbours) on the flattened
  (N, 2K) coordinates; every row is complete afterwards.
- ``aug``: the paper's offline augmentation of the non-null subset: the complete rows plus
  ``augment_copies`` randomly augmented copies of each (rotation, shift, scale,
  brightness/contrast, noise, mirror with left/right pairs swapped).
- ``masked`` (beyond the paper): all rows, the loss only sees labelled coordinates, and
  the trainer augments every batch on the fly with :func:`augment_batch`.

Variants apply to the TRAINING split only. Validation and test are never imputed or
augmented: the trainer scores them on their real labels only, so every variant is judged
on the same ground truth and an imputed value never counts as a correct answer.

Every variant returns keypoints without NaN: unlabelled entries are 0 and ``mask`` is False
there, so a masked loss can multiply by the mask without NaN leaking through (NaN * 0 is
NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.impute import KNNImputer

from fkdbench.data.augment import AugmentConfig, augment_batch
from fkdbench.data.schemes import KeypointScheme
from fkdbench.data.splits import SplitArrays

VARIANTS = ("none", "ffill", "knn", "aug", "masked")
# Neighbours averaged by KNNImputer (scikit-learn's default, and what the paper used).
KNN_NEIGHBOURS = 5
# Rows augmented at once by the ``aug`` variant: bounds the float copies held in memory.
AUGMENT_CHUNK_ROWS = 512
# An augmented copy that pushed a keypoint out of the image is drawn again at most this many
# times; if it still fails it is dropped, so the ``aug`` rows stay complete.
AUGMENT_MAX_REDRAWS = 10


@dataclass(frozen=True)
class VariantData:
    """Training arrays of one variant, ready for a (masked) loss."""

    images: np.ndarray  # uint8 (N, H, W)
    keypoints: np.ndarray  # float32 (N, K, 2), no NaN: unlabelled entries are 0
    mask: np.ndarray  # bool (N, K): True where the coordinate is a label to learn from
    online_augmentation: bool  # True for "masked": the trainer augments each batch
    variant: str
    summary: dict  # counts: rows in/out, imputed keypoints, augmented copies, ...


def make_variant(
    split: SplitArrays,
    variant: str,
    scheme: KeypointScheme,
    seed: int,
    augment_copies: int = 3,
    augment: AugmentConfig = AugmentConfig(),  # noqa: B008 - frozen, so sharing is safe
) -> VariantData:
    """Build the training arrays of ``variant`` from the training split.

    Deterministic: the same inputs and ``seed`` give the same bytes. Only ``aug`` uses
    randomness (a ``torch.Generator`` seeded with ``seed``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown data variant {variant!r}; known: {', '.join(VARIANTS)}")
    if split.keypoints.shape[1:] != (scheme.num_keypoints, 2):
        raise ValueError(
            f"keypoints of shape {split.keypoints.shape} do not fit scheme {scheme.name!r} "
            f"({scheme.num_keypoints} keypoints)"
        )
    if augment_copies < 0:
        raise ValueError(f"augment_copies must be >= 0, got {augment_copies}")

    # A keypoint is labelled only if both x and y are; make the pair consistent so no
    # variant ever learns from half a keypoint.
    labelled = split.label_mask
    keypoints = np.where(labelled[..., None], split.keypoints, np.nan).astype(np.float32)
    complete = labelled.all(axis=1)
    counts = {
        "variant": variant,
        "rows_in": len(split),
        "complete_rows_in": int(complete.sum()),
        "labelled_keypoints_in": int(labelled.sum()),
    }

    if variant == "none":
        return _finish(split.images[complete], keypoints[complete], False, variant, counts)
    if variant == "masked":
        return _finish(split.images, keypoints, True, variant, counts)
    if variant == "ffill":
        return _forward_fill(split, keypoints, counts)
    if variant == "knn":
        return _knn_impute(split, keypoints, counts)
    return _augment_complete(
        split.images[complete], keypoints[complete], scheme, seed, augment_copies, augment, counts
    )


def _finish(
    images: np.ndarray, keypoints: np.ndarray, online: bool, variant: str, counts: dict
) -> VariantData:
    """Turn NaN-marked keypoints into (zeros, mask) and complete the summary."""
    mask = ~np.isnan(keypoints).any(axis=-1)
    filled = np.where(mask[..., None], keypoints, 0.0).astype(np.float32)
    summary = {
        **counts,
        "rows_out": len(images),
        "labelled_keypoints_out": int(mask.sum()),
        "unlabelled_keypoints_out": int((~mask).sum()),
    }
    summary.setdefault("imputed_keypoints", 0)
    summary.setdefault("augmented_copies", 0)
    return VariantData(
        images=np.ascontiguousarray(images, dtype=np.uint8),
        keypoints=np.ascontiguousarray(filled),
        mask=np.ascontiguousarray(mask),
        online_augmentation=online,
        variant=variant,
        summary=summary,
    )


def _forward_fill(split: SplitArrays, keypoints: np.ndarray, counts: dict) -> VariantData:
    """Fill each coordinate column with the previous row's value, in file (``ids``) order."""
    # Stable sort: ties in ids (there should be none) keep the split's order.
    order = np.argsort(split.ids, kind="stable")
    rows, num_keypoints = len(order), keypoints.shape[1]
    columns = pd.DataFrame(keypoints[order].reshape(rows, 2 * num_keypoints))
    filled = columns.ffill().to_numpy(dtype=np.float32).reshape(rows, num_keypoints, 2)
    imputed = int(np.isnan(keypoints).any(axis=-1).sum() - np.isnan(filled).any(axis=-1).sum())
    counts = {**counts, "imputed_keypoints": imputed, "sorted_by_ids": True}
    return _finish(split.images[order], filled, False, "ffill", counts)


def _knn_impute(split: SplitArrays, keypoints: np.ndarray, counts: dict) -> VariantData:
    """Impute missing keypoints with the mean of the nearest rows that have them."""
    rows, num_keypoints = keypoints.shape[:2]
    flat = keypoints.reshape(rows, 2 * num_keypoints).astype(np.float64)
    never_labelled = np.isnan(flat).all(axis=0)
    imputed_flat = flat
    if np.isnan(flat).any():
        # x and y are missing together (see make_variant), so each keypoint of a row is
        # imputed from the same neighbours. keep_empty_features keeps the column layout
        # when a keypoint is labelled nowhere; such columns are put back to NaN
        # (unlabelled) below instead of a made-up 0.
        imputer = KNNImputer(n_neighbors=KNN_NEIGHBOURS, keep_empty_features=True)
        imputed_flat = imputer.fit_transform(flat)
        imputed_flat[:, never_labelled] = np.nan
    imputed = imputed_flat.astype(np.float32).reshape(rows, num_keypoints, 2)
    missing_before = int(np.isnan(keypoints).any(axis=-1).sum())
    missing_after = int(np.isnan(imputed).any(axis=-1).sum())
    counts = {
        **counts,
        "imputed_keypoints": missing_before - missing_after,
        "knn_neighbours": KNN_NEIGHBOURS,
        "never_labelled_keypoints": int(never_labelled.reshape(num_keypoints, 2).any(-1).sum()),
    }
    return _finish(split.images, imputed, False, "knn", counts)


def _augmented_copy(
    images: torch.Tensor,
    keypoints: torch.Tensor,
    permutation: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One augmented copy of complete rows: (images, keypoints, kept rows, redraws).
    A copy that lost a keypoint is drawn again, up to AUGMENT_MAX_REDRAWS times."""
    mask = torch.ones(keypoints.shape[:2], dtype=torch.bool)
    new_images, new_keypoints, new_mask = augment_batch(
        images, keypoints, mask, permutation, config, generator
    )
    # Redraw only the copies that lost a keypoint, so a complete row stays complete
    # without biasing the others towards any particular draw.
    failed = ~new_mask.all(dim=1)
    redrawn = 0
    for _attempt in range(AUGMENT_MAX_REDRAWS):
        if not failed.any():
            break
        redrawn += int(failed.sum())
        retry_images, retry_keypoints, retry_mask = augment_batch(
            images[failed], keypoints[failed], mask[failed], permutation, config, generator
        )
        new_images[failed] = retry_images
        new_keypoints[failed] = retry_keypoints
        new_mask[failed] = retry_mask
        failed = ~new_mask.all(dim=1)
    return new_images, new_keypoints, ~failed, redrawn


def _augment_complete(
    images: np.ndarray,
    keypoints: np.ndarray,
    scheme: KeypointScheme,
    seed: int,
    copies: int,
    config: AugmentConfig,
    counts: dict,
) -> VariantData:
    """Complete rows, then ``copies`` augmented copies of each, chunk by chunk."""
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.as_tensor(scheme.flip_permutation(), dtype=torch.long)
    out_images, out_keypoints = [images], [keypoints]
    redrawn = dropped = 0
    for start in range(0, len(images), AUGMENT_CHUNK_ROWS):
        chunk_images = torch.from_numpy(images[start : start + AUGMENT_CHUNK_ROWS])
        chunk_images = chunk_images.to(torch.float32).div_(255.0).unsqueeze(1)
        chunk_keypoints = torch.from_numpy(keypoints[start : start + AUGMENT_CHUNK_ROWS])
        for _ in range(copies):
            new_images, new_keypoints, kept, redraws = _augmented_copy(
                chunk_images, chunk_keypoints, permutation, config, generator
            )
            redrawn += redraws
            dropped += int((~kept).sum())
            gray = new_images[kept, 0].mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
            out_images.append(gray.numpy())
            out_keypoints.append(new_keypoints[kept].numpy().astype(np.float32))
    counts = {
        **counts,
        "augmented_copies": sum(len(chunk) for chunk in out_images[1:]),
        "augment_copies_per_row": copies,
        "augment_redrawn": redrawn,
        "augment_dropped": dropped,
        "augment_policy": (
            f"a copy that loses a keypoint off the image is redrawn up to "
            f"{AUGMENT_MAX_REDRAWS} times, then dropped"
        ),
        "seed": seed,
    }
    return _finish(np.concatenate(out_images), np.concatenate(out_keypoints), False, "aug", counts)
