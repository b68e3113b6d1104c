"""The "End-to-end on video" section: frames per second from decoded frame to drawn overlay.

From ``video.jsonl`` (``fkdbench bench --video``; :mod:`fkdbench.bench.video`), per model
and backend: FPS over every timed frame with a 95% interval, the median ms of each stage,
encode apart, and beside them the model's seconds per 100 images from ``bench.jsonl``
when that has the same run and backend. Without ``video.jsonl`` the section is left out.

The interval is a moving-block bootstrap over frames: consecutive frames are not
independent (the detector runs every ``redetect_every`` frames and when a track is lost),
so blocks of ``redetect_every`` consecutive frames are resampled with replacement,
keeping the cadence of detections inside each block.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fkdbench.faces.stages import STAGES
from fkdbench.report.cells import fmt, markdown_table
from fkdbench.report.common import NOT_MEASURED, display_name, number
from fkdbench.report.inputs import latest_records, load_video_records, video_file_beside
from fkdbench.report.result import ReportResult
from fkdbench.report.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE

# The table's name (video.csv, report.json's tables.video): only in a report with records.
VIDEO_TABLE = "video"

VIDEO_COLUMNS = [
    "model",
    "run_name",
    "backend",
    "threads",
    "video",
    "width",
    "height",
    "frames",
    "repeats",
    "detector",
    "redetect_every",
    "faces_found_share",
    "detect_share",
    "fps",
    "fps_low",
    "fps_high",
    *(f"{stage}_ms" for stage in STAGES),
    "detect_mean_ms",
    "seconds_per_100",
]


def fps_interval(seconds: Sequence[float], block: int) -> tuple[float, float]:
    """The 95% moving-block bootstrap interval of frames / sum(seconds) (module docstring)."""
    values = np.asarray(seconds, dtype=np.float64)
    count = len(values)
    block = max(1, min(block, count))
    starts = count - block + 1
    blocks = -(-count // block)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    chosen = rng.integers(0, starts, size=(BOOTSTRAP_RESAMPLES, blocks))
    window = np.lib.stride_tricks.sliding_window_view(values, block).sum(axis=1)
    totals = window[chosen].sum(axis=1)
    fps = blocks * block / totals
    tail = (1 - CONFIDENCE) / 2
    return float(np.quantile(fps, tail)), float(np.quantile(fps, 1 - tail))


def _per_100(bench_records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(run, backend) -> seconds per 100 images, the latest record at the most threads."""
    found: dict[tuple[str, str], float] = {}
    for record in latest_records(bench_records):
        seconds = number(record.get("seconds_per_100_images"))
        if seconds is not None:
            found[(str(record.get("run_name")), str(record.get("backend")))] = seconds
    return found


def _row(record: Any, per_100: dict[tuple[str, str], float]) -> dict[str, Any]:
    identity, settings, video = record.identity, record.settings, record.video
    seconds = record.pipeline_seconds()
    low, high = fps_interval(seconds, settings.redetect_every)
    medians = {
        f"{stage}_ms": 1000 * float(np.median(record.samples[stage]))
        if record.samples.get(stage)
        else None
        for stage in STAGES
    }
    detect = record.samples.get("detect") or []
    ran = sum(seconds > 0 for seconds in detect)
    return {
        "model": display_name(
            str(identity.arch), identity.weights_mode, bool(identity.trained), identity.recipe
        ),
        "run_name": identity.run_name,
        "backend": identity.backend,
        "threads": settings.threads,
        "video": video.path,
        "width": video.width,
        "height": video.height,
        "frames": video.frames,
        "repeats": settings.repeats,
        "detector": settings.detector,
        "redetect_every": settings.redetect_every,
        "faces_found_share": record.faces_found_frames / video.frames if video.frames else None,
        # Frames that ran the detector: a model whose keypoints cannot hold the track
        # (untrained) makes the detector run on every frame.
        "detect_share": ran / len(detect) if detect else None,
        "fps": record.fps,
        "fps_low": low,
        "fps_high": high,
        **medians,
        "detect_mean_ms": 1000 * float(np.mean(detect)) if detect else None,
        "seconds_per_100": per_100.get((identity.run_name, identity.backend)),
    }


def read_video_beside(bench_file: Path | None) -> list[Any]:
    """The measured video records of ``video.jsonl`` beside ``bench_file`` ([] without)."""
    return load_video_records(video_file_beside(bench_file))


def video_table(
    video_records: Sequence[Any], bench_records: Sequence[dict[str, Any]]
) -> pd.DataFrame:
    """One row per measured video record (the latest per run, backend, video, threads)."""
    per_100 = _per_100(bench_records)
    rows = [_row(record, per_100) for record in video_records if record.pipeline_seconds()]
    return pd.DataFrame(rows, columns=VIDEO_COLUMNS)


def _percent(share: float | None) -> str:
    return NOT_MEASURED if share is None or pd.isna(share) else f"{100 * share:.0f}%"


# Above this share of frames running the detector, a row's FPS is the detector's.
MOSTLY_DETECTING = 0.5


def _detecting_lines(table: pd.DataFrame) -> list[str]:
    rows = table[table["detect_share"] > MOSTLY_DETECTING]
    if rows.empty:
        return []
    names = ", ".join(sorted(set(rows["model"])))
    return [
        f"Not a tracked FPS: {names}. Their keypoints did not hold the track (untrained "
        "weights predict no face), so the detector ran on most frames and the FPS is mostly "
        "the detector's; their infer ms is the model's own cost per frame.",
        "",
    ]


def video_markdown(table: pd.DataFrame) -> str:
    """The video table as REPORT.md shows it."""
    shown = pd.DataFrame(
        {
            "model": table["model"],
            "backend": table["backend"],
            "threads": table["threads"].map(str),
            "video": [
                f"{row.width}x{row.height}, {row.frames} frames x {row.repeats}"
                for row in table.itertuples()
            ],
            "FPS decode..draw (95% CI)": [
                f"{row.fps:.0f} ({row.fps_low:.0f}-{row.fps_high:.0f})"
                for row in table.itertuples()
            ],
            **{
                f"{stage} ms": table[f"{stage}_ms"].map(lambda v: fmt(v, ".3f", NOT_MEASURED))
                for stage in STAGES
            },
            "detect ms/frame (mean)": table["detect_mean_ms"].map(
                lambda v: fmt(v, ".3f", NOT_MEASURED)
            ),
            "face found": table["faces_found_share"].map(_percent),
            "detector ran": table["detect_share"].map(_percent),
            "s / 100 images (bench)": table["seconds_per_100"].map(
                lambda v: fmt(v, ".4f", NOT_MEASURED)
            ),
        }
    )
    return markdown_table(shown)


_VIDEO_EXPLAINED = (
    "The whole pipeline of `fkdbench predict` on a video (`fkdbench bench --video`): "
    "decode (PyAV), detect (every `redetect_every` frames and when the track is lost; "
    "between, the crop follows the previous frame's keypoints), crop, infer (one face, "
    "batch 1), draw the overlay; FPS = timed frames / their summed seconds of those "
    "stages, with a 95% moving-block bootstrap interval over frames (blocks of "
    "`redetect_every` frames). Each stage's ms is the median over frames (detect's median "
    "is 0 on tracked frames; its mean is the amortised cost). Encoding the overlay is "
    "reported apart and not in the FPS. s / 100 images: the same run and backend in "
    "`bench.jsonl`, batched."
)


def video_section(result: ReportResult) -> list[str] | None:
    """The lines of "End-to-end on video" after its heading; None (the section is left
    out) when there is no ``video.jsonl`` beside the bench file, or nothing measured."""
    table = result.tables.get(VIDEO_TABLE)
    if table is None or table.empty:
        return None
    detectors = ", ".join(sorted(set(table["detector"])))
    return [
        _VIDEO_EXPLAINED,
        "",
        video_markdown(table),
        "",
        *_detecting_lines(table),
        f"Detector: {detectors}; videos: {', '.join(sorted(set(table['video'])))}.",
        "",
    ]
