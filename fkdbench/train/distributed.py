"""A matrix of runs as Ray tasks: ``train --all --executor ray`` (docs/scaling.md).

The driver (the machine the command runs on) keeps every file: a task gets what its run
reads as bytes through Ray's object store (the data folder's files, put there once and
shared by every task; the weights file; a tuned spec; an interrupted run's folder, to
resume), trains in a scratch folder of its worker with :func:`train_resolved` (the code a
local run uses), and sends the finished run folder back. The driver writes it into its
own runs folder file by file, each atomically, ``metrics.json`` last: a run is finished on
the driver only once all of it is there, as for a local run. Workers need the locked
environment and nothing else: no shared filesystem.

What each choice guards:

- Resources: a task asks Ray for ``num_threads`` CPUs (1 when not given) and sets torch
  to exactly that many threads, and for one GPU when it trains on CUDA, so runs side by
  side never oversubscribe a node. The thread count is part of what a run computes on
  the CPU, so a run's ``metrics.json`` matches a local run with the same ``--threads``.
- Faults: a task whose worker process or node dies is run again by Ray, at most
  :data:`RETRIES` times, from its first epoch in a fresh scratch folder (its seed makes
  the retry compute the same run). A run that fails for a reason of its own (divergence,
  a bad spec, bad data) is caught in the task and comes back as one failed row, never
  retried. Ctrl-C on the driver ends its Ray job, which stops the tasks still queued or
  running; every run already written stays, and an unfinished one leaves nothing behind
  on the driver.
- Locks: the driver holds the run-folder lock of every run it has sent out, so no other
  process trains one of them meanwhile; finished runs with the same settings are
  skipped on the driver as in a local matrix.
- Pretraining steps (``pretrain`` in a preset) are Ray tasks too: one per recipe the
  driver's cache lacks, however many runs start from it, retried like a run when its
  worker dies. What comes back is checked against the recipe and installed in the
  driver's cache (``pretrain.json`` saying where it was made), where each run finds it
  as a local run would. The runs that need no step go out at once, the others as soon
  as their own step is installed (not after every step), and their tasks get the made
  file. A step that fails is the failed row of every run that needed it.

Ray is imported only here, and only when a matrix is sent to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.io import write_bytes_atomic, write_json_atomic
from fkdbench.models import list_models
from fkdbench.pretrain.cache import record_beside
from fkdbench.progress import make_progress, say
from fkdbench.train.result import RunResult, failed_result, run_identity
from fkdbench.train.run import pretrain_options, resolve_weights, train_resolved

if TYPE_CHECKING:
    from fkdbench.pretrain import PretrainOptions, PretrainPlan

# How often Ray runs a task again after its worker or node died (not after a run's own
# failure, which is a row).
RETRIES = 3


class RayMissing(ValueError):
    """``--executor ray`` without the ``ray`` extra installed (a setting the user fixes)."""


@dataclass(frozen=True)
class RayOptions:
    """Where the matrix goes: ``address`` None starts a Ray instance on this machine for
    the matrix; ``"auto"`` or ``host:port`` joins a running cluster."""

    address: str | None = None
    retries: int = RETRIES


@dataclass
class TaskPayload:
    """What one task needs besides the data: the run's config as the driver resolved it
    (driver paths), and the other files the run reads, as bytes."""

    config: TrainConfig
    run_name: str
    run_files: dict[str, bytes]  # the driver's unfinished run folder (resumed), or {}
    weights: bytes | None  # config.weights' content
    weights_record: bytes | None  # the pretrain.json beside it (what made it), if any
    spec: bytes | None  # a spec file given in model_kwargs
    tuned_spec: bytes | None  # the runs folder's tune of the variant, when the run uses it


@dataclass
class TaskOutcome:
    """What a task sends back: the run's result, its finished folder, where it ran, and
    the worker paths to write back as the driver's in config.json."""

    result: RunResult
    files: dict[str, bytes]
    worker: dict[str, Any]
    paths: dict[str, str]  # worker path -> driver path


def import_ray() -> Any:
    """Ray, with its ``uv run`` hook off: under ``uv run`` Ray would otherwise zip the
    working folder and have every worker rebuild the environment from it (a download
    of torch per node); fkdbench's workers run in the locked environment already there."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError as error:
        raise RayMissing(
            f"--executor ray: ray is not installed (uv sync --extra ray); {error}"
        ) from None
    return ray


def train_configs_on_ray(
    configs: list[TrainConfig],
    label: str,
    quiet: bool,
    options: RayOptions,
    on_run_end: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Train ``configs`` as Ray tasks; results in the order of ``configs``, a failure a
    row. Finished runs with matching settings are skipped locally, without a task."""
    ray = import_ray()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    try:
        return _run_matrix(ray, configs, label, quiet, options, on_run_end, started_ray)
    finally:
        if started_ray:
            ray.shutdown()


def _run_matrix(
    ray: Any,
    configs: list[TrainConfig],
    label: str,
    quiet: bool,
    options: RayOptions,
    on_run_end: Callable[[RunResult], None] | None,
    owns_connection: bool,
) -> list[RunResult]:
    results: dict[int, RunResult] = {}

    def record(index: int, result: RunResult) -> None:
        results[index] = result
        display.advance(bar)
        if on_run_end is not None:
            on_run_end(result)

    with contextlib.ExitStack() as locks, make_progress(quiet) as display:
        bar = display.add_task(f"{label} on Ray", total=len(configs))
        pending: dict[Any, Any] = {}  # the tasks in flight: pretraining steps and runs
        data_refs: dict[Path, Any] = {}

        def send(indices: list[int]) -> None:
            pending.update(_send_out(ray, configs, options, locks, record, data_refs, indices))

        def on_done(reference: Any, task: Any) -> None:
            if not isinstance(task, _StepTask):
                index, config, started = task
                record(index, _collect(ray, reference, config, started, options))
                return
            failure = _install_step(ray, reference, task.planned, options.retries)
            display.advance(steps_bar)
            if failure is None:
                send(task.indices)  # its runs go out as soon as their weights are here
                return
            for index in task.indices:  # a failed step fails every run it feeds
                record(index, failed_result(configs[index], failure, task.started))

        try:
            with _ctrl_c_as_flag() as interrupted:
                steps = _send_pretraining(ray, configs, options, data_refs)
                steps_bar = display.add_task(
                    "pretraining on Ray", total=len(steps), visible=bool(steps)
                )
                pending.update(steps)
                held_back = {index for step in steps.values() for index in step.indices}
                send([index for index in range(len(configs)) if index not in held_back])
                _wait(ray, pending, interrupted, on_done)
        except KeyboardInterrupt:
            # Our own connection ends in train_configs_on_ray (ray.shutdown), and with it
            # the job: Ray stops every worker of a finished job. Cancelling tasks one by one
            # first raced a task's own completion and crashed Ray 2.60's driver
            # (task_manager.cc "unexpected system state"), so only a caller's connection,
            # which stays open, gets its tasks interrupted.
            if not owns_connection:
                for reference in pending:
                    ray.cancel(reference)
            raise KeyboardInterrupt(
                f"{label}: {len(pending)} Ray tasks stopped; the {len(results)} runs "
                "already done are kept"
            ) from None
    ordered = [results[index] for index in sorted(results)]
    failed = sum(result.status == "failed" for result in ordered)
    say(f"{label}: {len(ordered) - failed} runs ok, {failed} failed (on Ray)", quiet)
    return ordered


# How often the driver looks up from waiting on its tasks to see whether Ctrl-C came.
WAIT_SECONDS = 0.5


def _wait(
    ray: Any,
    pending: dict[Any, Any],
    interrupted: threading.Event,
    on_done: Callable[[Any, Any], None],
) -> None:
    """Hand each task of ``pending`` to ``on_done`` (its reference, what ``pending`` says
    of it) as it finishes; KeyboardInterrupt when Ctrl-C came, ``pending`` the rest."""
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
        if interrupted.is_set():
            raise KeyboardInterrupt
        if done:
            on_done(done[0], pending.pop(done[0]))


@contextlib.contextmanager
def _ctrl_c_as_flag() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) sets a flag that the wait loop reads, instead of raising where it
    lands: a KeyboardInterrupt raised while the driver sat in ``ray.wait`` was at times
    lost: the driver went on and finished the matrix (the Ctrl-C test failed so in 2 of 3
    tries on a 2-core machine at load 4; with the flag, 6 of 6 passed). Off the main
    thread, where no signal handler can be set, Ctrl-C is left as Python handles it."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


@dataclass(frozen=True)
class _StepTask:
    """A pretraining step in flight: where its checkpoint goes, the configs that start
    from it (sent once it is installed), and when it was sent."""

    planned: PretrainPlan
    indices: list[int]
    started: float


def _send_pretraining(
    ray: Any, configs: list[TrainConfig], options: RayOptions, data_refs: dict[Path, Any]
) -> dict[Any, _StepTask]:
    """Send each pretraining step of ``configs`` that the driver's cache lacks as a Ray
    task, one per recipe however many runs start from it; the tasks in flight."""
    from fkdbench import pretrain

    has_gpus = _has_gpus(ray)
    needed: dict[Path, tuple[PretrainOptions, PretrainPlan, list[int]]] = {}
    for index, config in enumerate(configs):
        if config.pretrain is None or config.weights is not None:
            continue
        try:
            step = pretrain_options(_task_config(config, has_gpus))
            planned = pretrain.plan(step)
        except Exception:  # noqa: BLE001 - the run's own row says why (resolve_weights)
            continue
        if planned.cached() is None:
            needed.setdefault(planned.folder, (step, planned, []))[2].append(index)
    tasks = {}
    for folder, (step, planned, indices) in needed.items():
        task = ray.remote(pretrain_task).options(
            name=f"fkdbench-pretrain {folder.name}",
            num_cpus=step.num_threads,
            max_retries=options.retries,
            retry_exceptions=False,
        )
        reference = task.remote(step, _data_ref(ray, data_refs, step.data_dir))
        tasks[reference] = _StepTask(planned, indices, time.monotonic())
    return tasks


def _install_step(
    ray: Any, reference: Any, planned: PretrainPlan, retries: int
) -> Exception | None:
    """Install a finished pretraining task's checkpoint in the driver's cache; why not,
    when it failed or Ray could not finish it."""
    from fkdbench import pretrain

    try:
        files, worker, error = ray.get(reference)
    except Exception as error:  # noqa: BLE001 - Ray's errors (worker died, ...)
        return _RayTaskFailed(error, retries)
    if error is not None:  # the step's own failure, as one line from the worker
        return pretrain.PretrainError(error)
    try:
        pretrain.install(planned, files, worker)
    except Exception as failure:  # noqa: BLE001 - not of the recipe, or the disk's: a row
        return failure
    return None


def _send_out(
    ray: Any,
    configs: list[TrainConfig],
    options: RayOptions,
    locks: contextlib.ExitStack,
    record: Callable[[int, RunResult], None],
    data_refs: dict[Path, Any],
    indices: list[int],
) -> dict[Any, tuple[int, TrainConfig, float]]:
    """Send each run of ``indices`` into ``configs`` that is not finished as a task
    (holding its lock in ``locks``); a finished run is skipped here and a run that
    cannot be sent is a failed row, both ``record``ed. The tasks in flight: reference
    -> (index, config, start time)."""
    has_gpus = _has_gpus(ray)
    pending = {}
    for index in indices:
        config, started = configs[index], time.monotonic()
        try:
            config = _task_config(resolve_weights(config), has_gpus)
            name, folder = _run_folder(config)
            if runs.is_finished(folder) and not config.force:
                record(index, train_resolved(config, started=started))  # skip, or refuse
                continue
            locks.enter_context(runs.hold_run(folder, name))
            data_ref = _data_ref(ray, data_refs, config.data_dir)
            payload = _payload(config, name, folder)
        except Exception as error:  # noqa: BLE001 - a failure is a row, the matrix goes on
            record(index, failed_result(config, error, started))
            continue
        task = ray.remote(run_task).options(
            name=f"fkdbench-train {name}",
            num_cpus=config.num_threads,
            num_gpus=1 if config.device == "cuda" else 0,
            max_retries=options.retries,
            retry_exceptions=False,
        )
        pending[task.remote(payload, data_ref)] = (index, config, started)
    return pending


def _has_gpus(ray: Any) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def _data_ref(ray: Any, data_refs: dict[Path, Any], data_dir: Path) -> Any:
    """The data folder's files in Ray's object store, put there once per matrix."""
    if data_dir not in data_refs:
        data_refs[data_dir] = ray.put(_data_files(data_dir))
    return data_refs[data_dir]


def _task_config(config: TrainConfig, has_gpus: bool) -> TrainConfig:
    """The config a task trains: its threads and device fixed on the driver, so that Ray
    reserves what the task uses and every worker picks the same."""
    device = config.device
    if device == "auto":
        device = "cuda" if has_gpus else "cpu"
    return dataclasses.replace(config, num_threads=config.num_threads or 1, device=device)


def _run_folder(config: TrainConfig) -> tuple[str, Path]:
    name, _ = run_identity(config)
    return name, Path(config.runs_dir) / name


def _data_files(data_dir: Path) -> dict[str, bytes]:
    """The prepared data folder's own files (manifest, splits), not its raw sources."""
    return {
        path.name: path.read_bytes() for path in sorted(Path(data_dir).iterdir()) if path.is_file()
    }


def _payload(config: TrainConfig, name: str, folder: Path) -> TaskPayload:
    run_files = {}
    if folder.is_dir() and not config.force:
        run_files = {
            path.name: path.read_bytes()
            for path in folder.iterdir()
            if path.is_file() and path.name != runs.LOCK_FILE
        }
    weights = None if config.weights is None else Path(config.weights)
    weights_record = None if weights is None else record_beside(weights)
    spec = config.model_kwargs.get("spec")
    return TaskPayload(
        config=config,
        run_name=name,
        run_files=run_files,
        weights=None if weights is None else weights.read_bytes(),
        weights_record=_read_if_file(weights_record),
        spec=_read_if_file(Path(spec)) if isinstance(spec, str) else None,
        tuned_spec=_read_if_file(_tuned_spec_used(config)),
    )


def _tuned_spec_used(config: TrainConfig) -> Path | None:
    """The runs folder's tune of the variant, when the run builds its model from it."""
    tuned = runs.tuned_best_file(config.runs_dir, config.variant)
    if config.arch not in list_models(include_tests=True) or not tuned.is_file():
        return None
    chosen, _ = runs.choose_spec(config.model_kwargs, config.arch, config.variant, config.runs_dir)
    return tuned if chosen.get("spec") == str(tuned) else None


def _read_if_file(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None and path.is_file() else None


# --------------------------------------------------------------------------------------------
# In the worker.


def run_task(payload: TaskPayload, data_files: dict[str, bytes]) -> TaskOutcome:
    """Train one run in a scratch folder of this worker and send its folder back."""
    scratch = Path(tempfile.mkdtemp(prefix="fkdbench-ray-"))
    try:
        config, paths = _materialise(payload, data_files, scratch)
        started = time.monotonic()
        try:
            result = train_resolved(config, started=started)
        except Exception as error:  # noqa: BLE001 - the run's own failure: a row, no retry
            result = failed_result(config, error, started)
        folder = Path(config.runs_dir) / payload.run_name
        files = {}
        if result.status == "finished":
            files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
            files.pop(runs.LOCK_FILE, None)
        return TaskOutcome(result, files, _worker_identity(), paths)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pretrain_task(
    step: PretrainOptions, data_files: dict[str, bytes]
) -> tuple[dict[str, bytes] | None, dict[str, Any], str | None]:
    """Make one pretraining step in a scratch folder of this worker: (its cache folder's
    files, where it was made, None), or (None, where, the line it failed with: its own
    failure, sent back as a line and not retried)."""
    from fkdbench import pretrain

    scratch = Path(tempfile.mkdtemp(prefix="fkdbench-ray-"))
    try:
        data_dir = scratch / "data" / Path(step.data_dir).name
        _write_files(data_dir, data_files)
        local = dataclasses.replace(
            step, data_dir=data_dir, runs_dir=scratch / "runs", out=None, quiet=True
        )
        try:
            made = pretrain.pretrain(local)
        except Exception as error:  # noqa: BLE001 - the step's own failure: a line, no retry
            return None, _worker_identity(), runs.first_line(error, limit=500)
        files = {path.name: path.read_bytes() for path in made.weights.parent.iterdir()}
        return files, _worker_identity(), None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _materialise(
    payload: TaskPayload, data_files: dict[str, bytes], scratch: Path
) -> tuple[TrainConfig, dict[str, str]]:
    """Write the run's inputs under ``scratch``; the config pointing at them, and the
    worker path -> driver path map."""
    config = payload.config
    data_dir = scratch / "data" / Path(config.data_dir).name
    runs_dir = scratch / "runs"
    paths = {str(data_dir): str(config.data_dir), str(runs_dir): str(config.runs_dir)}
    _write_files(data_dir, data_files)
    _write_files(runs_dir / payload.run_name, payload.run_files)
    replaced: dict[str, Any] = dict(data_dir=data_dir, runs_dir=runs_dir, quiet=True)
    if payload.weights is not None:
        weights = scratch / "weights" / Path(config.weights).name
        _write_files(weights.parent, {weights.name: payload.weights})
        if payload.weights_record is not None:
            record = record_beside(weights)
            _write_files(record.parent, {record.name: payload.weights_record})
        paths[str(weights.parent)] = str(Path(config.weights).parent)
        replaced["weights"] = weights
    if payload.spec is not None:
        given = Path(config.model_kwargs["spec"])
        _write_files(scratch / "spec", {given.name: payload.spec})
        paths[str(scratch / "spec" / given.name)] = str(given)
        replaced["model_kwargs"] = {
            **config.model_kwargs,
            "spec": str(scratch / "spec" / given.name),
        }
    if payload.tuned_spec is not None:
        tuned = runs.tuned_best_file(runs_dir, config.variant)
        _write_files(tuned.parent, {tuned.name: payload.tuned_spec})
    return dataclasses.replace(config, **replaced), paths


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


def _worker_identity() -> dict[str, Any]:
    import ray

    return {
        "executor": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


# --------------------------------------------------------------------------------------------
# Back on the driver.


def _collect(
    ray: Any, reference: Any, config: TrainConfig, started: float, options: RayOptions
) -> RunResult:
    """The task's result, its run folder written on the driver; a task Ray could not
    finish (its worker died more than ``retries`` times, ...) is a failed row."""
    try:
        outcome: TaskOutcome = ray.get(reference)
    except Exception as error:  # noqa: BLE001 - Ray's errors (worker died, ...) are rows
        return failed_result(config, _RayTaskFailed(error, options.retries), started)
    name = outcome.result.run_name
    folder = Path(config.runs_dir) / name
    if outcome.result.status == "finished":
        try:
            install_run_files(folder, outcome.files, outcome.paths, outcome.worker)
        except OSError as error:  # disk full, read-only: a row, as for a local run
            return failed_result(config, error, started)
    return dataclasses.replace(outcome.result, run_dir=folder, seconds=time.monotonic() - started)


class _RayTaskFailed(RuntimeError):
    def __init__(self, error: Exception, retries: int) -> None:
        line = runs.first_line(error, limit=200)
        super().__init__(
            f"Ray could not finish the task ({type(error).__name__}, after up "
            f"to {retries} retries): {line}"
        )


def install_run_files(
    folder: Path, files: dict[str, bytes], paths: dict[str, str], worker: dict[str, Any]
) -> None:
    """Write a finished run folder that came back from a worker: every file atomically,
    ``metrics.json`` last (the run counts as finished only then); config.json and
    training.json name the driver's paths, and training.json says where the run trained.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(files)
    metrics = files.pop(runs.METRICS_FILE)
    records = {
        name: _relocated(json.loads(files.pop(name)), paths)
        for name in (runs.CONFIG_FILE, runs.TRAINING_FILE)
        if name in files
    }
    if runs.TRAINING_FILE in records:
        records[runs.TRAINING_FILE]["trained_on"] = worker
    for name, content in sorted(files.items()):
        write_bytes_atomic(folder / name, content)
    for name, record in sorted(records.items()):
        write_json_atomic(folder / name, record)
    write_bytes_atomic(folder / runs.METRICS_FILE, metrics)
    (folder / runs.RESUME_FILE).unlink(missing_ok=True)


def _relocated(value: Any, paths: dict[str, str]) -> Any:
    """``value`` with every worker path in its strings replaced by the driver's."""
    if isinstance(value, dict):
        return {key: _relocated(item, paths) for key, item in value.items()}
    if isinstance(value, list):
        return [_relocated(item, paths) for item in value]
    if isinstance(value, str):
        for worker, driver in sorted(paths.items(), key=lambda pair: -len(pair[0])):
            value = value.replace(worker, driver)
    return value
