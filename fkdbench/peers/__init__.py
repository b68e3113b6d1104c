"""Off-the-shelf peers: keypoint predictors trained elsewhere, scored beside ours.

A peer is not trained here: it is installed (``uv sync --extra peers``), run on a prepared
data set's test split (the same faces as every trained run) and scored with the project's
own metrics (:mod:`fkdbench.peers.score`). Its record, ``<runs_dir>/peers/<name>.json``,
sits beside the run folders; the report shows it as a marked row (:data:`PEER_MARK`),
never ranked against the trained rows.

:data:`PEERS` is the one registry: the name, what the peer is, what it was trained on,
which modules and optional dependency group it needs, its own keypoint scheme and how to
open it. Importing this package imports no peer library: :func:`open_peer` does, lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# How every report row of a peer is marked: it was not trained on this project's data.
PEER_MARK = "off-the-shelf, trained elsewhere (300-W)"
# The optional dependency group that installs the peers' libraries and model files.
PEERS_EXTRA = "peers"
NOT_INSTALLED = f"not installed (uv sync --extra {PEERS_EXTRA})"


class PeerError(ValueError):
    """A peer that is unknown, not installed or cannot score this data; one line."""


@dataclass(frozen=True)
class PeerInfo:
    """One registry row: what the peer is, what it was trained on and what it needs."""

    name: str
    description: str
    # The data its published model was fitted to (a peer never sees fkdbench's data).
    trained_on: str
    # The report's mark for its rows.
    mark: str
    # Python modules it needs beyond fkdbench's core dependencies.
    modules: tuple[str, ...]
    # The keypoint scheme it predicts natively (mapped to the data set's scheme).
    native_scheme: str
    # "module:attribute" of the class that runs it (imported by open_peer only).
    opener: str


PEERS: dict[str, PeerInfo] = {
    "dlib-ert68": PeerInfo(
        name="dlib-ert68",
        description="dlib shape_predictor (ERT, Kazemi & Sullivan 2014), 68 points, "
        "on dlib's HOG face detector",
        trained_on="iBUG 300-W (shape_predictor_68_face_landmarks.dat, face-recognition-models)",
        mark=PEER_MARK,
        modules=("dlib", "face_recognition_models"),
        native_scheme="ibug68",
        opener="fkdbench.peers.dlib_ert:DlibErt68",
    ),
}
DEFAULT_PEER = "dlib-ert68"


def get_peer(name: str) -> PeerInfo:
    """The registry row of ``name``; unknown names fail with the list of known ones."""
    if name not in PEERS:
        raise PeerError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return PEERS[name]


def list_peers() -> list[str]:
    """Every registered peer, in registry order."""
    return list(PEERS)


def peer_available(name: str) -> str | None:
    """None when peer ``name`` can run here, else why not (:data:`NOT_INSTALLED`)."""
    info = get_peer(name)
    # find_spec, not import: face_recognition_models' __init__ needs pkg_resources.
    if any(importlib.util.find_spec(module) is None for module in info.modules):
        return NOT_INSTALLED
    return None


def open_peer(name: str) -> Any:
    """An instance of the peer's runner (e.g. :class:`fkdbench.peers.dlib_ert.DlibErt68`);
    :class:`PeerError` when it is not installed."""
    info = get_peer(name)
    reason = peer_available(name)
    if reason is not None:
        raise PeerError(f"peer {name}: {reason}")
    module_name, _, attribute = info.opener.partition(":")
    opener: Callable[[], Any] = getattr(importlib.import_module(module_name), attribute)
    return opener()
