"""The database a study lives in: any URL Optuna supports, opened with one-line errors."""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError

from fkdbench import runs
from fkdbench.tune.options import TuneError

# Heartbeats mark a crashed worker's trial FAIL so the study does not wait for it forever.
HEARTBEAT_SECONDS = 60
HEARTBEAT_GRACE_SECONDS = 240
# Tries at opening a storage whose tables another worker is creating at the same moment.
STORAGE_ATTEMPTS = 5
# Seconds to wait for a database server before saying it cannot be reached.
CONNECT_TIMEOUT_SECONDS = 10


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and records."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL too broken to parse has no password to find
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str, create_folder: bool | None = None) -> optuna.storages.RDBStorage:
    """An Optuna storage for ``url``, connected; a bad or unreachable URL raises
    :class:`TuneError` with one line naming it.

    An SQLite file's folder is created only when ``create_folder`` (None: when it is the
    default layout's ``<runs>/tune/``); any other missing folder is refused, since a typo
    would otherwise grow a tree of folders and a study nobody finds."""
    shown = shown_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise TuneError(
            f"--storage {shown}: not a database URL "
            "(e.g. sqlite:///runs/tune/study.db or postgresql://user@host/db)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _sqlite_folder(parsed, shown, create_folder)
    engine_kwargs = _engine_kwargs(parsed)
    try:
        return _connect_retrying(url, engine_kwargs)
    except ImportError as error:
        # Optuna re-raises SQLAlchemy's failed driver import with its own words.
        driver = getattr(error.__cause__, "name", None) or error.name or "for this URL"
        raise TuneError(
            f"--storage {shown}: the database driver {driver} is not installed "
            "(PostgreSQL's, psycopg, comes with fkdbench; install others with uv add)"
        ) from None
    except Exception as error:  # noqa: BLE001 - SQLAlchemy/driver errors vary by database
        problem = runs.first_line(error, 160)
    raise TuneError(f"--storage {shown}: cannot open the database ({problem})")


def _connect_retrying(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Workers starting together on a new database race to create Optuna's tables; the
    loser's CREATE fails, and on retry it finds them made. The last try's error is raised."""
    for attempt in range(1, STORAGE_ATTEMPTS):
        with contextlib.suppress(IntegrityError, ProgrammingError):
            return _connect(url, engine_kwargs)
        time.sleep(0.5 * attempt)
    return _connect(url, engine_kwargs)


def _sqlite_folder(parsed: URL, shown: str, create_folder: bool | None) -> None:
    """Check (or, for the default layout, make) the folder of an SQLite file; raises
    TuneError naming --storage."""
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return
    folder = Path(parsed.database).parent
    if create_folder is None:
        create_folder = folder.name == runs.TUNE_DIR
    blocker = next((part for part in (folder, *folder.parents) if part.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise TuneError(f"--storage {shown}: {blocker} is a file, not a folder")
    if folder.is_dir():
        return
    if not create_folder:
        raise TuneError(
            f"--storage {shown}: the folder {folder} does not exist (create it first, "
            f"or leave --storage out for <runs-dir>/{runs.TUNE_DIR}/)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TuneError(f"--storage {shown}: cannot create {folder} ({error.strerror})") from None


def _engine_kwargs(parsed: URL) -> dict[str, Any]:
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        # Several local workers share one file: wait for its lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif parsed.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return engine_kwargs


def _connect(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=HEARTBEAT_GRACE_SECONDS,
        )
