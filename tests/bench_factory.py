"""Bench records for tests, built from the record type itself.

``make_bench_record(**overrides)`` gives a valid :class:`~fkdbench.bench.BenchRecord`
(a trained cnn-manual run timed on ONNX Runtime). Each override names a field of one part
of the record (``run_name=``, ``batch_size=``, ``seconds_per_100_images=``,
``peak_gflops=``, ``test_rmse=``, ``error=``...); ``threads`` sets both the settings and
the calibration, as a real sweep does. A name that is no field of any part is a
TypeError, so a renamed field breaks the tests that use it. ``.flat()`` gives the dict
the report reads.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

from fkdbench.bench import (
    BenchRecord,
    Calibration,
    Identity,
    ModelFacts,
    Samples,
    Scores,
    Settings,
)

ENVIRONMENT = {
    "cpu_cores": 2,
    "cpu_cores_available": 2,
    "cpu_features": ["avx2", "avx512f"],
    "cpu_model": "Test CPU",
    "git_commit": "0" * 40,
    "hostname": "test",
    "machine": "x86_64",
    "system": "Linux test",
    "timestamp": "2026-01-01T00:00:00+00:00",
    "versions": {"python": "3.11.7", "torch": "2.14.1", "onnxruntime": "1.31.1"},
}

_DEFAULTS: dict[type, dict[str, Any]] = {
    Identity: {
        "run_name": "cnn-manual--none",
        "backend": "onnxruntime",
        "arch": "cnn-manual",
        "variant": "none",
        "weights_mode": "scratch",
        "trained": True,
        "model_file": "runs/cnn-manual--none/model.onnx",
        "model_sha256": "a" * 64,
        "exporter": "dynamo",
        "data_dir": "data/synthetic",
        "data_manifest_sha256": "b" * 64,
        "graph_key": "c" * 64,
        "timed_as": None,
        "recipe": (),
    },
    Settings: {
        "batch_size": 32,
        "threads": 2,
        "repeats": 3,
        "warmup_passes": 1,
        "latency_samples": 4,
        "latency_warmup": 1,
        "images": 100,
        "int8_activations": None,
    },
    Samples: {
        "seconds_per_100_images": [0.1, 0.2, 0.3],
        "latency_batch1_ms": [1.0, 2.0, 3.0, 4.0],
        "latency_batch1_recorded": None,
    },
    ModelFacts: {
        "input_size": 96,
        "in_chans": 1,
        "flops_per_image": 10_000_000,
        "parameters_pytorch": 100_000,
        "parameters_keras": 100_000,
        "model_pt_bytes": 400_000,
        "onnx_bytes": 410_000,
        "int8_onnx_bytes": 120_000,
    },
    Scores: {
        "test_rmse": 2.5,
        "test_nme": 0.05,
        "test_fr": 0.01,
        "test_auc": 0.6,
        "parity_max_abs_diff_pixels": None,
    },
    Calibration: {
        "peak_gflops": 100.0,
        "torch_gflops": 80.0,
        "onnxruntime_gflops": 100.0,
        "threads": 2,
        "matrix_sizes": [512, 1024],
        "seconds": 2.0,
        "peak_samples": [100.0],
        "load_averages": [0.5],
        "usable_cores": 2,
        "other_cpu_cores": None,
    },
}
# Replaced whole: `model=None` is the record of a run that could not be read.
_RECORD_FIELDS = (
    "model",
    "environment",
    "timestamp",
    "error",
    "unstable",
    "unstable_reasons",
    "format_version",
)


def make_bench_record(**overrides: Any) -> BenchRecord:
    """A valid record; ``overrides`` replace fields of its parts (see the module doc)."""
    known = {name for fields in _DEFAULTS.values() for name in fields} | set(_RECORD_FIELDS)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"make_bench_record: no record field named {unknown[0]!r}")
    parts = {
        cls: cls(**{name: overrides.get(name, value) for name, value in fields.items()})
        for cls, fields in _DEFAULTS.items()
    }
    record = BenchRecord(
        identity=parts[Identity],
        settings=parts[Settings],
        samples=parts[Samples],
        model=parts[ModelFacts],
        scores=parts[Scores],
        calibration=parts[Calibration],
        environment=dict(ENVIRONMENT),
        timestamp="2026-01-01T00:00:05+00:00",
    )
    return dataclasses.replace(
        record, **{name: overrides[name] for name in _RECORD_FIELDS if name in overrides}
    )


def make_error_record(
    error: str = "runs/cnn-manual--none/model.onnx: not a loadable ONNX model", **overrides: Any
) -> BenchRecord:
    """The record of a failed target, as a sweep writes it: no samples, no scores."""
    empty: dict[str, Any] = {"seconds_per_100_images": [], "latency_batch1_ms": []}
    empty.update(dict.fromkeys(_DEFAULTS[Scores]))
    return make_bench_record(error=error, **{**empty, **overrides})


# fake_clock's default step (a power of two, so the arithmetic on its readings is exact).
STEP = 0.0625


def fake_clock(step: float = STEP) -> Callable[[], float]:
    """A clock for the timing functions that moves ``step`` seconds each time it is read
    (a power of two by default, so the arithmetic on its readings is exact)."""
    ticks = itertools.count()
    return lambda: next(ticks) * step
