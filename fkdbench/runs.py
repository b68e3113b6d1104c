"""The run folder: where one training run keeps its results, and how to read them back.

One run (an architecture trained on one data variant, optionally from pretrained
weights) owns one folder ``<runs_dir>/<run name>/``::

    config.json   everything needed to rebuild the model and repeat the run
                  (:func:`config_record`, :func:`model_record`, :func:`data_record`)
    model.pt      the best epoch's weights: a plain state dict (``weights_only`` safe)
    history.csv   one row per epoch and phase (``fkdbench.train.state.HISTORY_COLUMNS``)
    training.json what the run cost on this machine: seconds, images per second and
                  the environment (:func:`training_record`); written just before
                  metrics.json, which stays free of anything machine-dependent
    metrics.json  the test scores; its presence marks the run finished
                  (:func:`metrics_record`); the same config and seed give the same bytes
                  on any machine, fast, slow or busy
    last.pt       resume state, written after every epoch while the run is unfinished
                  (``fkdbench.train.state.save_resume_state``)
    train.lock    while a ``train`` process owns the folder: its pid and host
                  (:func:`hold_run`)

Checkpoints are self-describing in the nanoGPT sense, split across two files:
``config.json`` says what to build, ``model.pt`` holds the weights, and
:func:`load_model` needs nothing else, so ``export`` and ``bench`` depend only on this
module. Every file is written atomically (:mod:`fkdbench.io`), so a reader never sees
half of one, and every checkpoint is read with ``torch.load(weights_only=True)``: a
``.pt`` file is never unpickled as arbitrary Python.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import inspect
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fkdbench import io
from fkdbench.config import DEFAULT_LOSS, TrainConfig, pretrain_method
from fkdbench.data.schemes import KeypointScheme, get_scheme
from fkdbench.data.splits import read_manifest
from fkdbench.io import atomic_path, plain, write_json_atomic
from fkdbench.models import ParamCounts, create_model, get_arch_info, list_models
from fkdbench.models.cnn import DEFAULT_SPEC_PATH, resolve_spec, variant_spec_path
from fkdbench.provenance import environment_record

# Bumped whenever the layout or the fields of the run files change.
# 2: metrics.json gains seed, convergence and test_per_face; training_seconds and
#    environment move to training.json; stop reason "time-limit" became "time-limited".
RUN_FORMAT_VERSION = 2

CONFIG_FILE = "config.json"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
TRAINING_FILE = "training.json"
RESUME_FILE = "last.pt"
LOCK_FILE = "train.lock"

# The run-name part and report word of the flip test (``TrainConfig.flip_test``).
FLIP_PART = "flip"
# The recipe part of a run whose backbone came from a pretraining step (fkdbench.pretrain):
# "pretrained-<method>". It says where the weights came from, so it is no lever: such a
# row is set against the scratch run (report/levers), and it has the papers' cells.
PRETRAINED_PREFIX = "pretrained-"
# The recipe part of a fine-tuned run whose backbone trains at a fraction of the learning
# rate (``TrainConfig.backbone_lr_scale`` < 1): "backbone-lr0.3". A lever, set against the
# same run with the backbone at the full rate (:func:`twin_recipe`).
BACKBONE_LR_PREFIX = "backbone-lr"

# How a model's weights started: random init, or a pretrained backbone kept fixed / trained.
WEIGHTS_MODES = ("scratch", "frozen", "finetuned")

# Why a run's keypoint phase ended (metrics.json's stop_reason). Only "time-limited" (the
# max_minutes safety stop) depends on the machine: such a run is not a finished result.
TIME_LIMITED = "time-limited"
STOP_REASONS = ("completed", "early-stopped", TIME_LIMITED)
# Stop reasons older runs recorded, by the name they have now.
_OLD_STOP_REASONS = {"time-limit": "time-limited"}

# ``fkdbench tune`` keeps its studies in ``<runs_dir>/tune/<study>/``; the study named
# ``cnn-tuned-<variant>`` is the one ``train cnn-tuned --variant <variant>`` takes its spec from.
TUNE_DIR = "tune"
TUNE_FORMAT_VERSION = 1
TUNE_STUDY_FILE = "study.json"  # the study's settings, trial counts and times
TUNE_BEST_FILE = "best.json"  # the lowest-validation-RMSE trial: spec, settings, scores
TUNE_PARETO_FILE = "pareto.json"  # every trial on the RMSE / CPU-time Pareto front
TUNE_TRIALS_FILE = "trials.csv"  # one row per trial, every state
TUNE_FIGURES_DIR = "figures"


def tuned_study_name(variant: str) -> str:
    """The default study name of ``fkdbench tune --variant <variant>``."""
    return f"cnn-tuned-{variant}"


def tuned_best_file(runs_dir: Path, variant: str) -> Path:
    """Where ``fkdbench tune`` writes the best spec of the variant's default study."""
    return Path(runs_dir) / TUNE_DIR / tuned_study_name(variant) / TUNE_BEST_FILE


class CheckpointError(ValueError):
    """A checkpoint or run file is missing or unreadable; the message names the file."""


class RunBusy(ValueError):
    """Another process owns the run folder (its lock names the pid and host)."""


# Who holds a run folder's lock (the name the run lock's callers know it by).
LockOwner = io.ProcessOwner


def _create_lock(path: Path) -> bool:
    """Create the lock with O_EXCL (only one process can); False when it exists."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        raise io.write_error(path, error) or error from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as lock:
            lock.write(io.owner_json(LockOwner.current()))
    except OSError as error:
        path.unlink(missing_ok=True)  # an empty lock would name no owner
        raise io.write_error(path, error) or error from None
    return True


def _take_over(path: Path, stale: LockOwner) -> bool:
    """Remove a dead owner's lock, unless another process replaced it meanwhile."""
    aside = path.with_name(f".{path.name}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)  # atomic: of two processes taking over, one moves it
    except FileNotFoundError:
        return False
    moved = io.read_owner(aside)
    if moved != stale:
        # A live process created the lock after we read the stale one: put it back.
        with contextlib.suppress(OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)
    return moved == stale


def acquire_run_lock(folder: Path, name: str) -> LockOwner | None:
    """Take the run folder's lock; returns the dead owner whose stale lock was taken over.

    A lock held by a live process (or one on another host, whose pid cannot be checked)
    raises :class:`RunBusy` naming the run, the pid and the host.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise io.write_error(folder, error) or error from None
    path = folder / LOCK_FILE
    taken_over = None
    for _ in range(3):
        if _create_lock(path):
            return taken_over
        owner = io.read_owner(path)
        if owner is None:
            continue  # released between our two calls: try again
        if owner == io.UNKNOWN_OWNER:
            raise RunBusy(
                f"{name}: {path} names no pid and host; remove it if no train runs on this run"
            )
        if owner.alive() is not False:
            raise RunBusy(
                f"{name}: in use by {owner} ({path}); wait for it, "
                "or remove the lock if that process is gone"
            )
        if _take_over(path, owner):
            taken_over = owner
    raise RunBusy(f"{name}: could not take {path}; another process keeps taking it")


def release_run_lock(folder: Path) -> None:
    """Remove the run folder's lock if this process holds it."""
    path = Path(folder) / LOCK_FILE
    if io.read_owner(path) == LockOwner.current():
        # Never hide the error that ended the run: a lock left (read-only disk) is stale
        # once this process exits, and the next train takes it over.
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def hold_run(folder: Path, name: str) -> Iterator[LockOwner | None]:
    """Own the run folder for the block (see :func:`acquire_run_lock`); the lock goes on
    any exit, Ctrl-C included. A folder this call created and left empty is removed."""
    folder = Path(folder)
    created = not folder.exists()
    stale = acquire_run_lock(folder, name)
    try:
        yield stale
    finally:
        release_run_lock(folder)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty


def run_name(
    arch: str,
    variant: str,
    weights_mode: str = "scratch",
    seed: int | None = None,
    recipe: Sequence[str] = (),
) -> str:
    """``<arch>--<variant>``, plus ``--frozen`` / ``--finetuned`` for pretrained weights,
    plus one ``--<part>`` per :func:`recipe_parts` (another head, loss or the flip test),
    plus ``--s<seed>`` for one of several seeds of a run (``seed`` not None).

    Scratch runs carry no suffix so that the architectures without a backbone (whose
    runs are always from scratch) keep the short name the design names them by; a run
    trained with one seed, or the papers' recipe, keeps the name it had before seeds and
    recipes were counted.
    """
    if weights_mode not in WEIGHTS_MODES:
        raise ValueError(
            f"unknown weights mode {weights_mode!r}; known: {', '.join(WEIGHTS_MODES)}"
        )
    name = f"{arch}--{variant}"
    name = name if weights_mode == "scratch" else f"{name}--{weights_mode}"
    name = "--".join([name, *recipe])
    return name if seed is None else f"{name}--s{seed}"


def recipe_parts(
    arch: str,
    head: str | None,
    loss: str,
    flip_test: bool,
    pretrain: str | None = None,
    backbone_lr_scale: float = 1.0,
) -> list[str]:
    """What a run does beyond the papers' recipe (the architecture's own head, MSE, no flip
    test, weights from a file or none, every layer at the same learning rate), in name
    order: ``["pretrained-autoencoder", "backbone-lr0.3", "heatmap", "wing", "flip"]``;
    [] for the papers' recipe. ``backbone_lr_scale`` is the one the run trained with
    (1 unless fine-tuned)."""
    parts = [f"{PRETRAINED_PREFIX}{pretrain}"] if pretrain else []
    if backbone_lr_scale != 1.0:
        parts.append(f"{BACKBONE_LR_PREFIX}{backbone_lr_scale:g}")
    if head is not None and head != get_arch_info(arch).default_head:
        parts.append(head)
    if loss != DEFAULT_LOSS:
        parts.append(loss)
    if flip_test:
        parts.append(FLIP_PART)
    return parts


def lever_parts(recipe: Sequence[str]) -> tuple[str, ...]:
    """The parts of a recipe that change how a model is trained or run (head, loss, flip
    test), without the one that says where its weights came from."""
    return tuple(part for part in recipe if not part.startswith(PRETRAINED_PREFIX))


def twin_recipe(weights_mode: str, recipe: Sequence[str]) -> tuple[str, tuple[str, ...]] | None:
    """The (weights mode, recipe) a lever is measured against, same architecture, data and
    seed: for a backbone at a lower learning rate, the same run with it at the full rate;
    for a backbone pretrained here, the same recipe from scratch; for another head, loss
    or flip test, the papers' recipe with the same weights. None for no lever."""
    full_rate = tuple(part for part in recipe if not part.startswith(BACKBONE_LR_PREFIX))
    if len(full_rate) < len(recipe):
        return weights_mode, full_rate
    if pretrained_by(recipe):
        return "scratch", lever_parts(recipe)
    return (weights_mode, ()) if recipe else None


def pretrained_by(recipe: Sequence[str]) -> str | None:
    """The pretraining method a recipe names ("pretrained-<method>"), or None."""
    for part in recipe:
        if part.startswith(PRETRAINED_PREFIX):
            return part.removeprefix(PRETRAINED_PREFIX)
    return None


def trained_backbone_lr_scale(weights_mode: str, backbone_lr_scale: float) -> float:
    """The backbone's share of the learning rate a run trains with: ``backbone_lr_scale``
    when fine-tuned, else 1 (a frozen backbone does not train; scratch has no backbone
    apart)."""
    return backbone_lr_scale if weights_mode == "finetuned" else 1.0


def config_recipe(config: TrainConfig, weights_mode: str) -> list[str]:
    """:func:`recipe_parts` of a config that trains with ``weights_mode``."""
    scale = trained_backbone_lr_scale(weights_mode, config.backbone_lr_scale)
    return recipe_parts(
        config.arch,
        config.head,
        config.loss,
        config.flip_test,
        pretrain_method(config.pretrain),
        scale,
    )


def run_dir(
    runs_dir: Path,
    arch: str,
    variant: str,
    weights_mode: str = "scratch",
    seed: int | None = None,
) -> Path:
    """The folder of one run under ``runs_dir``."""
    return Path(runs_dir) / run_name(arch, variant, weights_mode, seed)


def recipe_of(config_json: dict[str, Any]) -> list[str]:
    """:func:`recipe_parts` of a run from its ``config.json`` (metrics.json's ``recipe``);
    [] for runs older than the recipe fields, which all trained the papers' recipe."""
    train = config_json.get("train") or {}
    arch = (config_json.get("model") or {}).get("arch") or train.get("arch")
    if arch not in list_models(include_tests=True):
        return []
    loss = train.get("loss") or DEFAULT_LOSS
    weights_mode = config_json.get("weights_mode") or "scratch"
    scale = float(train.get("backbone_lr_scale") or 1.0)
    return recipe_parts(
        arch,
        train.get("head"),
        loss,
        bool(train.get("flip_test")),
        pretrain_method(train.get("pretrain")),
        trained_backbone_lr_scale(weights_mode, scale),
    )


def config_run_name(config: TrainConfig, weights_mode: str) -> str:
    """The run name ``config`` trains under (its seed named when ``seed_in_name``)."""
    seed = config.seed if config.seed_in_name else None
    return run_name(
        config.arch, config.variant, weights_mode, seed, config_recipe(config, weights_mode)
    )


def is_finished(folder: Path) -> bool:
    """A run is finished when its metrics, weights and config are all there."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in (METRICS_FILE, MODEL_FILE, CONFIG_FILE))


def find_run(runs_dir: Path, name: str) -> Path:
    """A run folder named ``name`` under ``runs_dir``, or ``name`` itself when it is a
    folder; one that has no ``config.json`` raises :class:`CheckpointError`."""
    folder = Path(name) if Path(name).is_dir() else Path(runs_dir) / name
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder}: no such run (see `ls {runs_dir}`)")
    return folder


def finished_runs(runs_dir: Path) -> list[Path]:
    """The finished run folders under ``runs_dir``, sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(folder for folder in runs_dir.iterdir() if is_finished(folder))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors and plain Python only) atomically with ``torch.save``."""
    with atomic_path(Path(path)) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` on the CPU.

    Only ``weights_only=True`` loading is used: tensors, containers and plain values
    come back, anything else is refused. A missing, truncated or foreign file raises
    :class:`CheckpointError` with one line naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load fails with many types on bad bytes
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(error)})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(payload).__name__}")
    return payload


def first_line(error: BaseException, limit: int = 120) -> str:
    """The head of an exception's message, for one-line errors (torch's run to pages)."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_json(path: Path) -> dict[str, Any]:
    """Read one of the run's JSON files; missing or malformed raises :class:`CheckpointError`."""
    return io.read_json(path, CheckpointError)


def read_config(folder: Path) -> dict[str, Any]:
    """The run's ``config.json``."""
    return read_json(Path(folder) / CONFIG_FILE)


# What config.json's "model" section must hold to rebuild the model and read its output.
MODEL_KEYS = ("arch", "num_outputs", "in_chans", "input_size", "keypoints")


def read_model_config(folder: Path) -> dict[str, Any]:
    """The run's ``config.json``, checked to hold a ``model`` section with
    :data:`MODEL_KEYS`; :class:`CheckpointError` naming the file otherwise."""
    path = Path(folder) / CONFIG_FILE
    config = read_config(folder)
    section = config.get("model") if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise CheckpointError(f"{path}: no 'model' section (not a config.json fkdbench wrote)")
    missing = [key for key in MODEL_KEYS if key not in section]
    if missing:
        raise CheckpointError(f"{path}: its 'model' section lacks {', '.join(missing)}")
    return config


def read_metrics(folder: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` (present only once the run is finished)."""
    return read_json(Path(folder) / METRICS_FILE)


def stop_reason_of(metrics: dict[str, Any]) -> str | None:
    """metrics.json's ``stop_reason`` under its current name (one of :data:`STOP_REASONS`;
    a format-1 run's "time-limit" is "time-limited")."""
    return current_stop_reason(metrics.get("stop_reason"))


def current_stop_reason(reason: str | None) -> str | None:
    """A stop reason under its current name (an older file's "time-limit" too)."""
    return _OLD_STOP_REASONS.get(reason, reason) if reason is not None else None


# What a run that predates convergence judging (format 1) says about it.
_NOT_JUDGED = {
    "converged": False,
    "rule": "not judged",
    "detail": "unknown: trained before fkdbench judged convergence (run format 1)",
}


def convergence_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's ``convergence`` (``converged``, ``rule``, ``detail``: see
    ``fkdbench.train.convergence``); a format-1 run's is unknown, so not converged."""
    recorded = metrics.get("convergence")
    return dict(recorded) if isinstance(recorded, dict) else dict(_NOT_JUDGED)


def read_training(folder: Path) -> dict[str, Any]:
    """What the run cost on its machine (``training.json``: ``training_seconds``,
    ``images_per_second``, ``environment``).

    A format-1 run has no training.json: its metrics.json held the seconds and the
    environment, and its history.csv the images per second.
    """
    folder = Path(folder)
    if (folder / TRAINING_FILE).is_file():
        return read_json(folder / TRAINING_FILE)
    metrics = read_metrics(folder)
    return {
        "format_version": metrics.get("format_version", 1),
        "run_name": metrics.get("run_name", folder.name),
        "training_seconds": metrics.get("training_seconds"),
        "images_per_second": mean_images_per_second(_history_rows(folder / HISTORY_FILE)),
        "environment": metrics.get("environment") or {},
    }


def _history_rows(path: Path) -> list[dict[str, Any]]:
    """history.csv's rows as strings; none when it is missing or unreadable."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def mean_images_per_second(history: Sequence[dict[str, Any]]) -> float | None:
    """The mean training throughput over the keypoint phase's epochs (history rows, as
    written or as read back from history.csv); None without any."""
    values = []
    for row in history:
        try:
            value = float(row.get("images_per_second") or "nan")
        except (TypeError, ValueError):
            continue
        if row.get("phase") == "keypoints" and math.isfinite(value):
            values.append(value)
    return sum(values) / len(values) if values else None


def resolve_model_kwargs(
    model_kwargs: dict[str, Any], arch: str, image_size: int
) -> dict[str, Any]:
    """The ``create_model`` keyword arguments, complete enough that config.json alone
    rebuilds the model: a CNN spec (a file, a dict, or the shipped default) is stored as a
    dict, and architectures whose head flattens a fixed-size map get the data's image size.
    """
    resolved = dict(model_kwargs)
    accepted = inspect.signature(get_arch_info(arch).builder).parameters
    if "input_size" in accepted:
        resolved.setdefault("input_size", image_size)
    if "spec" in accepted:
        # Inlined so that editing the spec file (or the default) later cannot change what
        # this run's model.pt belongs to.
        resolved["spec"] = resolve_spec(resolved.get("spec")).to_dict()
    return plain(resolved)


def recipe_kwargs(config: TrainConfig, image_size: int, scheme: KeypointScheme) -> dict[str, Any]:
    """The ``create_model`` kwargs of a run's head and flip test; {} for the architecture's
    own head without the flip test, so the papers' runs keep the kwargs they always had."""
    kwargs: dict[str, Any] = {}
    if config.head is not None and config.head != get_arch_info(config.arch).default_head:
        # A head is built for one input size, whether or not the backbone pools.
        kwargs.update(head=config.head, input_size=image_size)
    if config.flip_test:
        kwargs["flip_permutation"] = [int(index) for index in scheme.flip_permutation()]
    return kwargs


def choose_spec(
    model_kwargs: dict[str, Any], arch: str, variant: str, runs_dir: Path
) -> tuple[dict[str, Any], str | None]:
    """For an architecture built from a spec (cnn-tuned): the kwargs with the spec to use,
    and one line saying where it came from; other architectures pass through unchanged.

    A spec given (``--spec``) wins; then this runs directory's tune of the variant
    (``runs/tune/cnn-tuned-<variant>/best.json``); then the package's tuned default for the
    variant; then the package's hand-written default.
    """
    if "spec" not in inspect.signature(get_arch_info(arch).builder).parameters:
        return model_kwargs, None
    given = model_kwargs.get("spec")
    if given is not None:
        source = "a spec given as a dict" if isinstance(given, dict) else str(given)
        return model_kwargs, _tune_origin(given, source)
    for path, what in (
        (tuned_best_file(runs_dir, variant), "this runs directory's tune"),
        (variant_spec_path(variant), f"the package's tuned default for {variant}"),
    ):
        if path.is_file():
            return {**model_kwargs, "spec": str(path)}, _tune_origin(path, f"{what}, {path}")
    return (
        {**model_kwargs, "spec": str(DEFAULT_SPEC_PATH)},
        f"the package's hand-written default ({variant} has no tune), {DEFAULT_SPEC_PATH.name}",
    )


def _tune_origin(spec: Any, source: str) -> str:
    """``source`` plus the study and trial when the spec file is a tune record."""
    if not isinstance(spec, (str, Path)):
        return source
    try:
        record = json.loads(Path(spec).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return source  # resolve_spec reports unreadable files with the reason
    if isinstance(record, dict) and "trial" in record and "study" in record:
        return f"{source} (study {record['study']}, trial {record['trial']})"
    return source


def model_record(
    arch: str,
    scheme: KeypointScheme,
    image_size: int,
    model_kwargs: dict[str, Any],
    spec_source: str | None = None,
) -> dict[str, Any]:
    """The ``model`` section of ``config.json``: what :func:`build_model` needs, and the
    input and output conventions a reader of the exported model needs."""
    arch_info = get_arch_info(arch)
    return {
        "arch": arch,
        "num_outputs": scheme.num_outputs,
        "in_chans": 1,
        "input_size": image_size,
        "scheme": scheme.name,
        "keypoints": list(scheme.keypoints),
        "kwargs": model_kwargs,
        "has_backbone": bool(arch_info.has_backbone),
        "pretrain": arch_info.pretrain,
        "input": "float (N, 1, H, W), gray values / 255",
        "output": "(N, 2K) normalised x0, y0, x1, y1, ...: (pixel - (size-1)/2) / (size/2)",
        # Where a spec-built model's spec came from (None for fixed architectures).
        "spec_source": spec_source,
    }


def config_record(
    *,
    run_name: str,
    weights_mode: str,
    model: dict[str, Any],
    train: TrainConfig,
    weights: dict[str, Any] | None,
    data: dict[str, Any],
    optimisation: dict[str, Any],
) -> dict[str, Any]:
    """``config.json`` of a trained run: ``model`` (:func:`model_record`), the settings
    (``train``), the backbone weights file (``weights``, None from scratch), the data
    (:func:`data_record`), what the loop optimised (``optimisation``, written by the
    training loop, which knows it) and the machine."""
    return {
        "format_version": RUN_FORMAT_VERSION,
        "run_name": run_name,
        "weights_mode": weights_mode,
        "model": model,
        "train": plain(dataclasses.asdict(train)),
        "weights": weights,
        "data": data,
        "optimisation": optimisation,
        "environment": environment_record(),
    }


def data_record(
    *,
    data_dir: Path,
    manifest: dict[str, Any],
    manifest_sha256: str,
    scheme: KeypointScheme,
    image_size: int,
    train_split_rows: int,
    train_rows: int,
    val_rows: int,
    test_rows: int,
    variant_summary: dict[str, Any],
    online_augmentation: bool,
    augment: Any,
) -> dict[str, Any]:
    """The ``data`` section of ``config.json``: which prepared data, which rows of it were
    used, and what the variant made of the training split (``augment``: its dataclass)."""
    return {
        "data_dir": str(data_dir),
        "manifest_sha256": manifest_sha256,
        "seed": manifest.get("seed"),
        "source": manifest.get("source"),
        "scheme": scheme.name,
        "image_size": image_size,
        "rows": {
            "train_split": train_split_rows,
            "train_used": train_rows,
            "val_used": val_rows,
            "test_used": test_rows,
        },
        "variant_summary": plain(variant_summary),
        "online_augmentation": online_augmentation,
        "augment": plain(dataclasses.asdict(augment)),
    }


def metrics_record(
    *,
    run_name: str,
    arch: str,
    variant: str,
    weights_mode: str,
    recipe: Sequence[str],
    scores: dict[str, Any],
    best_val_rmse: float | None,
    best_epoch: int | None,
    epochs_run: int,
    pretrain_epochs_run: int,
    stop_reason: str,
    convergence: dict[str, Any],
    seed: int,
    parameters: ParamCounts,
    model_file: Path,
    train_rows: int,
    val_rows: int,
    test_rows: int,
) -> dict[str, Any]:
    """``metrics.json``: the run's identity (``recipe``: :func:`recipe_parts`) and seed, its
    test ``scores`` (``test_rmse``, ``test_nme``, ..., ``mean_shape_rmse``,
    ``test_per_face``; JSON-ready), how training
    went (``stop_reason``, one of :data:`STOP_REASONS`; ``convergence``), the model's size
    and the rows used. Nothing in it depends on the machine (that is
    :func:`training_record`'s). Written last: it marks the run finished."""
    if stop_reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {stop_reason!r}; known: {STOP_REASONS}")
    return {
        "format_version": RUN_FORMAT_VERSION,
        "run_name": run_name,
        "arch": arch,
        "variant": variant,
        "weights_mode": weights_mode,
        "recipe": list(recipe),
        "pretrain": get_arch_info(arch).pretrain,
        "seed": seed,
        **scores,
        "best_val_rmse": finite_or_none(best_val_rmse),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "pretrain_epochs_run": pretrain_epochs_run,
        "stop_reason": stop_reason,
        "convergence": convergence,
        "parameters": {
            "pytorch": int(parameters.pytorch),
            "keras": int(parameters.keras),
            "trainable": int(parameters.trainable),
        },
        "model_file_bytes": Path(model_file).stat().st_size,
        "rows": {"train": train_rows, "val": val_rows, "test": test_rows},
    }


def training_record(
    *, run_name: str, training_seconds: float, history: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """``training.json``: what the run cost on this machine, kept out of metrics.json so
    that one stays the same on any machine: seconds training and validating (across
    resumes), the keypoint phase's mean images per second, and the environment with
    its load average (a busy machine explains a slow run)."""
    environment = environment_record()
    environment.setdefault("load_average", _load_average())
    return {
        "format_version": RUN_FORMAT_VERSION,
        "run_name": run_name,
        "training_seconds": training_seconds,
        "images_per_second": mean_images_per_second(history),
        "environment": environment,
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages; None where the system has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: an undefined score is null."""
    return float(value) if value is not None and math.isfinite(value) else None


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """An untrained model from the ``model`` section of ``config.json``."""
    return create_model(
        model_config["arch"],
        num_outputs=model_config["num_outputs"],
        in_chans=model_config["in_chans"],
        **model_config.get("kwargs", {}),
    )


def load_model(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from ``config.json`` + ``model.pt``; returns it in eval mode.

    Returns ``(model, config)`` where ``config`` is the whole ``config.json``.
    """
    folder = Path(folder)
    config = read_model_config(folder)
    model = build_model(config["model"])
    weights_path = folder / MODEL_FILE
    state_dict = load_checkpoint(weights_path)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise CheckpointError(
            f"{weights_path}: does not fit {config['model']['arch']} ({first_line(error)})"
        ) from None
    model.eval()
    return model, config


UNTRAINED = "untrained"


def untrained_run_name(arch: str) -> str:
    """``<arch>--untrained``: the folder an architecture is timed in before any training."""
    return f"{arch}--{UNTRAINED}"


def create_untrained_run(runs_dir: Path, arch: str, data_dir: Path, seed: int = 0) -> Path:
    """A run folder holding ``arch`` at its seeded random initialisation, for timing.

    Latency does not depend on the weights' values, so ``bench`` times architectures that
    have no trained run from one of these. It has ``config.json`` and ``model.pt`` but never
    ``metrics.json``, so it is never mistaken for a finished run. Reused while its model
    section is unchanged.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    image_size = int(manifest["image_size"])
    scheme = get_scheme(manifest.get("scheme", "kaggle15"))
    model = model_record(arch, scheme, image_size, resolve_model_kwargs({}, arch, image_size))
    folder = Path(runs_dir) / untrained_run_name(arch)
    if (folder / MODEL_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        existing = read_config(folder)
        if existing.get("model") == model and existing.get("seed") == seed:
            return folder
    torch.manual_seed(seed)
    network = build_model(model).eval()
    folder.mkdir(parents=True, exist_ok=True)
    # Weights first, config last: a folder with a config always has its weights.
    (folder / CONFIG_FILE).unlink(missing_ok=True)
    save_checkpoint(folder / MODEL_FILE, network.state_dict())
    write_json_atomic(
        folder / CONFIG_FILE,
        {
            "format_version": RUN_FORMAT_VERSION,
            "run_name": untrained_run_name(arch),
            "trained": False,
            "weights_mode": "scratch",
            "seed": seed,
            "model": model,
            "data": {
                "data_dir": str(data_dir),
                "image_size": image_size,
                "scheme": scheme.name,
            },
            "environment": environment_record(),
        },
    )
    return folder
