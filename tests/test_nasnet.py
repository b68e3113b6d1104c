"""Tests for the NASNet-A feature extractor (fkdbench.models.nasnet).

The full NASNet-A Mobile is built for what is about it (Keras' exact parameter counts, the
Keras block names, the feature map at the benchmark's input size); the structure, padding
and gradients are checked on the tiny NASNet-A (1 @ 96) that ``test-nasnet`` uses, which
runs the same code.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fkdbench import reference
from fkdbench.models import create_model
from fkdbench.models.nasnet import NASNetA, _cell_plan, _pad_for_stride2, nasnet_a_mobile
from fkdbench.models.params import count_parameters

pytestmark = pytest.mark.usefixtures("single_cpu_thread")

# Keras NASNetMobile(include_top=False, input_shape=(224, 224, 3)).count_params().
KERAS_NO_TOP = 4_269_716
# Same plus GlobalAveragePooling2D + Dense(30): paper 003's Table 1 row.
KERAS_WITH_HEAD_30 = reference.paper_row("nasnetmobile", None, None, reference.TABLE1).params
# PyTorch's count (learnable only) for our default: 1-channel input + Linear(1056, 30).
PYTORCH_GRAY_WITH_HEAD_30 = 4_264_112


@pytest.fixture(scope="module")
def mobile_rgb() -> NASNetA:
    torch.manual_seed(0)
    return nasnet_a_mobile(in_chans=3)


@pytest.fixture(scope="module")
def tiny_gray() -> NASNetA:
    torch.manual_seed(0)
    return create_model("test-nasnet").backbone


def test_keras_parameter_counts_no_top_and_with_the_papers_head(mobile_rgb: NASNetA) -> None:
    assert mobile_rgb.num_features == 1056
    assert count_parameters(mobile_rgb).keras == KERAS_NO_TOP == 4_269_716
    with_head = nn.Sequential(mobile_rgb, nn.Linear(1056, 30))
    assert count_parameters(with_head).keras == KERAS_WITH_HEAD_30 == 4_301_426
    assert KERAS_WITH_HEAD_30 == KERAS_NO_TOP + 1056 * 30 + 30


def test_pytorch_parameter_count_of_nasnetmobile_gray_with_head() -> None:
    # Learnable only, 1-channel stem (3x3x1x32 instead of 3x3x3x32): 4,301,426 minus the
    # 2 * 18,369 BN moving statistics minus 576 stem weights.
    counts = count_parameters(create_model("nasnetmobile"))
    assert counts.pytorch == PYTORCH_GRAY_WITH_HEAD_30 == KERAS_WITH_HEAD_30 - 2 * 18_369 - 576
    assert counts.keras == KERAS_WITH_HEAD_30 - 576  # docs/training.md: 4,300,850


def test_mobile_state_dict_names_follow_keras(mobile_rgb: NASNetA) -> None:
    keys = list(mobile_rgb.state_dict())
    # The stem comes first: weight loading falls back to "first 4-D weight = stem".
    assert keys[0] == "stem_conv.weight"
    assert "cells.stem_1.right1.sep1.depthwise.weight" in keys
    assert "cells.normal_0.adjust.conv_2.weight" in keys  # factorized reduction of p
    assert "cells.reduce_8.adjust.conv.weight" in keys  # 1x1 projection of p
    assert "cells.normal_12.left5.bn2.running_var" in keys
    assert not any(key.startswith("cells.stem_1.adjust") for key in keys)  # Keras: p = ip
    assert list(mobile_rgb.cells) == [name for name, _, _ in _cell_plan(44, 4)]


def test_cell_plan_numbers_and_sizes_cells_like_keras() -> None:
    assert _cell_plan(44, 4) == [
        ("stem_1", True, 11),
        ("stem_2", True, 22),
        *[(f"normal_{i}", False, 44) for i in range(4)],
        ("reduce_4", True, 88),
        *[(f"normal_{i}", False, 88) for i in range(5, 9)],
        ("reduce_8", True, 176),
        *[(f"normal_{i}", False, 176) for i in range(9, 13)],
    ]
    assert [name for name, _, _ in _cell_plan(4, 1)] == [
        "stem_1",
        "stem_2",
        "normal_0",
        "reduce_1",
        "normal_2",
        "reduce_2",
        "normal_3",
    ]


def test_tiny_variant_is_nasnet_a_1_at_96(tiny_gray: NASNetA) -> None:
    assert isinstance(tiny_gray, NASNetA) and tiny_gray.num_features == 96
    assert tiny_gray.stem_conv.weight.shape == (8, 1, 3, 3)
    assert list(tiny_gray.cells) == [name for name, _, _ in _cell_plan(4, 1)]
    assert count_parameters(tiny_gray).pytorch < 30_000


@pytest.mark.parametrize(("penultimate", "blocks"), [(1000, 4), (1056, 0), (48, 1)])
def test_bad_configurations_are_refused(penultimate: int, blocks: int) -> None:
    with pytest.raises(ValueError, match="penultimate_filters a multiple of 96"):
        NASNetA(penultimate_filters=penultimate, num_blocks=blocks)


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


def test_mobile_gives_a_3x3_map_of_1056_features_at_96_gray() -> None:
    # The paper's model at the size fkdbench benchmarks: the real thing must run.
    model = nasnet_a_mobile(in_chans=1).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 1, 96, 96))
    assert features.shape == (1, 1056, 3, 3)
    assert torch.isfinite(features).all() and (features >= 0).all()  # after the final ReLU


@pytest.mark.parametrize(
    ("height", "width", "map_size"),
    # The stem conv ('valid', stride 2), then four reduction cells, each ceil(n / 2).
    [(96, 96, (3, 3)), (224, 224, (7, 7)), (65, 81, (2, 3)), (81, 65, (3, 2))],
)
def test_every_input_size_lines_up_through_the_cells(
    tiny_gray: NASNetA, height: int, width: int, map_size: tuple[int, int]
) -> None:
    # Odd and even sizes take different Keras paddings; both branches of every cell must
    # still agree (65 -> 32 -> 16 -> 8 -> 4 -> 2 and 81 -> 40 -> 20 -> 10 -> 5 -> 3).
    tiny_gray.eval()
    with torch.no_grad():
        images = torch.randn(2, 1, height, width)
        assert tiny_gray.forward_features(images).shape == (2, 96, *map_size)
        pooled = tiny_gray(images)
    assert pooled.shape == (2, 96)
    torch.testing.assert_close(pooled, tiny_gray.forward_features(images).mean(dim=(2, 3)))


def test_rgb_input_takes_a_3_channel_stem() -> None:
    model = NASNetA(3, penultimate_filters=96, num_blocks=1, stem_block_filters=8).eval()
    assert model.stem_conv.weight.shape == (8, 3, 3, 3)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 96)


def test_backward_gives_finite_gradients_to_every_parameter(tiny_gray: NASNetA) -> None:
    tiny_gray.train()
    tiny_gray.zero_grad(set_to_none=True)
    out = tiny_gray(torch.randn(2, 1, 96, 96))
    out.square().mean().backward()
    for name, param in tiny_gray.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_eval_is_deterministic(tiny_gray: NASNetA) -> None:
    tiny_gray.eval()
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        first = tiny_gray(x)
        second = tiny_gray(x)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)


def test_initialisation_follows_keras() -> None:
    torch.manual_seed(0)
    model = NASNetA(1, penultimate_filters=96, num_blocks=1, stem_block_filters=8)
    # he_normal, truncated at 2 std: the stem's 9 * 1 fan-in gives std sqrt(2 / 9) / 0.8796.
    he_bound = 2 * (2.0 / 9) ** 0.5 / 0.87962566103423978
    assert 0.5 * he_bound < model.stem_conv.weight.abs().max() <= he_bound
    # glorot_uniform for separable kernels: |w| <= sqrt(6 / (fan_in + fan_out)), with
    # PyTorch's fans for a (4, 1, 5, 5) depthwise kernel: 1 * 25 in, 4 * 25 out.
    depthwise = model.cells["normal_0"].left1.sep1.depthwise.weight
    glorot_bound = (6 / (25 + 100)) ** 0.5
    assert 0.8 * glorot_bound < depthwise.abs().max() <= glorot_bound
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.weight.eq(1).all() and bn.bias.eq(0).all() for bn in batchnorms)
    assert all(bn.eps == 1e-3 and bn.momentum == 0.1 for bn in batchnorms)
