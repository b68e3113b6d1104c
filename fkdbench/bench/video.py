"""``fkdbench bench --video FILE``: frames per second from decoded frame to drawn overlay.

Per run and backend, the video goes through the whole pipeline of ``fkdbench predict``
(:func:`fkdbench.faces.video.run_video`: decode, detect, crop, infer, draw, encode, with
the tracking rule of :mod:`fkdbench.faces.track`) once untimed over its first
:data:`WARMUP_FRAMES` frames, then ``repeats`` timed passes. Every frame's seconds per
stage are kept raw (pyperf's habit); FPS = frames / the sum of decode..draw, with encode
reported apart (what an application does with its overlay is its own business).

One JSON object per line of ``video.jsonl`` beside ``bench.jsonl`` (format 1)::

    {"format_version": 1, "timestamp": ..., "identity": {...}, "video": {...},
     "settings": {...}, "samples": {"decode": [...], ..., "encode": [...]},
     "faces_found_frames": N, "environment": {...}, "error": null}

``identity`` is the bench record's (:class:`fkdbench.bench.records.Identity`), the
environment block the same (:func:`fkdbench.provenance.environment_record`); a target
that fails is an error record and the others go on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fkdbench import runs
from fkdbench.allocator import keep_freed_memory
from fkdbench.bench.options import BACKEND_FILES, CORE_BACKENDS, BenchOptions
from fkdbench.bench.records import BenchError, Identity, _build, read_jsonl
from fkdbench.faces.stages import PIPELINE_STAGES, STAGES, StageClock
from fkdbench.io import append_jsonl_atomic, plain, sha256_file
from fkdbench.progress import make_progress, say
from fkdbench.provenance import available_cores, environment_record

VIDEO_FORMAT_VERSION = 1
VIDEO_RESULTS = "video.jsonl"
# Untimed frames first (ONNX Runtime's first calls, the detector's first pass).
WARMUP_FRAMES = 10


@dataclass(frozen=True)
class VideoFacts:
    """The video measured."""

    path: str
    sha256: str
    frames: int  # per pass
    width: int
    height: int
    fps: float | None  # as its container says


@dataclass(frozen=True)
class VideoSettings:
    """How it was measured."""

    detector: str
    redetect_every: int
    threads: int
    repeats: int  # timed passes over the whole video
    warmup_frames: int


@dataclass(frozen=True)
class VideoRecord:
    """One run on one backend through the video pipeline (or its failure)."""

    identity: Identity
    video: VideoFacts | None  # None: the video could not be read
    settings: VideoSettings
    # Stage -> seconds of every timed frame, passes one after the other.
    samples: dict[str, list[float]]
    faces_found_frames: int | None  # in one pass
    environment: dict[str, Any]
    timestamp: str
    error: str | None = None
    format_version: int = VIDEO_FORMAT_VERSION

    @property
    def failed(self) -> bool:
        return self.error is not None

    def pipeline_seconds(self) -> list[float]:
        """Per timed frame: seconds from decode to drawn overlay (encode apart)."""
        columns = [self.samples.get(stage, []) for stage in PIPELINE_STAGES]
        return [sum(values) for values in zip(*columns, strict=True)]

    @property
    def fps(self) -> float | None:
        """Frames per second, decode to drawn overlay; None for an error record."""
        seconds = self.pipeline_seconds()
        return len(seconds) / sum(seconds) if seconds and sum(seconds) > 0 else None

    def to_json(self) -> dict[str, Any]:
        return plain(asdict(self))


def video_results_path(results: Path) -> Path:
    """``video.jsonl`` beside the bench file ``results``."""
    return Path(results).with_name(VIDEO_RESULTS)


def video_record_from_json(data: Any) -> VideoRecord:
    """A record from one parsed line; BenchError naming the problem if it is not one."""
    if not isinstance(data, dict):
        raise BenchError("not a JSON object")
    version = data.get("format_version")
    if version != VIDEO_FORMAT_VERSION:
        raise BenchError(f"format_version {version!r} is not {VIDEO_FORMAT_VERSION}")
    video = data.get("video")
    samples = data.get("samples")
    if not isinstance(samples, dict) or set(samples) - set(STAGES):
        raise BenchError(f"'samples' must map stages ({', '.join(STAGES)}) to seconds")
    return _build(
        VideoRecord,
        {
            **data,
            "identity": _build(Identity, data.get("identity"), "identity"),
            "video": None if video is None else _build(VideoFacts, video, "video"),
            "settings": _build(VideoSettings, data.get("settings"), "settings"),
        },
        "record",
    )


def read_video_records(path: Path) -> list[VideoRecord]:
    """Every record of a ``video.jsonl``; [] when absent; BenchError naming file and line."""
    return read_jsonl(path, video_record_from_json)


# -- measuring ---------------------------------------------------------------------------------


def _read_video(path: Path) -> VideoFacts:
    from fkdbench.faces.video import decoded_frames, stream_fps

    fps = stream_fps(path)
    frames, size = 0, (0, 0)
    for frame in decoded_frames(path):
        if frames == 0:
            size = (frame.width, frame.height)
        frames += 1
    return VideoFacts(str(path), sha256_file(path), frames, size[0], size[1], fps)


def _identity(folder: Path, backend: str) -> Identity:
    """Who was measured, as the bench record says it (as much as the folder tells)."""
    model_file = folder / BACKEND_FILES[backend]
    try:
        config = runs.read_config(folder)
    except (ValueError, OSError):
        config = {}
    model = config.get("model", {})
    data = config.get("data", {})
    return Identity(
        run_name=config.get("run_name", folder.name),
        backend=backend,
        arch=model.get("arch"),
        variant=config.get("train", {}).get("variant"),
        weights_mode=config.get("weights_mode", "scratch") if config else None,
        recipe=tuple(runs.recipe_of(config)) if config else (),
        trained=runs.is_finished(folder) if config else None,
        model_file=str(model_file),
        model_sha256=sha256_file(model_file) if model_file.is_file() else None,
        exporter=None,
        data_dir=data.get("data_dir"),
        data_manifest_sha256=data.get("manifest_sha256"),
    )


def _predictor(folder: Path, backend: str, threads: int) -> Any:
    """The run's predictor on ``backend``, exporting the ONNX files first when missing."""
    from fkdbench.export import export_run
    from fkdbench.predict import load_predictor

    if backend not in CORE_BACKENDS:
        raise BenchError(
            f"{backend}: the video bench runs {', '.join(CORE_BACKENDS)} (predict's "
            "pipeline); time the edge runtimes with bench without --video"
        )
    path = folder / BACKEND_FILES[backend]
    if backend != "torch" and not path.is_file():
        export_run(folder, int8=backend == "onnxruntime-int8", quiet=True)
    return load_predictor(path, threads)


def _one_pass(predictor: Any, video: Path, settings: VideoSettings, clock: Any, limit: int | None):
    """One pass over ``video`` (its first ``limit`` frames), the overlay encoded into a
    throwaway file: the stage samples and the frames with a face."""
    import itertools

    from fkdbench.faces.detect import open_detector
    from fkdbench.faces.track import NO_FACE, FaceTracker
    from fkdbench.faces.video import (
        VideoWriter,
        decoded_frames,
        model_locator,
        run_video,
        scheme_of,
    )

    detect = open_detector(settings.detector)
    tracker = FaceTracker(
        detect, settings.detector, scheme_of(predictor), predictor.input_size,
        settings.redetect_every,
    )  # fmt: skip
    stages = StageClock(clock)
    frames = itertools.islice(decoded_frames(video), limit)
    with tempfile.TemporaryDirectory(prefix="fkdbench-video-") as folder:
        overlay = Path(folder) / "overlay.mp4"

        def open_writer(width: int, height: int) -> VideoWriter:
            return VideoWriter(overlay, overlay, width, height, fps=30.0)

        faces, _size = run_video(frames, tracker, model_locator(predictor, stages), stages,
                                 str(video), open_writer)  # fmt: skip
    return stages.samples, sum(face.status != NO_FACE for face in faces)


def _measure(
    folder: Path, backend: str, video: Path, settings: VideoSettings, clock: Any
) -> tuple[dict[str, list[float]], int]:
    from fkdbench.bench.timing import torch_threads

    with torch_threads(settings.threads):
        predictor = _predictor(folder, backend, settings.threads)
        _one_pass(predictor, video, settings, clock, settings.warmup_frames)
        samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        found = 0
        for _ in range(settings.repeats):
            passed, found = _one_pass(predictor, video, settings, clock, None)
            for stage in STAGES:
                samples[stage] += passed[stage]
    return samples, found


def _key(identity: Identity, facts: VideoFacts, settings: VideoSettings) -> tuple:
    """What makes two video measurements the same: model file, video and settings (not
    the machine: the report shows the latest)."""
    return (identity.run_name, identity.backend, identity.model_sha256, facts.sha256, settings)


def _measured_keys(records: Sequence[VideoRecord]) -> set[tuple]:
    return {
        _key(record.identity, record.video, record.settings)
        for record in records
        if not record.failed and record.video is not None and record.identity.model_sha256
    }


def video_targets(folders: Sequence[Path]) -> list[Path]:
    """One folder per architecture for an end-to-end video bench (the model's cost, not
    its data variant, is what the pipeline measures): its finished run on the ``none``
    variant, else its first finished run, else its untrained folder."""
    chosen: dict[str, tuple[tuple[bool, bool], Path]] = {}
    for folder in folders:
        identity = _identity(Path(folder), "onnxruntime")
        rank = (not identity.trained, identity.variant != "none")  # lower is better
        arch = str(identity.arch)
        if arch not in chosen or rank < chosen[arch][0]:
            chosen[arch] = (rank, Path(folder))
    return [folder for _, folder in chosen.values()]


def _error_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(error, (ValueError, OSError)):
        return line or type(error).__name__
    return f"{type(error).__name__}: {line}"


def bench_video(
    folders: Sequence[Path],
    video: Path,
    options: BenchOptions,
    detector: str | None = None,
    redetect_every: int | None = None,
    clock: Any = time.perf_counter,
) -> list[VideoRecord]:
    """Every folder on every backend of ``options`` through the video pipeline; all the
    records appended to ``video.jsonl`` beside ``options.results`` at the end, at once.

    A video that cannot be read fails the whole call (BenchError naming it, before any
    model is loaded); a run or backend that fails is an error record. With
    ``options.skip_existing``, a (run, backend) already measured on the same model file,
    video and settings is not measured again (``reproduce`` resumes).
    """
    from fkdbench.bench.sweep import check_writable
    from fkdbench.faces.detect import DEFAULT_DETECTOR
    from fkdbench.faces.track import REDETECT_EVERY

    results = video_results_path(options.results)
    check_writable(results, "video results file")
    keep_freed_memory()  # timed as after a training in the same process
    facts = _read_video(Path(video))
    settings = VideoSettings(
        detector=detector or DEFAULT_DETECTOR,
        redetect_every=redetect_every or REDETECT_EVERY,
        threads=options.threads or available_cores(),
        repeats=options.repeats,
        warmup_frames=WARMUP_FRAMES,
    )
    environment = environment_record()
    records = []
    targets = [(Path(folder), backend) for folder in folders for backend in options.backends]
    if options.skip_existing:
        done = _measured_keys(read_video_records(results))
        targets = [
            (folder, backend)
            for folder, backend in targets
            if _key(_identity(folder, backend), facts, settings) not in done
        ]
    with make_progress(options.quiet) as progress:
        task = progress.add_task("bench video", total=len(targets))
        for folder, backend in targets:
            samples, found, error = {stage: [] for stage in STAGES}, None, None
            try:
                samples, found = _measure(folder, backend, Path(video), settings, clock)
            except Exception as problem:  # noqa: BLE001 - a failed target is a record
                error = _error_line(problem)
                say(f"[red]failed[/red] {folder.name} {backend}: {error}", options.quiet)
            records.append(
                VideoRecord(
                    identity=_identity(folder, backend),
                    video=facts,
                    settings=settings,
                    samples=samples,
                    faces_found_frames=found,
                    environment=environment,
                    timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                    error=error,
                )
            )
            progress.advance(task)
    append_jsonl_atomic(results, [record.to_json() for record in records])
    return records


def video_summary(records: Sequence[VideoRecord]) -> list[dict[str, Any]]:
    """A row per record for the command line: FPS, ms per stage (median), encode apart."""
    from fkdbench.bench import stats

    rows = []
    for record in records:
        row = {"run": record.identity.run_name, "backend": record.identity.backend}
        row["FPS (decode..draw)"] = record.fps
        for stage in STAGES:
            values = record.samples.get(stage) or []
            row[f"{stage} ms"] = 1000 * stats.median(values) if values else None
        if record.failed:
            row["error"] = record.error
        rows.append(row)
    return rows


__all__ = [
    "VIDEO_FORMAT_VERSION",
    "VIDEO_RESULTS",
    "VideoFacts",
    "VideoRecord",
    "VideoSettings",
    "bench_video",
    "read_video_records",
    "video_record_from_json",
    "video_results_path",
    "video_summary",
    "video_targets",
]
