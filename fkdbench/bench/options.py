"""What ``fkdbench bench`` measures and how: the backends and the measurement settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fkdbench import runs
from fkdbench.bench.records import BenchError
from fkdbench.edge import EDGE_BACKENDS
from fkdbench.export import DEFAULT_INT8_ACTIVATIONS, INT8_FILE, ONNX_FILE
from fkdbench.provenance import available_cores

# What a bench times unless told otherwise: the three backends every install has.
CORE_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
# ... and the edge runtimes of the optional `edge` extra (fkdbench.edge), asked for by name.
BACKENDS = CORE_BACKENDS + tuple(EDGE_BACKENDS)
BACKEND_FILES = {
    "torch": runs.MODEL_FILE,
    "onnxruntime": ONNX_FILE,
    "onnxruntime-int8": INT8_FILE,
    **{name: backend.file for name, backend in EDGE_BACKENDS.items()},
}
# The backends that run an ONNX file export makes, or a file made from one (ncnn's is made
# from the traced module: fkdbench.edge.NCNN_SOURCE).
NEEDS_ONNX = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
# ... and the one that needs export's INT8 graph (OpenVINO makes its own INT8 program).
NEEDS_INT8 = ("onnxruntime-int8",)
DEFAULT_RESULTS = Path("results/bench.jsonl")
# Keras' predict() batch, which the paper's timings used.
DEFAULT_BATCH_SIZE = 32


@dataclass
class BenchOptions:
    """How to measure. The defaults are the design's; ``quick`` presets shrink repeats."""

    backends: Sequence[str] = CORE_BACKENDS
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
    # ... and whether its INT8 graph is searched for (fkdbench.int8) or the fixed recipe.
    int8_search: bool = False
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
