"""A matrix across a real two-node Ray cluster on this machine (issue 16).

The fixture starts a head node and a second node with ``ray start --block`` (each its own
raylet with one CPU, so a matrix of one-thread runs must use both), with token
authentication as Ray 2.60 enables it. The tests drive it as a user would: the library
call, and ``fkdbench train --all --executor ray`` in a subprocess, whose worker process
is killed with SIGKILL by its pid, or which gets Ctrl-C (SIGINT).

Skipped, saying why, when Ray is not installed (``uv sync --extra ray``), except with
``FKDBENCH_REQUIRE_RAY=1`` (CI installs the extra), where its absence fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.presets import load_preset
from fkdbench.pretrain import cache
from fkdbench.train import distributed
from fkdbench.train.distributed import RayMissing
from fkdbench.train.matrix import train_configs

REQUIRED = os.environ.get("FKDBENCH_REQUIRE_RAY") == "1"
RAY_CLI = Path(sys.executable).parent / "ray"
SEEDS = 4
# Seconds to wait for a cluster, a worker or a driver before the test fails.
PATIENCE = 240

pytestmark = pytest.mark.slow


def _ray_or_skip() -> None:
    # Found, not imported: Ray reads its authentication settings when first imported,
    # and the fixture sets them first.
    if importlib.util.find_spec("ray") is None:
        if REQUIRED:
            pytest.fail("FKDBENCH_REQUIRE_RAY=1 but ray is not installed")
        pytest.skip("ray is not installed (uv sync --extra ray)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_environment(token_file: Path) -> dict[str, str]:
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _start_node(arguments: list[str], environment: dict[str, str], log: Path) -> subprocess.Popen:
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--block"]
    with log.open("w") as out:
        return subprocess.Popen(
            [str(RAY_CLI), "start", *arguments, *common],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for_nodes(address: str, count: int, environment: dict[str, str]) -> None:
    check = (
        "import ray, sys, time\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        f"deadline = time.monotonic() + {PATIENCE}\n"
        f"while sum(node['Alive'] for node in ray.nodes()) < {count}:\n"
        "    if time.monotonic() > deadline: sys.exit('nodes did not join')\n"
        "    time.sleep(0.5)\n"
    )
    subprocess.run([sys.executable, "-c", check], env=environment, check=True, timeout=PATIENCE)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """The address of a head node and a second node on 127.0.0.1, one CPU each."""
    _ray_or_skip()
    # Short: Ray's unix sockets live under the temp dir, and their paths have a limit.
    scratch = Path(tempfile.mkdtemp(prefix="fkr-"))
    token_file = scratch / "token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    settings = _ray_environment(token_file)
    environment = {**os.environ, **settings}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head_arguments = [
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        f"--temp-dir={scratch / 'ray'}",
    ]
    head = _start_node(head_arguments, environment, scratch / "head.log")
    nodes = [head]
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)  # the drivers these tests start in-process
    try:
        _wait_for_nodes(address, 1, environment)
        second = [f"--address={address}", "--node-ip-address=127.0.0.1"]
        nodes.append(_start_node(second, environment, scratch / "node.log"))
        _wait_for_nodes(address, 2, environment)
        yield address
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)  # --block: stops the processes it started
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def matrix_preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny runs: cnn-manual on ``none`` with four seeds, a few epochs each."""
    path = tmp_path_factory.mktemp("preset") / "four.json"
    preset = {
        "name": "four",
        "description": "four tiny runs for the Ray tests",
        "seeds": SEEDS,
        "defaults": {"epochs": 6, "batch_size": 8, "patience": None, "num_threads": 1},
        "runs": [{"arch": "cnn-manual", "variants": ["none"]}],
    }
    path.write_text(json.dumps(preset))
    return path


@pytest.fixture(scope="module")
def serial_metrics(
    matrix_preset: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """metrics.json of each run of the matrix, trained here one after another."""
    runs_dir = tmp_path_factory.mktemp("serial")
    configs = load_preset(matrix_preset).configs(tiny_dataset, runs_dir, quiet=True)
    results = train_configs(configs, "serial", quiet=True)
    assert [result.status for result in results] == ["finished"] * SEEDS
    return {
        result.run_name: (result.run_dir / runs.METRICS_FILE).read_bytes() for result in results
    }


@pytest.fixture
def cli_matrix(
    ray_cluster: str, matrix_preset: Path, tiny_dataset: Path, tmp_path: Path
) -> Iterator[subprocess.Popen]:
    """``fkdbench train --all --executor ray`` of the matrix into ``tmp_path``, running."""
    command = [
        sys.executable, "-m", "fkdbench", "train", "--all", "--preset", str(matrix_preset),
        "--data", str(tiny_dataset), "--runs-dir", str(tmp_path), "--executor", "ray",
        "--ray-address", ray_cluster, "--threads", "1", "--quiet",
    ]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield driver
    if driver.poll() is None:
        driver.kill()
        driver.communicate()


def _training_tasks() -> dict[int, str]:
    """pid -> run name of every Ray worker running a training task now (Ray titles a
    worker process ``ray::<task name>``; read from /proc, as CI may have no ``ps``)."""
    tasks = {}
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, UnicodeDecodeError):
            continue  # not a process, or one that just ended
        if entry.name.isdigit() and title.startswith("ray::fkdbench-train "):
            tasks[int(entry.name)] = title.removeprefix("ray::fkdbench-train ").strip()
    return tasks


def _wait_until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_matrix_across_two_nodes_equals_the_serial_one(
    ray_cluster: str,
    matrix_preset: Path,
    tiny_dataset: Path,
    serial_metrics: dict[str, bytes],
    tmp_path: Path,
) -> None:
    configs = load_preset(matrix_preset).configs(tiny_dataset, tmp_path, quiet=True)
    # A run that fails for a reason of its own (a spec file that is not there) is a row.
    broken = TrainConfig(
        arch="cnn-tuned",
        variant="none",
        data_dir=tiny_dataset,
        runs_dir=tmp_path,
        epochs=1,
        num_threads=1,
        quiet=True,
        model_kwargs={"spec": str(tmp_path / "no-such-spec.json")},
    )
    results = train_configs(
        [*configs, broken], "matrix", quiet=True, executor="ray", ray_address=ray_cluster
    )

    assert [result.status for result in results] == ["finished"] * SEEDS + ["failed"]
    assert "no-such-spec.json" in results[-1].error
    nodes = set()
    for result in results[:SEEDS]:
        assert result.run_dir == tmp_path / result.run_name
        assert runs.is_finished(result.run_dir)
        assert not (result.run_dir / runs.LOCK_FILE).exists()
        assert (result.run_dir / runs.METRICS_FILE).read_bytes() == serial_metrics[result.run_name]
        config = runs.read_config(result.run_dir)
        # The record names the driver's folders, not the worker's scratch.
        assert config["train"]["runs_dir"] == str(tmp_path)
        assert config["train"]["data_dir"] == str(tiny_dataset)
        nodes.add(runs.read_training(result.run_dir)["trained_on"]["node_id"])
    assert len(nodes) == 2, "every run trained on one node"

    # A second call finds every run finished and sends no task.
    again = train_configs(configs, "matrix", quiet=True, executor="ray", ray_address=ray_cluster)
    assert [result.status for result in again] == ["skipped"] * SEEDS


def test_a_pretraining_step_is_one_ray_task_and_makes_the_local_checkpoint(
    ray_cluster: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    """Two runs start from one autoencoder step (it reads the data, which must travel):
    one task makes it on a worker, the driver's cache gets it, and the checkpoint and
    the runs are byte for byte what the same matrix makes locally."""
    step = {"method": "autoencoder", "epochs": 1, "batch_size": 8}

    def matrix(runs_dir: Path) -> list[TrainConfig]:
        common = dict(
            arch="cnn-manual", variant="none", data_dir=tiny_dataset, runs_dir=runs_dir,
            epochs=2, batch_size=8, num_threads=1, quiet=True, pretrain=step,
        )  # fmt: skip
        return [TrainConfig(**common, weights_mode=mode) for mode in ("frozen", "finetuned")]

    on_ray = train_configs(
        matrix(tmp_path / "ray"), "matrix", quiet=True, executor="ray", ray_address=ray_cluster
    )
    local = train_configs(matrix(tmp_path / "local"), "local", quiet=True)

    assert [result.status for result in on_ray] == ["finished"] * 2, on_ray[0].error
    [made] = (tmp_path / "ray" / cache.PRETRAIN_DIR).glob(f"*/{cache.RECORD_FILE}")
    record = json.loads(made.read_text())
    assert record["made_on"]["executor"] == "ray" and record["made_on"]["pid"] != os.getpid()
    [local_made] = (tmp_path / "local" / cache.PRETRAIN_DIR).glob(f"*/{cache.WEIGHTS_FILE}")
    assert made.with_name(cache.WEIGHTS_FILE).read_bytes() == local_made.read_bytes()
    for ray_run, local_run in zip(on_ray, local, strict=True):
        assert ray_run.run_name == local_run.run_name
        metrics = (ray_run.run_dir / runs.METRICS_FILE).read_bytes()
        assert metrics == (local_run.run_dir / runs.METRICS_FILE).read_bytes()
    # Made once: a second matrix reuses the driver's cache and sends no pretraining task.
    again = train_configs(
        matrix(tmp_path / "ray"), "matrix", quiet=True, executor="ray", ray_address=ray_cluster
    )
    assert [result.status for result in again] == ["skipped"] * 2
    assert json.loads(made.read_text()) == record


def test_a_killed_worker_is_retried_and_the_matrix_completes(
    cli_matrix: subprocess.Popen, serial_metrics: dict[str, bytes], tmp_path: Path
) -> None:
    driver = cli_matrix
    killed: dict[int, str] = {}

    def kill_one() -> bool:
        tasks = _training_tasks()
        if tasks:
            pid, name = next(iter(tasks.items()))
            time.sleep(0.5)  # into the run, past the worker's start
            os.kill(pid, signal.SIGKILL)
            killed[pid] = name
        return bool(killed) or driver.poll() is not None

    _wait_until(kill_one, "a training task to start")
    output, _ = driver.communicate(timeout=PATIENCE)
    assert driver.returncode == 0, output
    assert killed, f"the matrix ended before a task was seen: {output}"
    ((pid, name),) = killed.items()
    for run_name, metrics in serial_metrics.items():
        assert (tmp_path / run_name / runs.METRICS_FILE).read_bytes() == metrics, run_name
    # The run whose worker died was trained again, by another worker process.
    assert runs.read_training(tmp_path / name)["trained_on"]["pid"] != pid


def test_ctrl_c_on_the_driver_keeps_the_finished_runs(
    cli_matrix: subprocess.Popen, serial_metrics: dict[str, bytes], tmp_path: Path
) -> None:
    driver = cli_matrix
    _wait_until(
        lambda: (
            any(runs.is_finished(folder) for folder in tmp_path.iterdir())
            or driver.poll() is not None
        ),
        "a first finished run",
    )
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=PATIENCE)

    finished = [folder for folder in tmp_path.iterdir() if runs.is_finished(folder)]
    assert driver.returncode == 130, output
    assert "interrupted" in output
    assert 1 <= len(finished) < SEEDS, f"{len(finished)} runs finished: {output}"
    for folder in finished:
        assert (folder / runs.METRICS_FILE).read_bytes() == serial_metrics[folder.name]
    for folder in tmp_path.iterdir():
        assert not (folder / runs.LOCK_FILE).exists(), folder
        if folder not in finished:
            assert not (folder / runs.METRICS_FILE).exists(), folder
    # The cancelled tasks stop: no worker trains for this matrix any more.
    _wait_until(lambda: not _training_tasks(), "the cancelled tasks to stop")


# --------------------------------------------------------------------------------------------
# Without a cluster.


def test_without_ray_installed_the_executor_fails_in_one_line(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    configs = load_preset("smoke").configs(tiny_dataset, tmp_path, quiet=True)
    with pytest.raises(RayMissing, match=r"ray is not installed \(uv sync --extra ray\)"):
        train_configs(configs, "smoke", quiet=True, executor="ray")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_executor_and_an_address_without_ray_are_refused(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    configs = load_preset("smoke").configs(tiny_dataset, tmp_path, quiet=True)
    with pytest.raises(ValueError, match="unknown executor 'dask'; known: local, ray"):
        train_configs(configs, "smoke", quiet=True, executor="dask")
    with pytest.raises(ValueError, match="--ray-address is for --executor ray"):
        train_configs(configs, "smoke", quiet=True, ray_address="auto")


def test_the_package_does_not_import_ray_until_asked() -> None:
    check = "import sys, fkdbench.cli, fkdbench.train.distributed; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_a_run_from_a_worker_is_written_metrics_last_with_the_drivers_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "driver" / "cnn-manual--none"
    folder.mkdir(parents=True)
    (folder / runs.RESUME_FILE).write_bytes(b"an interrupted run's state")
    worker = "/tmp/fkdbench-ray-x/runs"
    config = {"train": {"runs_dir": worker, "spec": f"{worker}/tune/best.json (study s)"}}
    files = {
        runs.METRICS_FILE: b'{"test_rmse": 1.0}\n',
        runs.MODEL_FILE: b"weights",
        runs.CONFIG_FILE: json.dumps(config).encode(),
        runs.TRAINING_FILE: b'{"training_seconds": 2.0}',
    }
    written: list[str] = []
    for writer in ("write_bytes_atomic", "write_json_atomic"):
        real_write = getattr(distributed, writer)

        def recording_write(path: Path, data: object, real_write=real_write) -> None:  # noqa: ANN001
            written.append(path.name)
            real_write(path, data)

        monkeypatch.setattr(distributed, writer, recording_write)
    distributed.install_run_files(
        folder, files, {worker: str(tmp_path / "driver")}, {"executor": "ray", "pid": 7}
    )

    assert written[-1] == runs.METRICS_FILE and sorted(written) == sorted(files)
    assert not (folder / runs.RESUME_FILE).exists()
    assert runs.read_config(folder)["train"] == {
        "runs_dir": str(tmp_path / "driver"),
        "spec": f"{tmp_path / 'driver'}/tune/best.json (study s)",
    }
    assert runs.read_training(folder)["trained_on"] == {"executor": "ray", "pid": 7}
    assert (folder / runs.MODEL_FILE).read_bytes() == b"weights"


def test_a_run_that_cannot_be_written_back_is_a_failed_row(tmp_path: Path) -> None:
    """Disk full or read-only on the driver: the task's run is a row saying why, and
    nothing of it counts as finished (as when a local run cannot write)."""
    blocked = tmp_path / "runs"
    blocked.write_text("a file where the runs folder should be")
    config = TrainConfig(arch="cnn-manual", variant="none", data_dir=tmp_path, runs_dir=blocked)
    result = distributed.RunResult(
        run_name="cnn-manual--none",
        run_dir=Path("/worker/scratch/runs/cnn-manual--none"),
        arch="cnn-manual",
        variant="none",
        weights_mode="scratch",
        status="finished",
    )
    outcome = distributed.TaskOutcome(result, {runs.METRICS_FILE: b"{}"}, {"pid": 1}, {})

    class FakeRay:
        def get(self, reference: object) -> distributed.TaskOutcome:
            return outcome

    row = distributed._collect(FakeRay(), object(), config, 0.0, distributed.RayOptions())

    assert row.status == "failed"
    assert row.error.startswith(("FileExistsError", "NotADirectoryError", "WriteError"))
    assert blocked.read_text() == "a file where the runs folder should be"
