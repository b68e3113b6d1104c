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


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna storage for ``url``, connected; a bad or unreachable URL raises
    :class:`TuneError` with one line naming it."""
    shown = shown_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise TuneError(
            f"--storage {shown}: not a database URL "
            "(e.g. sqlite:///runs/tune/study.db or postgresql://user@host/db)"
        ) from None
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


def _engine_kwargs(parsed: URL) -> dict[str, Any]:
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
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
