"""What ``fkdbench bench`` measures and how: the backends and the measurement settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fkdbench import runs
from fkdbench.bench.records import BenchError
from fkdbench.export import DEFAULT_INT8_ACTIVATIONS, INT8_FILE, ONNX_FILE
from fkdbench.provenance import available_cores

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
BACKEND_FILES = {"torch": runs.MODEL_FILE, "onnxruntime": ONNX_FILE, "onnxruntime-int8": INT8_FILE}
DEFAULT_RESULTS = Path("results/bench.jsonl")
# Keras' predict() batch, which the paper's timings used.
DEFAULT_BATCH_SIZE = 32


@dataclass
class BenchOptions:
    """How to measure. The defaults are the design's; ``quick`` presets shrink repeats."""

    backends: Sequence[str] = BACKENDS
    threads: int | None = None  # None: every core this process may use
    batch_size: int = DEFAULT_BATCH_SIZE
    warmup_passes: int = 1
    repeats: int = 5
    latency_samples: int = 200
    latency_warmup: int = 10
    data_dir: Path | None = None  # None: each run's own data set
    results: Path = DEFAULT_RESULTS
    # Used only when a run must be exported first (see fkdbench.export.INT8_ACTIVATIONS).
    int8_activations: str = DEFAULT_INT8_ACTIVATIONS
    # Skip (run, backend) pairs already recorded for the same model file and settings.
    skip_existing: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        unknown = [backend for backend in self.backends if backend not in BACKENDS]
        if unknown:
            raise BenchError(f"unknown backend {unknown[0]!r}; known: {', '.join(BACKENDS)}")
        for name in ("batch_size", "repeats", "latency_samples"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name} must be at least 1, got {getattr(self, name)}")
        cores = available_cores()
        if self.threads is not None and not 1 <= self.threads <= cores:
            # More threads than cores time the scheduler, not the model (999 threads once
            # recorded a time 450x too slow).
            raise BenchError(
                f"threads must be between 1 and {cores} (the cores this process may use), "
                f"got {self.threads}"
            )
