"""Writing files so that an interrupted or failed step never leaves half a file behind.

Every file fkdbench writes goes to a temporary name in the same folder and is renamed
into place (``os.replace`` is atomic on one file system), so a reader sees either the
old content or the new, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


# The write failures a user fixes by freeing space or choosing a writable folder: they
# become one line naming the file (WriteError) instead of a traceback.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})
# torch.save writes through its own C++ stream, so a full disk reaches Python as a
# RuntimeError from inline_container.cc rather than an OSError; these words mark it.
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed")


class WriteError(OSError):
    """A file could not be written (disk full, read-only file system); the message names
    the file and says that its previous content, if any, is unchanged."""


def write_error(path: Path, error: BaseException) -> WriteError | None:
    """The one-line :class:`WriteError` for a storage failure writing ``path``, else None."""
    if isinstance(error, WriteError):
        return error
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        code, reason = error.errno, os.strerror(error.errno)
    elif isinstance(error, RuntimeError) and any(w in str(error) for w in _TORCH_WRITE_FAILURES):
        code, reason = errno.EIO, "the write failed (disk full or read-only?)"
    else:
        return None
    # One argument keeps the message free of OSError's "[Errno N]" prefix; errno stays set.
    problem = WriteError(
        f"{path}: cannot write: {reason}; nothing was lost (its previous content, if any, "
        "is unchanged)"
    )
    problem.errno = code
    return problem


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A storage failure (ENOSPC, EROFS, torch.save's wrapped one) raises :class:`WriteError`
    naming ``path``; the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    temporary_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        os.close(handle)
        temporary_path = Path(temporary)
        # mkstemp makes the file private (0600); give it the permissions of a normal file.
        os.chmod(temporary_path, 0o666 & ~_UMASK)
        yield temporary_path
        os.replace(temporary_path, path)
    except (OSError, RuntimeError) as error:
        converted = write_error(path, error)
        if converted is None:
            raise
        raise converted from None
    finally:
        if temporary_path is not None:
            temporary_path.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Pretty, key-sorted JSON: stable bytes for the same content."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


class JsonlTail:
    """The JSON lines one writer adds to a file: each :meth:`write` replaces the lines of
    its earlier writes, after what the file held when the tail was made, in one atomic
    rewrite. A long job writes what it has finished as it goes (a job cut off keeps
    them) and its final lines at the end, and a crash never truncates the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        before = self.path.read_bytes() if self.path.exists() else b""
        self.before = before + b"\n" if before and not before.endswith(b"\n") else before

    def write(self, records: list[dict]) -> None:
        lines = [json.dumps(record, sort_keys=True, default=str) + "\n" for record in records]
        write_bytes_atomic(self.path, self.before + "".join(lines).encode("utf-8"))


def append_jsonl_atomic(path: Path, records: list[dict]) -> None:
    """Append JSON lines by rewriting the file atomically: a crash never truncates it."""
    JsonlTail(path).write(records)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target``.

    On any error (or Ctrl-C) the temporary folder is removed and ``target`` is untouched;
    a storage failure (ENOSPC, EROFS) raises :class:`WriteError` naming ``target``.
    """
    target = Path(target)
    staging: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        )
        os.chmod(staging, 0o777 & ~_UMASK)
        yield staging
        _swap_in(staging, target)
    except (OSError, RuntimeError) as error:
        converted = write_error(target, error)
        if converted is None:
            raise
        raise converted from None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    if target.exists():
        # Move the old folder aside first so that the swap leaves no window with neither.
        retired = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


def read_json(
    path: Path, error: type[ValueError] = ValueError, missing: str = "no such file"
) -> Any:
    """A JSON file's content; a missing or malformed file raises ``error`` with one line
    naming it (``missing`` says what to do about an absent one)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{path}: malformed JSON ({problem})") from None
    except RecursionError:
        # json's decoder recurses once per nested array or object.
        raise error(f"{path}: malformed JSON (nested too deeply)") from None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (data files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plain(value: Any) -> Any:
    """JSON- and weights_only-safe copy: Paths to str, tuples to lists, numpy to Python."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class ProcessOwner:
    """The process that owns a file or folder while it writes it (a run's lock, a
    prepare's temporary folder): its pid and host, so that another process can tell a
    live owner from one that died and left the file behind."""

    pid: int
    host: str

    @classmethod
    def current(cls) -> ProcessOwner:
        return cls(os.getpid(), socket.gethostname())

    def alive(self) -> bool | None:
        """Whether the owner still runs: None when it is on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        if self.pid == os.getpid():
            # Not this process (it owns a file once, and checks before it does): one that
            # had the same pid before, e.g. in a restarted container, where pids restart.
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's live process
        return True

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


# What an owner file that names nobody (being written, or damaged) reads as.
UNKNOWN_OWNER = ProcessOwner(-1, "?")


def owner_json(owner: ProcessOwner) -> str:
    return json.dumps({"pid": owner.pid, "host": owner.host})


def read_owner(path: Path) -> ProcessOwner | None:
    """The owner recorded in ``path`` (written with :func:`owner_json`); None when the
    file is gone, :data:`UNKNOWN_OWNER` when it names no pid and host."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        return ProcessOwner(int(record["pid"]), str(record["host"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return UNKNOWN_OWNER
