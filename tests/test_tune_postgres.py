"""Two ``fkdbench tune`` worker processes on one study in a real PostgreSQL server.

The server is started here, in a temporary folder, on a free loopback port, and stopped at
the end. ``.ci/run`` installs it from the system packages and sets
``FKDBENCH_REQUIRE_POSTGRES=1``, so in CI a missing server fails the test; elsewhere the
test is skipped, saying why, when no PostgreSQL server binary is found.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fkdbench.data.prepare import PrepareOptions, prepare

REQUIRED = os.environ.get("FKDBENCH_REQUIRE_POSTGRES") == "1"
DATABASE = "fkdbench_tune"
ROLE = "fkdbench"


def _server_bin() -> Path | None:
    """The folder of initdb/pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<v>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PostgreSQL is required here (FKDBENCH_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL cluster with one database; yields its URL."""
    bin_dir = _server_bin()
    if bin_dir is None:
        _unavailable("no PostgreSQL server (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
    # PostgreSQL refuses to run as root: as root, run it as the packages' `postgres` user.
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="fkdbench-pg-", dir="/tmp"))
    cluster, log = root / "cluster", root / "server.log"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(cluster), "-U", ROLE, "--auth=trust", "-E", "UTF8")
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(cluster),
            "-l",
            str(log),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
    except (subprocess.CalledProcessError, OSError) as error:
        details = getattr(error, "stderr", b"") or b""
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"could not start PostgreSQL: {error} {details.decode(errors='replace')}")
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user=ROLE, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql://{ROLE}@127.0.0.1:{port}/{DATABASE}"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pg-data")
    return prepare(
        PrepareOptions(
            data_root=root, n_train=150, n_test=8, image_size=48, seed=6, workers=1, quiet=True
        )
    ).data_dir


def test_two_workers_share_one_study(postgres_url: str, faces: Path, tmp_path: Path) -> None:
    trials = 6
    common = [
        sys.executable,
        "-m",
        "fkdbench",
        "tune",
        "--storage",
        postgres_url,
        "--study",
        "shared",
        "--data",
        str(faces),
        "--trials",
        str(trials),
        "--epochs",
        "1",
        "--max-train-rows",
        "64",
        "--max-val-rows",
        "16",
        "--threads",
        "1",
        "--max-params",
        str(10**12),
        "--quiet",
    ]
    workers = [
        subprocess.Popen(
            [*common, "--runs-dir", str(tmp_path / f"worker{index}"), "--sampler-seed", str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in (1, 2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    recorded = study.get_trials(deepcopy=False)
    numbers = [trial.number for trial in recorded]
    # Every trial recorded once: numbers unique and contiguous, none left running or failed.
    assert sorted(numbers) == list(range(len(recorded)))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in recorded)
    # Each worker checks the count before it starts a trial, so together they may overshoot
    # the target by at most one trial per extra worker. Specs rejected before training
    # (pooled below 1x1 at 48 pixels) do not count.
    trained = [t for t in recorded if "val_rmse_by_epoch" in t.user_attrs]
    assert trials <= len(trained) <= trials + 1
    by_worker: dict[str, list[int]] = {}
    for trial in recorded:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
    assert len(by_worker) == 2, f"both workers ran trials: {by_worker}"
    # Different sampler seeds: no two trials tried the same settings.
    settings = [json.dumps(t.params, sort_keys=True) for t in recorded]
    assert len(set(settings)) == len(settings)
    # Each worker wrote the study's outputs from the database: all trials, in both.
    for index in (1, 2):
        csv_rows = (tmp_path / f"worker{index}" / "tune" / "shared" / "trials.csv").read_text()
        assert len(csv_rows.strip().splitlines()) - 1 == len(recorded)
