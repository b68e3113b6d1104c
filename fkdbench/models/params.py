"""Parameter counts, the PyTorch way and the Keras way (paper 003's Table 1 uses Keras')."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

# Buffer names of BatchNorm's running statistics (every torch BatchNorm, and timm's
# BatchNormAct2d, which subclasses it).
_BN_STATISTICS = ("running_mean", "running_var")


@dataclass(frozen=True)
class ParamCounts:
    """How many numbers a model holds, counted three ways."""

    # Learnable parameters (every nn.Parameter element, frozen or not): PyTorch's usual count.
    pytorch: int
    # Learnable parameters + BatchNorm moving mean and variance: Keras' model.count_params(),
    # which lists the BN statistics as "non-trainable params". Compare with the papers.
    keras: int
    # Parameters with requires_grad: what an optimizer would update now.
    trainable: int


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count ``model``'s parameters (shared parameters once)."""
    parameters = list(model.parameters())
    bn_statistics = sum(
        buffer.numel()
        for name, buffer in model.named_buffers()
        if name.rsplit(".", 1)[-1] in _BN_STATISTICS
    )
    pytorch = sum(parameter.numel() for parameter in parameters)
    return ParamCounts(
        pytorch=pytorch,
        keras=pytorch + bn_statistics,
        trainable=sum(p.numel() for p in parameters if p.requires_grad),
    )
