"""Video in, keypoints per frame and an overlay video out, with every stage timed.

``fkdbench predict MODEL clip.mp4`` comes here (:func:`predict_video`): each frame is
decoded with PyAV (FFmpeg), its face found and followed by the rule of
:mod:`fkdbench.faces.track`, cut out (:func:`fkdbench.faces.crop.cut`), given to the
model, and its keypoints mapped back to the frame's pixels; ``keypoints.csv`` gets one
row per frame (a frame without a face is a row that says so) and, with ``out_video``,
the frame with its keypoints and crop drawn is encoded into the overlay video.

Pixels: the gray picture the detector and the model see is the frame's luma (Y) plane,
the way :func:`fkdbench.predict.gray_image` takes a photo's luminance. The overlay is
drawn straight into the decoded YUV 4:2:0 frame (a red dot per keypoint, the crop in
green) and that frame is encoded, so no colour conversion costs time (sources in another
pixel format are converted to yuv420p once, at decoding).

The camera (``source`` an int, ``--camera INDEX``) is read with OpenCV's
``cv2.VideoCapture`` (PyAV would need the platform's device name); it is kept thin: frames
are read until the device stops or Ctrl-C, which ends the video normally (the files are
written). There is no camera on the development or CI machines: that path is untested.

Bad input, each one line naming the file (:class:`VideoError`): a file that is missing,
empty, not a video or in a codec FFmpeg cannot decode; a video with no frames; a frame
whose size differs from the first frame's (a size change mid-stream is *refused*, not
followed: the overlay video has one size; split the video first). An ``--out`` that
cannot be written fails before the first frame; nothing is half-written (the overlay is
encoded to a temporary file renamed into place after ``keypoints.csv`` is written).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fkdbench.faces.crop import cut, to_original
from fkdbench.faces.stages import PIPELINE_STAGES, STAGES, StageClock
from fkdbench.faces.track import (
    NO_FACE,
    REDETECT_EVERY,
    FaceTracker,
    FrameFace,
    Locator,
)
from fkdbench.io import atomic_path, write_text_atomic
from fkdbench.progress import make_progress, say

if TYPE_CHECKING:
    from fkdbench.predict import KeypointPredictor

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
KEYPOINTS_FILE = "keypoints.csv"
# Output suffix -> (FFmpeg container, encoder). x264 at CRF 18 is visually lossless.
CONTAINERS = {
    ".mp4": ("mp4", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".mov": ("mov", "libx264"),
    ".avi": ("avi", "mpeg4"),
    ".webm": ("webm", "libvpx"),
}
ENCODER_OPTIONS = {"libx264": {"crf": "18", "preset": "veryfast"}}
# The frame rate written when a source does not say its own.
DEFAULT_FPS = 30
# Overlay colours as (Y, U, V), BT.601: red keypoints, a green crop.
KEYPOINT_YUV = (104, 92, 236)
CROP_YUV = (150, 44, 21)

__all__ = [
    "KEYPOINTS_FILE",
    "REDETECT_EVERY",
    "STAGES",
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoResult",
    "decoded_frames",
    "model_locator",
    "predict_video",
    "run_video",
    "write_gray_video",
]


class VideoError(ValueError):
    """A video that cannot be read or written as asked; the message names the file."""


@dataclass
class VideoResult:
    """What :func:`predict_video` did: frames, frames with a face, wall seconds, the files
    written, per-stage seconds (one sample per frame, :data:`STAGES`) and one line per
    frame that had a problem (no face, a lost track)."""

    frames: int
    faces_found_frames: int
    seconds: float
    keypoints_csv: Path
    out_video: Path | None
    stage_seconds: dict[str, list[float]]
    problems: list[str] = field(default_factory=list)
    fps: float | None = None  # the source's frame rate, when it says

    @property
    def pipeline_fps(self) -> float | None:
        """Frames per second from decoded frame to drawn overlay (encode apart)."""
        total = sum(sum(self.stage_seconds[stage]) for stage in PIPELINE_STAGES)
        return self.frames / total if total > 0 else None


# -- reading --------------------------------------------------------------------------------


def _av_error(path: Path | str, error: Exception) -> VideoError:
    reason = getattr(error, "strerror", None) or str(error).splitlines()[0] or type(error).__name__
    return VideoError(f"{path}: not a readable video ({reason})")


def _open_stream(path: Path) -> tuple[Any, Any]:
    """The container and its first video stream; VideoError naming the file if none."""
    import av

    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: an empty file (0 bytes), not a video")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise _av_error(path, error) from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream (audio or data only?)")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise VideoError(f"{path}: its video codec cannot be decoded here")
    return container, stream


def stream_fps(path: Path) -> float | None:
    """The video's frame rate as its container says, None when it does not."""
    container, stream = _open_stream(Path(path))
    with container:
        rate = stream.average_rate or stream.guessed_rate
        return float(rate) if rate else None


def frame_count(path: Path) -> int | None:
    """The number of frames the container says the video has (for the progress bar's
    ETA), None when it does not say."""
    container, stream = _open_stream(Path(path))
    with container:
        return int(stream.frames) or None


def decoded_frames(path: Path) -> Iterator[Any]:
    """The video's frames as PyAV yuv420p ``VideoFrame`` s, in order; VideoError (one
    line naming the file) when it cannot be opened or decoded, or has no frames."""
    import av

    path = Path(path)
    container, stream = _open_stream(path)
    count = 0
    with container:
        try:
            for frame in container.decode(stream):
                count += 1
                yield frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
        except (av.FFmpegError, ValueError) as error:
            raise VideoError(
                f"{path}: frame {count}: cannot be decoded "
                f"({str(error).splitlines()[0] or type(error).__name__})"
            ) from None
    if count == 0:
        raise VideoError(f"{path}: a video with no frames")


def camera_frames(index: int) -> Iterator[Any]:
    """Frames of camera ``index`` (OpenCV's numbering) as yuv420p ``VideoFrame`` s, until
    the device stops or Ctrl-C. Thin on purpose: see the module docstring."""
    import av
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise VideoError(f"camera {index}: cannot be opened (no such device, or in use)")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
    except KeyboardInterrupt:
        return
    finally:
        capture.release()


def _plane(frame: Any, index: int) -> np.ndarray:
    """Plane ``index`` of a planar frame as a (height, line size) uint8 array (a view)."""
    plane = frame.planes[index]
    rows = plane.buffer_size // plane.line_size
    return np.frombuffer(plane, dtype=np.uint8).reshape(rows, plane.line_size)


def luma(frame: Any) -> np.ndarray:
    """The frame's Y plane as a gray uint8 (H, W) array of its own."""
    return np.array(_plane(frame, 0)[: frame.height, : frame.width])


# -- drawing and writing ----------------------------------------------------------------------


def draw_overlay(frame: Any, points: np.ndarray | None, crop: np.ndarray | None) -> Any:
    """Draw ``points`` (K, 2 frame pixels) as red dots and ``crop`` as a green square into
    the yuv420p ``frame`` (made writable first: a decoder may still hold its pixels)."""
    import cv2

    frame.make_writable()
    planes = [_plane(frame, index) for index in range(3)]
    radius = max(2.0, max(frame.width, frame.height) / 200)
    for number, (plane, factor) in enumerate(zip(planes, (1, 2, 2), strict=True)):
        if crop is not None:
            x0, y0, side, _ = (value / factor for value in crop)
            corner = (round(x0), round(y0))
            cv2.rectangle(plane, corner, (round(x0 + side), round(y0 + side)), CROP_YUV[number])
        if points is None:
            continue
        for x, y in points / factor:
            if math.isfinite(x) and math.isfinite(y):
                centre = (round(x * 4), round(y * 4))  # 2 fractional bits: sub-pixel dots
                cv2.circle(
                    plane, centre, round(radius / factor * 4), KEYPOINT_YUV[number], -1, shift=2
                )
    return frame


class VideoWriter:
    """An overlay video being encoded into ``temporary`` (container chosen by the final
    path's suffix, :data:`CONTAINERS`)."""

    def __init__(self, final: Path, temporary: Path, width: int, height: int, fps: float) -> None:
        import av

        suffix = final.suffix.lower()
        if suffix not in CONTAINERS:
            raise VideoError(
                f"{final}: cannot write a {suffix or 'suffix-less'} video; use one of "
                f"{', '.join(CONTAINERS)}"
            )
        container_format, codec = CONTAINERS[suffix]
        self.final = final
        self._rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(DEFAULT_FPS)
        try:
            self._container = av.open(str(temporary), "w", format=container_format)
            self._stream = self._container.add_stream(codec, rate=self._rate)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = ENCODER_OPTIONS.get(codec, {})
        except (av.FFmpegError, ValueError) as error:
            raise VideoError(f"{final}: cannot encode {codec} {width}x{height}: {error}") from None
        self._count = 0

    def write(self, frame: Any) -> None:
        import av

        frame.pts, frame.time_base = self._count, 1 / self._rate
        frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose
        self._count += 1
        try:
            self._container.mux(self._stream.encode(frame))
        except (av.FFmpegError, ValueError) as error:
            raise VideoError(
                f"{self.final}: cannot encode frame {self._count - 1}: {error}"
            ) from None

    def close(self) -> None:
        """Flush the encoder and close the file."""
        import av

        try:
            self._container.mux(self._stream.encode())
        except (av.FFmpegError, ValueError) as error:
            raise VideoError(f"{self.final}: cannot finish the video: {error}") from None
        finally:
            self._container.close()


def write_gray_video(path: Path, images: Sequence[np.ndarray] | np.ndarray, fps: float) -> Path:
    """Gray uint8 (H, W) ``images`` as a video at ``path`` (atomically)."""
    import av

    path = Path(path)
    height, width = np.asarray(images[0]).shape
    with atomic_path(path) as temporary:
        writer = VideoWriter(path, temporary, width, height, fps)
        for image in images:
            gray = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray")
            writer.write(gray.reformat(format="yuv420p"))
        writer.close()
    return path


# -- the pipeline ---------------------------------------------------------------------------


def model_locator(predictor: KeypointPredictor, stages: StageClock | None = None) -> Locator:
    """The :data:`~fkdbench.faces.track.Locator` of a model: cut the crop (stage
    ``crop``), predict and map back to frame pixels (stage ``infer``)."""
    from fkdbench.onnxrt import images_as_float

    size, channels = predictor.input_size, predictor.in_chans

    clock = stages if stages is not None else StageClock()

    def locate(gray: np.ndarray, crop: np.ndarray, _index: int) -> np.ndarray:
        with clock.stage("crop"):
            face = cut(gray, crop, size)
        with clock.stage("infer"):
            pixels = predictor(images_as_float(face[None], channels))[0]
            return to_original(pixels, crop)

    return locate


WriterFactory = Callable[[int, int], VideoWriter]


def run_video(
    frames: Iterable[Any],
    tracker: FaceTracker,
    locate: Locator,
    stages: StageClock,
    name: str,
    open_writer: WriterFactory | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> tuple[list[FrameFace], tuple[int, int] | None]:
    """Every frame through the tracker (and, with ``open_writer``, which makes the writer
    for the first frame's width and height, the overlay encoded): each frame's face, in
    order, and the frames' (width, height) (None: no frame). ``stages`` gets one sample
    per stage per frame. A frame whose size differs from the first's is a VideoError
    naming ``name`` (see the module docstring)."""
    faces: list[FrameFace] = []
    iterator = iter(frames)
    size: tuple[int, int] | None = None
    writer: VideoWriter | None = None
    while True:
        with stages.stage("decode"):
            frame = next(iterator, None)
            gray = luma(frame) if frame is not None else None
        if frame is None:
            stages.discard_frame()
            if writer is not None:
                writer.close()
            return faces, size
        if size is None:
            size = (frame.width, frame.height)
            writer = open_writer(*size) if open_writer is not None else None
        elif (frame.width, frame.height) != size:
            raise VideoError(
                f"{name}: frame {len(faces)} is {frame.width}x{frame.height}, the frames "
                f"before it {size[0]}x{size[1]}: a size change mid-stream is not supported "
                "(split the video where it changes)"
            )
        face = tracker.step(gray, len(faces), locate, stages)
        faces.append(face)
        if writer is not None:
            with stages.stage("draw"):
                draw_overlay(frame, face.points, face.crop)
            with stages.stage("encode"):
                writer.write(frame)
        stages.end_frame()
        if on_frame is not None:
            on_frame(len(faces))


# -- predict ---------------------------------------------------------------------------------


def scheme_of(predictor: KeypointPredictor) -> str:
    """The keypoint scheme whose names the model predicts (tracking needs its reference
    shape); VideoError when none matches."""
    from fkdbench.data.schemes import SCHEMES

    for scheme in SCHEMES.values():
        if tuple(scheme.keypoints) == tuple(predictor.keypoint_names):
            return scheme.name
    raise VideoError(
        f"{predictor.source}: its {len(predictor.keypoint_names)} keypoints are no known "
        "scheme's, so there is no reference shape to track a face with"
    )


def check_writable(path: Path, what: str) -> None:
    """Fail before the first frame, not after the last: ``path`` must be a file that can
    be created (or replaced) in its folder; VideoError naming it otherwise."""
    path = Path(path)
    if path.is_dir():
        raise VideoError(f"{path}: the {what} is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise VideoError(f"{path}: cannot write the {what} ({reason}); nothing was done") from None


def _csv_text(
    keypoint_names: Sequence[str], faces: Sequence[FrameFace], fps: float, width: int, height: int
) -> str:
    """keypoints.csv: one row per frame (see :func:`predict_video`)."""
    from fkdbench.predict import clip_to_image

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    coordinates = [f"{name}_{axis}" for name in keypoint_names for axis in ("x", "y")]
    writer.writerow(
        ["frame", "time_s", "status", "lost", "crop_x0", "crop_y0", "crop_side", "score"]
        + coordinates
        + ["clipped"]
    )
    for index, face in enumerate(faces):
        row = [str(index), f"{index / fps:.3f}", face.status, face.lost or ""]
        if face.points is None:
            writer.writerow(row + [""] * (4 + len(coordinates) + 1))
            continue
        points, clipped = clip_to_image(face.points, width, height)
        x0, y0, side, _ = face.crop
        score = "" if face.score is None else f"{face.score:.4g}"
        values = [f"{value:.3f}" for value in points.reshape(-1)]
        writer.writerow(
            row + [f"{x0:.2f}", f"{y0:.2f}", f"{side:.2f}", score, *values, str(clipped)]
        )
    return text.getvalue()


def _frame_ranges(frames: Sequence[int]) -> list[str]:
    """Frame numbers as runs: [3, 4, 5, 9] -> ["frames 3-5", "frame 9"]."""
    ranges: list[list[int]] = []
    for frame in frames:
        if ranges and frame == ranges[-1][1] + 1:
            ranges[-1][1] = frame
        else:
            ranges.append([frame, frame])
    return [f"frames {a}-{b}" if b > a else f"frame {a}" for a, b in ranges]


def _problems(faces: Sequence[FrameFace]) -> list[str]:
    """One line per lost track, and one per run of consecutive frames without a face (a
    face away for a minute is one line, not 1800)."""
    lines = [
        f"frame {index}: track lost ({face.lost}), detected again"
        for index, face in enumerate(faces)
        if face.lost
    ]
    no_face = [index for index, face in enumerate(faces) if face.status == NO_FACE]
    return lines + [f"{frames}: no face found" for frames in _frame_ranges(no_face)]


def _source(source: Path | int) -> tuple[Iterator[Any], str, float]:
    """The frames of a file or a camera, the name errors use, and the frame rate."""
    if isinstance(source, int) and not isinstance(source, bool):
        return camera_frames(source), f"camera {source}", float(DEFAULT_FPS)
    path = Path(source)
    fps = stream_fps(path) or float(DEFAULT_FPS)
    return decoded_frames(path), str(path), fps


def predict_video(
    predictor: KeypointPredictor,
    source: Path | int,
    out: Path,
    *,
    detector: str,
    redetect_every: int = REDETECT_EVERY,
    out_video: Path | None = None,
    quiet: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    keypoints_file: str = KEYPOINTS_FILE,
) -> VideoResult:
    """Keypoints of the face in every frame of ``source`` (a video file, or a camera
    index): ``out/keypoints.csv`` (columns ``frame, time_s, status, lost, crop_x0,
    crop_y0, crop_side, score``, then ``<keypoint>_x, <keypoint>_y`` in frame pixels and
    ``clipped``; a frame without a face has its status ``no face`` and empty cells) and,
    with ``out_video``, the overlay video. The face is found by ``detector`` and followed
    by the rule of :mod:`fkdbench.faces.track`. Nothing is written unless every frame was
    read (see the module docstring). ``keypoints_file``: the CSV's name under ``out``."""
    from fkdbench.faces.detect import open_detector

    started = clock()
    csv_path = Path(out) / keypoints_file
    check_writable(csv_path, "keypoints file")
    if out_video is not None:
        out_video = Path(out_video)
        if out_video.suffix.lower() not in CONTAINERS:
            raise VideoError(f"{out_video}: the overlay video needs one of {', '.join(CONTAINERS)}")
        check_writable(out_video, "overlay video")
    frames, name, fps = _source(source)
    tracker = FaceTracker(
        open_detector(detector), detector, scheme_of(predictor), predictor.input_size,
        redetect_every,
    )  # fmt: skip
    stages = StageClock(clock)
    locate = model_locator(predictor, stages)
    with make_progress(quiet) as progress, contextlib.ExitStack() as stack:
        total = None if isinstance(source, int) else frame_count(Path(source))
        task = progress.add_task(f"video {Path(name).name}", total=total)
        open_writer = None
        if out_video is not None:
            temporary = stack.enter_context(atomic_path(out_video))
            open_writer = functools.partial(VideoWriter, out_video, temporary, fps=fps)
        faces, size = run_video(
            frames, tracker, locate, stages, name, open_writer,
            on_frame=lambda done: progress.update(task, completed=done),
        )  # fmt: skip
        if size is None:
            raise VideoError(f"{name}: no frames")
        width, height = size
        write_text_atomic(csv_path, _csv_text(predictor.keypoint_names, faces, fps, width, height))
    found = sum(face.status != NO_FACE for face in faces)
    say(f"video: {len(faces)} frames, a face in {found}", quiet)
    return VideoResult(
        frames=len(faces),
        faces_found_frames=found,
        seconds=clock() - started,
        keypoints_csv=csv_path,
        out_video=out_video,
        stage_seconds=stages.samples,
        problems=_problems(faces),
        fps=fps,
    )
