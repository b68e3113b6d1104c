"""Random affine and photometric augmentation of face images together with their keypoints.

One implementation serves both uses: offline (the ``aug`` variant makes augmented copies
once, see :mod:`fkdbench.data.variants`) and online (the trainer augments every batch of
the ``masked`` variant). It works on torch tensors, vectorised over the batch.

Geometry. Coordinates are pixels with the centre of pixel column ``i`` at ``x = i`` (see
:mod:`fkdbench.data.schemes`). For each sample one forward matrix ``M`` (pixels to pixels)
is built: optional mirror, then scale and rotation about the image centre, then a shift.
Keypoints are mapped by ``M``; the image is resampled by ``F.grid_sample``, which needs the
opposite direction (for each *output* pixel, where to read in the input), so it gets
``M^-1`` expressed in the normalised coordinates of ``F.affine_grid``. With
``align_corners=True`` the normalised -1 and +1 are the centres of the first and last
pixels, which is exactly the pixel-centre convention above, so image and keypoints move
together to sub-pixel accuracy.

A mirrored sample also has its keypoints and mask permuted by the scheme's flip
permutation: after a mirror the subject's left eye appears where the right eye's mirror
image is, and the label must follow the subject, not the image side.

A keypoint that the transform carries outside the image becomes unlabelled (mask False,
coordinate 0) instead of a label pointing at a place the image does not show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation; the defaults suit 96x96 gray faces."""

    # Rotation angle drawn uniformly from [-rotation_degrees, +rotation_degrees].
    rotation_degrees: float = 15.0
    # Shift in x and y, each drawn uniformly from [-f, +f] times the image side.
    shift_fraction: float = 0.08
    # Zoom factor drawn uniformly from this range (>1 enlarges the face).
    scale_range: tuple[float, float] = (0.9, 1.1)
    # Probability of a horizontal mirror (with left/right keypoint pairs swapped).
    flip_probability: float = 0.5
    # Additive brightness drawn uniformly from [-b, +b], in gray units of [0, 1].
    brightness: float = 0.2
    # Contrast factor about the image mean, drawn uniformly from this range.
    contrast_range: tuple[float, float] = (0.8, 1.2)
    # Standard deviation of additive Gaussian pixel noise, in gray units of [0, 1].
    noise_std: float = 0.03


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """``count`` float64 draws from U[low, high) on the generator's device."""
    draws = torch.rand(count, generator=generator, device=generator.device, dtype=torch.float64)
    return low + (high - low) * draws


def _forward_matrices(
    count: int, height: int, width: int, config: AugmentConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Draw per-sample geometry: (N, 3, 3) float64 pixel-to-pixel matrices and (N,) flip flags."""
    angle = _uniform(count, -1.0, 1.0, generator) * math.radians(config.rotation_degrees)
    scale = _uniform(count, config.scale_range[0], config.scale_range[1], generator)
    shift_x = _uniform(count, -1.0, 1.0, generator) * config.shift_fraction * width
    shift_y = _uniform(count, -1.0, 1.0, generator) * config.shift_fraction * height
    flip = _uniform(count, 0.0, 1.0, generator) < config.flip_probability

    # About the centre c: p' = c + shift + s * R * (mirror * (p - c)). Mirroring about the
    # centre is x - c_x -> -(x - c_x), i.e. x -> W - 1 - x, the pixel-centre mirror.
    mirror = torch.where(flip, -1.0, 1.0).to(torch.float64)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    linear = torch.stack(
        [torch.stack([cos * mirror, -sin], dim=-1), torch.stack([sin * mirror, cos], dim=-1)],
        dim=-2,
    )  # (N, 2, 2)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    centre = centre.to(generator.device)
    translation = centre + torch.stack([shift_x, shift_y], dim=-1) - linear @ centre
    matrices = torch.zeros(count, 3, 3, dtype=torch.float64, device=generator.device)
    matrices[:, :2, :2] = linear
    matrices[:, :2, 2] = translation
    matrices[:, 2, 2] = 1.0
    return matrices, flip


def _pixels_to_normalised(height: int, width: int) -> Tensor:
    """Matrix taking pixel coordinates to ``affine_grid`` coordinates (align_corners=True)."""
    return torch.tensor(
        [[2.0 / (width - 1), 0.0, -1.0], [0.0, 2.0 / (height - 1), -1.0], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )


def _check_shapes(images: Tensor, keypoints: Tensor, mask: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got {tuple(images.shape)}")
    count = images.shape[0]
    if (
        keypoints.shape[0] != count
        or keypoints.shape[2:] != (2,)
        or mask.shape != keypoints.shape[:2]
    ):
        raise ValueError(
            f"keypoints (N, K, 2) and mask (N, K) must match {count} images, got "
            f"{tuple(keypoints.shape)} and {tuple(mask.shape)}"
        )


def _warp_images(images: Tensor, forward: Tensor) -> Tensor:
    """Resample every image through its forward matrix (N, 3, 3), bilinearly."""
    count, _, height, width = images.shape
    # affine_grid wants, per output pixel, the input location: the inverse map,
    # conjugated into normalised coordinates.
    to_normalised = _pixels_to_normalised(height, width).to(images.device)
    theta = to_normalised @ torch.linalg.inv(forward) @ torch.linalg.inv(to_normalised)
    grid = F.affine_grid(
        theta[:, :2, :].to(images.dtype), [count, 1, height, width], align_corners=True
    )
    # "border" repeats the edge pixels, which looks more like a face crop than black bars.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _move_keypoints(
    keypoints: Tensor,
    mask: Tensor,
    forward: Tensor,
    flip: Tensor,
    flip_permutation: Tensor,
    height: int,
    width: int,
) -> tuple[Tensor, Tensor]:
    """Keypoints and mask after the forward maps and mirrors; points carried off the
    image become unlabelled."""
    device = forward.device
    # The same forward map as the pixels, in float64 so the round trip adds no error.
    points = keypoints.to(torch.float64)
    moved = points @ forward[:, :2, :2].transpose(1, 2) + forward[:, None, :2, 2]

    # Mirrored samples take their labels from the mirrored partner: left follows the subject.
    identity = torch.arange(keypoints.shape[1], device=device)
    permutation = torch.as_tensor(flip_permutation, device=device, dtype=torch.long)
    source = torch.where(flip[:, None], permutation[None, :], identity[None, :])
    moved = torch.gather(moved, 1, source[:, :, None].expand(-1, -1, 2))
    out_mask = torch.gather(mask.to(torch.bool), 1, source)

    # Inside the image means on the area the pixels cover: [-0.5, W - 0.5] x [-0.5, H - 0.5].
    inside = (
        (moved[..., 0] >= -0.5)
        & (moved[..., 0] <= width - 0.5)
        & (moved[..., 1] >= -0.5)
        & (moved[..., 1] <= height - 0.5)
    )
    out_mask = out_mask & inside
    return torch.where(out_mask[..., None], moved, 0.0).to(keypoints.dtype), out_mask


def _photometric(images: Tensor, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Contrast about each image's mean, then brightness, then noise; clamped to [0, 1]."""
    count, device, dtype = images.shape[0], images.device, images.dtype
    contrast = _uniform(count, config.contrast_range[0], config.contrast_range[1], generator)
    brightness = _uniform(count, -config.brightness, config.brightness, generator)
    contrast = contrast.to(device=device, dtype=dtype)[:, None, None, None]
    brightness = brightness.to(device=device, dtype=dtype)[:, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * contrast + mean + brightness
    if config.noise_std > 0:
        noise = torch.randn(images.shape, generator=generator, device=generator.device, dtype=dtype)
        images = images + config.noise_std * noise.to(device)
    return images.clamp_(0.0, 1.0)


def augment_batch(
    images: Tensor,
    keypoints: Tensor,
    mask: Tensor,
    flip_permutation: Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Augment a batch; returns new ``(images, keypoints, mask)``, inputs are left untouched.

    Args:
        images: float (N, 1, H, W), gray values in [0, 1].
        keypoints: float (N, K, 2), pixel coordinates (x, y); values where ``mask`` is False
            are ignored (they may be NaN).
        mask: bool (N, K), True where the keypoint is a label.
        flip_permutation: int (K,), ``flipped[i] = original[p[i]]`` (see
            :meth:`KeypointScheme.flip_permutation`).
        config: ranges of the random changes.
        generator: source of all randomness; the same generator state gives the same output.

    Returns:
        images float (N, 1, H, W) in [0, 1]; keypoints (N, K, 2) with 0 where unlabelled;
        mask bool (N, K), False also for keypoints moved outside the image.
    """
    _check_shapes(images, keypoints, mask)
    count, _, height, width = images.shape
    # The geometry is drawn before the photometric changes: the order of the draws is
    # part of what a seed gives.
    forward, flip = _forward_matrices(count, height, width, config, generator)
    forward, flip = forward.to(images.device), flip.to(images.device)
    out_images = _warp_images(images, forward)
    out_keypoints, out_mask = _move_keypoints(
        keypoints, mask, forward, flip, flip_permutation, height, width
    )
    return _photometric(out_images, config, generator), out_keypoints, out_mask
