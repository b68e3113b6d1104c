"""Video: the generated clip, the tracking rule, predict_video end to end, bench --video and
the report's video section, and every kind of bad input.

Nothing is trained for the geometry: an oracle locator takes the clip's true keypoints of a
frame, maps them into the crop the tracker chose and clips them to that crop (a model can
only point inside its input), so a frame's keypoints come back right only when the
tracker's crop holds the face.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from report_factory import result_of

from fkdbench.bench import BenchOptions, bench_video, read_video_records
from fkdbench.faces import synthetic_video
from fkdbench.faces.crop import to_crop, to_original
from fkdbench.faces.detect import open_detector
from fkdbench.faces.stages import STAGES, StageClock
from fkdbench.faces.track import (
    DETECTED,
    NO_FACE,
    REDETECT_EVERY,
    REDETECTED,
    ROI_SIDE,
    TRACKED,
    FaceTracker,
    lost_reason,
)
from fkdbench.faces.video import (
    KEYPOINTS_FILE,
    VideoError,
    decoded_frames,
    predict_video,
    run_video,
    write_gray_video,
)
from fkdbench.predict import load_predictor
from fkdbench.report.markdown import render_markdown
from fkdbench.report.video import fps_interval, video_section

pytestmark = pytest.mark.usefixtures("single_cpu_thread")

# Keypoints within this many frame pixels of the truth (the oracle is exact where the face
# is in its crop; the video round trip does not touch the keypoints).
TOLERANCE_PX = 0.5
SIZE = 96


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synthetic_video.ClipTruth]:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return path, synthetic_video.write_clip(path)


def _oracle(truth: synthetic_video.ClipTruth):
    def locate(gray: np.ndarray, crop: np.ndarray, index: int) -> np.ndarray:
        inside = np.clip(to_crop(truth.keypoints[index], crop), -0.5, SIZE - 0.5)
        return to_original(inside, crop)

    return locate


def _track(path: Path, truth, redetect_every: int = 30):
    tracker = FaceTracker(open_detector("haar"), "haar", "kaggle15", SIZE, redetect_every)
    stages = StageClock()
    faces, size = run_video(decoded_frames(path), tracker, _oracle(truth), stages, str(path))
    return faces, size, stages


def test_the_clip_moves_leaves_and_returns(clip) -> None:
    path, truth = clip
    assert truth.frames == synthetic_video.FRAMES
    assert sum(1 for _ in decoded_frames(path)) == truth.frames
    gone = np.flatnonzero(truth.gone)
    assert 20 < len(gone) < truth.frames / 2 and truth.in_view[: gone[0]].sum() > 30
    assert truth.in_view[gone[-1] + 1 :].any(), "the face comes back"
    assert truth.crop_sides.max() / truth.crop_sides.min() > 1.4  # it changes size


def test_tracking_follows_the_face_within_tolerance(clip) -> None:
    path, truth = clip
    faces, size, stages = _track(path, truth)
    assert size == (synthetic_video.WIDTH, synthetic_video.HEIGHT)
    in_view = np.flatnonzero(truth.in_view)
    good = [
        index
        for index in in_view
        if faces[index].points is not None
        and np.abs(faces[index].points - truth.keypoints[index]).max() <= TOLERANCE_PX
    ]
    assert len(good) >= 0.95 * len(in_view), (len(good), len(in_view))
    statuses = [face.status for face in faces]
    assert statuses.count(TRACKED) > statuses.count(DETECTED) + statuses.count(REDETECTED)
    assert all(len(samples) == len(faces) for samples in stages.samples.values())
    assert sum(stages.samples["encode"]) == 0.0  # no writer: nothing encoded


def test_the_face_is_lost_reported_absent_and_found_again(clip) -> None:
    path, truth = clip
    faces, _size, _stages = _track(path, truth)
    gone = np.flatnonzero(truth.gone)
    assert all(faces[index].status == NO_FACE for index in gone)
    assert any(face.lost == "face left the frame" for face in faces[: gone[0] + 1])
    back = np.flatnonzero(truth.in_view & (np.arange(truth.frames) > gone[-1]))[0]
    assert faces[back].status in (DETECTED, TRACKED)
    assert np.abs(faces[back].points - truth.keypoints[back]).max() <= TOLERANCE_PX


def test_periodic_detection_looks_near_the_face_first(tmp_path: Path) -> None:
    """While a face is tracked, the periodic detection runs on the ROI_SIDE region around
    it (cheap), and its box lands on the face in frame pixels: the track holds."""
    path = tmp_path / "stays.mp4"
    truth = synthetic_video.write_clip(path, frames=25, face_path="stays")
    haar, shapes = open_detector("haar"), []

    def recording(gray: np.ndarray):
        shapes.append(gray.shape)
        return haar(gray)

    tracker = FaceTracker(recording, "haar", "kaggle15", SIZE, redetect_every=8)
    faces, _size = run_video(decoded_frames(path), tracker, _oracle(truth), StageClock(), "c")
    assert shapes[0] == (synthetic_video.HEIGHT, synthetic_video.WIDTH)  # nothing tracked yet
    assert shapes[1:] and set(shapes[1:]) == {(ROI_SIDE, ROI_SIDE)}
    redetected = [face for face in faces if face.status == DETECTED][1:]
    assert redetected and all(face.lost is None for face in faces)
    for index, face in enumerate(faces):
        error = np.abs(face.points - truth.keypoints[index]).max()
        assert error <= TOLERANCE_PX


def test_lost_reason_by_the_rule() -> None:
    truth = synthetic_video.clip_truth()
    points, crop_side = truth.keypoints[0], truth.crop_sides[0]
    centre = points.mean(axis=0)
    crop = np.array([*(centre - crop_side / 2), crop_side, SIZE / crop_side])
    args = (640, 480, "kaggle15", SIZE)
    assert lost_reason(points, crop, *args) is None
    assert lost_reason(points + crop_side, crop, *args) == "keypoints left the crop"
    far = crop + np.array([1000, 0, 0, 0])
    assert lost_reason(points + (1000, 0), far, *args) == "face left the frame"
    shrunk = centre + (points - centre) * 0.4
    assert lost_reason(shrunk, crop, *args).startswith("crop side jumped")
    assert lost_reason(np.full_like(points, np.nan), crop, *args) == "keypoints missing"


def test_a_tiny_model_runs_through_predict_video(clip, exported_run: Path, tmp_path: Path):
    path, truth = clip
    predictor = load_predictor(exported_run / "model.onnx", threads=1)
    out_video = tmp_path / "overlay.mp4"
    result = predict_video(
        predictor, path, tmp_path / "out", detector="haar", out_video=out_video, quiet=True
    )
    assert result.frames == truth.frames
    rows = (tmp_path / "out" / KEYPOINTS_FILE).read_text().splitlines()
    assert len(rows) == truth.frames + 1
    header = rows[0].split(",")
    assert header[:4] == ["frame", "time_s", "status", "lost"] and header[-1] == "clipped"
    no_face = [row for row in rows[1:] if row.split(",")[2] == NO_FACE]
    # An untrained-ish model may hold a track on the background until the next periodic
    # detection (the rule's reason for it): at most REDETECT_EVERY frames.
    assert len(no_face) >= truth.gone.sum() - REDETECT_EVERY > 0
    assert result.faces_found_frames < truth.frames
    assert sum(1 for _ in decoded_frames(out_video)) == truth.frames
    assert set(result.stage_seconds) == set(STAGES)
    assert all(len(values) == truth.frames for values in result.stage_seconds.values())
    assert result.pipeline_fps is not None and result.pipeline_fps > 0
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left beside


def test_predict_with_a_video_out_writes_it_and_the_keypoints_beside(
    exported_run: Path, tmp_path: Path
) -> None:
    """`fkdbench predict MODEL clip.mp4 --out overlay.mp4`, through the CLI."""
    from typer.testing import CliRunner

    from fkdbench.cli import app

    short = tmp_path / "short.mp4"
    synthetic_video.write_clip(short, frames=6)
    overlay = tmp_path / "overlay.mp4"
    result = CliRunner().invoke(
        app, ["predict", str(exported_run / "model.onnx"), str(short), "--out", str(overlay),
              "--quiet", "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sum(1 for _ in decoded_frames(overlay)) == 6
    rows = (tmp_path / "overlay.keypoints.csv").read_text().splitlines()
    assert len(rows) == 7 and "frames per second" in result.output


def test_bench_video_records_and_the_report_section(exported_run: Path, tmp_path: Path):
    short = tmp_path / "short.mp4"
    synthetic_video.write_clip(short, frames=12)
    results = tmp_path / "results" / "bench.jsonl"
    options = BenchOptions(backends=("onnxruntime",), threads=1, repeats=2, results=results)
    [record] = bench_video([exported_run], short, options)
    assert record.error is None and record.video.frames == 12
    assert len(record.samples["infer"]) == 2 * 12 and record.fps > 0
    [again] = read_video_records(results.with_name("video.jsonl"))
    assert again == record
    lines = video_section(result_of(bench_file=results))
    assert lines is not None and "FPS decode..draw (95% CI)" in "\n".join(lines)
    markdown = render_markdown(result_of(bench_file=results))
    assert markdown.index("## Inference time") < markdown.index("## End-to-end on video")
    assert markdown.index("## End-to-end on video") < markdown.index("## Tuned CNN")
    # Without video.jsonl the section is left out.
    assert "End-to-end on video" not in render_markdown(result_of(bench_file=tmp_path / "b"))


def test_bench_video_records_a_failed_target(tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    synthetic_video.write_clip(short, frames=3)
    options = BenchOptions(backends=("onnxruntime",), threads=1, repeats=1,
                           results=tmp_path / "bench.jsonl")  # fmt: skip
    [record] = bench_video([tmp_path / "no-such-run"], short, options)
    assert record.failed and record.samples["decode"] == []


def test_an_edge_runtime_on_video_is_a_failed_record_saying_why(
    exported_run: Path, tmp_path: Path
) -> None:
    short = tmp_path / "short.mp4"
    synthetic_video.write_clip(short, frames=3)
    options = BenchOptions(backends=("ncnn",), threads=1, repeats=1,
                           results=tmp_path / "bench.jsonl")  # fmt: skip
    [record] = bench_video([exported_run], short, options)
    assert record.failed and "time the edge runtimes with bench without --video" in record.error


def test_the_fps_interval_brackets_the_fps() -> None:
    rng = np.random.default_rng(1)
    seconds = rng.uniform(0.003, 0.006, 120) + np.where(np.arange(120) % 30 == 0, 0.03, 0)
    low, high = fps_interval(seconds, 30)
    assert low < len(seconds) / seconds.sum() < high and high - low < 0.3 * low
    assert fps_interval([0.01] * 10, 3) == pytest.approx((100.0, 100.0))


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(exported_run: Path):
    return load_predictor(exported_run / "model.onnx", threads=1)


def _predict(predictor, source, out: Path, **kwargs):
    return predict_video(predictor, source, out, detector="haar", quiet=True, **kwargs)


def test_empty_and_non_video_files_are_one_line(predictor, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty.mp4: an empty file"):
        _predict(predictor, empty, tmp_path / "out")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(VideoError, match=r"junk.mp4: not a readable video"):
        _predict(predictor, junk, tmp_path / "out")
    with pytest.raises(VideoError, match="no such video file"):
        _predict(predictor, tmp_path / "absent.mp4", tmp_path / "out")
    assert not (tmp_path / "out" / KEYPOINTS_FILE).exists()


def test_audio_only_and_frameless_videos_are_refused(predictor, tmp_path: Path) -> None:
    audio = tmp_path / "sound.mkv"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoError, match="sound.mkv: has no video stream"):
        _predict(predictor, audio, tmp_path / "out")
    frameless = tmp_path / "frameless.mkv"
    with av.open(str(frameless), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    with pytest.raises(VideoError, match="frameless.mkv: "):
        _predict(predictor, frameless, tmp_path / "out")


def _frame(width: int, height: int) -> av.VideoFrame:
    gray = np.full((height, width), 90, np.uint8)
    return av.VideoFrame.from_ndarray(gray, format="gray").reformat(format="yuv420p")


def test_a_size_change_mid_stream_stops_with_one_line() -> None:
    tracker = FaceTracker(open_detector("haar"), "haar", "kaggle15", SIZE)
    frames = [_frame(64, 48), _frame(64, 48), _frame(32, 24)]
    with pytest.raises(VideoError, match=r"clip: frame 2 is 32x24, the frames before it 64x48"):
        run_video(frames, tracker, lambda *_: None, StageClock(), "clip")


def test_a_no_face_frame_is_a_row(predictor, tmp_path: Path) -> None:
    blank = tmp_path / "blank.mp4"
    write_gray_video(blank, np.full((3, 64, 96), 120, np.uint8), 30)
    result = _predict(predictor, blank, tmp_path / "out")
    rows = (tmp_path / "out" / KEYPOINTS_FILE).read_text().splitlines()[1:]
    assert [row.split(",")[2] for row in rows] == [NO_FACE] * 3
    # Consecutive frames without a face are one line, not one per frame.
    assert result.faces_found_frames == 0 and result.problems == ["frames 0-2: no face found"]


def test_an_unwritable_out_fails_first_and_writes_nothing(clip, predictor, tmp_path: Path):
    path, _truth = clip
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(VideoError, match=r"a-file/out/keypoints.csv: cannot write"):
        _predict(predictor, path, blocker / "out")
    with pytest.raises(VideoError, match=r"overlay.gif: the overlay video needs one of"):
        _predict(predictor, path, tmp_path / "out", out_video=tmp_path / "overlay.gif")
    assert not (tmp_path / "out" / KEYPOINTS_FILE).exists()


def test_the_writer_keeps_the_frame_rate(tmp_path: Path) -> None:
    from fkdbench.faces.video import VideoWriter, stream_fps

    path = tmp_path / "rate.mkv"
    writer = VideoWriter(path, path, 32, 32, fps=25.0)
    for _ in range(3):
        writer.write(_frame(32, 32))
    writer.close()
    assert stream_fps(path) == pytest.approx(float(Fraction(25)))
    assert functools.reduce(lambda count, _frame: count + 1, decoded_frames(path), 0) == 3
