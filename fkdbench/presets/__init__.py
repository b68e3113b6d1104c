"""Presets: which runs a training matrix holds, as small JSON data files.

A preset file looks like::

    {
      "name": "quick",
      "description": "what it is for and what it costs",
      "defaults": {"epochs": 3, "batch_size": 64, "max_minutes": 10.0},
      "seeds": 1,
      "runs": [
        {"arch": "cnn-manual", "variants": ["none", "ffill", "knn", "aug", "masked"]},
        {"arch": "resnet50", "variant": "none", "epochs": 1, "note": "why this budget"}
      ]
    }

``defaults`` and every run entry hold :class:`fkdbench.config.TrainConfig` fields (except
the ones a caller decides: ``data_dir``, ``runs_dir``, ``force``, ``quiet``). An entry
names one ``variant`` or a list of ``variants`` (one run each); a run entry's fields win
over ``defaults``. ``seeds`` (an integer >= 1, default 1) trains every run with that many
seeds, ``seed, seed + 1, ...``, each in a folder ``...--s<seed>`` when there are several
(:func:`fkdbench.config.seeded_configs`). ``note`` is free text that explains a choice
(JSON has no comments). An optional ``bench`` object sets ``reproduce``'s measurement
(``repeats``, ``latency_samples``, ``backends``, ... as in
:class:`fkdbench.bench.BenchOptions`), and what it measures beyond the bench:
``video_bench`` (true: the end-to-end video pipeline on the generated clip, one model per
architecture) and ``peers`` (off-the-shelf predictors scored on the test split, by name:
:data:`fkdbench.peers.PEERS`).

The files shipped here: ``quick`` (five architectures and every variant on a small
budget, the whole flow in about 26 minutes), ``paper`` (the full matrix, real epochs) and
``smoke`` (two tiny cnn-manual runs, a couple of minutes with ``--n-train 300 --n-test 30``:
what ``.ci/run`` runs before the tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fkdbench.config import TrainConfig, seeded_configs
from fkdbench.data.variants import VARIANTS
from fkdbench.io import read_json
from fkdbench.models import list_models

PRESETS_DIR = Path(__file__).resolve().parent
# TrainConfig fields that belong to the caller of a matrix, never to a preset
# (seed_in_name follows from the number of seeds).
_CALLER_FIELDS = ("data_dir", "runs_dir", "force", "quiet", "seed_in_name")
_TOP_LEVEL_KEYS = ("name", "description", "defaults", "runs", "bench", "seeds", "note")
# What a preset's "bench" object may set (fkdbench.bench.BenchOptions fields).
# "time_untrained": false skips the architectures the preset does not train (tests).
_BENCH_KEYS = (
    "backends",
    "batch_size",
    "warmup_passes",
    "repeats",
    "latency_samples",
    "threads",
    "time_untrained",
    "video_bench",
    "peers",
)


def _check_bench_extras(path: Path, bench: dict[str, Any]) -> None:
    """``video_bench`` a boolean, ``peers`` a list of registered peer names."""
    from fkdbench.peers import PEERS

    if not isinstance(bench.get("video_bench", False), bool):
        raise PresetError(f"{path}: bench 'video_bench' must be true or false")
    peers = bench.get("peers", [])
    if not isinstance(peers, list) or any(name not in PEERS for name in peers):
        raise PresetError(f"{path}: bench 'peers' must be a list of names among {list(PEERS)}")


class PresetError(ValueError):
    """A preset is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Preset:
    """A loaded preset: shared defaults and one entry per run (variants expanded)."""

    name: str
    description: str
    # TrainConfig fields shared by every run.
    defaults: dict[str, Any]
    # One dict per run, each with at least "arch" and "variant"; overrides of ``defaults``.
    runs: tuple[dict[str, Any], ...]
    # The file it came from.
    path: Path
    # BenchOptions fields for ``reproduce``'s bench step (e.g. fewer repeats for quick).
    bench: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Seeds each run is trained with (``seed, seed + 1, ...``).
    seeds: int = 1

    def archs(self) -> set[str]:
        return {entry["arch"] for entry in self.runs}

    def variants(self) -> set[str]:
        return {entry["variant"] for entry in self.runs}

    def run_count(self, seeds: int | None = None) -> int:
        """How many runs :meth:`configs` gives with ``seeds`` (None: the preset's)."""
        return len(self.runs) * (self.seeds if seeds is None else seeds)

    def configs(
        self, data_dir: Path, runs_dir: Path, seeds: int | None = None, **overrides: Any
    ) -> list[TrainConfig]:
        """One :class:`TrainConfig` per run and seed: defaults < run entry < ``overrides``;
        ``seeds`` (None: the preset's) seeds of each run, one after the other."""
        return [
            seeded
            for entry in self.runs
            for seeded in seeded_configs(
                TrainConfig(
                    **{
                        **self.defaults,
                        **entry,
                        "data_dir": Path(data_dir),
                        "runs_dir": Path(runs_dir),
                        **overrides,
                    }
                ),
                self.seeds if seeds is None else seeds,
            )
        ]


def list_presets() -> list[str]:
    """Names of the presets shipped with fkdbench."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a shipped preset by name (``quick``, ``paper``) or any preset file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        if path.suffix or len(path.parts) > 1:
            raise PresetError(f"{path}: no such preset file")
        path = PRESETS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise PresetError(
                f"unknown preset {str(name_or_path)!r}; known: {', '.join(list_presets())} "
                "(or give a path to a preset .json file)"
            )
    document = read_json(path, PresetError)
    if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
        raise PresetError(f"{path}: a preset is an object with a 'runs' list")
    unknown = sorted(set(document) - set(_TOP_LEVEL_KEYS))
    if unknown:
        raise PresetError(f"{path}: unknown top-level keys {unknown}; known: {_TOP_LEVEL_KEYS}")
    defaults = _check_fields(path, "defaults", document.get("defaults", {}))
    runs: list[dict[str, Any]] = []
    for number, entry in enumerate(document["runs"], start=1):
        runs.extend(_expand(path, f"run {number}", entry))
    if not runs:
        raise PresetError(f"{path}: the preset lists no runs")
    bench = document.get("bench", {})
    if not isinstance(bench, dict) or set(bench) - set(_BENCH_KEYS):
        raise PresetError(f"{path}: 'bench' is an object with keys among {_BENCH_KEYS}")
    _check_bench_extras(path, bench)
    seeds = document.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise PresetError(f"{path}: 'seeds' must be an integer >= 1, got {seeds!r}")
    return Preset(
        name=str(document.get("name", path.stem)),
        description=str(document.get("description", "")),
        defaults=defaults,
        runs=tuple(runs),
        path=path,
        bench=dict(bench),
        seeds=seeds,
    )


def _expand(path: Path, where: str, entry: Any) -> list[dict[str, Any]]:
    """One entry -> one run per variant, each checked against the registries."""
    if not isinstance(entry, dict):
        raise PresetError(f"{path}: {where} must be an object, got {type(entry).__name__}")
    entry = dict(entry)
    variants = entry.pop("variants", None)
    if variants is None:
        variants = [entry.pop("variant", None)]
    elif "variant" in entry:
        raise PresetError(f"{path}: {where} names both 'variant' and 'variants'")
    elif not isinstance(variants, list):
        raise PresetError(f"{path}: {where}: 'variants' must be a list of variant names")
    fields = _check_fields(path, where, entry)
    arch = fields.get("arch")
    known_archs = list_models()
    if arch not in known_archs:
        raise PresetError(
            f"{path}: {where}: unknown arch {arch!r}; known: {', '.join(known_archs)}"
        )
    expanded = []
    for variant in variants:
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise PresetError(
                f"{path}: {where}: unknown variant {variant!r}; known: {', '.join(VARIANTS)}"
            )
        expanded.append({**fields, "variant": variant})
    return expanded


def _check_fields(path: Path, where: str, fields: Any) -> dict[str, Any]:
    """Keep TrainConfig fields, drop notes; anything else is an error naming the key."""
    if not isinstance(fields, dict):
        raise PresetError(f"{path}: {where} must be an object")
    allowed = {field.name for field in dataclasses.fields(TrainConfig)} - set(_CALLER_FIELDS)
    unknown = sorted(set(fields) - allowed - {"note"})
    if unknown:
        raise PresetError(f"{path}: {where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    types = {field.name: str(field.type) for field in dataclasses.fields(TrainConfig)}
    kept = {key: value for key, value in fields.items() if key != "note"}
    for key, value in kept.items():
        _check_type(path, where, key, value, types[key])
    return kept


# JSON types a TrainConfig annotation accepts (paths are strings in JSON).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "Path": (str,),
    "dict[str, Any]": (dict,),
}


def _check_type(path: Path, where: str, key: str, value: Any, annotation: str) -> None:
    """A value of the annotated type, so that a preset fails when loaded, not mid-run."""
    parts = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in parts:
        return
    allowed = tuple(kind for part in parts for kind in _JSON_TYPES.get(part, ()))
    if not allowed:
        return  # an annotation this check does not know: TrainConfig decides
    if isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)):
        return
    raise PresetError(f"{path}: {where}: {key} must be {annotation}, got {type(value).__name__}")
