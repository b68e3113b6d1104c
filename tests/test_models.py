"""Tests for the model registry, every registered architecture, counts, specs and weights."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

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

PAPER_NAMES = [
    "ae-cnn",
    "cnn-baseline",
    "cnn-manual",
    "cnn-tuned",
    "mobilenetv2",
    "nasnetmobile",
    "resnet50",
]

# Paper 003, Table 1 (Keras counts, BatchNorm statistics included).
PAPER_BASELINE_KERAS = 1_890_366
PAPER_MANUAL_KERAS = 235_834
PAPER_MOBILENETV2_KERAS = 2_257_984


def _skip_if_unavailable(name: str) -> None:
    """nasnetmobile's feature extractor is a separate module; skip, loudly, without it."""
    if name != "nasnetmobile":
        return
    try:
        importlib.import_module("fkdbench.models.nasnet")
    except ImportError as error:
        pytest.skip(f"fkdbench.models.nasnet is not importable yet ({error})")


def _relative_error(count: int, reference: int) -> float:
    return abs(count - reference) / reference


# -- registry ------------------------------------------------------------------------------


def test_registry_lists_every_paper_architecture_sorted() -> None:
    assert list_models() == PAPER_NAMES
    assert list_models("cnn-*") == ["cnn-baseline", "cnn-manual", "cnn-tuned"]
    assert list_models("nothing*") == []


def test_unknown_name_error_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg16'") as raised:
        create_model("vgg16")
    for name in PAPER_NAMES:
        assert name in str(raised.value)
    with pytest.raises(ValueError, match="known models: ae-cnn, cnn-baseline"):
        get_arch_info("vgg16")


def test_arch_info_flags() -> None:
    backbone_archs = {name for name in PAPER_NAMES if get_arch_info(name).has_backbone}
    assert backbone_archs == {"mobilenetv2", "resnet50", "nasnetmobile"}
    assert get_arch_info("ae-cnn").pretrain == "autoencoder"
    assert all(get_arch_info(name).pretrain is None for name in PAPER_NAMES if name != "ae-cnn")
    assert all(get_arch_info(name).input_size == 96 for name in PAPER_NAMES)
    assert all(get_arch_info(name).paper_reference for name in PAPER_NAMES)


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_create_model_rejects_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="num_outputs must be a positive integer"):
        create_model("cnn-manual", num_outputs=value)


# -- every registered model ----------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_model_builds_runs_and_trains_one_step(name: str) -> None:
    _skip_if_unavailable(name)
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
    model = create_model("mobilenetv2")
    # Gray input to an ImageNet backbone: one channel with the RGB statistics' average.
    assert model.standardise.mean.flatten().tolist() == pytest.approx([0.449], abs=1e-6)
    assert model.standardise.std.flatten().tolist() == pytest.approx([0.226], abs=1e-6)
    assert "standardise.mean" in model.state_dict()
    rgb = create_model("mobilenetv2", in_chans=3)
    assert rgb.standardise.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


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


def test_mobilenetv2_backbone_keras_count_matches_the_paper_exactly() -> None:
    backbone = create_model("mobilenetv2", in_chans=3).backbone
    counts = count_parameters(backbone)
    assert counts.keras == PAPER_MOBILENETV2_KERAS
    assert counts.pytorch == 2_223_872


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
    assert 246_062 <= keras <= 364_318


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


@pytest.fixture(scope="module")
def rgb_mobilenet_state() -> dict[str, torch.Tensor]:
    """A timm mobilenetv2_100 ImageNet-shaped state dict (3-channel stem, classifier)."""
    import timm

    torch.manual_seed(1)
    source = timm.create_model("mobilenetv2_100", pretrained=False)
    return {key: value.clone() for key, value in source.state_dict().items()}


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_backbone_weights_folds_the_stem_and_loads_the_rest(
    rgb_mobilenet_state: dict[str, torch.Tensor], tmp_path: Path, suffix: str
) -> None:
    path = _save(rgb_mobilenet_state, tmp_path / f"mobilenetv2{suffix}")
    model = create_model("mobilenetv2", in_chans=1)
    report = load_backbone_weights(model, path)

    stem = model.backbone.conv_stem.weight
    assert stem.shape == (32, 1, 3, 3)
    torch.testing.assert_close(stem, rgb_mobilenet_state["conv_stem.weight"].sum(1, keepdim=True))
    key = "blocks.1.0.conv_pw.weight"
    torch.testing.assert_close(model.backbone.state_dict()[key], rgb_mobilenet_state[key])
    torch.testing.assert_close(
        model.backbone.bn1.running_var, rgb_mobilenet_state["bn1.running_var"]
    )
    assert report.adapted == ("conv_stem.weight",)
    assert set(report.ignored) == {"classifier.weight", "classifier.bias"}
    assert report.missing == ()
    assert report.path == path and "ignored" in report.summary()


def test_load_backbone_weights_accepts_a_nested_checkpoint(
    rgb_mobilenet_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": rgb_mobilenet_state, "epoch": 3}, path)
    report = load_backbone_weights(create_model("mobilenetv2"), path)
    assert "conv_stem.weight" in report.loaded


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_weights_file_is_a_named_error(
    rgb_mobilenet_state: dict[str, torch.Tensor], tmp_path: Path, suffix: str
) -> None:
    path = _save(rgb_mobilenet_state, tmp_path / f"weights{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=rf"weights{suffix}: cannot read weights") as raised:
        load_backbone_weights(create_model("mobilenetv2"), path)
    assert "\n" not in str(raised.value)


def test_wrong_shape_names_the_key_and_both_shapes(
    rgb_mobilenet_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(rgb_mobilenet_state)
    state["conv_head.weight"] = torch.zeros(1280, 100, 1, 1)
    path = _save(state, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError) as raised:
        load_backbone_weights(create_model("mobilenetv2"), path)
    message = str(raised.value)
    assert "wrong.pth" in message and "conv_head.weight" in message
    assert "(1280, 100, 1, 1)" in message and "(1280, 320, 1, 1)" in message


def test_missing_file_and_foreign_file_are_named_errors(tmp_path: Path) -> None:
    model = create_model("mobilenetv2")
    with pytest.raises(WeightsError, match=r"absent\.pth: no such weights file"):
        load_backbone_weights(model, tmp_path / "absent.pth")
    foreign = _save({"encoder.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    with pytest.raises(WeightsError, match=r"foreign\.pth: no tensor name in common"):
        load_backbone_weights(model, foreign)
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"\x89HDF")
    with pytest.raises(WeightsError, match=r"weights\.h5: unsupported weights format"):
        load_backbone_weights(model, odd)


def test_freeze_backbone_leaves_only_the_head_trainable() -> None:
    model = create_model("mobilenetv2")
    freeze_backbone(model)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("head.") for name in trainable)
    counts = count_parameters(model)
    assert counts.trainable == 1280 * 30 + 30 < counts.pytorch


def test_start_at_shape_makes_the_untrained_model_answer_the_mean_shape() -> None:
    model = create_model("cnn-manual", num_outputs=30, in_chans=1).eval()
    images = torch.rand(4, 1, 96, 96)
    target = torch.linspace(-0.5, 0.5, 30)
    before = (model(images) - target).abs().mean()
    model.start_at_shape(target)
    after = (model(images) - target).abs().mean()
    assert after < 0.2 * before
    assert after < 0.05
