"""Local pretrained weights for a model's backbone, and freezing it.

Weights come from a file the user supplies (nothing is downloaded): a state dict keyed the
way timm names the backbone's tensors, e.g. one saved from
``timm.create_model("mobilenetv2_100").state_dict()``. Keys the backbone lacks (such as the
ImageNet ``classifier.*``) are ignored and reported.

Pickled checkpoints are read with ``torch.load(..., weights_only=True)`` only: a weights file
is data, and must never be able to run code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fkdbench.models.base import KeypointModel

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"
# Keys under which training scripts commonly nest the state dict.
_NESTING_KEYS = ("state_dict", "model")


class WeightsError(ValueError):
    """A weights file that cannot be loaded; the one-line message names the file."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_backbone_weights` did with each tensor name."""

    # The file read.
    path: Path
    # Backbone tensors set from the file.
    loaded: tuple[str, ...]
    # Of those, the ones converted on the way (the RGB stem folded to gray).
    adapted: tuple[str, ...]
    # Names in the file the backbone does not have (e.g. an ImageNet classifier).
    ignored: tuple[str, ...]
    # Backbone tensors the file lacks: they keep their random initialisation.
    missing: tuple[str, ...]

    def summary(self) -> str:
        return (
            f"{self.path}: {len(self.loaded)} tensors loaded ({len(self.adapted)} adapted), "
            f"{len(self.ignored)} ignored, {len(self.missing)} missing"
        )


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _read_state_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix not in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX):
        raise WeightsError(
            f"{path}: unsupported weights format {suffix or '(no suffix)'}; use "
            f"{', '.join((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX))}"
        )
    try:
        if suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import load_file

            content: Any = load_file(str(path), device="cpu")
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # A truncated or foreign file fails in many ways (zip, pickle, EOF, safetensors
        # header errors); the user needs one line naming the file, whatever the cause.
        raise WeightsError(f"{path}: cannot read weights ({_one_line(error)})") from error
    for key in _NESTING_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping):
        raise WeightsError(
            f"{path}: expected a state dict (name -> tensor), got {type(content).__name__}"
        )
    state = {str(key): value for key, value in content.items()}
    # Saved from a DataParallel / DistributedDataParallel wrapper.
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _stem_key(backbone: nn.Module) -> str | None:
    """Name of the backbone's first convolution weight (the one that sees the image)."""
    first_conv = (getattr(backbone, "pretrained_cfg", None) or {}).get("first_conv")
    if isinstance(first_conv, str):
        return f"{first_conv}.weight"
    # Without timm's metadata, the first 4-D weight in registration order is the stem.
    for name, tensor in backbone.state_dict().items():
        if tensor.ndim == 4:
            return name
    return None


def fold_stem_to_gray(weight: Tensor) -> Tensor:
    """Fold an RGB stem kernel ``(out, 3, kh, kw)`` into a gray one ``(out, 1, kh, kw)``.

    Summing over the input channels equals feeding the gray image three times: a
    convolution is linear in its input, so ``sum_c W_c * g == W_sum * g``. The model's
    built-in standardisation applies one mean/std to the gray channel (the average of the
    RGB ones), so the folded stem sees the same standardised gray image the RGB stem would
    see in all three channels. This is what timm's ``adapt_input_conv`` does for one channel.
    """
    return weight.float().sum(dim=1, keepdim=True).to(weight.dtype)


def load_backbone_weights(model: KeypointModel, path: Path) -> LoadReport:
    """Load a local timm-compatible state dict into ``model.backbone``.

    Reads ``.pth``/``.pt`` (a bare state dict, or one nested under ``"state_dict"`` or
    ``"model"``) or ``.safetensors``. A 3-channel stem is folded for a 1-channel model (see
    :func:`fold_stem_to_gray`). Raises :class:`WeightsError` naming the file for a missing or
    unreadable file, a shape mismatch, or a file sharing no tensor name with the backbone.
    """
    path = Path(path)
    state = _read_state_dict(path)
    backbone = model.backbone
    expected = backbone.state_dict()
    stem = _stem_key(backbone)
    to_load: dict[str, Tensor] = {}
    adapted: list[str] = []
    ignored: list[str] = []
    for key, tensor in state.items():
        if key not in expected or not isinstance(tensor, Tensor):
            ignored.append(key)
            continue
        target_shape = tuple(expected[key].shape)
        if tuple(tensor.shape) != target_shape:
            foldable = (
                key == stem
                and tensor.ndim == 4
                and tensor.shape[1] == 3
                and target_shape[1] == 1
                and (tensor.shape[0], *tensor.shape[2:]) == (target_shape[0], *target_shape[2:])
            )
            if not foldable:
                raise WeightsError(
                    f"{path}: shape mismatch for {key}: {tuple(tensor.shape)} in the file, "
                    f"{target_shape} in the model"
                )
            tensor = fold_stem_to_gray(tensor)
            adapted.append(key)
        to_load[key] = tensor
    if not to_load:
        sample = ", ".join(list(state)[:3]) or "nothing"
        raise WeightsError(
            f"{path}: no tensor name in common with the {type(backbone).__name__} backbone "
            f"(file has {sample}; backbone expects {', '.join(list(expected)[:3])})"
        )
    backbone.load_state_dict(to_load, strict=False)
    return LoadReport(
        path=path,
        loaded=tuple(to_load),
        adapted=tuple(adapted),
        ignored=tuple(ignored),
        missing=tuple(key for key in expected if key not in to_load),
    )


def freeze_backbone(model: KeypointModel) -> None:
    """Stop gradient updates to ``model.backbone``; the head stays trainable.

    BatchNorm layers still update their running statistics whenever the backbone is in
    train mode. Keeping them fixed is the trainer's job (put ``model.backbone.eval()`` after
    every ``model.train()``), because a module's mode belongs to whoever runs the loop.
    """
    for parameter in model.backbone.parameters():
        parameter.requires_grad_(False)
