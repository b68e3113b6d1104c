"""Many runs: a preset's matrix (:func:`train_matrix`), and ``fkdbench train`` as one
library call (:func:`run_training`), one run or a whole preset."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fkdbench.config import EXECUTORS, TrainConfig, seeded_configs
from fkdbench.data.splits import read_manifest
from fkdbench.presets import Preset, load_preset
from fkdbench.progress import say
from fkdbench.train.distributed import RayOptions, train_configs_on_ray
from fkdbench.train.result import RunResult, failed_result
from fkdbench.train.run import train_run


def train_matrix(
    preset: Preset | str | Path,
    data_dir: Path,
    runs_dir: Path,
    force: bool = False,
    quiet: bool = False,
    device: str = "auto",
    num_threads: int | None = None,
    on_run_end: Callable[[RunResult], None] | None = None,
    seeds: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    **overrides: Any,
) -> list[RunResult]:
    """Train every run of a preset in turn, each with ``seeds`` seeds (None: the preset's
    ``seeds``); finished runs are skipped unless ``force`` (only when their recorded
    settings and data match: otherwise they are failed rows).

    ``on_run_end`` is called with each run's result (``reproduce`` advances its display).

    A run that fails (diverged, bad weights, a model that will not build, a finished run
    with other settings, a run folder another process holds, ...) becomes a
    result row with ``status="failed"`` and its error line, and the matrix goes on.
    Ctrl-C stops the matrix (the current run stays resumable). Missing data fails at once,
    before any run, since every run would fail the same way. ``executor="ray"`` trains
    each run as a Ray task (:mod:`fkdbench.train.distributed`) on the cluster at
    ``ray_address`` (None: a Ray started on this machine), with the same results.
    """
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    read_manifest(data_dir)
    configs = preset.configs(
        data_dir,
        runs_dir,
        seeds=seeds,
        force=force,
        quiet=quiet,
        device=device,
        num_threads=num_threads,
        **overrides,
    )
    label = f"preset {preset.name}"
    return train_configs(configs, label, quiet, on_run_end, executor, ray_address)


def train_configs(
    configs: list[TrainConfig],
    label: str,
    quiet: bool,
    on_run_end: Callable[[RunResult], None] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> list[RunResult]:
    """Train ``configs`` in turn (or as Ray tasks); a run that fails is a result row and
    the next one goes on (Ctrl-C stops them all)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if executor == "ray":
        options = RayOptions(address=ray_address)
        return train_configs_on_ray(configs, label, quiet, options, on_run_end)
    if ray_address is not None:
        raise ValueError("--ray-address is for --executor ray")
    results = []
    for index, config in enumerate(configs, start=1):
        say(f"[bold]run {index}/{len(configs)}[/] of {label}", quiet)
        started = time.monotonic()
        try:
            results.append(train_run(config))
        except Exception as error:  # noqa: BLE001 - a failure is a row, the matrix goes on
            results.append(failed_result(config, error, started))
        if on_run_end is not None:
            on_run_end(results[-1])
    failed = [result for result in results if result.status == "failed"]
    say(f"{label}: {len(results) - len(failed)} runs ok, {len(failed)} failed", quiet)
    return results


def run_training(
    arch: str | None,
    *,
    all_runs: bool,
    preset: str,
    variant: str,
    data_dir: Path,
    runs_dir: Path,
    weights: Path | None,
    weights_mode: str,
    spec: Path | None,
    device: str,
    num_threads: int | None,
    force: bool,
    quiet: bool,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    backbone_lr_scale: float | None = None,
    seed: int | None = None,
    max_minutes: float | None = None,
    patience: int | None = None,
    ae_pretrain_epochs: int | None = None,
    seeds: int | None = None,
    head: str | None = None,
    loss: str | None = None,
    flip_test: bool | None = None,
    pretrain: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> list[RunResult]:
    """``fkdbench train``: one run of ``arch`` on ``variant``, or with ``all_runs`` every run
    of ``preset`` (where ``variant``, ``weights`` and ``weights_mode`` do not apply; a given
    ``pretrain``, a method of :data:`fkdbench.pretrain.METHODS`, replaces the preset's), each
    with ``seeds`` seeds from ``seed`` on (None: the preset's, or one for a single run).

    Only the options given (not None) override the preset's or :class:`TrainConfig`'s
    defaults; ``spec`` becomes ``model_kwargs={"spec": str(spec)}``; ``executor`` and
    ``ray_address`` as for :func:`train_matrix`. Naming both ``arch``
    and ``all_runs``, or neither, raises ``ValueError``.
    """
    shared = dict(device=device, num_threads=num_threads, force=force, quiet=quiet)
    shared |= _given_settings(
        spec,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        backbone_lr_scale=backbone_lr_scale,
        seed=seed,
        max_minutes=max_minutes,
        patience=patience,
        ae_pretrain_epochs=ae_pretrain_epochs,
        head=head,
        loss=loss,
        flip_test=flip_test,
        pretrain=pretrain,
    )
    where = dict(executor=executor, ray_address=ray_address)
    if all_runs:
        if arch is not None:
            raise ValueError("give either ARCH or --all, not both")
        return train_matrix(preset, data_dir, runs_dir, seeds=seeds, **where, **shared)
    if arch is None:
        raise ValueError("name an architecture (e.g. cnn-manual) or use --all")
    config = TrainConfig(
        arch=arch,
        variant=variant,
        data_dir=data_dir,
        runs_dir=runs_dir,
        weights=weights,
        weights_mode=weights_mode,
        **shared,
    )
    return _train_seeds(config, seeds, **where)


def _given_settings(spec: Path | None, **given: Any) -> dict[str, Any]:
    """The settings given (not None), ``spec`` as ``model_kwargs={"spec": str(spec)}``."""
    settings = {key: value for key, value in given.items() if value is not None}
    if spec is not None:
        settings["model_kwargs"] = {"spec": str(spec)}
    return settings


def _train_seeds(
    config: TrainConfig, seeds: int | None, executor: str, ray_address: str | None
) -> list[RunResult]:
    """One architecture's run with ``seeds`` seeds (None: one): a single local run's
    error is the command's error; several runs, or runs on Ray, are rows."""
    configs = seeded_configs(config, 1 if seeds is None else seeds)
    if len(configs) == 1 and executor == "local" and ray_address is None:
        return [train_run(configs[0])]
    label = f"{config.arch} on {config.variant}, {len(configs)} seeds"
    return train_configs(configs, label, config.quiet, None, executor, ray_address)
