"""Plain Keras-style CNNs (paper 003's custom models), all built from one :class:`CNNSpec`.

A spec is a stack of conv blocks (``Conv2d(k x k, same padding) -> BatchNorm -> ReLU ->
2x2 pool``) followed by dense layers with dropout and a linear output. ``cnn-baseline`` and
``cnn-manual`` are fixed specs below; ``cnn-tuned`` reads one from JSON, the format the
Optuna search writes::

    {"conv_blocks": [{"filters": 32, "kernel_size": 3, "batch_norm": true, "pool": "max"}],
     "dense_units": [256], "dropout": 0.3}

Convolutions keep their bias even before BatchNorm, as Keras' ``Conv2D`` does by default,
so the parameter counts compare with the paper's Keras counts like for like.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from fkdbench.models.base import (
    DEFAULT_INPUT_SIZE,
    KeypointModel,
    build_head,
    scratch_model,
)
from fkdbench.models.registry import register_model

POOL_KINDS = ("max", "avg")

SPECS_DIR = Path(__file__).with_name("specs")
# The spec cnn-tuned uses when none is given and no tune result exists for the variant.
DEFAULT_SPEC_PATH = SPECS_DIR / "cnn_tuned_default.json"


def variant_spec_path(variant: str) -> Path:
    """The package's default spec for one data variant: a copy of the ``best.json`` of a
    committed ``fkdbench tune`` run (see docs/tuning.md); absent for untuned variants."""
    return SPECS_DIR / f"cnn_tuned_{variant}.json"


class SpecError(ValueError):
    """A CNN spec that cannot be built; the message names the field and the problem."""


def _check_int(value: Any, where: str, minimum: int = 1) -> None:
    # bool is an int subclass: `"filters": true` is a typo, not 1 filter.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ConvBlockSpec:
    """One ``conv -> [BatchNorm] -> ReLU -> [2x2 pool]`` block."""

    # Output channels of the convolution.
    filters: int
    # Square kernel side; odd, so that "same" padding keeps the feature map size.
    kernel_size: int = 3
    # BatchNorm between the convolution and the ReLU.
    batch_norm: bool = True
    # 2x2 stride-2 pooling after the ReLU: "max", "avg", or None to keep the size.
    pool: str | None = "max"

    def __post_init__(self) -> None:
        self.validate("conv block")

    def validate(self, where: str) -> None:
        _check_int(self.filters, f"{where}.filters")
        _check_int(self.kernel_size, f"{where}.kernel_size")
        if self.kernel_size % 2 == 0:
            raise SpecError(
                f"{where}.kernel_size must be odd (same padding), got {self.kernel_size}"
            )
        if not isinstance(self.batch_norm, bool):
            raise SpecError(f"{where}.batch_norm must be true or false, got {self.batch_norm!r}")
        if self.pool is not None and self.pool not in POOL_KINDS:
            raise SpecError(f"{where}.pool must be 'max', 'avg' or null, got {self.pool!r}")


@dataclass(frozen=True)
class CNNSpec:
    """A whole plain CNN: conv blocks, then dense layers, then the linear output."""

    # Feature extractor, in order.
    conv_blocks: tuple[ConvBlockSpec, ...]
    # Hidden dense layers between the flattened features and the output.
    dense_units: tuple[int, ...] = ()
    # Dropout probability after each hidden dense layer.
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.conv_blocks, tuple) or not self.conv_blocks:
            raise SpecError("conv_blocks must be a non-empty list of conv blocks")
        for index, block in enumerate(self.conv_blocks):
            if not isinstance(block, ConvBlockSpec):
                raise SpecError(f"conv_blocks[{index}] must be a conv block, got {block!r}")
            block.validate(f"conv_blocks[{index}]")
        if not isinstance(self.dense_units, tuple):
            raise SpecError(f"dense_units must be a list of integers, got {self.dense_units!r}")
        for index, units in enumerate(self.dense_units):
            _check_int(units, f"dense_units[{index}]")
        dropout_ok = isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
        if not dropout_ok or not 0 <= self.dropout < 1:
            raise SpecError(f"dropout must be a number in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CNNSpec:
        """Validate and convert a JSON-style dict (lists for sequences)."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a CNN spec must be a JSON object, got {type(data).__name__}")
        _reject_unknown(data, cls, "the spec")
        if "conv_blocks" not in data:
            raise SpecError("conv_blocks is missing")
        raw_blocks = data["conv_blocks"]
        if not isinstance(raw_blocks, (list, tuple)):
            raise SpecError(f"conv_blocks must be a list, got {type(raw_blocks).__name__}")
        blocks = []
        for index, raw in enumerate(raw_blocks):
            where = f"conv_blocks[{index}]"
            if not isinstance(raw, Mapping):
                raise SpecError(f"{where} must be an object, got {raw!r}")
            _reject_unknown(raw, ConvBlockSpec, where)
            if "filters" not in raw:
                raise SpecError(f"{where}.filters is missing")
            try:
                blocks.append(ConvBlockSpec(**raw))
            except SpecError as error:
                # Re-word "conv block.x" as "conv_blocks[i].x" so the user finds the entry.
                raise SpecError(str(error).replace("conv block", where, 1)) from None
        dense_units = data.get("dense_units", [])
        if not isinstance(dense_units, (list, tuple)):
            raise SpecError(f"dense_units must be a list of integers, got {dense_units!r}")
        return cls(
            conv_blocks=tuple(blocks),
            dense_units=tuple(dense_units),
            dropout=data.get("dropout", 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form :meth:`from_dict` reads back."""
        return {
            "conv_blocks": [asdict(block) for block in self.conv_blocks],
            "dense_units": list(self.dense_units),
            "dropout": self.dropout,
        }

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> CNNSpec:
        """Read a spec file; every error names the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise SpecError(f"{path}: cannot read the spec ({error.strerror or error})") from None
        except json.JSONDecodeError as error:
            raise SpecError(
                f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
            ) from None
        if isinstance(data, Mapping) and "spec" in data and "conv_blocks" not in data:
            # A tune record (best.json, or a package default copied from one): its spec.
            data = data["spec"]
        try:
            return cls.from_dict(data)
        except SpecError as error:
            raise SpecError(f"{path}: {error}") from None

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        """Write the spec as indented JSON (the format :meth:`from_json_file` reads)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def feature_shape(self, input_size: int) -> tuple[int, int]:
        """``(channels, side)`` of the last block's output for square ``input_size`` inputs."""
        _check_int(input_size, "input_size")
        side = input_size
        for index, block in enumerate(self.conv_blocks):
            if block.pool is not None:
                if side < 2:
                    raise SpecError(
                        f"conv_blocks[{index}].pool: the feature map is already {side}x{side};"
                        f" the spec pools too often for {input_size}-pixel inputs"
                    )
                side //= 2
        return self.conv_blocks[-1].filters, side


def _reject_unknown(data: Mapping[str, Any], spec_class: type, where: str) -> None:
    known = [field.name for field in fields(spec_class)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpecError(f"{where} has unknown field(s) {unknown}; known fields: {known}")


def resolve_spec(spec: CNNSpec | Mapping[str, Any] | str | os.PathLike[str] | None) -> CNNSpec:
    """A :class:`CNNSpec` from a spec, a dict, a JSON file path, or None (the default)."""
    if spec is None:
        return CNNSpec.from_json_file(DEFAULT_SPEC_PATH)
    if isinstance(spec, CNNSpec):
        return spec
    if isinstance(spec, Mapping):
        return CNNSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return CNNSpec.from_json_file(spec)
    raise SpecError(
        f"spec must be a CNNSpec, a dict or a JSON file path, got {type(spec).__name__}"
    )


def _conv_block(in_channels: int, block: ConvBlockSpec) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, block.filters, block.kernel_size, padding=block.kernel_size // 2)
    ]
    if block.batch_norm:
        layers.append(nn.BatchNorm2d(block.filters))
    layers.append(nn.ReLU(inplace=True))
    if block.pool == "max":
        layers.append(nn.MaxPool2d(2))
    elif block.pool == "avg":
        layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


def build_cnn(
    spec: CNNSpec, num_outputs: int, in_chans: int, input_size: int = DEFAULT_INPUT_SIZE
) -> KeypointModel:
    """The :class:`KeypointModel` a spec describes, for square ``input_size`` inputs."""
    channels, side = spec.feature_shape(input_size)
    blocks = []
    in_channels = in_chans
    for block in spec.conv_blocks:
        blocks.append(_conv_block(in_channels, block))
        in_channels = block.filters
    head = build_head(channels * side * side, num_outputs, spec.dense_units, spec.dropout)
    return scratch_model(
        nn.Sequential(*blocks),
        head,
        num_outputs=num_outputs,
        in_chans=in_chans,
        input_size=input_size,
    )


def _blocks(filters: list[int], pooled: int) -> tuple[ConvBlockSpec, ...]:
    """3x3 conv blocks with BatchNorm; max pooling after the first ``pooled`` of them."""
    return tuple(
        ConvBlockSpec(count, pool="max" if index < pooled else None)
        for index, count in enumerate(filters)
    )


# Paper 003's baseline CNN is "conventional, untuned"; its layers are not published. This is
# the conventional shape at the paper's size: six 3x3 conv blocks, max-pooled 96 -> 3 after
# the first five, a 3x3x256 flatten into two 512-unit dense layers. Keras count 1,889,694
# (paper: 1,890,366, -0.04%).
BASELINE_SPEC = CNNSpec(
    conv_blocks=_blocks([16, 32, 64, 64, 128, 256], pooled=5),
    dense_units=(512, 512),
    dropout=0.2,
)

# The manually optimised CNN: the baseline's topology slimmed down (narrower late blocks,
# one 256-unit dense layer). Keras count 235,102 (paper: 235,834, -0.31%).
MANUAL_SPEC = CNNSpec(
    conv_blocks=_blocks([16, 32, 32, 32, 64, 64], pooled=5),
    dense_units=(256,),
    dropout=0.1,
)


@register_model(
    "cnn-baseline",
    paper_reference="003 Table 1, Baseline CNN model: 1,890,366 params (Keras), 7.6 MB",
    description="plain conv/BN/ReLU/max-pool CNN with two dense layers (~1.9M params)",
)
def cnn_baseline(
    num_outputs: int, in_chans: int, *, input_size: int = DEFAULT_INPUT_SIZE
) -> KeypointModel:
    return build_cnn(BASELINE_SPEC, num_outputs, in_chans, input_size)


@register_model(
    "cnn-manual",
    paper_reference="003 Table 1, Manually Optimized CNN: 235,834 params (Keras), 1.0 MB",
    description="hand-optimised small CNN (~236K params)",
)
def cnn_manual(
    num_outputs: int, in_chans: int, *, input_size: int = DEFAULT_INPUT_SIZE
) -> KeypointModel:
    return build_cnn(MANUAL_SPEC, num_outputs, in_chans, input_size)


@register_model(
    "cnn-tuned",
    paper_reference="003 Table 1, Keras Optimized CNN (Keras tuner): 246,062-364,318 params",
    description="CNN built from a JSON spec (the Optuna search's best; default shipped)",
)
def cnn_tuned(
    num_outputs: int,
    in_chans: int,
    *,
    spec: CNNSpec | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    input_size: int = DEFAULT_INPUT_SIZE,
) -> KeypointModel:
    return build_cnn(resolve_spec(spec), num_outputs, in_chans, input_size)
