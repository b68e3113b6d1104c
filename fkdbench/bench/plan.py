"""Which graphs one bench call times, and in which order: graph keys and the round-robin.

Latency depends on the graph, not on its weights: runs of the same architecture, spec,
input size and channels (five data variants of cnn-manual, say) run the same operators on
the same shapes. Each distinct graph is timed once per bench call and its samples are
shared by every run with that graph (the record says ``timed_as``). The timed passes of
the distinct graphs are interleaved (A, B, C, A, B, C, ...) so that a slow spell of the
machine falls on all of them alike instead of on whichever model was timed during it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from fkdbench.bench.options import BACKEND_FILES
from fkdbench.edge import EDGE_BACKENDS
from fkdbench.io import plain

# The config.json "model" fields that decide the graph (not the weights, the variant, the
# keypoint names or where the spec came from).
GRAPH_FIELDS = ("arch", "num_outputs", "in_chans", "input_size", "kwargs")
# Batch-1 calls per graph per turn of the round-robin: short enough that a slow spell of
# the machine is shared between graphs, long enough that switching sessions stays cheap.
LATENCY_CHUNK = 10


def graph_key(
    model: dict[str, Any],
    backend: str,
    exporter: str | None = None,
    int8_activations: str | None = None,
    int8_choice: dict[str, Any] | None = None,
) -> str:
    """sha256 of the canonical JSON of what builds the timed graph: ``model`` is
    config.json's model section; the backend's file kind, the ONNX exporter and the INT8
    activation type are part of it because each makes a different graph of one model. An
    edge runtime adds its name: OpenVINO runs the very file ONNX Runtime does."""
    described = {name: model.get(name) for name in GRAPH_FIELDS}
    described.update(
        file=BACKEND_FILES[backend], exporter=exporter, int8_activations=int8_activations
    )
    if backend in EDGE_BACKENDS:
        described["runtime"] = backend
    if int8_choice is not None:  # how the INT8 graph was quantized (fkdbench.int8)
        described["int8_choice"] = int8_choice
    text = json.dumps(plain(described), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def timing_sources(keys: Sequence[str]) -> list[int | None]:
    """For each position, the index of the earlier position whose graph it shares (its
    timing is copied from there), or None when it is the first of its graph (timed)."""
    first: dict[str, int] = {}
    shared: list[int | None] = []
    for index, key in enumerate(keys):
        shared.append(first.get(key))
        first.setdefault(key, index)
    return shared


def round_robin(
    count: int, turns: int, measure: Callable[[int], None], errors: dict[int, Exception]
) -> None:
    """``measure(i)`` for each of ``count`` graphs in turn, ``turns`` times: A, B, A, B,
    not A, A, B, B. A graph whose measurement raises leaves the rotation: its error goes
    into ``errors`` (by index, for the caller's error records), and one already there is
    skipped."""
    for _ in range(turns):
        for index in range(count):
            if index in errors:
                continue
            try:
                measure(index)
            except Exception as error:  # noqa: BLE001 - one graph failing stops no other
                errors[index] = error
