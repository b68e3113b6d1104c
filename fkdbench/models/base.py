"""What every keypoint model is: a backbone, a head, and one coordinate convention.

Every registered architecture builds a :class:`KeypointModel`. Its ``forward`` takes gray
images with values in [0, 1], shape ``(N, in_chans, H, W)``, and returns ``(N, num_outputs)``
*normalised* coordinates, interleaved ``x0, y0, x1, y1, ...``. Input standardisation lives
inside the model, so an exported model takes [0, 1] images and nothing else needs to know
the statistics a given backbone expects.

The coordinate convention lives here and nowhere else: see :func:`normalise_keypoints`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from fkdbench.models.heads import HEADS, SPATIAL_HEADS, SpatialHead, heatmap_side

# Square input side every architecture defaults to (the Kaggle images are 96x96).
DEFAULT_INPUT_SIZE = 96

# Standardisation for networks trained from scratch: [0, 1] gray values centred on [-1, 1].
# BatchNorm absorbs whatever remains of the data set's own statistics.
SCRATCH_MEAN = (0.5,)
SCRATCH_STD = (0.5,)

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def _centre_and_half(image_size: float) -> tuple[float, float]:
    if not image_size > 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return (image_size - 1) / 2, image_size / 2


def normalise_keypoints(pixels: ArrayT, image_size: float) -> ArrayT:
    """Pixel coordinates to the normalised coordinates the models predict.

    ``coords = (pixel - (image_size - 1) / 2) / (image_size / 2)``

    Pixel column ``i`` has its centre at ``x = i`` (the Kaggle convention), so a square
    image of side ``S`` spans ``[-0.5, S - 0.5]`` in pixels. The mapping sends the image
    centre to 0 and the outer edges of the border pixels to -1 and +1 (the same convention
    as ``grid_sample(align_corners=False)``), so targets stay O(1) whatever the image size.
    Works on numpy arrays and torch tensors alike, returns the same kind, and leaves NaN
    (a missing label) as NaN.
    """
    centre, half = _centre_and_half(image_size)
    return (pixels - centre) / half


def denormalise_keypoints(coords: ArrayT, image_size: float) -> ArrayT:
    """Inverse of :func:`normalise_keypoints`: model outputs back to pixel coordinates."""
    centre, half = _centre_and_half(image_size)
    return coords * half + centre


class Standardise(nn.Module):
    """``(images - mean) / std`` per channel, with the statistics saved in the state dict."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(value <= 0 for value in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std


class KeypointModel(nn.Module):
    """``head(backbone(standardise(images)))``: the one shape every architecture takes.

    ``backbone`` is the feature extractor (the part pretrained weights load into and the
    part a ``frozen`` run freezes); ``head`` is the regressor and starts with a flatten, so
    the backbone may return feature maps or pooled vectors.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        num_outputs: int,
        in_chans: int,
        input_mean: Sequence[float],
        input_std: Sequence[float],
        input_size: int | None = None,
        head_kind: str = "regression",
    ) -> None:
        super().__init__()
        if len(input_mean) != in_chans:
            raise ValueError(f"input_mean has {len(input_mean)} values for {in_chans} channels")
        self.standardise = Standardise(input_mean, input_std)
        self.backbone = backbone
        self.head = head
        self.num_outputs = num_outputs
        self.in_chans = in_chans
        # Side the model was built for when its head flattens a feature map of fixed size;
        # None when global pooling makes it accept any size.
        self.input_size = input_size
        # "regression" (the papers' dense head) or a spatial head of models.heads.
        self.head_kind = head_kind
        # Set by enable_flip_test; not in the state dict (config.json rebuilds it).
        self.register_buffer("flip_permutation", None, persistent=False)
        self.register_buffer(
            "mirror_sign", torch.tensor([-1.0, 1.0]).view(1, 1, 2), persistent=False
        )

    def forward(self, images: Tensor) -> Tensor:
        # Without this check a wrong size surfaces as an opaque matmul error in the head.
        # Skipped while tracing (the TorchScript ONNX exporter), where it would only warn.
        checked = self.input_size is not None and not torch.jit.is_tracing()
        if checked and images.shape[-2:] != (self.input_size,) * 2:
            raise ValueError(
                f"this model was built for {self.input_size}x{self.input_size} images, "
                f"got {tuple(images.shape[-2:])}; pass input_size= to create_model"
            )
        if self.flip_permutation is None or self.training:
            return self.head(self.features(images))
        return self._flip_averaged(images)

    def features(self, images: Tensor) -> Tensor:
        """What the head reads: the backbone's output, or its feature map (before any
        global pooling) under a spatial head."""
        standardised = self.standardise(images)
        if self.head_kind in SPATIAL_HEADS and hasattr(self.backbone, "forward_features"):
            return self.backbone.forward_features(standardised)
        return self.backbone(standardised)

    def keypoint_maps(self, images: Tensor) -> Tensor:
        """The heatmap head's raw maps (N, K, side, side), which its loss compares."""
        if not isinstance(self.head, SpatialHead):
            raise ValueError(f"a {self.head_kind} head has no keypoint maps")
        return self.head.maps(self.features(images))

    def _flip_averaged(self, images: Tensor) -> Tensor:
        """The flip test: the mean of the prediction and the mirrored prediction of the
        mirrored image, its keypoints put back in order (one batch of 2N images)."""
        both = self.head(self.features(torch.cat([images, images.flip(-1)])))
        both = both.reshape(2, images.shape[0], -1, 2)
        mirrored = both[1].index_select(1, self.flip_permutation) * self.mirror_sign
        return ((both[0] + mirrored) / 2).flatten(1)

    def replace_head(self, kind: str, input_size: int) -> None:
        """End the model with another head (see ``models.heads``), built for square
        ``input_size`` inputs; a model with a spatial head accepts that size only."""
        if kind not in HEADS:
            raise ValueError(f"unknown head {kind!r}; known: {', '.join(HEADS)}")
        self.head_kind = kind
        probe = torch.zeros(1, self.in_chans, input_size, input_size)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            features = self.features(probe)
        self.train(was_training)
        if kind == "regression":
            self.head = build_head(features[0].numel(), self.num_outputs)
        elif features.ndim != 4:
            raise ValueError(f"a {kind} head needs a feature map, got shape {features.shape}")
        else:
            channels, side = features.shape[1], features.shape[-1]
            keypoints = self.num_outputs // 2
            self.head = SpatialHead(kind, channels, side, keypoints, heatmap_side(input_size))
        if kind in SPATIAL_HEADS or features.ndim == 4:
            self.input_size = input_size

    def enable_flip_test(self, flip_permutation: Sequence[int]) -> None:
        """Average every eval-mode prediction with that of the mirrored image;
        ``flipped[i] = original[flip_permutation[i]]`` (the scheme's mirror pairs)."""
        permutation = torch.as_tensor(list(flip_permutation), dtype=torch.long)
        if sorted(permutation.tolist()) != list(range(self.num_outputs // 2)):
            raise ValueError(
                f"flip_permutation must order the {self.num_outputs // 2} keypoints, "
                f"got {permutation.tolist()}"
            )
        self.register_buffer("flip_permutation", permutation, persistent=False)

    @torch.no_grad()
    def start_at_shape(self, mean_coords: Tensor, weight_scale: float = 0.1) -> None:
        """Make the untrained model answer (about) ``mean_coords``, normalised (2K,).

        The output layer's bias becomes the mean shape and its weights shrink, so training
        starts from the mean-shape predictor instead of a random face; big backbones trained
        briefly then land near the baseline rather than far worse than it. Spatial heads
        have no such bias: they start where their maps put the points.
        """
        if self.head_kind in SPATIAL_HEADS:
            return
        output = [module for module in self.head.modules() if isinstance(module, nn.Linear)][-1]
        output.bias.copy_(mean_coords.to(output.bias))
        output.weight.mul_(weight_scale)


def scratch_model(
    backbone: nn.Module,
    head: nn.Module,
    *,
    num_outputs: int,
    in_chans: int,
    input_size: int | None,
    head_kind: str = "regression",
) -> KeypointModel:
    """A :class:`KeypointModel` for a network trained from scratch (standardised with
    :data:`SCRATCH_MEAN` / :data:`SCRATCH_STD`): the families written here."""
    return KeypointModel(
        backbone,
        head,
        num_outputs=num_outputs,
        in_chans=in_chans,
        input_mean=SCRATCH_MEAN * in_chans,
        input_std=SCRATCH_STD * in_chans,
        input_size=input_size,
        head_kind=head_kind,
    )


def build_head(
    in_features: int,
    num_outputs: int,
    hidden_units: Sequence[int] = (),
    dropout: float = 0.0,
) -> nn.Sequential:
    """The regressor every architecture ends with: flatten, dense layers, linear output.

    Each hidden layer is ``Linear -> ReLU -> Dropout`` (Keras' ``Dense(relu)`` followed by
    ``Dropout``); the output layer is linear because coordinates are unbounded targets.
    With no hidden units this is the paper's "GAP + Dense" head for pooled backbones.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for units in hidden_units:
        layers += [nn.Linear(width, units), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)
