"""Training-split variants: which rows survive, what gets imputed, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from fkdbench.data import variants
from fkdbench.data.augment import AugmentConfig
from fkdbench.data.schemes import KAGGLE15, KeypointScheme
from fkdbench.data.splits import SplitArrays
from fkdbench.data.variants import VARIANTS, make_variant

NAN = np.nan
# Two keypoints are enough to check imputation by hand.
EYES = KeypointScheme(
    name="eyes",
    keypoints=("left_eye_center", "right_eye_center"),
    flip_pairs=((0, 1),),
    normalising_pair=(0, 1),
)


def split_of(keypoints: list, ids: list | None = None, size: int = 8) -> SplitArrays:
    """Split whose image i is filled with the gray value 10 * ids[i], to trace row order."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    ids = np.arange(len(keypoints)) if ids is None else np.asarray(ids)
    images = np.broadcast_to((10 * ids)[:, None, None], (len(ids), size, size))
    images = images.astype(np.uint8)
    return SplitArrays(images=images, keypoints=keypoints, ids=ids.astype(np.int64))


def random_split(rows: int = 12, size: int = 32, seed: int = 0) -> SplitArrays:
    """KAGGLE15-shaped split, faces near the centre, about half the rows sparse like Kaggle."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(size * 0.3, size * 0.7, (rows, KAGGLE15.num_keypoints, 2))
    sparse = [KAGGLE15.index(name) for name in ("left_eye_center", "nose_tip")]
    for row in range(0, rows, 2):
        keep = np.zeros(KAGGLE15.num_keypoints, dtype=bool)
        keep[sparse] = True
        keypoints[row, ~keep] = NAN
    images = rng.integers(0, 256, (rows, size, size), dtype=np.uint8)
    ids = rng.permutation(rows).astype(np.int64)
    return SplitArrays(images=images, keypoints=keypoints.astype(np.float32), ids=ids)


def test_none_keeps_only_complete_rows() -> None:
    split = split_of([[[1, 2], [3, 4]], [[NAN, NAN], [5, 6]], [[7, 8], [9, 10]]])
    data = make_variant(split, "none", EYES, seed=0)
    assert data.keypoints.tolist() == [[[1, 2], [3, 4]], [[7, 8], [9, 10]]]
    assert data.images[:, 0, 0].tolist() == [0, 20]
    assert data.mask.all() and not data.online_augmentation
    assert data.summary["rows_in"] == 3 and data.summary["rows_out"] == 2


def test_ffill_fills_from_the_previous_row_in_file_order() -> None:
    # Rows are stored out of file order; file order (ids 0..3) is what forward fill follows.
    by_id = {
        0: [[NAN, NAN], [10, 11]],  # leading row: left eye has nothing to copy from
        1: [[1, 2], [NAN, NAN]],
        2: [[NAN, NAN], [30, 31]],
        3: [[5, 6], [NAN, NAN]],
    }
    ids = [2, 0, 3, 1]
    data = make_variant(split_of([by_id[i] for i in ids], ids), "ffill", EYES, seed=0)
    assert data.images[:, 0, 0].tolist() == [0, 10, 20, 30]  # sorted by ids
    assert data.keypoints.tolist() == [
        [[0, 0], [10, 11]],
        [[1, 2], [10, 11]],
        [[1, 2], [30, 31]],
        [[5, 6], [30, 31]],
    ]
    assert data.mask.tolist() == [[False, True], [True, True], [True, True], [True, True]]
    assert data.summary["imputed_keypoints"] == 3
    assert data.summary["unlabelled_keypoints_out"] == 1


def test_knn_imputes_the_mean_of_the_five_nearest_rows() -> None:
    near = [[[10 + i, 10], [20, 20 + 2 * i]] for i in range(5)]  # right eye y: 20..28
    far = [[[80, 80], [90, 90]]]
    missing = [[[12, 10], [NAN, NAN]]]
    split = split_of(near + far + missing)
    data = make_variant(split, "knn", EYES, seed=0)
    # The five rows whose left eye is near (12, 10) vote; the far row does not.
    assert data.keypoints[6].tolist() == [[12, 10], [20, 24]]
    assert np.array_equal(data.keypoints[:6], split.keypoints[:6])  # complete rows unchanged
    assert data.mask.all()
    assert data.summary["imputed_keypoints"] == 1
    assert data.summary["knn_neighbours"] == variants.KNN_NEIGHBOURS == 5


def test_knn_leaves_a_keypoint_labelled_nowhere_unlabelled() -> None:
    split = split_of([[[1, 2], [NAN, NAN]], [[3, 4], [NAN, NAN]]])
    data = make_variant(split, "knn", EYES, seed=0)
    assert data.mask.tolist() == [[True, False], [True, False]]
    assert data.keypoints.tolist() == [[[1, 2], [0, 0]], [[3, 4], [0, 0]]]


def test_masked_keeps_all_rows_and_marks_labelled_entries() -> None:
    split = random_split()
    data = make_variant(split, "masked", KAGGLE15, seed=0)
    assert data.online_augmentation
    assert np.array_equal(data.images, split.images)
    assert np.array_equal(data.mask, split.label_mask)
    assert np.array_equal(data.keypoints[data.mask], split.keypoints[split.label_mask])
    assert (data.keypoints[~data.mask] == 0).all()


def test_aug_adds_copies_of_complete_rows_and_keeps_originals() -> None:
    split = random_split()
    complete = split.label_mask.all(axis=1)
    data = make_variant(split, "aug", KAGGLE15, seed=3, augment_copies=2)
    count = int(complete.sum())
    assert data.summary["augment_dropped"] == 0
    assert len(data.images) == count * 3 == data.summary["rows_out"]
    assert data.summary["augmented_copies"] == count * 2
    assert np.array_equal(data.images[:count], split.images[complete])
    assert np.array_equal(data.keypoints[:count], split.keypoints[complete])
    assert data.mask.all()
    assert not np.array_equal(data.images[count : 2 * count], split.images[complete])
    assert not data.online_augmentation


def test_aug_redraws_then_drops_copies_that_lose_a_keypoint(monkeypatch) -> None:
    monkeypatch.setattr(variants, "AUGMENT_CHUNK_ROWS", 2)  # several chunks
    # A keypoint on the border: a random shift of up to half the side often pushes it out.
    keypoints = [[[1, 16], [16, 16]]] * 5
    risky = AugmentConfig(rotation_degrees=0.0, shift_fraction=0.5, flip_probability=0.0)
    data = make_variant(
        split_of(keypoints, size=32), "aug", EYES, seed=0, augment_copies=4, augment=risky
    )
    summary = data.summary
    assert summary["augment_redrawn"] > 0
    assert len(data.images) == 5 * (1 + 4) - summary["augment_dropped"]
    assert data.mask.all()
    # A 3x zoom always pushes the border keypoint out: every copy is dropped.
    hopeless = AugmentConfig(scale_range=(3.0, 3.0), shift_fraction=0.0, rotation_degrees=0.0)
    data = make_variant(
        split_of(keypoints, size=32), "aug", EYES, seed=0, augment_copies=4, augment=hopeless
    )
    assert data.summary["augment_dropped"] == 20 and len(data.images) == 5


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_nan_free_and_deterministic(variant: str) -> None:
    split = random_split()
    first = make_variant(split, variant, KAGGLE15, seed=11, augment_copies=1)
    second = make_variant(split, variant, KAGGLE15, seed=11, augment_copies=1)
    assert not np.isnan(first.keypoints).any()
    assert first.keypoints.dtype == np.float32 and first.images.dtype == np.uint8
    assert first.mask.dtype == bool and first.mask.shape == first.keypoints.shape[:2]
    assert len(first.images) == len(first.keypoints) == first.summary["rows_out"]
    assert first.variant == variant
    for name in ("images", "keypoints", "mask"):
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes()
    assert first.summary == second.summary


def test_unknown_variant_and_wrong_scheme_are_refused() -> None:
    split = random_split()
    with pytest.raises(ValueError, match="known: none, ffill, knn, aug, masked"):
        make_variant(split, "mean", KAGGLE15, seed=0)
    with pytest.raises(ValueError, match="scheme"):
        make_variant(split, "none", EYES, seed=0)
