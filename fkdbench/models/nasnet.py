"""NASNet-A Mobile (Keras ``NASNetMobile``, "NASNet-A (4 @ 1056)") as a PyTorch feature extractor.

timm only ships NASNet-A Large, so the Mobile variant is written here, following the
structure of ``keras.applications.nasnet`` layer for layer so that the parameter count
matches Keras exactly (4,269,716 without the top, counting BatchNorm moving statistics
the way Keras does).

Config: penultimate_filters=1056, num_blocks=4, stem_block_filters=32, filter_multiplier=2,
skip_reduction=False. With ``filters = 1056 // 24 = 44`` the cell sequence is::

    stem conv (32) -> stem_1 (reduce, 11) -> stem_2 (reduce, 22)
    -> normal_0..3 (44) -> reduce_4 (88) -> normal_5..8 (88)
    -> reduce_8 (176) -> normal_9..12 (176) -> ReLU   (normal cells output 6*f channels)

Submodule names mirror the Keras ``block_id``s (``cells.stem_1``, ``cells.normal_0``,
``cells.reduce_4``, ...) and the Keras branch names (``left1``, ``right1``, ...) so that the
state dict is readable and stable.

:class:`NASNetA` takes Keras ``NASNet``'s configuration arguments with the Mobile values as
defaults, so the tiny ``test-nasnet`` variant (``fkdbench.models.backbones``) runs this very
code at a fraction of the size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NASNetA", "nasnet_a_mobile"]

# Keras uses BatchNormalization(momentum=0.9997, epsilon=1e-3). We keep its epsilon but
# PyTorch's default momentum (0.1, i.e. Keras 0.9): at Keras's 0.9997 the running statistics
# need thousands of steps to leave their initial values, so a model trained for a few epochs
# evaluated far off (the quick preset measured 9.8 px against a 4.0 px mean-shape baseline).
# Momentum changes no parameter count and no weight file.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.1

# NASNet-A (4 @ 1056), i.e. Keras NASNetMobile.
_PENULTIMATE_FILTERS = 1056
_NUM_BLOCKS = 4
_STEM_FILTERS = 32
_FILTER_MULTIPLIER = 2


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _pad_for_stride2(x: Tensor, kernel_size: int) -> Tensor:
    """Zero-pad like Keras ``imagenet_utils.correct_pad`` before a stride-2 'valid' op.

    Keras pads ``k // 2`` after, and ``k // 2`` before on odd sizes but one less on even
    sizes (TF 'SAME' semantics), so every stride-2 op outputs ``ceil(n / 2)``. Computed
    from the live shape so 96x96, 224x224 and any other size line up.
    """
    h, w = x.shape[-2:]
    half = kernel_size // 2
    top = half - (1 - h % 2)
    left = half - (1 - w % 2)
    # F.pad order: (left, right, top, bottom).
    return F.pad(x, (left, half, top, half))


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D`` (depth_multiplier=1, use_bias=False): depthwise then 1x1."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        # Stride 1 is Keras 'same' (symmetric for odd kernels); stride 2 is 'valid' on an
        # input the caller has already padded with `_pad_for_stride2`.
        padding = kernel_size // 2 if stride == 1 else 0
        self.depthwise = nn.Conv2d(
            in_chs, in_chs, kernel_size, stride, padding, groups=in_chs, bias=False
        )
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class SepConvBlock(nn.Module):
    """Keras ``_separable_conv_block``: ReLU-SepConv(stride)-BN-ReLU-SepConv-BN."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.act1 = nn.ReLU()
        self.sep1 = SeparableConv2d(in_chs, out_chs, kernel_size, stride)
        self.bn1 = _bn(out_chs)
        self.act2 = nn.ReLU()
        self.sep2 = SeparableConv2d(out_chs, out_chs, kernel_size, 1)
        self.bn2 = _bn(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(x)
        if self.stride == 2:
            x = _pad_for_stride2(x, self.kernel_size)
        x = self.bn1(self.sep1(x))
        return self.bn2(self.sep2(self.act2(x)))


class ReluConvBn(nn.Module):
    """ReLU -> 1x1 conv (no bias) -> BN; the cells' input squeeze and the adjust projection."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn = _bn(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(self.act(x)))


class FactorizedReduce(nn.Module):
    """Keras ``_adjust_block`` reduction path: halve the spatial size of ``p``.

    Two 1x1 'average pools' with stride 2 (i.e. plain subsampling), the second on the
    input shifted by one pixel (pad bottom/right, crop top/left), each followed by a 1x1
    conv to ``out_chs // 2``; concatenated and batch-normalised. The subsampling is done by
    the convs' stride, not by ``x[:, :, ::2, ::2]``: the same numbers and weights, but
    pnnx (ncnn) cannot convert a step-2 slice and left eight of them in the graph.
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.conv_1 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=2, bias=False)
        self.bn = _bn(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(x)
        # Shift by one pixel: drop the first row/column, zero-fill the last one. Both
        # stride-2 paths then have ceil(n / 2) rows/columns, like the cell's other ops.
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _make_adjust(kind: str, in_chs: int, out_chs: int) -> nn.Module:
    if kind == "reduce":
        return FactorizedReduce(in_chs, out_chs)
    if kind == "project":
        return ReluConvBn(in_chs, out_chs)
    return nn.Identity()


def _avg_pool_same(x: Tensor) -> Tensor:
    # Keras AveragePooling2D(3, strides=1, padding='same') excludes the padding from the mean.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class NormalCell(nn.Module):
    """Keras ``_normal_a_cell``; outputs ``6 * filters`` channels at the input resolution."""

    def __init__(self, in_chs: int, prev_chs: int, filters: int, adjust: str) -> None:
        super().__init__()
        self.adjust = _make_adjust(adjust, prev_chs, filters)
        self.conv_1x1 = ReluConvBn(in_chs, filters)
        self.left1 = SepConvBlock(filters, filters, 5)
        self.right1 = SepConvBlock(filters, filters, 3)
        self.left2 = SepConvBlock(filters, filters, 5)
        self.right2 = SepConvBlock(filters, filters, 3)
        self.left5 = SepConvBlock(filters, filters, 3)

    def forward(self, x: Tensor, prev: Tensor) -> Tensor:
        p = self.adjust(prev)
        h = self.conv_1x1(x)
        x1 = self.left1(h) + self.right1(p)
        x2 = self.left2(p) + self.right2(p)
        x3 = _avg_pool_same(h) + p
        # Keras adds two identical average pools of p here (left4 and right4), i.e. 2 * pool.
        x4 = 2.0 * _avg_pool_same(p)
        x5 = self.left5(h) + h
        return torch.cat([p, x1, x2, x3, x4, x5], dim=1)


class ReductionCell(nn.Module):
    """Keras ``_reduction_a_cell``; outputs ``4 * filters`` channels at half the resolution."""

    def __init__(self, in_chs: int, prev_chs: int, filters: int, adjust: str) -> None:
        super().__init__()
        self.adjust = _make_adjust(adjust, prev_chs, filters)
        self.conv_1x1 = ReluConvBn(in_chs, filters)
        # Keras only skips the adjust for the first stem cell, where p is the stem output
        # itself and keeps its own channel count.
        p_chs = prev_chs if adjust == "none" else filters
        self.left1 = SepConvBlock(filters, filters, 5, stride=2)
        self.right1 = SepConvBlock(p_chs, filters, 7, stride=2)
        self.right2 = SepConvBlock(p_chs, filters, 7, stride=2)
        self.right3 = SepConvBlock(p_chs, filters, 5, stride=2)
        # Keras names this block "reduction_left4" although it belongs to block 5.
        self.left5 = SepConvBlock(filters, filters, 3)

    def forward(self, x: Tensor, prev: Tensor) -> Tensor:
        p = self.adjust(prev)
        h = self.conv_1x1(x)
        # The pools on h see zero padding (Keras ZeroPadding2D + 'valid' pool), and the
        # average counts those zeros; h is post-BN so zeros can also win the max.
        h3 = _pad_for_stride2(h, 3)
        x1 = self.left1(h) + self.right1(p)
        x2 = F.max_pool2d(h3, 3, stride=2) + self.right2(p)
        x3 = F.avg_pool2d(h3, 3, stride=2) + self.right3(p)
        x4 = _avg_pool_same(x1) + x2
        x5 = self.left5(x1) + F.max_pool2d(h3, 3, stride=2)
        return torch.cat([x2, x3, x4, x5], dim=1)


def _cell_plan(filters: int, num_blocks: int) -> list[tuple[str, bool, int]]:
    """(block_id, is_reduction, filters) of every cell, in Keras order and Keras names."""
    plan = [
        ("stem_1", True, filters // _FILTER_MULTIPLIER**2),
        ("stem_2", True, filters // _FILTER_MULTIPLIER),
    ]
    for stage in range(3):
        stage_filters = filters * _FILTER_MULTIPLIER**stage
        if stage > 0:
            plan.append((f"reduce_{stage * num_blocks}", True, stage_filters))
        # Keras numbers normal cells 0..3, then 5..8 and 9..12 (after reduce_4, reduce_8).
        first_id = stage * num_blocks + (1 if stage > 0 else 0)
        plan += [(f"normal_{first_id + i}", False, stage_filters) for i in range(num_blocks)]
    return plan


def _adjust_kind(first: bool, p_shape: tuple[int, int], x_level: int, filters: int) -> str:
    """How a cell adjusts ``p`` (channels, level) to its input: Keras' ``_adjust_block`` tests.

    The level counts stride-2 steps, so a different level means a different resolution.
    """
    p_channels, p_level = p_shape
    if first:
        return "none"  # Keras: p is None, so p = ip untouched
    if p_level != x_level:
        return "reduce"
    return "project" if p_channels != filters else "none"


class NASNetA(nn.Module):
    """NASNet-A without a classifier: ``forward`` returns pooled ``penultimate_filters``-d
    features.

    The defaults are NASNet-A Mobile (4 @ 1056, Keras ``NASNetMobile``); the arguments are
    Keras ``NASNet``'s, so a narrower, shallower copy (the ``test-nasnet`` variant) runs
    the same code.
    """

    num_features: int

    def __init__(
        self,
        in_chans: int = 1,
        *,
        penultimate_filters: int = _PENULTIMATE_FILTERS,
        num_blocks: int = _NUM_BLOCKS,
        stem_block_filters: int = _STEM_FILTERS,
    ) -> None:
        super().__init__()
        # Keras' own check: every cell's filter count must divide evenly.
        if penultimate_filters % (24 * _FILTER_MULTIPLIER**2) or num_blocks < 1:
            raise ValueError(
                f"NASNet-A needs penultimate_filters a multiple of 96 and num_blocks >= 1, "
                f"got {penultimate_filters} and {num_blocks}"
            )
        self.num_features = penultimate_filters

        # Keras: Conv2D(stem_block_filters, 3, strides=2, padding='valid', use_bias=False) + BN.
        self.stem_conv = nn.Conv2d(in_chans, stem_block_filters, 3, stride=2, padding=0, bias=False)
        self.stem_bn = _bn(stem_block_filters)

        # Track channels and level of the cell input x and of the previous cell's input p.
        # skip_reduction=False means p after a reduction cell is that cell's input, which is
        # what the plain (x, p) <- (cell(x, p), x) chain does.
        x_shape = p_shape = (stem_block_filters, 0)
        plan = _cell_plan(penultimate_filters // 24, num_blocks)
        cells: dict[str, nn.Module] = {}
        for index, (name, is_reduction, filters) in enumerate(plan):
            adjust = _adjust_kind(index == 0, p_shape, x_shape[1], filters)
            cell_type = ReductionCell if is_reduction else NormalCell
            cells[name] = cell_type(x_shape[0], p_shape[0], filters, adjust)
            # Normal cells output 6 * filters channels, reduction cells 4 * filters at half size.
            p_shape = x_shape
            x_shape = (4 * filters, x_shape[1] + 1) if is_reduction else (6 * filters, x_shape[1])
        self.cells = nn.ModuleDict(cells)
        assert x_shape[0] == self.num_features
        self.act = nn.ReLU()

        self._init_weights()

    def _init_weights(self) -> None:
        # Mirror Keras initialisers so training starts where Keras's would: plain convs use
        # he_normal (a normal truncated at 2 std, rescaled to keep the variance 2 / fan_in);
        # SeparableConv2D's kernels keep their glorot_uniform default (kernel_initializer is
        # not what initialises them), and Keras's fan sums for those kernels equal PyTorch's
        # for the (C, 1, k, k) and (out, in, 1, 1) weights, so xavier_uniform_ matches.
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d):
                if name.endswith(("depthwise", "pointwise")):
                    nn.init.xavier_uniform_(module.weight)
                else:
                    fan_in = module.weight[0].numel()
                    std = (2.0 / fan_in) ** 0.5 / 0.87962566103423978
                    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the (N, num_features, h, w) feature map after the final ReLU."""
        x = self.stem_bn(self.stem_conv(x))
        prev = x  # Keras feeds the stem output as both inputs of the first cell
        for cell in self.cells.values():
            x, prev = cell(x, prev), x
        return self.act(x)

    def forward(self, x: Tensor) -> Tensor:
        """Return globally average-pooled features of shape (N, num_features)."""
        return self.forward_features(x).mean(dim=(2, 3))


def nasnet_a_mobile(in_chans: int = 1) -> NASNetA:
    """Build NASNet-A Mobile (Keras NASNetMobile, 4 @ 1056) without a classifier head."""
    return NASNetA(in_chans=in_chans)
