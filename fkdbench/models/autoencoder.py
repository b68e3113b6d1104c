"""Autoencoder-pretrained CNN (paper 000, Sinha et al.).

A small convolutional autoencoder is first trained to reconstruct the face images with
binary cross-entropy; its encoder then becomes the backbone of a keypoint model whose head
is four dense layers. The paper describes "2 CNN layers ... 4 Dense layers".

The keypoint model holds the encoder only. The decoder lives in the module
:func:`build_pretrainer` returns, which shares the encoder's parameters: training it trains
the keypoint model's backbone in place, and the decoder never reaches the keypoint model's
parameter count, checkpoint or exported file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from fkdbench.models.base import (
    DEFAULT_INPUT_SIZE,
    KeypointModel,
    build_head,
    scratch_model,
)
from fkdbench.models.registry import register_model

# Encoder widths: 32 channels at 48x48, then 8 at 24x24 (4,608 values: half the pixels of a
# 96x96 image, so the reconstruction task forces a real compression).
ENCODER_CHANNELS = (32, 8)
# The head's hidden layers; with the output layer these are the paper's four dense layers.
HEAD_UNITS = (256, 128, 64)
HEAD_DROPOUT = 0.2


class ConvEncoder(nn.Sequential):
    """``(Conv 3x3 -> ReLU -> MaxPool 2x2)`` per width: each halves the feature map."""

    def __init__(self, in_chans: int, channels: Sequence[int] = ENCODER_CHANNELS) -> None:
        layers: list[nn.Module] = []
        previous = in_chans
        for width in channels:
            layers += [
                nn.Conv2d(previous, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = width
        super().__init__(*layers)
        self.in_chans = in_chans
        self.channels = tuple(channels)

    def output_side(self, input_size: int) -> int:
        return input_size // 2 ** len(self.channels)


class ConvDecoder(nn.Sequential):
    """Mirror of :class:`ConvEncoder`: (Upsample x2 -> Conv 3x3 -> ReLU) per width, then a
    3x3 conv to the image channels giving reconstruction logits (no sigmoid: the loss is
    ``BCEWithLogitsLoss``, which is the numerically stable form of sigmoid + BCE)."""

    def __init__(self, encoder: ConvEncoder) -> None:
        widths = encoder.channels[::-1]
        layers: list[nn.Module] = []
        previous = widths[0]
        for width in (*widths[1:], widths[-1]):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(previous, width, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
            previous = width
        layers.append(nn.Conv2d(previous, encoder.in_chans, 3, padding=1))
        super().__init__(*layers)


class AutoencoderPretrainer(nn.Module):
    """Reconstruction model for the pretraining phase: the keypoint model's own encoder
    (same parameter objects) plus a decoder. ``forward`` returns logits shaped like the
    input; train with ``BCEWithLogitsLoss(logits, images)`` on [0, 1] images."""

    def __init__(self, model: KeypointModel) -> None:
        super().__init__()
        if not isinstance(model.backbone, ConvEncoder):
            raise ValueError(
                "build_pretrainer needs an ae-cnn model (a ConvEncoder backbone), got a "
                f"{type(model.backbone).__name__} backbone"
            )
        # Shared, not copied: the keypoint model sees every pretraining update.
        self.standardise = model.standardise
        self.encoder = model.backbone
        self.decoder = ConvDecoder(model.backbone)

    def forward(self, images: Tensor) -> Tensor:
        logits = self.decoder(self.encoder(self.standardise(images)))
        if logits.shape[-2:] != images.shape[-2:]:
            # Pooling floors odd sides (97 -> 48 -> 24 -> 96): resize back to the input.
            logits = F.interpolate(
                logits, size=images.shape[-2:], mode="bilinear", align_corners=False
            )
        return logits


def build_pretrainer(model: KeypointModel) -> nn.Module:
    """The reconstruction model sharing ``model``'s encoder (see module docstring)."""
    return AutoencoderPretrainer(model)


@register_model(
    "ae-cnn",
    pretrain="autoencoder",
    paper_reference="000 (Sinha et al.): conv autoencoder pretrained with BCE, encoder +"
    " 4 dense layers",
    description="2-layer conv encoder pretrained as an autoencoder + 4-layer dense head",
)
def ae_cnn(
    num_outputs: int, in_chans: int, *, input_size: int = DEFAULT_INPUT_SIZE
) -> KeypointModel:
    encoder = ConvEncoder(in_chans)
    side = encoder.output_side(input_size)
    if side < 1:
        raise ValueError(f"ae-cnn needs inputs of at least 4 pixels, got {input_size}")
    head = build_head(encoder.channels[-1] * side * side, num_outputs, HEAD_UNITS, HEAD_DROPOUT)
    return scratch_model(
        encoder,
        head,
        num_outputs=num_outputs,
        in_chans=in_chans,
        input_size=input_size,
    )
