"""Transfer-learning architectures: a pooled feature backbone + the paper's "GAP + Dense" head.

timm provides MobileNetV2 and ResNet-50; NASNet-A Mobile (which timm lacks) comes from
``fkdbench.models.nasnet``. Backbones are always built with ``pretrained=False``: nothing is
downloaded at run time, pretrained weights come from a local file through
:func:`fkdbench.models.weights.load_backbone_weights`.

Each family also registers a tiny ``test-*`` variant (timm's habit): the same code, built
narrow and shallow, for tests that exercise the family rather than the paper's model.
Default listings leave them out (see ``fkdbench.models.registry``).
"""

from __future__ import annotations

from torch import nn

from fkdbench.models.base import KeypointModel, build_head
from fkdbench.models.nasnet import NASNetA, nasnet_a_mobile
from fkdbench.models.registry import register_model

# Standardisation when a backbone does not say what it was trained with: Inception-style
# [-1, 1] scaling, which is also what Keras' NASNet and MobileNetV2 preprocessing does.
_FALLBACK_MEAN = (0.5, 0.5, 0.5)
_FALLBACK_STD = (0.5, 0.5, 0.5)


def _input_stats(backbone: nn.Module, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's training mean/std, one value per input channel.

    With fewer channels than the statistics (gray input to an RGB-trained network) each
    channel gets the average of the RGB values: then the stem folded by summing its RGB
    kernels (see ``weights.py``) sees exactly what the RGB stem would see for the same
    standardised gray image fed into all three channels.
    """
    config = getattr(backbone, "pretrained_cfg", None) or {}
    mean = tuple(config.get("mean", _FALLBACK_MEAN))
    std = tuple(config.get("std", _FALLBACK_STD))
    if len(mean) == in_chans:
        return mean, std
    return (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans


def backbone_model(backbone: nn.Module, num_outputs: int, in_chans: int) -> KeypointModel:
    """Attach the linear head to a backbone whose forward gives ``(N, num_features)``."""
    mean, std = _input_stats(backbone, in_chans)
    return KeypointModel(
        backbone,
        build_head(backbone.num_features, num_outputs),
        num_outputs=num_outputs,
        in_chans=in_chans,
        input_mean=mean,
        input_std=std,
    )


def _timm_backbone(timm_name: str, in_chans: int) -> nn.Module:
    # Imported here: timm takes seconds to import and only these builders need it.
    import timm

    return timm.create_model(
        timm_name, pretrained=False, num_classes=0, global_pool="avg", in_chans=in_chans
    )


@register_model(
    "mobilenetv2",
    has_backbone=True,
    paper_reference="003 Table 1, MobilenetV2: 2,257,984 params (Keras, backbone without"
    " head), 9.66 MB",
    description="timm mobilenetv2_100 + global average pooling + linear head",
)
def mobilenetv2(num_outputs: int, in_chans: int) -> KeypointModel:
    return backbone_model(_timm_backbone("mobilenetv2_100", in_chans), num_outputs, in_chans)


@register_model(
    "resnet50",
    has_backbone=True,
    paper_reference="003 text: ResNet-50 transfer model (no Table 1 row)",
    description="timm resnet50 + global average pooling + linear head",
)
def resnet50(num_outputs: int, in_chans: int) -> KeypointModel:
    return backbone_model(_timm_backbone("resnet50", in_chans), num_outputs, in_chans)


@register_model(
    "nasnetmobile",
    has_backbone=True,
    paper_reference="003 Table 1, NasNetMobile: 4,301,426 params (Keras, with the"
    " 30-output head), 18.48 MB; the paper fed it 224x224 inputs",
    description="NASNet-A Mobile (4 @ 1056, fkdbench.models.nasnet) + linear head",
)
def nasnetmobile(num_outputs: int, in_chans: int) -> KeypointModel:
    return backbone_model(nasnet_a_mobile(in_chans=in_chans), num_outputs, in_chans)


# -- tiny test variants: the same families, a few hundred thousand parameters at most ------


@register_model(
    "test-mobilenetv2",
    has_backbone=True,
    tiny_of="mobilenetv2",
    description="test variant: timm mobilenetv2_035 (0.35 width) + GAP + linear head",
)
def test_mobilenetv2(num_outputs: int, in_chans: int) -> KeypointModel:
    return backbone_model(_timm_backbone("mobilenetv2_035", in_chans), num_outputs, in_chans)


@register_model(
    "test-resnet",
    has_backbone=True,
    tiny_of="resnet50",
    description="test variant: timm test_resnet (one block per stage, 96 features) + linear head",
)
def test_resnet(num_outputs: int, in_chans: int) -> KeypointModel:
    return backbone_model(_timm_backbone("test_resnet", in_chans), num_outputs, in_chans)


@register_model(
    "test-nasnet",
    has_backbone=True,
    tiny_of="nasnetmobile",
    description="test variant: NASNet-A (1 @ 96), stem 8, + linear head",
)
def test_nasnet(num_outputs: int, in_chans: int) -> KeypointModel:
    backbone = NASNetA(in_chans, penultimate_filters=96, num_blocks=1, stem_block_filters=8)
    return backbone_model(backbone, num_outputs, in_chans)
