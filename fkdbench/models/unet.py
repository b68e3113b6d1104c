"""A small U-Net for keypoints: the family of the stacked hourglass (Newell et al. 2016)
and HRNet, written here at the papers' sizes.

The regressors of both papers pool a face down to a few cells and ask dense layers for
coordinates. Landmark networks instead keep a high-resolution map and fuse the coarse,
semantic features back into it. This one encodes a 96x96 face to 3x3 through five levels
(a stride-2 stem, then four 2x poolings), then decodes back to a quarter of the input
(24x24 at stride 4, the heatmap side of ``models.heads``), adding each encoder level's
features through a skip connection. Its head reads one map per keypoint from that map:
``integral`` (soft-argmax) by default, ``heatmap`` or a dense ``regression`` on request.

Every convolution is ``3x3 conv -> BatchNorm -> ReLU``: one in the stride-2 stem, two per
encoder level; upsampling is nearest-neighbour to the skip's exact size (so odd input
sides work), then concatenation and one convolution per decoder level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fkdbench.models.base import DEFAULT_INPUT_SIZE, KeypointModel, scratch_model
from fkdbench.models.heads import SpatialHead, heatmap_side
from fkdbench.models.registry import register_model

# Encoder widths, level by level: stride 2 (the stem), 4, 8, 16, 32.
ENCODER_WIDTHS = (16, 24, 48, 64, 96)
# Decoder widths back up to stride 16, 8 and 4 (the output map).
DECODER_WIDTHS = (64, 48, 32)
# Measured with ONNX Runtime at batch 1 on 2 threads (load 2.5, one run, cnn-manual 0.65 ms
# beside it): widths 16-128 with two convolutions per decoder level and a second stem
# convolution took 6.6 ms (913K params); one convolution each, 2.0 ms; these widths,
# 1.4 ms (406K params). The field's small landmark models live under ~2 ms.


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetFeatures(nn.Module):
    """Image (N, C, H, W) -> feature map (N, decoder_widths[-1], H/4, W/4)."""

    def __init__(
        self,
        in_chans: int,
        encoder_widths: Sequence[int] = ENCODER_WIDTHS,
        decoder_widths: Sequence[int] = DECODER_WIDTHS,
    ) -> None:
        super().__init__()
        if len(decoder_widths) != len(encoder_widths) - 2:
            raise ValueError("the decoder climbs back to stride 4: one width per level above")
        self.stem = _conv(in_chans, encoder_widths[0], stride=2)
        self.down = nn.ModuleList(
            nn.Sequential(_conv(before, after), _conv(after, after))
            for before, after in zip(encoder_widths[:-1], encoder_widths[1:], strict=True)
        )
        self.up = nn.ModuleList()
        below = encoder_widths[-1]
        # Skips from stride 16 down to stride 4: encoder levels -2 .. 1.
        for skip, width in zip(encoder_widths[-2:0:-1], decoder_widths, strict=True):
            self.up.append(_conv(below + skip, width))
            below = width
        self.num_features = decoder_widths[-1]

    def forward(self, images: Tensor) -> Tensor:
        x = self.stem(images)
        skips = []
        for level in self.down:
            skips.append(x)
            x = level(F.max_pool2d(x, 2))
        # skips: stride 2, 4, 8, 16; the decoder uses 16, 8 and 4.
        for level, skip in zip(self.up, skips[:0:-1], strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = level(torch.cat([x, skip], dim=1))
        return x


def unet_model(
    num_outputs: int,
    in_chans: int,
    input_size: int,
    encoder_widths: Sequence[int] = ENCODER_WIDTHS,
    decoder_widths: Sequence[int] = DECODER_WIDTHS,
) -> KeypointModel:
    """The U-Net with its default integral head, for square ``input_size`` inputs."""
    if input_size < 32:
        raise ValueError(
            f"the U-Net pools a face 32x; it needs inputs of 32 pixels or more, got {input_size}"
        )
    backbone = UNetFeatures(in_chans, encoder_widths, decoder_widths)
    side = heatmap_side(input_size)
    head = SpatialHead("integral", backbone.num_features, side, num_outputs // 2, side)
    return scratch_model(
        backbone,
        head,
        num_outputs=num_outputs,
        in_chans=in_chans,
        input_size=input_size,
        head_kind="integral",
    )


@register_model(
    "unet-small",
    default_head="integral",
    paper_reference="none: the landmark field's encoder-decoder (hourglass, HRNet family)",
    description="small U-Net to a 24x24 map (stride 4) + soft-argmax head",
)
def unet_small(
    num_outputs: int, in_chans: int, *, input_size: int = DEFAULT_INPUT_SIZE
) -> KeypointModel:
    return unet_model(num_outputs, in_chans, input_size)


@register_model(
    "test-unet",
    default_head="integral",
    tiny_of="unet-small",
    description="test variant: the U-Net at widths 4-16",
)
def test_unet(
    num_outputs: int, in_chans: int, *, input_size: int = DEFAULT_INPUT_SIZE
) -> KeypointModel:
    return unet_model(num_outputs, in_chans, input_size, (4, 8, 8, 12, 16), (12, 8, 8))
