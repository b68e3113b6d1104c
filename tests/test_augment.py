"""augment_batch moves image content and keypoints together, and swaps left/right on a flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fkdbench.data.augment import AugmentConfig, augment_batch
from fkdbench.data.schemes import KAGGLE15

SIZE = 96
PERMUTATION = torch.as_tensor(KAGGLE15.flip_permutation())
# Photometric changes off, so the only bright thing in an image is the drawn mark.
GEOMETRY_ONLY = AugmentConfig(
    flip_probability=0.0, brightness=0.0, contrast_range=(1.0, 1.0), noise_std=0.0
)
GEOMETRY_AND_FLIP = AugmentConfig(
    flip_probability=1.0, brightness=0.0, contrast_range=(1.0, 1.0), noise_std=0.0
)
FLIP_ONLY = AugmentConfig(
    rotation_degrees=0.0,
    shift_fraction=0.0,
    scale_range=(1.0, 1.0),
    flip_probability=1.0,
    brightness=0.0,
    contrast_range=(1.0, 1.0),
    noise_std=0.0,
)
IDENTITY = AugmentConfig(
    rotation_degrees=0.0,
    shift_fraction=0.0,
    scale_range=(1.0, 1.0),
    flip_probability=0.0,
    brightness=0.0,
    contrast_range=(1.0, 1.0),
    noise_std=0.0,
)

# A frontal face in a 96x96 crop, KAGGLE15 order; the subject's left eye is on the image right.
FACE = np.array(
    [
        [66, 38], [30, 37], [60, 38], [73, 38], [36, 38], [23, 37], [57, 29], [79, 29],
        [38, 29], [16, 30], [48, 62], [63, 76], [32, 76], [47, 72], [48, 82],
    ],
    dtype=np.float32,
)  # fmt: skip


def draw_marks(points: np.ndarray, size: int = SIZE, sigma: float = 1.2) -> np.ndarray:
    """Dark image with a small Gaussian blob centred (sub-pixel) at each point."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.zeros((size, size), dtype=np.float32)
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.clip(image, 0.0, 1.0)


def centroid(image: torch.Tensor) -> np.ndarray:
    """Intensity-weighted centre (x, y) of a (1, H, W) image."""
    weights = image[0].double().numpy()
    ys, xs = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def one_mark_per_image() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image k carries a mark only at keypoint k, so every mark is identified."""
    jitter = np.random.default_rng(0).uniform(-3, 3, size=(len(FACE), len(FACE), 2))
    keypoints = (FACE[None] + jitter).astype(np.float32)
    images = np.stack([draw_marks(keypoints[k, k : k + 1]) for k in range(len(FACE))])
    return (
        torch.from_numpy(images)[:, None],
        torch.from_numpy(keypoints),
        torch.ones(len(FACE), len(FACE), dtype=torch.bool),
    )


@pytest.mark.parametrize("config", [GEOMETRY_ONLY, GEOMETRY_AND_FLIP], ids=["geometry", "flip"])
def test_marks_follow_their_keypoints(config: AugmentConfig) -> None:
    images, keypoints, mask = one_mark_per_image()
    out_images, out_keypoints, out_mask = augment_batch(
        images, keypoints, mask, PERMUTATION, config, torch.Generator().manual_seed(1)
    )
    assert out_mask.all()  # the face stays well inside the crop under these ranges
    moved = 0
    for k in range(len(FACE)):
        # After a flip the mark of keypoint k is labelled with k's partner.
        label = int(PERMUTATION[k]) if config.flip_probability == 1.0 else k
        expected = out_keypoints[k, label].numpy()
        assert np.abs(centroid(out_images[k]) - expected).max() < 1.0, (k, label)
        moved += np.abs(expected - keypoints[k, k].numpy()).max() > 1.0
    assert moved > len(FACE) // 2  # the transform did something


def test_flip_swaps_left_and_right_labels() -> None:
    left, right = KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")
    keypoints = torch.from_numpy(FACE[None].copy())
    assert keypoints[0, left, 0] > keypoints[0, right, 0]  # subject's left is image right
    # Only the subject's right eye is marked.
    images = torch.from_numpy(draw_marks(FACE[right : right + 1]))[None, None]
    mask = torch.ones(1, len(FACE), dtype=torch.bool)
    out_images, out_keypoints, _ = augment_batch(
        images, keypoints, mask, PERMUTATION, FLIP_ONLY, torch.Generator().manual_seed(0)
    )
    assert torch.allclose(out_images, images.flip(-1), atol=1e-5)
    # The mirrored right-eye mark now carries the label left_eye_center ...
    assert out_keypoints[0, left, 0] == pytest.approx(SIZE - 1 - FACE[right, 0])
    assert out_keypoints[0, left, 1] == pytest.approx(FACE[right, 1])
    assert np.abs(centroid(out_images[0]) - out_keypoints[0, left].numpy()).max() < 1.0
    # ... and left is still at larger x than right, as it started.
    assert out_keypoints[0, left, 0] > out_keypoints[0, right, 0]


def test_flip_permutes_the_mask() -> None:
    left, right = KAGGLE15.index("left_eye_center"), KAGGLE15.index("right_eye_center")
    keypoints = torch.from_numpy(FACE[None].copy())
    keypoints[0, left] = float("nan")  # unlabelled entries may be NaN on input
    mask = torch.ones(1, len(FACE), dtype=torch.bool)
    mask[0, left] = False
    images = torch.zeros(1, 1, SIZE, SIZE)
    _, out_keypoints, out_mask = augment_batch(
        images, keypoints, mask, PERMUTATION, FLIP_ONLY, torch.Generator().manual_seed(0)
    )
    assert out_mask[0].tolist() == [i != right for i in range(len(FACE))]
    assert not torch.isnan(out_keypoints).any()
    assert (out_keypoints[0, right] == 0).all()


def test_keypoints_pushed_outside_become_unlabelled() -> None:
    zoom = AugmentConfig(
        rotation_degrees=0.0,
        shift_fraction=0.0,
        scale_range=(2.0, 2.0),
        flip_probability=0.0,
        brightness=0.0,
        contrast_range=(1.0, 1.0),
        noise_std=0.0,
    )
    # 32x32: centre 15.5, so a 2x zoom sends (2, 2) to (-11.5, -11.5) and keeps (15.5, 15.5).
    keypoints = torch.tensor([[[2.0, 2.0], [15.5, 15.5], [17.0, 16.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    _, out_keypoints, out_mask = augment_batch(
        torch.zeros(1, 1, 32, 32),
        keypoints,
        mask,
        torch.arange(3),
        zoom,
        torch.Generator().manual_seed(0),
    )
    assert out_mask.tolist() == [[False, True, True]]
    assert out_keypoints[0, 0].tolist() == [0.0, 0.0]
    assert out_keypoints[0, 2].tolist() == pytest.approx([18.5, 16.5])


def test_same_seed_same_output_and_inputs_untouched() -> None:
    images, keypoints, mask = one_mark_per_image()
    images_before, keypoints_before = images.clone(), keypoints.clone()
    config = AugmentConfig()  # everything on, photometric noise included
    first = augment_batch(
        images, keypoints, mask, PERMUTATION, config, torch.Generator().manual_seed(7)
    )
    second = augment_batch(
        images, keypoints, mask, PERMUTATION, config, torch.Generator().manual_seed(7)
    )
    other = augment_batch(
        images, keypoints, mask, PERMUTATION, config, torch.Generator().manual_seed(8)
    )
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    assert torch.equal(images, images_before) and torch.equal(keypoints, keypoints_before)


def test_photometric_changes_stay_in_range_and_identity_is_identity() -> None:
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    keypoints = torch.full((4, 2, 2), 10.0)
    mask = torch.ones(4, 2, dtype=torch.bool)
    harsh = AugmentConfig(brightness=0.9, contrast_range=(0.2, 3.0), noise_std=0.5)
    out_images, _, _ = augment_batch(
        images, keypoints, mask, torch.arange(2), harsh, torch.Generator().manual_seed(0)
    )
    assert out_images.min() >= 0.0 and out_images.max() <= 1.0
    same_images, same_keypoints, same_mask = augment_batch(
        images, keypoints, mask, torch.arange(2), IDENTITY, torch.Generator().manual_seed(0)
    )
    assert torch.allclose(same_images, images, atol=1e-5)
    assert torch.allclose(same_keypoints, keypoints, atol=1e-5)
    assert same_mask.all()
