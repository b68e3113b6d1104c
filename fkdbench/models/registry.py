"""The one list of architectures: name -> builder + defaults (timm's registry, smaller).

Model families register thin builders with :func:`register_model`; everything else (CLI,
training matrix, benchmark) asks :func:`list_models` and builds with :func:`create_model`,
the only public constructor. Nothing else lists architectures.

Tiny ``test-*`` variants (timm's ``test_*`` models) are registered beside the full-size
families so tests can build, train and export every family in a fraction of a second. They
are not the papers' models: :func:`list_models` leaves them out unless ``include_tests=True``,
so presets, ``bench --all``, the report and ``fkdbench models`` never see them.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from fkdbench.models.base import DEFAULT_INPUT_SIZE, KeypointModel
from fkdbench.models.heads import HEADS

# builder(num_outputs: int, in_chans: int, **kwargs) -> KeypointModel
Builder = Callable[..., nn.Module]

# Names starting with this are tiny test variants (see the module docstring).
TEST_PREFIX = "test-"


@dataclass(frozen=True)
class ArchInfo:
    """An architecture's builder and the defaults the rest of fkdbench reads."""

    # Registry key, e.g. "cnn-baseline".
    name: str
    # Called as builder(num_outputs=..., in_chans=..., **kwargs); returns a KeypointModel.
    builder: Builder
    # Default square input side.
    input_size: int = DEFAULT_INPUT_SIZE
    # Default number of input channels (gray).
    in_chans: int = 1
    # A transfer-learning architecture (the papers load ImageNet weights into it): training
    # it without weights warns. Every backbone takes weights (fkdbench pretrain makes them).
    has_backbone: bool = False
    # "autoencoder": the trainer runs a reconstruction phase before the keypoint phase.
    pretrain: str | None = None
    # Which paper row this reproduces, human-readable.
    paper_reference: str = ""
    # One line for listings.
    description: str = ""
    # For a ``test-*`` variant: the full-size architecture it is a small copy of.
    tiny_of: str | None = None
    # The head the builder ends with (``models.heads.HEADS``); ``head=`` picks another.
    default_head: str = "regression"

    @property
    def is_test(self) -> bool:
        """True for a tiny ``test-*`` variant, which default listings leave out."""
        return self.name.startswith(TEST_PREFIX)


_REGISTRY: dict[str, ArchInfo] = {}


def register_model(name: str, **info: Any) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(num_outputs, in_chans, **kwargs)`` under ``name``.

    ``info`` holds the other :class:`ArchInfo` fields (``has_backbone=True``, ...).
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        arch_info = ArchInfo(name=name, builder=builder, **info)
        if arch_info.is_test != (arch_info.tiny_of is not None):
            raise ValueError(
                f"model {name!r}: tiny_of= is for {TEST_PREFIX}* names, and they need it"
            )
        _REGISTRY[name] = arch_info
        return builder

    return decorator


def list_models(pattern: str = "*", include_tests: bool = False) -> list[str]:
    """Registered names matching an fnmatch ``pattern``, sorted; the tiny ``test-*``
    variants only with ``include_tests=True``."""
    return sorted(
        name
        for name, arch_info in _REGISTRY.items()
        if fnmatch.fnmatchcase(name, pattern) and (include_tests or not arch_info.is_test)
    )


def get_arch_info(name: str) -> ArchInfo:
    """The :class:`ArchInfo` of ``name``; unknown names raise ValueError listing known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create_model(
    name: str,
    num_outputs: int = 30,
    in_chans: int = 1,
    *,
    head: str | None = None,
    flip_permutation: Sequence[int] | None = None,
    **kwargs: Any,
) -> KeypointModel:
    """Build the architecture ``name`` (untrained; nothing is ever downloaded).

    ``kwargs`` go to the family's builder, e.g. ``spec=`` for ``cnn-tuned`` or
    ``input_size=`` for architectures whose head flattens a fixed-size feature map.
    ``head`` ends the model with another head than the family's own (``models.heads``),
    built for ``input_size`` (the architecture's default when not given), and
    ``flip_permutation`` (the scheme's mirror order) turns on the flip test.
    """
    info = get_arch_info(name)
    for argument, value in (("num_outputs", num_outputs), ("in_chans", in_chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    head = head or info.default_head
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
    input_size = kwargs.get("input_size", info.input_size)
    if "input_size" not in inspect.signature(info.builder).parameters:
        # Pooled backbones take any size; a spatial head is built for one.
        kwargs.pop("input_size", None)
    model = info.builder(num_outputs=num_outputs, in_chans=in_chans, **kwargs)
    if head != model.head_kind:
        model.replace_head(head, input_size)
    if flip_permutation is not None:
        model.enable_flip_test(flip_permutation)
    return model
