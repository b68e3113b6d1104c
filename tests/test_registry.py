"""Tests for the model registry (fkdbench.models.registry): names, listing, the constructor."""

from __future__ import annotations

import pytest

from fkdbench.models import create_model, get_arch_info, list_models, register_model
from fkdbench.models.registry import TEST_PREFIX

PAPER_NAMES = [
    "ae-cnn",
    "cnn-baseline",
    "cnn-manual",
    "cnn-tuned",
    "mobilenetv2",
    "nasnetmobile",
    "resnet50",
]
# Beside the papers' models: architectures the landmark field designed for keypoints.
KEYPOINT_NAMES = ["unet-small"]
TEST_NAMES = ["test-mobilenetv2", "test-nasnet", "test-resnet", "test-unet"]


def test_default_listing_is_every_full_size_architecture_sorted() -> None:
    # Presets, `bench --all`, the report and `fkdbench models` read this list.
    assert list_models() == sorted(PAPER_NAMES + KEYPOINT_NAMES)
    assert list_models("cnn-*") == ["cnn-baseline", "cnn-manual", "cnn-tuned"]
    assert list_models("nothing*") == []


def test_tiny_test_variants_are_listed_only_when_asked() -> None:
    assert list_models(include_tests=True) == sorted(PAPER_NAMES + KEYPOINT_NAMES + TEST_NAMES)
    assert list_models("test-*") == []
    assert list_models("test-*", include_tests=True) == TEST_NAMES
    assert list_models("*net*", include_tests=True) == [
        "mobilenetv2",
        "nasnetmobile",
        "resnet50",
        "test-mobilenetv2",
        "test-nasnet",
        "test-resnet",
        "test-unet",
        "unet-small",
    ]
    assert all(get_arch_info(name).is_test for name in TEST_NAMES)
    assert not any(get_arch_info(name).is_test for name in PAPER_NAMES)


def test_each_test_variant_stands_in_for_a_family_with_its_flags() -> None:
    twins = {name: get_arch_info(name).tiny_of for name in TEST_NAMES}
    assert twins == {
        "test-mobilenetv2": "mobilenetv2",
        "test-nasnet": "nasnetmobile",
        "test-resnet": "resnet50",
        "test-unet": "unet-small",
    }
    for name, full in twins.items():
        tiny, paper = get_arch_info(name), get_arch_info(full)
        # A test that swaps the full model for its twin must take the same code paths.
        same = ("has_backbone", "pretrain", "in_chans", "input_size", "default_head")
        assert [getattr(tiny, field) for field in same] == [getattr(paper, f) for f in same]
        assert tiny.paper_reference == "" and tiny.description.startswith("test variant")
    # Every pretrained-backbone family has a twin: they are the ones too big to test in full.
    with_backbone = {name for name in PAPER_NAMES if get_arch_info(name).has_backbone}
    assert with_backbone == set(twins.values()) - set(KEYPOINT_NAMES)


def test_unknown_name_error_lists_the_full_size_names_only() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg16'") as raised:
        create_model("vgg16")
    known = ", ".join(sorted(PAPER_NAMES + KEYPOINT_NAMES))
    assert str(raised.value) == f"unknown model 'vgg16'; known models: {known}"
    with pytest.raises(ValueError, match="known models: ae-cnn, cnn-baseline"):
        get_arch_info("vgg16")


def test_arch_info_flags() -> None:
    backbone_archs = {name for name in PAPER_NAMES if get_arch_info(name).has_backbone}
    assert backbone_archs == {"mobilenetv2", "resnet50", "nasnetmobile"}
    assert get_arch_info("ae-cnn").pretrain == "autoencoder"
    assert all(get_arch_info(name).pretrain is None for name in PAPER_NAMES if name != "ae-cnn")
    assert all(get_arch_info(name).input_size == 96 for name in PAPER_NAMES)
    assert all(get_arch_info(name).in_chans == 1 for name in PAPER_NAMES)
    assert all(get_arch_info(name).paper_reference for name in PAPER_NAMES)
    assert all(get_arch_info(name).tiny_of is None for name in PAPER_NAMES)


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "30"])
def test_create_model_rejects_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="num_outputs must be a positive integer, got"):
        create_model("cnn-manual", num_outputs=value)
    with pytest.raises(ValueError, match="in_chans must be a positive integer, got"):
        create_model("cnn-manual", in_chans=value)


def test_create_model_passes_sizes_and_keywords_to_the_builder() -> None:
    model = create_model("cnn-manual", num_outputs=10, in_chans=3, input_size=64)
    assert (model.num_outputs, model.in_chans, model.input_size) == (10, 3, 64)
    with pytest.raises(TypeError, match="spec"):
        create_model("cnn-manual", spec={})  # only cnn-tuned takes a spec


def test_registering_twice_or_a_test_name_without_its_family_is_refused() -> None:
    def builder(num_outputs: int, in_chans: int) -> None:
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="model 'cnn-manual' is registered twice"):
        register_model("cnn-manual")(builder)
    with pytest.raises(ValueError, match=f"tiny_of= is for {TEST_PREFIX}\\* names"):
        register_model(f"{TEST_PREFIX}orphan")(builder)
    with pytest.raises(ValueError, match="tiny_of= is for test-\\* names"):
        register_model("not-a-test", tiny_of="cnn-manual")(builder)
    assert list_models("*orphan*", include_tests=True) == []
    assert list_models("not-a-test") == []
