"""``fkdbench bench``: CPU inference time as the papers measure it, done carefully.

Methodology (see ``docs/methodology.md``):

- **Seconds per 100 images** is the paper's Equation 1: the time to predict the whole test
  split in batches of ``batch_size``, divided by its size, times 100. One untimed pass warms
  up each backend (ONNX Runtime's first run can be 40x slower), then ``repeats`` timed
  passes give the median and the interquartile range. The warm-up pass's predictions score
  the backend (test RMSE from what *this* backend predicts, for trained runs).
- **Batch-1 latency** (the camera use case): single images, one call each, p50 and p99 over
  ``latency_samples`` calls after a few warm-up calls.
- **Threads** are fixed for every backend (``torch.set_num_threads``; ONNX Runtime's
  ``intra_op_num_threads`` with one inter-op thread) and recorded, and so is the C
  allocator, set the same way in every process that times (:mod:`fkdbench.allocator`).
- **One timing per graph, interleaved**: runs sharing a graph (same architecture, spec,
  input size and channels, and backend file) are timed once per bench call and share the
  samples (``timed_as``); the timed passes of the distinct graphs take turns, so drift
  hits them alike (:mod:`~fkdbench.bench.plan`). A timed sample is as many whole passes
  as last :data:`~fkdbench.bench.timing.MIN_SAMPLE_SECONDS` (``passes_per_sample``).
- **A steady machine**: the peak is measured before the first model and after each
  backend's round, the best kept; other processes using more than
  :data:`~fkdbench.bench.steadiness.OTHER_CPU_LIMIT` cores (the load average where that
  cannot be read), or repeats or peaks spread over
  :data:`~fkdbench.bench.steadiness.SPREAD_LIMIT`, mark the records ``unstable`` and warn
  once (:mod:`~fkdbench.bench.steadiness`).
- **Work and the machine**: FLOPs per image come from PyTorch's ``FlopCounterMode`` (a
  multiply-add counts 2; convolutions and matrix products only). The same process measures
  the machine's FP32 matrix-multiply rate with the same threads (the *calibration
  workload*), so each record carries the fraction of this machine's peak it reached, and a
  time normalised by the machine's speed that the regression gate compares across
  machines.

The modules, one concern each: :mod:`~fkdbench.bench.options` (what to measure),
:mod:`~fkdbench.bench.records` (the record, format 3, and reading older ones),
:mod:`~fkdbench.bench.stats` (statistics from samples), :mod:`~fkdbench.bench.timing`
(the clocked measurements), :mod:`~fkdbench.bench.plan` (graph keys, the round-robin),
:mod:`~fkdbench.bench.steadiness` (peaks, load, the ``unstable`` verdict),
:mod:`~fkdbench.bench.sweep` (run folders, one error record per failed target) and
:mod:`~fkdbench.bench.gate` (the regression gate, a Mann-Whitney U test plus a tolerance).
Every record is one :class:`BenchRecord`; a bench call appends all of its records to
``results/bench.jsonl`` at once, when complete. With a video (``bench --video
FILE``), :mod:`~fkdbench.bench.video` times the end-to-end pipeline of
``predict`` on it instead (FPS from decoded frame to drawn overlay, seconds per stage)
and appends :class:`VideoRecord` s to ``video.jsonl`` beside it (:func:`bench_video`).
"""

from fkdbench.bench.gate import (
    ALPHA,
    BASELINE_FORMAT_VERSION,
    NORMALISATION,
    GateComparison,
    GateResult,
    check_baseline,
    gate_key,
    gate_report,
    load_baseline,
    save_baseline,
)
from fkdbench.bench.options import (
    BACKEND_FILES,
    BACKENDS,
    CORE_BACKENDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_RESULTS,
    BenchOptions,
)
from fkdbench.bench.plan import graph_key
from fkdbench.bench.records import (
    BENCH_FORMAT_VERSION,
    BenchError,
    BenchRecord,
    Calibration,
    Identity,
    ModelFacts,
    RecordedLatency,
    Samples,
    Scores,
    Settings,
    append_records,
    read_records,
    record_from_json,
)
from fkdbench.bench.steadiness import SPREAD_LIMIT, PeakMeter
from fkdbench.bench.sweep import (
    BenchResult,
    bench,
    bench_and_gate,
    bench_folder,
    bench_targets,
    summary_table,
)
from fkdbench.bench.timing import (
    CALIBRATION_MATRICES,
    flops_per_image,
    measure_machine_peak,
    time_backend,
    time_interleaved,
)
from fkdbench.bench.video import (
    VIDEO_FORMAT_VERSION,
    VideoRecord,
    bench_video,
    read_video_records,
    video_results_path,
    video_summary,
    video_targets,
)
from fkdbench.onnxrt import session_predictor

__all__ = [
    "ALPHA",
    "BACKENDS",
    "CORE_BACKENDS",
    "BACKEND_FILES",
    "BASELINE_FORMAT_VERSION",
    "BENCH_FORMAT_VERSION",
    "CALIBRATION_MATRICES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_RESULTS",
    "NORMALISATION",
    "SPREAD_LIMIT",
    "VIDEO_FORMAT_VERSION",
    "BenchError",
    "BenchOptions",
    "BenchRecord",
    "BenchResult",
    "Calibration",
    "GateComparison",
    "GateResult",
    "Identity",
    "ModelFacts",
    "PeakMeter",
    "RecordedLatency",
    "Samples",
    "Scores",
    "Settings",
    "VideoRecord",
    "append_records",
    "bench",
    "bench_and_gate",
    "bench_folder",
    "bench_targets",
    "bench_video",
    "check_baseline",
    "flops_per_image",
    "gate_key",
    "gate_report",
    "graph_key",
    "load_baseline",
    "measure_machine_peak",
    "read_records",
    "read_video_records",
    "record_from_json",
    "save_baseline",
    "session_predictor",
    "summary_table",
    "time_backend",
    "time_interleaved",
    "video_results_path",
    "video_summary",
    "video_targets",
]
