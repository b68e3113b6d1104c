"""Tests for every registered architecture: building, training a step, parameter counts,
cnn-tuned specs, the autoencoder, local pretrained weights. The registry itself is
tests/test_registry.py; NASNet-A's own structure is tests/test_nasnet.py.

Tests about a family's code run on its tiny ``test-*`` variant; the full-size models are
built only where the test is about them (their exact parameter counts, the documented
weight-loading path).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fkdbench import reference
from fkdbench.data.schemes import KAGGLE15
from fkdbench.models import (
    DEFAULT_SPEC_PATH,
    CNNSpec,
    SpecError,
    WeightsError,
    build_pretrainer,
    count_parameters,
    create_model,
    denormalise_keypoints,
    freeze_backbone,
    get_arch_info,
    list_models,
    load_backbone_weights,
    normalise_keypoints,
)
from fkdbench.models.cnn import BASELINE_SPEC
from fkdbench.models.weights import fold_stem_to_gray

pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def _table1_params(arch: str, variant: str | None = None) -> int:
    """Paper 003's Table 1 count (Keras', BatchNorm statistics included), from reference.py."""
    return reference.paper_row(arch, variant, "scratch", reference.TABLE1).params


PAPER_BASELINE_KERAS = _table1_params("cnn-baseline")  # 1,890,366
PAPER_MANUAL_KERAS = _table1_params("cnn-manual")  # 235,834
PAPER_MOBILENETV2_KERAS = _table1_params("mobilenetv2")  # 2,257,984 (backbone only)
# torchvision's ResNet-50 (He et al.): 25,557,032 parameters with its 1000-class classifier.
TORCHVISION_RESNET50 = 25_557_032
# Keras ResNet50(include_top=False).count_params(): its convolutions also carry biases.
KERAS_RESNET50_NO_TOP = 23_587_712

TEST_VARIANTS = list_models("test-*", include_tests=True)
# Each family once: a full model where it is small, its tiny test variant where it is not.
FAMILIES = [
    name
    for name in list_models()
    if name not in {get_arch_info(tiny).tiny_of for tiny in TEST_VARIANTS}
] + TEST_VARIANTS


def _relative_error(count: int, reference: int) -> float:
    return abs(count - reference) / reference


# -- every registered model ----------------------------------------------------------------


def test_every_family_is_covered_once() -> None:
    assert FAMILIES == [
        "ae-cnn",
        "cnn-baseline",
        "cnn-manual",
        "cnn-tuned",
        "test-mobilenetv2",
        "test-nasnet",
        "test-resnet",
        "test-unet",
    ]


@pytest.mark.parametrize("name", FAMILIES)
def test_model_builds_runs_and_trains_one_step(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_outputs=KAGGLE15.num_outputs, in_chans=1)
    assert isinstance(model.backbone, nn.Module) and isinstance(model.head, nn.Module)
    images = torch.rand(2, 1, 96, 96)
    targets = torch.rand(2, 30) * 2 - 1
    head_before = [p.detach().clone() for p in model.head.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    model.train()
    predicted = model(images)
    assert predicted.shape == (2, 30)
    loss = nn.functional.mse_loss(predicted, targets)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(grad).all() for grad in grads)
    optimizer.step()
    assert any(
        not torch.equal(before, after.detach())
        for before, after in zip(head_before, model.head.parameters(), strict=True)
    )
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(images)).all()


def test_standardisation_is_inside_the_model() -> None:
    # test-mobilenetv2 carries timm's ImageNet statistics, as mobilenetv2 does.
    model = create_model("test-mobilenetv2")
    # Gray input to an ImageNet backbone: one channel with the RGB statistics' average.
    assert model.standardise.mean.flatten().tolist() == pytest.approx([0.449], abs=1e-6)
    assert model.standardise.std.flatten().tolist() == pytest.approx([0.226], abs=1e-6)
    assert "standardise.mean" in model.state_dict()
    rgb = create_model("test-mobilenetv2", in_chans=3)
    assert rgb.standardise.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert rgb.standardise.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    # A backbone without statistics (NASNet) gets Inception-style [-1, 1] scaling.
    nasnet = create_model("test-nasnet")
    assert nasnet.standardise.mean.flatten().tolist() == [0.5]
    assert nasnet.standardise.std.flatten().tolist() == [0.5]
    images = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(nasnet.standardise(images), torch.tensor([[[[-1.0, 0.0, 1.0]]]]))


def test_flattening_models_reject_other_input_sizes_clearly() -> None:
    model = create_model("cnn-manual")
    with pytest.raises(ValueError, match="built for 96x96 images, got \\(64, 64\\)"):
        model(torch.rand(1, 1, 64, 64))
    small = create_model("cnn-manual", input_size=64)
    assert small(torch.rand(1, 1, 64, 64)).shape == (1, 30)


# -- coordinates ---------------------------------------------------------------------------


def test_keypoint_normalisation_convention() -> None:
    pixels = np.array([[-0.5, 47.5, 95.5, np.nan]])
    coords = normalise_keypoints(pixels, 96)
    np.testing.assert_allclose(coords[0, :3], [-1.0, 0.0, 1.0])
    assert np.isnan(coords[0, 3])
    np.testing.assert_allclose(denormalise_keypoints(coords, 96), pixels)
    tensor = torch.tensor([0.0, 95.0])
    result = normalise_keypoints(tensor, 96)
    assert isinstance(result, torch.Tensor)
    torch.testing.assert_close(result, torch.tensor([-95 / 96, 95 / 96]))
    torch.testing.assert_close(denormalise_keypoints(result, 96), tensor)
    with pytest.raises(ValueError, match="image_size must be positive"):
        normalise_keypoints(pixels, 0)


# -- parameter counts ----------------------------------------------------------------------


def test_mobilenetv2_counts_match_the_paper_exactly() -> None:
    rgb = create_model("mobilenetv2", in_chans=3)
    counts = count_parameters(rgb.backbone)
    assert counts.keras == PAPER_MOBILENETV2_KERAS
    assert counts.pytorch == 2_223_872
    # What `fkdbench models` prints (docs/training.md): gray stem, 30-output head.
    gray = count_parameters(create_model("mobilenetv2"))
    assert (gray.pytorch, gray.keras) == (2_261_726, 2_295_838)
    assert gray.pytorch == counts.pytorch - 32 * 2 * 9 + 1280 * 30 + 30


def test_resnet50_counts_match_the_published_resnet50_exactly() -> None:
    rgb = create_model("resnet50", in_chans=3)
    counts = count_parameters(rgb.backbone)
    assert counts.pytorch == TORCHVISION_RESNET50 - (2048 * 1000 + 1000) == 23_508_032
    # One bias per BatchNorm channel, which Keras' convolutions hold and ours do not.
    batchnorm_channels = (counts.keras - counts.pytorch) // 2
    assert counts.keras + batchnorm_channels == KERAS_RESNET50_NO_TOP
    gray = count_parameters(create_model("resnet50"))
    assert (gray.pytorch, gray.keras) == (23_563_230, 23_616_350)
    assert gray.pytorch == counts.pytorch - 64 * 2 * 49 + 2048 * 30 + 30


@pytest.mark.parametrize(
    ("name", "pytorch", "keras", "paper"),
    [
        ("cnn-baseline", 1_888_574, 1_889_694, PAPER_BASELINE_KERAS),
        ("cnn-manual", 234_622, 235_102, PAPER_MANUAL_KERAS),
    ],
)
def test_custom_cnn_counts_are_within_one_percent_of_the_paper(
    name: str, pytorch: int, keras: int, paper: int
) -> None:
    counts = count_parameters(create_model(name))
    assert (counts.pytorch, counts.keras, counts.trainable) == (pytorch, keras, pytorch)
    assert _relative_error(counts.keras, paper) < 0.01


def test_cnn_tuned_default_is_in_the_papers_keras_tuner_range() -> None:
    keras = count_parameters(create_model("cnn-tuned")).keras
    assert keras == 286_750
    # One Keras-tuned network per data variant in Table 1: 246,062 to 364,318.
    per_variant = [row.params for row in reference.paper_rows(reference.TABLE1, "cnn-tuned")]
    assert (min(per_variant), max(per_variant)) == (246_062, 364_318)
    assert min(per_variant) <= keras <= max(per_variant)


# -- cnn-tuned specs -----------------------------------------------------------------------


def test_default_spec_file_loads_and_round_trips(tmp_path: Path) -> None:
    spec = CNNSpec.from_json_file(DEFAULT_SPEC_PATH)
    assert CNNSpec.from_dict(spec.to_dict()) == spec
    written = tmp_path / "spec.json"
    spec.to_json_file(written)
    assert CNNSpec.from_json_file(written) == spec
    default_count = count_parameters(create_model("cnn-tuned")).keras
    assert count_parameters(create_model("cnn-tuned", spec=written)).keras == default_count


def test_spec_override_changes_the_model() -> None:
    default_count = count_parameters(create_model("cnn-tuned")).pytorch
    override = {
        "conv_blocks": [
            {"filters": 8, "kernel_size": 5, "batch_norm": False, "pool": "avg"},
            {"filters": 16, "pool": None},
        ],
        "dense_units": [32],
        "dropout": 0.5,
    }
    model = create_model("cnn-tuned", spec=override)
    # conv 5x5 1->8, conv 3x3 8->16 (+BN), 48x48x16 flattened -> 32 -> 30.
    expected = (25 * 8 + 8) + (9 * 8 * 16 + 16 + 2 * 16) + (48 * 48 * 16 * 32 + 32) + (32 * 30 + 30)
    assert count_parameters(model).pytorch == expected != default_count
    assert model(torch.rand(1, 1, 96, 96)).shape == (1, 30)
    assert count_parameters(create_model("cnn-tuned", spec=BASELINE_SPEC)).keras == 1_889_694


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"conv_blocks": []}, "conv_blocks must be a non-empty list"),
        ({"conv_blocks": [{"kernel_size": 3}]}, r"conv_blocks\[0\]\.filters is missing"),
        ({"conv_blocks": [{"filters": 8, "kernel_size": 4}]}, r"conv_blocks\[0\]\.kernel_size"),
        ({"conv_blocks": [{"filters": 8, "pool": "min"}]}, r"conv_blocks\[0\]\.pool must be"),
        ({"conv_blocks": [{"filters": True}]}, r"conv_blocks\[0\]\.filters must be an integer"),
        ({"conv_blocks": [{"filters": 8, "stride": 2}]}, r"unknown field\(s\) \['stride'\]"),
        ({"dense_units": [64, 0]}, r"dense_units\[1\] must be an integer >= 1, got 0"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
        ({"dense": [64]}, r"the spec has unknown field\(s\) \['dense'\]"),
        ({"conv_blocks": [{"filters": 8}] * 8}, r"conv_blocks\[6\]\.pool: .* pools too often"),
    ],
)
def test_bad_specs_say_which_field_and_what_is_wrong(change: dict, message: str) -> None:
    spec = {"conv_blocks": [{"filters": 8}], "dense_units": [16], "dropout": 0.1}
    spec.update(change)
    with pytest.raises(SpecError, match=message):
        create_model("cnn-tuned", spec=spec)


def test_bad_spec_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"conv_blocks": [', encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken\.json: not valid JSON \(line 1"):
        create_model("cnn-tuned", spec=broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"conv_blocks": [{"filters": -1}]}), encoding="utf-8")
    with pytest.raises(SpecError, match=r"wrong\.json: conv_blocks\[0\]\.filters"):
        create_model("cnn-tuned", spec=str(wrong))
    with pytest.raises(SpecError, match=r"absent\.json: cannot read"):
        create_model("cnn-tuned", spec=tmp_path / "absent.json")


# -- ae-cnn --------------------------------------------------------------------------------


def test_ae_cnn_holds_no_decoder_and_its_pretrainer_shares_the_encoder() -> None:
    torch.manual_seed(0)
    model = create_model("ae-cnn")
    own = count_parameters(model).pytorch
    assert own == count_parameters(model.backbone).pytorch + count_parameters(model.head).pytorch
    assert not any("decoder" in name for name, _ in model.named_modules())

    pretrainer = build_pretrainer(model)
    images = torch.rand(2, 1, 96, 96)
    logits = pretrainer(images)
    assert logits.shape == images.shape
    encoder_ids = {id(p) for p in model.backbone.parameters()}
    pretrainer_ids = {id(p) for p in pretrainer.parameters()}
    assert encoder_ids <= pretrainer_ids
    assert not {id(p) for p in model.head.parameters()} & pretrainer_ids
    assert count_parameters(model).pytorch == own  # building the pretrainer added nothing

    # A reconstruction step moves the keypoint model's own encoder weights.
    first_conv = next(model.backbone.parameters())
    before = first_conv.detach().clone()
    loss = nn.functional.binary_cross_entropy_with_logits(logits, images)
    loss.backward()
    torch.optim.SGD(pretrainer.parameters(), lr=0.1).step()
    assert not torch.equal(before, first_conv.detach())


def test_pretrainer_needs_an_autoencoder_model() -> None:
    with pytest.raises(ValueError, match="needs an ae-cnn model"):
        build_pretrainer(create_model("cnn-manual"))


# -- local pretrained weights --------------------------------------------------------------


def _imagenet_state(arch: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """An ImageNet-shaped timm state dict (3-channel stem, classifier) for ``arch``'s
    backbone: what a user saves from ``timm.create_model(...)`` and passes as --weights."""
    import timm  # here, not at the top: importing timm takes seconds and few tests need it

    timm_name = create_model(arch).backbone.pretrained_cfg["architecture"]
    torch.manual_seed(seed)
    source = timm.create_model(timm_name, pretrained=False)
    return {key: value.clone() for key, value in source.state_dict().items()}


@pytest.fixture(scope="module")
def rgb_tiny_state() -> dict[str, torch.Tensor]:
    """timm's mobilenetv2_035 (test-mobilenetv2's backbone), ImageNet-shaped."""
    return _imagenet_state("test-mobilenetv2")


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def test_timm_mobilenetv2_100_weights_load_into_mobilenetv2_completely(tmp_path: Path) -> None:
    # The documented path (docs/training.md) on the paper's model: every tensor name of
    # timm's mobilenetv2_100 that the backbone has is loaded, none is missing.
    state = _imagenet_state("mobilenetv2")
    path = _save(state, tmp_path / "mobilenetv2_100.pth")
    model = create_model("mobilenetv2")
    report = load_backbone_weights(model, path)
    assert report.missing == () and report.adapted == ("conv_stem.weight",)
    assert set(report.ignored) == {"classifier.weight", "classifier.bias"}
    assert len(report.loaded) == len(state) - 2 == len(model.backbone.state_dict())
    torch.testing.assert_close(
        model.backbone.conv_head.weight, state["conv_head.weight"], rtol=0, atol=0
    )


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_backbone_weights_folds_the_stem_and_loads_the_rest(
    rgb_tiny_state: dict[str, torch.Tensor], tmp_path: Path, suffix: str
) -> None:
    path = _save(rgb_tiny_state, tmp_path / f"mobilenetv2_035{suffix}")
    model = create_model("test-mobilenetv2", in_chans=1)
    report = load_backbone_weights(model, path)

    stem = model.backbone.conv_stem.weight
    assert stem.shape == (16, 1, 3, 3)
    torch.testing.assert_close(stem, rgb_tiny_state["conv_stem.weight"].sum(1, keepdim=True))
    key = "blocks.1.0.conv_pw.weight"
    torch.testing.assert_close(model.backbone.state_dict()[key], rgb_tiny_state[key])
    torch.testing.assert_close(model.backbone.bn1.running_var, rgb_tiny_state["bn1.running_var"])
    assert report.adapted == ("conv_stem.weight",)
    assert set(report.ignored) == {"classifier.weight", "classifier.bias"}
    assert report.missing == ()
    assert report.summary() == (
        f"{path}: {len(rgb_tiny_state) - 2} tensors loaded (1 adapted), 2 ignored, 0 missing"
    )


def test_a_folded_stem_sees_a_gray_image_as_the_rgb_stem_sees_it_three_times() -> None:
    torch.manual_seed(3)
    rgb_kernel = torch.randn(8, 3, 3, 3)
    gray = torch.rand(2, 1, 12, 12)
    folded = fold_stem_to_gray(rgb_kernel)
    assert folded.shape == (8, 1, 3, 3)
    torch.testing.assert_close(
        nn.functional.conv2d(gray, folded),
        nn.functional.conv2d(gray.expand(-1, 3, -1, -1), rgb_kernel),
    )


# The first convolution as timm's metadata names it; NASNet has none, so its stem is found
# as the backbone's first 4-D weight.
@pytest.mark.parametrize(
    ("arch", "stem"), [("test-resnet", "conv1.0.weight"), ("test-nasnet", "stem_conv.weight")]
)
def test_weights_saved_from_a_backbone_load_back(arch: str, stem: str, tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = create_model(arch, in_chans=3)
    path = _save(source.backbone.state_dict(), tmp_path / "backbone.pth")
    model = create_model(arch, in_chans=1)
    report = load_backbone_weights(model, path)
    assert report.adapted == (stem,) and report.ignored == () and report.missing == ()
    folded = source.backbone.state_dict()[stem].sum(1, keepdim=True)
    torch.testing.assert_close(model.backbone.state_dict()[stem], folded)


def test_load_backbone_weights_accepts_nested_and_data_parallel_checkpoints(
    rgb_tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    for name, content in [
        ("state_dict.pt", {"state_dict": rgb_tiny_state, "epoch": 3}),
        ("model.pt", {"model": rgb_tiny_state}),
        ("module.pt", {f"module.{key}": value for key, value in rgb_tiny_state.items()}),
    ]:
        torch.save(content, tmp_path / name)
        report = load_backbone_weights(create_model("test-mobilenetv2"), tmp_path / name)
        assert "conv_stem.weight" in report.loaded and report.missing == (), name


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_weights_file_is_a_named_error(
    rgb_tiny_state: dict[str, torch.Tensor], tmp_path: Path, suffix: str
) -> None:
    path = _save(rgb_tiny_state, tmp_path / f"weights{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=rf"weights{suffix}: cannot read weights") as raised:
        load_backbone_weights(create_model("test-mobilenetv2"), path)
    assert "\n" not in str(raised.value)


def test_wrong_shape_names_the_key_and_both_shapes(
    rgb_tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(rgb_tiny_state)
    state["conv_head.weight"] = torch.zeros(1280, 100, 1, 1)
    path = _save(state, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError) as raised:
        load_backbone_weights(create_model("test-mobilenetv2"), path)
    assert str(raised.value) == (
        f"{path}: shape mismatch for conv_head.weight: (1280, 100, 1, 1) in the file, "
        "(1280, 112, 1, 1) in the model"
    )


def test_missing_file_and_foreign_file_are_named_errors(tmp_path: Path) -> None:
    model = create_model("test-mobilenetv2")
    with pytest.raises(WeightsError, match=r"absent\.pth: no such weights file"):
        load_backbone_weights(model, tmp_path / "absent.pth")
    foreign = _save({"encoder.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    with pytest.raises(WeightsError, match=r"foreign\.pth: no tensor name in common"):
        load_backbone_weights(model, foreign)
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"\x89HDF")
    with pytest.raises(WeightsError, match=r"weights\.h5: unsupported weights format"):
        load_backbone_weights(model, odd)
    listed = _save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list\.pth: expected a state dict .*, got list"):
        load_backbone_weights(model, listed)


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_freeze_backbone_leaves_only_the_head_trainable(name: str) -> None:
    model = create_model(name)
    freeze_backbone(model)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("head.") for name in trainable)
    counts = count_parameters(model)
    head_parameters = sum(p.numel() for p in model.head.parameters())
    assert counts.trainable == head_parameters < counts.pytorch
    if model.head_kind == "regression":  # GAP + one linear layer
        assert head_parameters == model.backbone.num_features * 30 + 30


def test_start_at_shape_makes_the_untrained_model_answer_the_mean_shape() -> None:
    model = create_model("cnn-manual", num_outputs=30, in_chans=1).eval()
    images = torch.rand(4, 1, 96, 96)
    target = torch.linspace(-0.5, 0.5, 30)
    before = (model(images) - target).abs().mean()
    model.start_at_shape(target)
    after = (model(images) - target).abs().mean()
    assert after < 0.2 * before
    assert after < 0.05
