"""Tests for the NASNet-A Mobile feature extractor (fkdbench.models.nasnet)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from fkdbench.models.nasnet import NASNetAMobile, _pad_for_stride2, nasnet_a_mobile
from fkdbench.models.params import count_parameters

# Keras NASNetMobile(include_top=False, input_shape=(224, 224, 3)).count_params().
KERAS_NO_TOP = 4_269_716
# Same plus GlobalAveragePooling2D + Dense(30).
KERAS_WITH_HEAD_30 = KERAS_NO_TOP + 1056 * 30 + 30  # 4,301,426
# PyTorch's count (learnable only) for our default: 1-channel input + Linear(1056, 30).
PYTORCH_GRAY_WITH_HEAD_30 = 4_264_112


@pytest.fixture(scope="module", autouse=True)
def _light_cpu_settings() -> Iterator[None]:
    # One intra-op thread: the test machine is small and shared, and two OpenMP threads
    # fighting other processes for two cores stall at barriers (seconds -> minutes).
    # oneDNN off: it JIT-compiles a kernel per new conv shape, which for a handful of
    # one-off passes costs far more than the native kernels take to run them. (The flag is
    # set directly because `mkldnn.flags()` also touches TF32 and warns on CPU builds.)
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


@pytest.fixture(scope="module")
def gray_model() -> NASNetAMobile:
    torch.manual_seed(0)
    return nasnet_a_mobile(in_chans=1)


def test_keras_parameter_count_no_top() -> None:
    model = nasnet_a_mobile(in_chans=3)
    assert model.num_features == 1056
    assert count_parameters(model).keras == KERAS_NO_TOP == 4_269_716


def test_keras_parameter_count_with_regression_head() -> None:
    model = nn.Sequential(nasnet_a_mobile(in_chans=3), nn.Linear(1056, 30))
    assert count_parameters(model).keras == KERAS_WITH_HEAD_30 == 4_301_426


def test_pytorch_parameter_count_gray_with_head() -> None:
    # Learnable only, 1-channel stem (3x3x1x32 instead of 3x3x3x32): 4,301,426 minus the
    # 2 * 18,369 BN moving statistics minus 576 stem weights.
    model = nn.Sequential(nasnet_a_mobile(in_chans=1), nn.Linear(1056, 30))
    assert count_parameters(model).pytorch == PYTORCH_GRAY_WITH_HEAD_30 == 4_264_112


def test_state_dict_names_are_stable() -> None:
    keys = list(nasnet_a_mobile().state_dict())
    # The stem comes first: weight loading falls back to "first 4-D weight = stem".
    assert keys[0] == "stem_conv.weight"
    assert "cells.stem_1.right1.sep1.depthwise.weight" in keys
    assert "cells.normal_0.adjust.conv_2.weight" in keys  # factorized reduction of p
    assert "cells.reduce_8.adjust.conv.weight" in keys  # 1x1 projection of p
    assert "cells.normal_12.left5.bn2.running_var" in keys
    assert not any(key.startswith("cells.stem_1.adjust") for key in keys)  # Keras: p = ip


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize(("height", "width"), [(24, 47), (47, 24)])
def test_stride2_padding_is_keras_correct_pad(kernel_size: int, height: int, width: int) -> None:
    # Keras correct_pad: k // 2 after; before, k // 2 on odd sizes and one less on even.
    def expected(n: int) -> tuple[int, int]:
        return kernel_size // 2 - (1 - n % 2), kernel_size // 2

    padded = _pad_for_stride2(torch.ones(1, 1, height, width), kernel_size)[0, 0]
    rows = padded.sum(dim=1).nonzero().flatten()
    cols = padded.sum(dim=0).nonzero().flatten()
    assert (rows[0].item(), padded.shape[0] - 1 - rows[-1].item()) == expected(height)
    assert (cols[0].item(), padded.shape[1] - 1 - cols[-1].item()) == expected(width)


def test_forward_shape_96_gray(gray_model: NASNetAMobile) -> None:
    gray_model.eval()
    with torch.no_grad():
        x = torch.randn(2, 1, 96, 96)
        assert gray_model.forward_features(x).shape == (2, 1056, 3, 3)
        assert gray_model(x).shape == (2, 1056)


def test_forward_shape_224_rgb() -> None:
    model = nasnet_a_mobile(in_chans=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1056)


def test_forward_odd_non_square(gray_model: NASNetAMobile) -> None:
    # Odd and even sizes take different Keras paddings; both branches of every cell must
    # still agree (65 -> 32 -> 16 -> 8 -> 4 -> 2 and 81 -> 40 -> 20 -> 10 -> 5 -> 3).
    gray_model.eval()
    with torch.no_grad():
        out = gray_model.forward_features(torch.randn(1, 1, 65, 81))
    assert out.shape == (1, 1056, 2, 3)


def test_backward_gives_finite_gradients(gray_model: NASNetAMobile) -> None:
    gray_model.train()
    gray_model.zero_grad(set_to_none=True)
    out = gray_model(torch.randn(2, 1, 96, 96))
    out.square().mean().backward()
    for name, param in gray_model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_eval_is_deterministic(gray_model: NASNetAMobile) -> None:
    gray_model.eval()
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        first = gray_model(x)
        second = gray_model(x)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
