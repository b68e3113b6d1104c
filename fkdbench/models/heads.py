"""Keypoint heads beside the papers' dense regressor: heatmaps and integral regression.

Both papers regress coordinates from a dense layer (``regression``, :func:`base.build_head`).
The two spatial heads here keep the backbone's feature map instead of flattening it, bring
it to a heatmap of side ``input / HEATMAP_STRIDE`` (Simple Baselines' deconvolutions,
Xiao et al. 2018) and read one map per keypoint:

- ``heatmap``: trained against Gaussian target maps (sigma :data:`HEATMAP_SIGMA` heatmap
  pixels); decoded by the arg-max with the sub-pixel shift of a parabola fitted to the log
  of the map around it, per axis (DARK, Zhang et al. 2020). On a Gaussian the log is a
  parabola, so a known point decodes back exactly (to float precision) anywhere but in
  the border cells, which keep their centre (at most half a cell, 2 input pixels, off).
- ``integral``: soft-argmax (Sun et al. 2018, "integral regression"; DSNT): the map is a
  softmax over positions and the coordinate its expectation, so it trains end to end with
  a coordinate loss and needs no target maps.

Both decode inside ``forward``, so the exported ONNX graph returns coordinates like every
other model and ``bench`` and ``predict`` time and run the whole model. The heatmap head's
``maps`` give the raw maps its loss needs. Coordinates on a heatmap of side ``R`` follow
the same convention as on the image (:func:`base.normalise_keypoints` with side ``R``):
both span [-1, 1] edge to edge, so a heatmap position maps to the image exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The heads a model can end with; "regression" is the papers' flatten + dense layers.
HEADS = ("regression", "heatmap", "integral")
SPATIAL_HEADS = ("heatmap", "integral")
# Heatmap side = input side / this (96 -> 24): the common choice of HRNet and Simple
# Baselines; each heatmap cell covers 4x4 input pixels.
HEATMAP_STRIDE = 4
# Standard deviation of the heatmap head's Gaussian targets, in heatmap pixels (6 input
# pixels at stride 4): wide enough that the log-parabola decoding sees the peak's shape.
HEATMAP_SIGMA = 1.5
# Channels of the deconvolution stack that brings a coarse feature map up to the heatmap.
DECONV_CHANNELS = 64
# Floor under heatmap values before the log of the sub-pixel fit (a map is >= 0 ideally).
_LOG_FLOOR = 1e-6


def heatmap_side(input_size: int) -> int:
    """The heatmap side for square ``input_size`` inputs (at least 1)."""
    return max(1, input_size // HEATMAP_STRIDE)


def heatmap_grid(side: int, device: torch.device | None = None) -> Tensor:
    """Normalised coordinates of the ``side`` heatmap cell centres, (side,)."""
    cells = torch.arange(side, dtype=torch.float32, device=device)
    return (cells - (side - 1) / 2) / (side / 2)


def gaussian_targets(coords: Tensor, side: int, sigma: float = HEATMAP_SIGMA) -> Tensor:
    """Gaussian target maps (N, K, side, side), peak 1 at each normalised point (N, K, 2)."""
    cells = torch.arange(side, dtype=coords.dtype, device=coords.device)
    # Normalised -> heatmap pixels: the inverse of heatmap_grid.
    points = coords * (side / 2) + (side - 1) / 2
    dx = (cells.view(1, 1, -1) - points[..., 0:1]) ** 2  # (N, K, W)
    dy = (cells.view(1, 1, -1) - points[..., 1:2]) ** 2  # (N, K, H)
    return torch.exp(-(dy.unsqueeze(-1) + dx.unsqueeze(-2)) / (2 * sigma**2))


def decode_heatmaps(maps: Tensor) -> Tensor:
    """Normalised (N, K, 2) points of heatmaps (N, K, H, W): arg-max + log-parabola shift."""
    batch, keypoints, height, width = maps.shape
    flat = maps.reshape(batch, keypoints, height * width)
    index = flat.argmax(dim=-1, keepdim=True)  # (N, K, 1)
    row = torch.div(index, width, rounding_mode="floor")
    col = index - row * width
    log = flat.clamp_min(_LOG_FLOOR).log()

    def at(r: Tensor, c: Tensor) -> Tensor:
        return log.gather(-1, r.clamp(0, height - 1) * width + c.clamp(0, width - 1))

    centre = at(row, col)
    # A border cell has one neighbour: no parabola, the cell centre stands.
    inside_x = (col > 0) & (col < width - 1)
    inside_y = (row > 0) & (row < height - 1)
    shift_x = _parabola_shift(at(row, col - 1), centre, at(row, col + 1)) * inside_x
    shift_y = _parabola_shift(at(row - 1, col), centre, at(row + 1, col)) * inside_y
    x = (col.float() + shift_x - (width - 1) / 2) / (width / 2)
    y = (row.float() + shift_y - (height - 1) / 2) / (height / 2)
    return torch.cat([x, y], dim=-1)


def _parabola_shift(before: Tensor, centre: Tensor, after: Tensor) -> Tensor:
    """Vertex offset of the parabola through three equally spaced log values, in cells;
    0 where the values do not curve down (a flat or border neighbourhood)."""
    slope = (after - before) / 2
    curvature = after - 2 * centre + before
    safe = torch.where(curvature < 0, curvature, torch.full_like(curvature, -1.0))
    shift = torch.where(curvature < 0, -slope / safe, torch.zeros_like(slope))
    return shift.clamp(-1.0, 1.0)


def soft_argmax(logits: Tensor) -> Tensor:
    """Normalised (N, K, 2) expectations of softmax(logits) over (N, K, H, W) positions."""
    batch, keypoints, height, width = logits.shape
    weights = logits.reshape(batch, keypoints, -1).softmax(dim=-1)
    weights = weights.reshape(batch, keypoints, height, width)
    x = (weights.sum(dim=2) * heatmap_grid(width, logits.device)).sum(dim=-1)
    y = (weights.sum(dim=3) * heatmap_grid(height, logits.device)).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def _conv_bn_relu(layer: nn.Module, channels: int) -> list[nn.Module]:
    return [layer, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class SpatialHead(nn.Module):
    """Feature map (N, C, s, s) -> one map per keypoint at ``side``, decoded in forward.

    A 1x1 convolution to :data:`DECONV_CHANNELS` (skipped when the features already have
    that width), then 4x4 stride-2 transposed convolutions until the map reaches ``side``
    (a bilinear resize where doubling does not land on it), then a 1x1 convolution to the
    ``num_keypoints`` maps.
    """

    def __init__(
        self, kind: str, in_channels: int, in_side: int, num_keypoints: int, side: int
    ) -> None:
        super().__init__()
        if kind not in SPATIAL_HEADS:
            raise ValueError(f"unknown spatial head {kind!r}; known: {', '.join(SPATIAL_HEADS)}")
        self.kind = kind
        self.side = side
        layers: list[nn.Module] = []
        width = in_channels
        if width != DECONV_CHANNELS and in_side < side:
            layers += _conv_bn_relu(nn.Conv2d(width, DECONV_CHANNELS, 1), DECONV_CHANNELS)
            width = DECONV_CHANNELS
        while in_side < side:
            deconv = nn.ConvTranspose2d(width, DECONV_CHANNELS, 4, stride=2, padding=1)
            layers += _conv_bn_relu(deconv, DECONV_CHANNELS)
            width, in_side = DECONV_CHANNELS, in_side * 2
        self.upsample = nn.Sequential(*layers)
        self.resize = in_side != side
        self.output = nn.Conv2d(width, num_keypoints, 1)

    def maps(self, features: Tensor) -> Tensor:
        """The raw maps (N, K, side, side): heatmaps, or the integral head's logits."""
        features = self.upsample(features)
        if self.resize:
            features = F.interpolate(
                features, size=(self.side, self.side), mode="bilinear", align_corners=False
            )
        return self.output(features)

    def forward(self, features: Tensor) -> Tensor:
        maps = self.maps(features)
        decode = decode_heatmaps if self.kind == "heatmap" else soft_argmax
        return decode(maps).flatten(1)
