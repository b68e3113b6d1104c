"""Keypoint models: one registry, one constructor, every architecture of the papers.

    >>> from fkdbench.models import create_model, list_models
    >>> list_models("cnn-*")
    ['cnn-baseline', 'cnn-manual', 'cnn-tuned']
    >>> model = create_model("cnn-manual", num_outputs=30, in_chans=1)

Importing this package registers every family; timm itself is imported only when a timm
backbone is built. Tiny ``test-*`` variants of the big families, for tests, are listed only
by ``list_models(include_tests=True)``.
"""

# Model families register themselves on import; the order fixes nothing but readability.
from fkdbench.models import autoencoder, backbones, cnn, unet  # noqa: F401
from fkdbench.models.autoencoder import build_pretrainer
from fkdbench.models.base import (
    DEFAULT_INPUT_SIZE,
    KeypointModel,
    build_head,
    denormalise_keypoints,
    normalise_keypoints,
)
from fkdbench.models.cnn import DEFAULT_SPEC_PATH, CNNSpec, ConvBlockSpec, SpecError
from fkdbench.models.params import ParamCounts, count_parameters
from fkdbench.models.registry import (
    ArchInfo,
    create_model,
    get_arch_info,
    list_models,
    register_model,
)
from fkdbench.models.weights import LoadReport, WeightsError, freeze_backbone, load_backbone_weights

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_SPEC_PATH",
    "ArchInfo",
    "CNNSpec",
    "ConvBlockSpec",
    "KeypointModel",
    "LoadReport",
    "ParamCounts",
    "SpecError",
    "WeightsError",
    "build_head",
    "build_pretrainer",
    "count_parameters",
    "create_model",
    "denormalise_keypoints",
    "freeze_backbone",
    "get_arch_info",
    "list_models",
    "load_backbone_weights",
    "normalise_keypoints",
    "register_model",
]
