"""The keypoint losses (``--loss``), each masked so that a missing keypoint costs nothing.

A loss compares what the model's head is trained on with the labels: coordinates for the
``regression`` and ``integral`` heads, Gaussian target maps for the ``heatmap`` head
(``fkdbench.models.heads``). ``mse`` and ``l1`` apply to both; ``wing`` is made for
coordinates and ``adaptive-wing`` for heatmaps, and a run asking for one on the other kind
is refused before it starts (:func:`check_loss`).

- ``mse``: the papers' loss, on normalised coordinates (or heatmap values).
- ``l1``: absolute error, less dominated by the few faces that are far off.
- ``wing`` (Feng et al. 2018): ``w ln(1 + |x| / eps)`` below ``w``, linear above, on the
  error in input pixels with the paper's ``w = 10``, ``eps = 2``; it amplifies the small and
  medium errors that MSE all but ignores once training is under way.
- ``adaptive-wing`` (Wang et al. 2019): wing's shape on heatmaps, its curvature following
  the target value, so foreground pixels near a peak weigh more than the background;
  ``alpha = 2.1``, ``omega = 14``, ``eps = 1``, ``theta = 0.5`` as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from fkdbench.config import LOSSES
from fkdbench.models.heads import HEATMAP_SIGMA, gaussian_targets

# Which losses each kind of training target takes.
COORDINATE_LOSSES = ("mse", "l1", "wing")
HEATMAP_LOSSES = ("mse", "l1", "adaptive-wing")

WING_WIDTH_PIXELS = 10.0
WING_EPSILON_PIXELS = 2.0
AWING_ALPHA, AWING_OMEGA, AWING_EPSILON, AWING_THETA = 2.1, 14.0, 1.0, 0.5

# model, [0, 1] images, normalised (N, K, 2) targets, (N, K) mask -> scalar loss
KeypointLoss = Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]


class LossError(ValueError):
    """A loss that does not exist, or does not fit the head's training target."""


def check_loss(loss: str, head: str) -> None:
    """Refuse an unknown loss, or one made for the other kind of target than ``head``'s."""
    if loss not in LOSSES:
        raise LossError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    if head == "heatmap" and loss not in HEATMAP_LOSSES:
        raise LossError(
            f"loss {loss!r} is for coordinates; the heatmap head trains on maps: "
            f"use one of {', '.join(HEATMAP_LOSSES)}"
        )
    if head != "heatmap" and loss not in COORDINATE_LOSSES:
        raise LossError(
            f"loss {loss!r} is for heatmaps; the {head} head trains on coordinates: "
            f"use one of {', '.join(COORDINATE_LOSSES)}"
        )


def masked_mean(elementwise: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``elementwise`` (N, K, ...) over the labelled keypoints of ``mask`` (N, K).

    Unlabelled targets must be finite (the variants store 0) since NaN * 0 is NaN; an all-
    masked batch gives 0, not NaN.
    """
    weights = mask.to(elementwise.dtype).reshape(*mask.shape, *(1,) * (elementwise.ndim - 2))
    weights = weights.expand_as(elementwise)
    return (elementwise * weights).sum() / weights.sum().clamp_min(1.0)


def masked_mse(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the labelled coordinates of (N, K, 2) tensors."""
    return masked_mean((predicted - target).square(), mask)


def wing(error: Tensor, width: float = WING_WIDTH_PIXELS, epsilon: float = WING_EPSILON_PIXELS):
    """Feng et al.'s wing loss of an error (any shape, the units of ``width``)."""
    magnitude = error.abs()
    constant = width - width * math.log1p(width / epsilon)
    return torch.where(
        magnitude < width, width * torch.log1p(magnitude / epsilon), magnitude - constant
    )


def adaptive_wing(predicted: Tensor, target: Tensor) -> Tensor:
    """Wang et al.'s adaptive wing loss, elementwise, of heatmaps with targets in [0, 1]."""
    alpha, omega, epsilon, theta = AWING_ALPHA, AWING_OMEGA, AWING_EPSILON, AWING_THETA
    difference = (target - predicted).abs()
    power = alpha - target
    ratio = theta / epsilon
    scale = omega / (1 + ratio**power) * power * ratio ** (power - 1) / epsilon
    offset = theta * scale - omega * torch.log1p(ratio**power)
    small = omega * torch.log1p((difference / epsilon) ** power)
    return torch.where(difference < theta, small, scale * difference - offset)


def _coordinate_elementwise(loss: str, image_size: int) -> Callable[[Tensor, Tensor], Tensor]:
    if loss == "mse":
        return lambda predicted, target: (predicted - target).square()
    if loss == "l1":
        return lambda predicted, target: (predicted - target).abs()
    # wing works in input pixels: one normalised unit is half the image side.
    return lambda predicted, target: wing((predicted - target) * (image_size / 2))


def _heatmap_elementwise(loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    if loss == "mse":
        return lambda predicted, target: (predicted - target).square()
    if loss == "l1":
        return lambda predicted, target: (predicted - target).abs()
    return adaptive_wing


def keypoint_loss(loss: str, head: str, image_size: int) -> KeypointLoss:
    """The batch loss of a run: ``loss`` on what ``head`` trains on (see the module doc)."""
    check_loss(loss, head)
    if head == "heatmap":
        elementwise = _heatmap_elementwise(loss)

        def heatmap_loss(model: nn.Module, images: Tensor, target: Tensor, mask: Tensor):
            maps = model.keypoint_maps(images)
            targets = gaussian_targets(target, maps.shape[-1])
            return masked_mean(elementwise(maps, targets), mask)

        return heatmap_loss
    if loss == "mse":

        def mse_loss(model: nn.Module, images: Tensor, target: Tensor, mask: Tensor):
            # Looked up at call time, so a test can stand in for the papers' loss.
            return masked_mse(model(images).reshape(target.shape), target, mask)

        return mse_loss
    coordinate = _coordinate_elementwise(loss, image_size)

    def coordinate_loss(model: nn.Module, images: Tensor, target: Tensor, mask: Tensor):
        return masked_mean(coordinate(model(images).reshape(target.shape), target), mask)

    return coordinate_loss


def describe_loss(loss: str, head: str) -> str:
    """One line for config.json's ``optimisation.loss``."""
    if head == "heatmap":
        return (
            f"masked {loss} on Gaussian heatmaps (sigma {HEATMAP_SIGMA} heatmap pixels), "
            "labelled keypoints only"
        )
    name = "MSE" if loss == "mse" else loss
    return f"masked {name} on normalised coordinates (labelled coordinates only)"
