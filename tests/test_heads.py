"""Tests for the accuracy levers beside the papers' regressor: the heatmap and integral
heads and their decoding (fkdbench.models.heads), the U-Net, the flip test, and the
keypoint losses (fkdbench.train.losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fkdbench.data.schemes import KAGGLE15
from fkdbench.models import count_parameters, create_model, list_models
from fkdbench.models.heads import (
    HEADS,
    decode_heatmaps,
    gaussian_targets,
    heatmap_grid,
    heatmap_side,
    soft_argmax,
)
from fkdbench.models.unet import DECODER_WIDTHS, ENCODER_WIDTHS
from fkdbench.train.losses import (
    COORDINATE_LOSSES,
    HEATMAP_LOSSES,
    LossError,
    adaptive_wing,
    check_loss,
    keypoint_loss,
    masked_mse,
    wing,
)

pytestmark = pytest.mark.usefixtures("single_cpu_thread")

SIDE = 24  # the heatmap side of a 96-pixel input
PIXELS_PER_UNIT = 48  # one normalised unit in input pixels (96 / 2)
# Normalised coordinates from the centre of the second heatmap cell inwards (cells are
# 2 / SIDE wide): the arg-max is never a border cell there.
INTERIOR = st.floats(min_value=-1 + 3.0 / SIDE, max_value=1 - 3.0 / SIDE)


# -- decoding --------------------------------------------------------------------------------


@given(INTERIOR, INTERIOR)
def test_a_gaussian_heatmap_decodes_back_to_its_point(x: float, y: float) -> None:
    point = torch.tensor([[[x, y]]])
    decoded = decode_heatmaps(gaussian_targets(point, SIDE))
    assert (decoded - point).abs().max().item() * PIXELS_PER_UNIT < 0.1


@given(st.floats(-0.6, 0.6), st.floats(-0.6, 0.6))
def test_soft_argmax_of_a_sharp_log_gaussian_is_its_point(x: float, y: float) -> None:
    # Away from the border, where the softmax mass is not cut off.
    point = torch.tensor([[[x, y]]])
    logits = gaussian_targets(point, SIDE, sigma=1.0).clamp_min(1e-30).log()
    decoded = soft_argmax(logits)
    assert (decoded - point).abs().max().item() * PIXELS_PER_UNIT < 0.1


def test_a_border_cell_keeps_its_centre_and_stays_within_half_a_cell() -> None:
    point = torch.tensor([[[-0.98, 0.0]]])  # in cell 0 of 24
    decoded = decode_heatmaps(gaussian_targets(point, SIDE))
    assert decoded[0, 0, 0].item() == pytest.approx(heatmap_grid(SIDE)[0].item())
    assert abs(decoded[0, 0, 0].item() - -0.98) * PIXELS_PER_UNIT <= 2.0


def test_heatmap_geometry_matches_the_image_convention() -> None:
    # Cell centres span the image like pixel centres do: the outer cell edges are +-1.
    grid = heatmap_grid(SIDE)
    cell = 2 / SIDE
    assert grid[0].item() == pytest.approx(-1 + cell / 2)
    assert grid[-1].item() == pytest.approx(1 - cell / 2)
    assert heatmap_side(96) == SIDE and heatmap_side(2) == 1
    targets = gaussian_targets(torch.tensor([[[grid[5].item(), grid[7].item()]]]), SIDE)
    assert targets[0, 0, 7, 5].item() == pytest.approx(1.0)  # row y, column x
    assert targets.max().item() == pytest.approx(1.0)


# -- heads on every family ---------------------------------------------------------------


FAMILIES = ["cnn-manual", "ae-cnn", "test-mobilenetv2", "test-resnet", "test-nasnet", "test-unet"]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", FAMILIES)
def test_every_head_on_every_family_builds_trains_and_decodes(arch: str, head: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_outputs=30, in_chans=1, head=head, input_size=96)
    assert model.head_kind == head
    images = torch.rand(2, 1, 96, 96)
    model.train()
    if head == "heatmap":
        maps = model.keypoint_maps(images)
        assert maps.shape == (2, 15, SIDE, SIDE)
        loss = maps.square().mean()
    else:
        loss = model(images).square().mean()
    loss.backward()
    head_grads = [p.grad for p in model.head.parameters()]
    assert head_grads and all(g is not None and torch.isfinite(g).all() for g in head_grads)
    model.eval()
    with torch.no_grad():
        coords = model(images)
    assert coords.shape == (2, 30) and torch.isfinite(coords).all()
    if head != "regression":
        # Decoded positions lie on the heatmap, which spans the image.
        assert coords.abs().max().item() <= 1.0
        with pytest.raises(ValueError, match="built for 96x96"):
            model(torch.rand(1, 1, 64, 64))


def test_a_regression_model_has_no_maps_and_unknown_heads_are_refused() -> None:
    model = create_model("cnn-manual")
    with pytest.raises(ValueError, match="a regression head has no keypoint maps"):
        model.keypoint_maps(torch.rand(1, 1, 96, 96))
    with pytest.raises(ValueError, match="unknown head 'dense'"):
        create_model("cnn-manual", head="dense")


def test_unet_is_registered_for_keypoints_with_its_exact_parameter_count() -> None:
    assert "unet-small" in list_models()
    model = create_model("unet-small", num_outputs=30)
    assert model.head_kind == "integral"

    def conv_bn(c_in: int, c_out: int) -> int:  # 3x3 conv without bias, BatchNorm scale+shift
        return c_in * c_out * 9 + 2 * c_out

    expected = conv_bn(1, ENCODER_WIDTHS[0])  # the stride-2 stem
    for before, after in zip(ENCODER_WIDTHS[:-1], ENCODER_WIDTHS[1:], strict=True):
        expected += conv_bn(before, after) + conv_bn(after, after)
    below = ENCODER_WIDTHS[-1]
    for skip, width in zip(ENCODER_WIDTHS[-2:0:-1], DECODER_WIDTHS, strict=True):
        expected += conv_bn(below + skip, width)
        below = width
    expected += DECODER_WIDTHS[-1] * 15 + 15  # the 1x1 convolution to 15 maps
    assert count_parameters(model).pytorch == expected == 405_663


def test_unet_accepts_odd_sizes_and_refuses_too_small_ones() -> None:
    model = create_model("test-unet", input_size=97).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 97, 97)).shape == (1, 30)
    with pytest.raises(ValueError, match="needs inputs of 32 pixels or more"):
        create_model("test-unet", input_size=16)


# -- flip test -----------------------------------------------------------------------------


class _Recorder(nn.Module):
    """A 'backbone' returning fixed keypoints for the plain image and others for its mirror,
    told apart by a marker pixel in the top-left corner."""

    def __init__(self, plain: torch.Tensor, mirrored: torch.Tensor) -> None:
        super().__init__()
        self.plain, self.mirrored = plain, mirrored

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        marked = images[:, 0, 0, 0] > 0  # standardised: 1 -> 1, 0 -> -1
        return torch.where(marked.view(-1, 1), self.plain, self.mirrored)


def test_flip_test_matches_a_hand_mirrored_prediction() -> None:
    torch.manual_seed(0)
    model = create_model("cnn-manual", num_outputs=KAGGLE15.num_outputs)
    plain = torch.rand(1, 30) * 2 - 1
    on_mirror = torch.rand(1, 30) * 2 - 1
    model.backbone, model.head = _Recorder(plain, on_mirror), nn.Identity()
    model.input_size = None
    image = torch.zeros(1, 1, 96, 96)
    image[0, 0, 0, 0] = 1.0  # the mirror has it top-right: unmarked
    model.eval()
    assert torch.equal(model(image), plain)

    model.enable_flip_test(KAGGLE15.flip_permutation().tolist())
    # By hand: the mirror's keypoint i is the face's keypoint p[i] at x -> -x.
    mirrored = on_mirror.reshape(15, 2).numpy().copy()
    by_hand = np.empty_like(mirrored)
    for index, source in enumerate(KAGGLE15.flip_permutation()):
        by_hand[index] = (-mirrored[source, 0], mirrored[source, 1])
    expected = (plain.reshape(15, 2).numpy() + by_hand) / 2
    np.testing.assert_allclose(model(image).reshape(15, 2).numpy(), expected, atol=1e-6)
    model.train()  # training is never flip-averaged
    assert torch.equal(model(image), plain)


def test_flip_test_of_a_symmetric_model_on_a_symmetric_face_changes_nothing() -> None:
    torch.manual_seed(1)
    model = create_model("cnn-manual").eval()
    image = torch.rand(1, 1, 96, 48)
    image = torch.cat([image, image.flip(-1)], dim=-1)  # mirror-symmetric
    flipped = create_model("cnn-manual", flip_permutation=KAGGLE15.flip_permutation().tolist())
    flipped.load_state_dict(model.state_dict())
    flipped.eval()
    with torch.no_grad():
        plain, averaged = model(image), flipped(image)
    # On a symmetric image the mirrored pass sees the same pixels: the average is
    # the mean of a prediction and its own mirror, which is mirror-symmetric.
    points = averaged.reshape(15, 2)
    permutation = torch.as_tensor(KAGGLE15.flip_permutation())
    np.testing.assert_allclose(points[permutation, 0], -points[:, 0], atol=1e-5)
    assert not torch.allclose(plain, averaged)
    assert "flip_permutation" not in flipped.state_dict()


def test_a_wrong_flip_permutation_is_refused() -> None:
    with pytest.raises(ValueError, match="must order the 15 keypoints"):
        create_model("cnn-manual", flip_permutation=[0, 0, 1])


# -- losses --------------------------------------------------------------------------------


def test_wing_is_logarithmic_below_its_width_linear_above_and_continuous() -> None:
    width, epsilon = 10.0, 2.0
    errors = torch.tensor([0.0, 1.0, -4.0, 10.0, 25.0])
    values = wing(errors, width, epsilon)
    assert values[0].item() == 0.0
    assert values[1].item() == pytest.approx(10 * math.log(1 + 1 / 2))
    assert values[2].item() == pytest.approx(10 * math.log(1 + 4 / 2))
    constant = width - width * math.log(1 + width / epsilon)
    assert values[4].item() == pytest.approx(25 - constant)
    just_below = wing(torch.tensor(width - 1e-4), width, epsilon).item()
    assert just_below == pytest.approx(values[3].item(), abs=1e-3)
    # Small errors weigh more than under L2 (the point of the loss).
    assert (wing(torch.tensor(1.0)) / wing(torch.tensor(2.0))).item() > (1 / 2) ** 2


def test_adaptive_wing_is_zero_at_the_target_and_continuous_at_theta() -> None:
    targets = torch.tensor([0.0, 0.3, 1.0])
    assert adaptive_wing(targets, targets).abs().max().item() == 0.0
    for target in targets:
        below = adaptive_wing(target - 0.5 + 1e-5, target).item()
        above = adaptive_wing(target - 0.5 - 1e-5, target).item()
        assert below == pytest.approx(above, rel=1e-3)
    # Near a peak the same error costs more than on the background.
    assert adaptive_wing(torch.tensor(0.8), torch.tensor(1.0)) > adaptive_wing(
        torch.tensor(0.2), torch.tensor(0.0)
    )


def test_each_loss_fits_only_its_kind_of_target() -> None:
    for loss in COORDINATE_LOSSES:
        check_loss(loss, "regression")
        check_loss(loss, "integral")
    for loss in HEATMAP_LOSSES:
        check_loss(loss, "heatmap")
    with pytest.raises(LossError, match="'wing' is for coordinates; the heatmap head"):
        check_loss("wing", "heatmap")
    with pytest.raises(LossError, match="'adaptive-wing' is for heatmaps; the integral head"):
        check_loss("adaptive-wing", "integral")
    with pytest.raises(LossError, match="unknown loss 'huber'"):
        check_loss("huber", "regression")


class _Fixed(nn.Module):
    """A model answering fixed coordinates (and, for heatmap losses, fixed maps)."""

    def __init__(self, coords: torch.Tensor, maps: torch.Tensor | None = None) -> None:
        super().__init__()
        self.coords = nn.Parameter(coords.clone())
        self.maps = None if maps is None else nn.Parameter(maps.clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.coords.flatten(1)

    def keypoint_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.maps


@pytest.mark.parametrize("loss", COORDINATE_LOSSES)
def test_coordinate_losses_are_zero_on_target_and_ignore_missing_keypoints(loss: str) -> None:
    target = torch.rand(2, 3, 2) * 2 - 1
    mask = torch.tensor([[True, True, False], [True, False, False]])
    compute = keypoint_loss(loss, "regression", image_size=96)
    images = torch.zeros(2, 1, 96, 96)
    assert compute(_Fixed(target), images, target, mask).item() == 0.0
    off = target.clone()
    off[~mask] += 5.0  # wrong only where nothing is labelled
    model = _Fixed(off)
    value = compute(model, images, target, mask)
    assert value.item() == 0.0
    off[0, 0, 0] += 0.1
    model = _Fixed(off)
    value = compute(model, images, target, mask)
    value.backward()
    assert value.item() > 0 and model.coords.grad[~mask].abs().max().item() == 0.0


@pytest.mark.parametrize("loss", HEATMAP_LOSSES)
def test_heatmap_losses_compare_maps_and_ignore_missing_keypoints(loss: str) -> None:
    target = torch.tensor([[[0.1, -0.2], [0.3, 0.4]]])
    mask = torch.tensor([[True, False]])
    exact = gaussian_targets(target, SIDE)
    wrong_second = exact.clone()
    wrong_second[0, 1] = 0.0
    compute = keypoint_loss(loss, "heatmap", image_size=96)
    images = torch.zeros(1, 1, 96, 96)
    model = _Fixed(target, wrong_second)
    value = compute(model, images, target, mask)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert model.maps.grad[0, 1].abs().max().item() == 0.0
    blurred = _Fixed(target, exact * 0.5)
    assert compute(blurred, images, target, torch.ones(1, 2, dtype=torch.bool)).item() > 0


def test_masked_mse_is_the_papers_loss_through_keypoint_loss() -> None:
    target = torch.rand(4, 15, 2)
    predicted = torch.rand(4, 15, 2)
    mask = torch.rand(4, 15) > 0.3
    compute = keypoint_loss("mse", "regression", image_size=96)
    got = compute(_Fixed(predicted), torch.zeros(4, 1, 96, 96), target, mask)
    assert got.item() == pytest.approx(masked_mse(predicted, target, mask).item())
