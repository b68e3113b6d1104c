"""The pretraining methods: what each one feeds a backbone and what it asks it to learn.

Each method returns a :class:`Task`: the module trained (the backbone inside it is the
keypoint model's own, so training the task trains the backbone in place), the number of
images per epoch, the loss of a batch of image indices, and what data it read. Only the
backbone's tensors are kept afterwards; the task's own head or decoder is dropped, as
the autoencoder's decoder is in ae-cnn (``models/autoencoder.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fkdbench import runs
from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import MANIFEST_NAME, load_split, read_manifest
from fkdbench.io import sha256_file
from fkdbench.models import KeypointModel, create_model, normalise_keypoints
from fkdbench.pretrain.options import (
    MASK_PATCH,
    SYNTHETIC_SCHEME,
    SYNTHETIC_SEED_OFFSET,
    PretrainError,
    PretrainOptions,
)

# The unlabelled images of a prepared data set (Kaggle's test.csv), beside its splits.
UNLABELLED_FILE = "unlabelled.npz"
# Channels of the reconstruction decoder's first map; each upsampling halves them.
DECODER_WIDTH = 128
DECODER_MIN_WIDTH = 16


@dataclass
class Task:
    """One method's training problem, ready for the loop."""

    model: KeypointModel  # its backbone is what the checkpoint keeps
    module: nn.Module  # what the optimiser trains (the model, or backbone + decoder)
    rows: int  # images per epoch
    batch_loss: Callable[[Tensor], Tensor]  # index batch -> scalar loss
    data: dict[str, Any]  # what the checkpoint learned from, for the recipe


def recipe_data(options: PretrainOptions, image_size: int) -> dict[str, Any]:
    """What a method's checkpoint depends on in its data, known before any work: the
    generator's stream, or the prepared data's manifest checksum (not its folder's name)."""
    if options.method == "synthetic-landmarks":
        seed = SYNTHETIC_SEED_OFFSET + options.seed
        return {"generator_seed": seed, "scheme": SYNTHETIC_SCHEME, "image_size": image_size}
    manifest = Path(options.data_dir) / MANIFEST_NAME
    return {"manifest_sha256": sha256_file(manifest), "image_size": image_size}


def image_size_of(data_dir: Path) -> int:
    """The prepared data's image side (what the keypoint runs will feed the backbone)."""
    return int(read_manifest(data_dir).get("image_size") or 96)


def backbone_layout(model: KeypointModel) -> str:
    """sha256 of the backbone's tensor names and shapes: its layout, not its values."""
    layout = [(name, tuple(tensor.shape)) for name, tensor in model.backbone.state_dict().items()]
    return hashlib.sha256(repr(layout).encode("utf-8")).hexdigest()


def build_backbone_model(arch: str, num_outputs: int, image_size: int) -> KeypointModel:
    """The architecture as the keypoint runs build it (same kwargs, so the same backbone
    tensor names and shapes), with ``num_outputs`` outputs."""
    kwargs = runs.resolve_model_kwargs({}, arch, image_size)
    return create_model(arch, num_outputs=num_outputs, in_chans=1, **kwargs)


def synthetic_landmarks(
    options: PretrainOptions,
    image_size: int,
    device: torch.device,
    on_faces: Callable[[int], None] | None = None,
) -> Task:
    """Regress 68 dense landmarks on ``options.faces`` generated faces (MSE on coordinates
    normalised to [-1, 1], the model starting at their mean shape, as a keypoint run does)."""
    from fkdbench.data.synthetic import generate_faces

    seed = SYNTHETIC_SEED_OFFSET + options.seed
    images, keypoints = generate_faces(
        options.faces, seed=seed, size=image_size, scheme=SYNTHETIC_SCHEME, on_progress=on_faces
    )
    scheme = get_scheme(SYNTHETIC_SCHEME)
    model = build_backbone_model(options.arch, scheme.num_outputs, image_size)
    targets = torch.from_numpy(normalise_keypoints(keypoints, image_size).reshape(len(images), -1))
    model.start_at_shape(targets.mean(0))
    model.to(device)
    pixels, targets = torch.from_numpy(images).unsqueeze(1).to(device), targets.to(device)

    def batch_loss(indices: Tensor) -> Tensor:
        return F.mse_loss(model(pixels[indices].float().div_(255.0)), targets[indices])

    data = {"generator_seed": seed, "scheme": SYNTHETIC_SCHEME, "image_size": image_size}
    return Task(model, model, len(images), batch_loss, data)


class ReconstructionDecoder(nn.Module):
    """From what a backbone gives (a pooled vector or a feature map) back to the image:
    a projection to a small map, then (upsample x2, conv 3x3, BatchNorm, ReLU) until the
    image side is reached, and a 3x3 conv to reconstruction logits."""

    def __init__(self, feature_shape: tuple[int, ...], image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        width = DECODER_WIDTH
        if len(feature_shape) == 1:
            side = max(1, math.ceil(image_size / 16))
            self.project: nn.Module = nn.Sequential(
                nn.Linear(feature_shape[0], width * side * side),
                nn.ReLU(inplace=True),
                nn.Unflatten(1, (width, side, side)),
            )
        else:
            side = feature_shape[-1]
            self.project = nn.Sequential(
                nn.Conv2d(feature_shape[0], width, 1), nn.ReLU(inplace=True)
            )
        stages: list[nn.Module] = []
        while side < image_size:
            narrower = max(DECODER_MIN_WIDTH, width // 2)
            stages += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(width, narrower, 3, padding=1, bias=False),
                nn.BatchNorm2d(narrower),
                nn.ReLU(inplace=True),
            ]
            width, side = narrower, side * 2
        self.stages = nn.Sequential(*stages)
        self.logits = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.logits(self.stages(self.project(features)))
        if logits.shape[-1] != self.image_size:
            logits = F.interpolate(logits, size=(self.image_size,) * 2, mode="bilinear")
        return logits


class MaskedAutoencoder(nn.Module):
    """The keypoint model's own standardisation and backbone (the same parameter objects)
    plus a :class:`ReconstructionDecoder`; reads the backbone's feature map where it has
    one (timm's ``forward_features``), else its output."""

    def __init__(self, model: KeypointModel, image_size: int) -> None:
        super().__init__()
        self.standardise, self.backbone = model.standardise, model.backbone
        with torch.no_grad():
            was_training = self.backbone.training
            self.backbone.eval()
            probe = self.encode(torch.zeros(2, model.in_chans, image_size, image_size))
            self.backbone.train(was_training)
        self.decoder = ReconstructionDecoder(tuple(probe.shape[1:]), image_size)

    def encode(self, images: Tensor) -> Tensor:
        standardised = self.standardise(images)
        if hasattr(self.backbone, "forward_features"):
            return self.backbone.forward_features(standardised)
        features = self.backbone(standardised)
        return features if features.ndim in (2, 4) else features.flatten(1)

    def forward(self, images: Tensor) -> Tensor:
        return self.decoder(self.encode(images))


def hide_patches(images: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """``images`` (N, 1, S, S) in [0, 1] with a random ``fraction`` of MASK_PATCH-pixel
    patches set to mid-gray, drawn from ``generator``."""
    if fraction <= 0:
        return images
    count, side = images.shape[0], images.shape[-1]
    cells = math.ceil(side / MASK_PATCH)
    hidden = torch.rand((count, 1, cells, cells), generator=generator) < fraction
    hidden = hidden.repeat_interleave(MASK_PATCH, -1).repeat_interleave(MASK_PATCH, -2)
    hidden = hidden[..., :side, :side].to(images.device)
    return torch.where(hidden, torch.full_like(images, 0.5), images)


def autoencoder_images(data_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The images the autoencoder may learn from: the train split and, when the data set
    has one, its unlabelled split; never validation or test faces."""
    data_dir = Path(data_dir)
    parts = [load_split(data_dir, "train").images]
    unlabelled = data_dir / UNLABELLED_FILE
    if unlabelled.is_file():
        try:
            with np.load(unlabelled, allow_pickle=False) as archive:
                parts.append(archive["images"])
        except (OSError, ValueError, KeyError) as error:
            raise PretrainError(
                f"{unlabelled}: not a readable unlabelled split ({error})"
            ) from None
    if any(part.ndim != 3 or part.shape[1:] != parts[0].shape[1:] for part in parts):
        raise PretrainError(f"{unlabelled}: its images differ in size from the train split's")
    data = {
        "data_dir": str(data_dir),
        "manifest_sha256": sha256_file(data_dir / MANIFEST_NAME),
        "splits": ["train", "unlabelled"][: len(parts)],
        "images": int(sum(len(part) for part in parts)),
    }
    return np.concatenate(parts), data


def autoencoder(
    options: PretrainOptions, image_size: int, device: torch.device, generator: torch.Generator
) -> Task:
    """Rebuild each image from a copy with patches hidden (BCE with logits over every
    pixel): the backbone must learn what faces look like to fill them in."""
    images, data = autoencoder_images(options.data_dir)
    if images.shape[-1] != image_size:
        raise PretrainError(
            f"{options.data_dir}: images are {images.shape[-1]} px, the manifest says {image_size}"
        )
    model = build_backbone_model(options.arch, 2, image_size)
    module = MaskedAutoencoder(model, image_size).to(device)
    pixels = torch.from_numpy(images).unsqueeze(1).to(device)

    def batch_loss(indices: Tensor) -> Tensor:
        target = pixels[indices].float().div_(255.0)
        shown = hide_patches(target, options.mask_fraction, generator)
        return F.binary_cross_entropy_with_logits(module(shown), target)

    return Task(model, module, len(images), batch_loss, data)
