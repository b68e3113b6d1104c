"""``--weights timm:<tag>``: timm's own pretrained weights, for machines that can download.

timm loads them (its hub code, its stem adaptation to one gray channel); the backbone's
tensors are then kept as a safetensors file in the pretrain cache, so the run's records
hold a file and its sha256 like any other weights, and a second run reads the file.
Where nothing can be downloaded the call fails at once with one line saying so and how
to pass a local file instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fkdbench.pretrain.options import PretrainError

TIMM_PREFIX = "timm:"
# timm:imagenet is the architecture's default pretrained tag (ImageNet-1k for these).
DEFAULT_TAG = "imagenet"


def is_timm_tag(weights: Any) -> bool:
    return weights is not None and str(weights).startswith(TIMM_PREFIX)


def _timm_name(arch: str) -> str:
    """The timm model an architecture's backbone is; refused for our own backbones."""
    from fkdbench.models import create_model

    backbone = create_model(arch).backbone
    name = (getattr(backbone, "pretrained_cfg", None) or {}).get("architecture")
    if not name:
        raise PretrainError(
            f"{arch}: its backbone is not a timm model, so timm has no weights for it; "
            "pass a local weights file (--weights FILE) or make one with `fkdbench pretrain`"
        )
    return str(name)


def timm_weights(arch: str, tag_text: str, runs_dir: Path) -> Path:
    """The cached safetensors of ``arch``'s backbone with timm's ``tag`` weights."""
    from fkdbench.io import sha256_file, write_json_atomic
    from fkdbench.pretrain.cache import (
        PRETRAIN_DIR,
        RECORD_FILE,
        WEIGHTS_FILE,
        read_record,
        save_weights,
    )

    tag = str(tag_text).removeprefix(TIMM_PREFIX) or DEFAULT_TAG
    name = _timm_name(arch)
    folder = Path(runs_dir) / PRETRAIN_DIR / f"{arch}--timm-{tag}"
    path = folder / WEIGHTS_FILE
    if read_record(path) is not None:
        # Fetched before and unchanged since (its record's sha256 still holds).
        return path
    qualified = name if tag == DEFAULT_TAG else f"{name}.{tag}"
    state = _download(qualified, tag_text)
    save_weights(path, state, f"timm:{qualified}")
    record = {"method": "timm", "timm_model": qualified, "not_imagenet": False}
    write_json_atomic(folder / RECORD_FILE, {**record, "weights_sha256": sha256_file(path)})
    return path


def _download(qualified: str, tag_text: str) -> dict[str, Any]:
    """timm's pretrained backbone (1 gray channel, no classifier) as a state dict."""
    import timm

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    how = (
        f"no download is possible here, so {tag_text} cannot be fetched; on a machine with "
        f"internet save timm.create_model({qualified!r}, pretrained=True).state_dict() with "
        "safetensors and pass that file: --weights FILE.safetensors"
    )
    if offline:
        raise PretrainError(f"{how} (HF_HUB_OFFLINE is set)")
    try:
        model = timm.create_model(
            qualified, pretrained=True, num_classes=0, global_pool="avg", in_chans=1
        )
    except Exception as error:  # noqa: BLE001 - hub, network and tag errors alike: one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise PretrainError(f"{how} ({type(error).__name__}: {first})") from None
    return model.state_dict()
