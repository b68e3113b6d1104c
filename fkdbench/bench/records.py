"""The bench record (format 5): what was measured, how, the raw samples, where, and what failed.

In the manner of pyperf, a record keeps its raw samples and one ``environment`` block;
every statistic (median, quartiles, percentiles, fraction of peak, normalised time) is
derived from the samples by :mod:`fkdbench.bench.stats`, never stored beside them. One
JSON object per line of ``results/bench.jsonl``::

    {"format_version": 5, "timestamp": ..., "identity": {...}, "settings": {...},
     "samples": {...}, "model": {...}, "scores": {...}, "calibration": {...},
     "environment": {...}, "unstable": false, "unstable_reasons": [], "error": null}

Format 3 added the graph (``identity.graph_key``; ``identity.timed_as`` names the run whose
timing a record shares, since runs with one graph are timed once), every peak measurement
and the load averages beside them (``calibration``), and the steadiness verdict. Format 4
added the run's recipe (``identity.recipe``: its head, loss and flip test where they are not
the papers', :func:`fkdbench.runs.recipe_parts`), so that a lever's timing is its own row.
Format 5 added ``scores.parity_max_abs_diff_pixels``: how far a backend's predictions of
the test split lie from PyTorch eager's (the edge runtimes' check, :mod:`fkdbench.edge`),
and ``settings.int8_recipe``: how an INT8 backend's graph was quantized.

A target that failed is a record too: ``error`` holds one line, ``samples`` are empty and
``model`` is null when the run could not be read. Older files keep reading: a line of an
older format is upgraded on read (asv's habit, :func:`_update_to_2` to :func:`_update_to_5`),
never rewritten.
:meth:`BenchRecord.flat` gives the flat view with format 1's field names that the report
and other readers of the old layout use.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import fkdbench.bench.stats as stats
from fkdbench.io import JsonlTail, append_jsonl_atomic, plain

BENCH_FORMAT_VERSION = 5
# The machine fields format 1 copied to the top level of each record beside `environment`.
_V1_MACHINE_FIELDS = ("cpu_model", "cpu_cores", "cpu_features", "versions", "git_commit")
# The identity fields formats 3 and 4 added (format 2's identity is the rest).
_V3_IDENTITY = ("graph_key", "timed_as")
_V4_IDENTITY = ("recipe",)


class BenchError(ValueError):
    """A benchmark that cannot be run as asked; the message names the run or file."""


@dataclass(frozen=True)
class Identity:
    """What was measured. Fields other than the run and backend are None only on an error
    record of a run that could not be read that far."""

    run_name: str
    backend: str
    arch: str | None
    variant: str | None
    weights_mode: str | None
    trained: bool | None
    model_file: str | None
    model_sha256: str | None
    exporter: str | None  # ONNX backends: the exporter export.json names
    data_dir: str | None
    data_manifest_sha256: str | None
    # sha256 of what builds the timed graph (see fkdbench.bench.plan.graph_key); None on
    # records older than format 3 and for runs that could not be read.
    graph_key: str | None = None
    # The run whose timed passes these samples copy (same graph_key, same bench call);
    # None when this record was itself timed.
    timed_as: str | None = None
    # What the run does beyond the papers' recipe (runs.recipe_parts): () for the papers'
    # own, for records older than format 4, and for runs that could not be read.
    recipe: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives a list: keep a tuple, so that identities compare and hash alike.
        object.__setattr__(self, "recipe", tuple(str(part) for part in self.recipe or ()))


@dataclass(frozen=True)
class Settings:
    """How it was measured."""

    batch_size: int
    threads: int
    repeats: int
    warmup_passes: int
    latency_samples: int  # batch-1 calls timed
    latency_warmup: int | None  # None: a format-1 record, which did not keep it
    images: int | None  # test images per timed pass; None when the data was never read
    int8_activations: str | None  # onnxruntime-int8: how model.int8.onnx was quantized
    # Whole passes in each timed sample (bench.timing.MIN_SAMPLE_SECONDS); None: one
    # (records before format 3 kept no such field).
    passes_per_sample: int | None = None
    # Format 5, INT8 backends: how model.int8.onnx was quantized (export.json's recipe).
    int8_recipe: str | None = None


@dataclass(frozen=True)
class RecordedLatency:
    """Batch-1 latency percentiles as a format-1 record stored them. That format kept no
    latency samples, so these are kept as recorded, never recomputed or invented."""

    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Samples:
    """The raw measurements."""

    seconds_per_100_images: list[float]  # every timed pass, in order
    latency_batch1_ms: list[float]  # every timed batch-1 call, in order
    latency_batch1_recorded: RecordedLatency | None = None  # format-1 records only


@dataclass(frozen=True)
class ModelFacts:
    """The model measured: its input, work, parameters and files."""

    input_size: int
    in_chans: int
    flops_per_image: int
    parameters_pytorch: int
    parameters_keras: int
    model_pt_bytes: int
    onnx_bytes: int | None
    int8_onnx_bytes: int | None


@dataclass(frozen=True)
class Scores:
    """Test-split scores from this backend's own predictions; None for untrained runs."""

    test_rmse: float | None = None
    test_nme: float | None = None
    test_fr: float | None = None
    test_auc: float | None = None
    # Format 5: the largest difference (px) of this backend's test-split predictions from
    # PyTorch eager's (None for torch itself, and for older records, which did not check).
    parity_max_abs_diff_pixels: float | None = None


@dataclass(frozen=True)
class Calibration:
    """The machine's FP32 matrix-multiply rate, measured in the benchmarking process.

    Both engines are measured because they differ by up to 2x on one machine (ONNX
    Runtime's MLAS kernels reach nearer the vector units' limit than torch's BLAS on some
    CPUs); the faster one is the machine's peak.
    """

    peak_gflops: float
    torch_gflops: float
    onnxruntime_gflops: float
    threads: int
    matrix_sizes: list[int] | None = None  # None: a format-1 record, which did not keep it
    seconds: float | None = None  # None: likewise (format 3: the seconds of all measurements)
    # Format 3: the peak of each measurement through the bench (peak_gflops is the best);
    # the 1-minute load average read at each, and the cores this process could use.
    peak_samples: list[float] | None = None
    load_averages: list[float] | None = None
    usable_cores: int | None = None
    # Cores other processes used between two peak measurements (None: not measured).
    other_cpu_cores: list[float] | None = None


@dataclass(frozen=True)
class BenchRecord:
    """One measurement (or one failure): one model, one backend, one machine, one setting."""

    identity: Identity
    settings: Settings
    samples: Samples
    model: ModelFacts | None  # None: the run failed before its model was read
    scores: Scores
    calibration: Calibration
    environment: dict[str, Any]  # machine, versions, commit (fkdbench.provenance)
    timestamp: str
    error: str | None = None  # one line, for a target that failed
    # True when the machine or the repeats were unsteady (see fkdbench.bench.steadiness);
    # None on records older than format 3, which were never checked.
    unstable: bool | None = False
    unstable_reasons: list[str] = dataclasses.field(default_factory=list)
    format_version: int = BENCH_FORMAT_VERSION

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def seconds_per_100_images(self) -> float | None:
        """The median of the timed passes; None when there are none (an error record)."""
        passes = self.samples.seconds_per_100_images
        return stats.median(passes) if passes else None

    def latency_ms(self, q: float) -> float | None:
        """The ``q``-th percentile of batch-1 latency; a format-1 record answers 50 and 99
        from what it recorded."""
        recorded = self.samples.latency_batch1_recorded
        if recorded is not None:
            return {50: recorded.p50_ms, 99: recorded.p99_ms}.get(q)
        latencies = self.samples.latency_batch1_ms
        return stats.percentile(latencies, q) if latencies else None

    @property
    def achieved_gflops(self) -> float | None:
        median = self.seconds_per_100_images
        if median is None or self.model is None:
            return None
        return stats.achieved_gflops(self.model.flops_per_image, median)

    @property
    def normalised_time(self) -> float | None:
        median = self.seconds_per_100_images
        return None if median is None else stats.normalised_time(median, self.peak_gflops)

    @property
    def peak_gflops(self) -> float:
        return self.calibration.peak_gflops

    def to_json(self) -> dict[str, Any]:
        """The record as one line of a bench file holds it."""
        return plain(asdict(self))

    def flat(self) -> dict[str, Any]:
        """The flat view with format 1's field names (what the report reads); statistics
        are derived from the samples, machine fields come from ``environment``."""
        return {
            **_identity_and_settings_view(self),
            **_timing_view(self),
            **_model_view(self.model),
            **asdict(self.scores),
            "data_dir": self.identity.data_dir,
            "data_manifest_sha256": self.identity.data_manifest_sha256,
            "exporter": self.identity.exporter,
            "int8_activations": self.settings.int8_activations,
            "int8_recipe": self.settings.int8_recipe,
            **{name: self.environment.get(name) for name in _V1_MACHINE_FIELDS},
            "timestamp": self.timestamp,
            "environment": self.environment,
            **_steadiness_view(self),
            "format_version": self.format_version,
            "error": self.error,
        }


def _steadiness_view(record: BenchRecord) -> dict[str, Any]:
    """Format 3's keys: the graph, whose timing this is, and how steady the machine was."""
    calibration, passes = record.calibration, record.samples.seconds_per_100_images
    return {
        "graph_key": record.identity.graph_key,
        "timed_as": record.identity.timed_as,
        "unstable": record.unstable,
        "unstable_reasons": list(record.unstable_reasons),
        "seconds_per_100_images_spread": stats.spread(passes) if passes else None,
        "machine_peak_samples_gflops": calibration.peak_samples,
        "load_averages": calibration.load_averages,
        "usable_cores": calibration.usable_cores,
        "other_cpu_cores": calibration.other_cpu_cores,
    }


def _identity_and_settings_view(record: BenchRecord) -> dict[str, Any]:
    identity, settings, model = record.identity, record.settings, record.model
    return {
        "run_name": identity.run_name,
        "arch": identity.arch,
        "variant": identity.variant,
        "weights_mode": identity.weights_mode,
        "recipe": list(identity.recipe),
        "trained": identity.trained,
        "backend": identity.backend,
        "model_file": identity.model_file,
        "model_sha256": identity.model_sha256,
        "batch_size": settings.batch_size,
        "input_size": model.input_size if model else None,
        "in_chans": model.in_chans if model else None,
        "threads": settings.threads,
        "images": settings.images,
        "warmup_passes": settings.warmup_passes,
        "repeats": settings.repeats,
        "passes_per_sample": settings.passes_per_sample or 1,
    }


def _timing_view(record: BenchRecord) -> dict[str, Any]:
    passes = list(record.samples.seconds_per_100_images)
    median = record.seconds_per_100_images
    q1, q3 = stats.quartiles(passes) if passes else (None, None)
    achieved = record.achieved_gflops
    calibration = record.calibration
    return {
        "seconds_per_100_images": median,
        "seconds_per_100_images_q1": q1,
        "seconds_per_100_images_q3": q3,
        "seconds_per_100_images_iqr": q3 - q1 if passes else None,
        "seconds_per_100_images_all": passes,
        "latency_batch1_p50_ms": record.latency_ms(50),
        "latency_batch1_p99_ms": record.latency_ms(99),
        "latency_samples": record.settings.latency_samples,
        "flops_per_image": record.model.flops_per_image if record.model else None,
        "achieved_gflops": achieved,
        "machine_peak_gflops": calibration.peak_gflops,
        "machine_peak_torch_gflops": calibration.torch_gflops,
        "machine_peak_onnxruntime_gflops": calibration.onnxruntime_gflops,
        "fraction_of_peak": None
        if achieved is None
        else stats.fraction_of_peak(achieved, calibration.peak_gflops),
        "normalised_time": record.normalised_time,
    }


def _model_view(model: ModelFacts | None) -> dict[str, Any]:
    names = ("parameters_pytorch", "parameters_keras", "model_pt_bytes")
    names += ("onnx_bytes", "int8_onnx_bytes")
    return {name: getattr(model, name) if model else None for name in names}


# -- reading: validation and upgrades ---------------------------------------------------------


def _update_to_2(record: dict[str, Any]) -> dict[str, Any]:
    """A format-1 record (flat, machine fields copied beside ``environment``) as format 2.

    Format 1 kept every timed pass but only p50/p99 of batch-1 latency: those two are kept
    as :class:`RecordedLatency`. Its stored median, quartiles and ratios are dropped: they
    recompute from the passes and the calibration exactly (the test proves it on
    ``results/bench.jsonl``).
    """
    environment = dict(record.get("environment") or {})
    for name in _V1_MACHINE_FIELDS:  # older records may lack the block: keep what they had
        environment.setdefault(name, record[name])
    return {
        "format_version": 2,
        "timestamp": record["timestamp"],
        "identity": {
            name: record[name]
            for name in _fields(Identity)
            if name not in _V3_IDENTITY + _V4_IDENTITY
        },
        "settings": {
            **{
                name: record[name]
                for name in _fields(Settings)
                if name not in ("latency_warmup", "passes_per_sample", "int8_recipe")
            },
            "latency_warmup": None,
        },
        "samples": {
            "seconds_per_100_images": record["seconds_per_100_images_all"],
            "latency_batch1_ms": [],
            "latency_batch1_recorded": {
                "p50_ms": record["latency_batch1_p50_ms"],
                "p99_ms": record["latency_batch1_p99_ms"],
            },
        },
        "model": {name: record[name] for name in _fields(ModelFacts)},
        "scores": {name: record.get(name) for name in _fields(Scores)},
        "calibration": {
            "peak_gflops": record["machine_peak_gflops"],
            "torch_gflops": record["machine_peak_torch_gflops"],
            "onnxruntime_gflops": record["machine_peak_onnxruntime_gflops"],
            "threads": record["threads"],
        },
        "environment": environment,
        "error": None,
    }


def _update_to_3(record: dict[str, Any]) -> dict[str, Any]:
    """A format-2 record as format 3: its one peak measurement is its only peak sample;
    the graph, the load and the steadiness were not recorded, so they read as unknown
    (None), never as "steady"."""
    calibration = dict(record["calibration"])
    calibration.setdefault("peak_samples", [calibration["peak_gflops"]])
    return {
        **record,
        "format_version": 3,
        "identity": {**record["identity"], "graph_key": None, "timed_as": None},
        "calibration": calibration,
        "unstable": None,
        "unstable_reasons": [],
    }


def _update_to_4(record: dict[str, Any]) -> dict[str, Any]:
    """A format-3 record as format 4: every run then trained the papers' recipe."""
    return {**record, "format_version": 4, "identity": {**record["identity"], "recipe": []}}


def _update_to_5(record: dict[str, Any]) -> dict[str, Any]:
    """A format-4 record as format 5: its predictions were not compared with PyTorch's."""
    scores = {**record["scores"], "parity_max_abs_diff_pixels": None}
    settings = {**record["settings"], "int8_recipe": None}
    return {**record, "format_version": 5, "scores": scores, "settings": settings}


# Each upgrade takes a record of format N to N + 1.
_UPDATES = {1: _update_to_2, 2: _update_to_3, 3: _update_to_4, 4: _update_to_5}


def _fields(cls: type) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


def _build(cls: type, data: Any, part: str) -> Any:
    """``cls(**data)`` with unknown and missing keys named instead of a TypeError."""
    if not isinstance(data, dict):
        raise BenchError(f"{part!r} is not an object")
    unknown = sorted(set(data) - set(_fields(cls)))
    required = [
        field.name
        for field in dataclasses.fields(cls)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if unknown or missing:
        problem = f"unknown field {unknown[0]!r}" if unknown else f"no field {missing[0]!r}"
        raise BenchError(f"{part!r}: {problem}")
    return cls(**data)


def record_from_json(data: Any) -> BenchRecord:
    """A record from one parsed line of any format this fkdbench knows; BenchError if not."""
    if not isinstance(data, dict):
        raise BenchError("not a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BenchError(f"no valid format_version ({version!r})")
    if version > BENCH_FORMAT_VERSION:
        raise BenchError(f"format_version {version} is newer than this fkdbench reads")
    try:
        while version < BENCH_FORMAT_VERSION:
            data = _UPDATES[version](data)
            version = data["format_version"]
    except KeyError as error:
        raise BenchError(f"a format-{version} record without {error}") from None
    fields = {**data}
    samples = _build(Samples, fields.pop("samples", None), "samples")
    if samples.latency_batch1_recorded is not None:
        recorded = _build(RecordedLatency, samples.latency_batch1_recorded, "recorded latency")
        samples = dataclasses.replace(samples, latency_batch1_recorded=recorded)
    model = fields.pop("model", None)
    return _build(
        BenchRecord,
        {
            **fields,
            "identity": _build(Identity, fields.get("identity"), "identity"),
            "settings": _build(Settings, fields.get("settings"), "settings"),
            "samples": samples,
            "model": None if model is None else _build(ModelFacts, model, "model"),
            "scores": _build(Scores, fields.get("scores"), "scores"),
            "calibration": _build(Calibration, fields.get("calibration"), "calibration"),
        },
        "record",
    )


T = TypeVar("T")


def read_jsonl(path: Path, parse: Callable[[Any], T]) -> list[T]:
    """Every non-blank line of a JSON-lines file through ``parse``; [] when the file is
    absent. A malformed line is a BenchError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(parse(json.loads(line)))
        except json.JSONDecodeError as error:
            raise BenchError(f"{path}: line {number}: malformed JSON ({error.msg})") from None
        except BenchError as error:
            raise BenchError(f"{path}: line {number}: {error}") from None
    return records


def read_records(path: Path) -> list[BenchRecord]:
    """Every record of a bench JSON-lines file, upgraded to the current format; [] when the
    file is absent. A malformed line is an error naming the file and line."""
    return read_jsonl(path, record_from_json)


def append_records(path: Path, records: Sequence[BenchRecord]) -> None:
    """Append records to a bench file in one atomic rewrite (a crash never truncates it)."""
    append_jsonl_atomic(Path(path), [record.to_json() for record in records])


class RecordsTail:
    """One bench call's records in a bench file (see :class:`fkdbench.io.JsonlTail`): each
    :meth:`write` replaces the call's earlier lines, so the records of every finished
    round are on file while later rounds are timed."""

    def __init__(self, path: Path) -> None:
        self._tail = JsonlTail(path)

    def write(self, records: Sequence[BenchRecord]) -> None:
        self._tail.write([record.to_json() for record in records])
