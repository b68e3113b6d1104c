"""Face detectors (fkdbench.faces.detect): the registry, one-line errors, boxes in the
pixel-centre convention, and recall measured by fkdbench.faces.evaluate."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest

from fkdbench.faces import detect, evaluate
from fkdbench.faces.detect import (
    DEFAULT_DETECTOR,
    DETECTORS,
    DetectorError,
    FaceBox,
    detector_available,
    open_detector,
)

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
PHOTOS = SHARED / "real-faces-photos"
# The default detector found 60 of these 60 faces when it was chosen; the floor leaves room
# for another OpenCV build.
PHOTO_RECALL_FLOOR = 0.9


def test_the_default_needs_no_extra() -> None:
    assert DEFAULT_DETECTOR in DETECTORS and DETECTORS[DEFAULT_DETECTOR].extra is None
    assert detector_available(DEFAULT_DETECTOR) is None and detector_available("none") is None
    assert open_detector("none")(np.zeros((50, 50), dtype=np.uint8)) == []


def test_an_unknown_detector_is_one_line() -> None:
    with pytest.raises(DetectorError, match=r"unknown detector 'nope'; known: none, haar"):
        open_detector("nope")


def test_a_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_dlib(name: str, *args: object, **kwargs: object) -> object:
        if name == "dlib":
            raise ModuleNotFoundError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "dlib", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_dlib)
    with pytest.raises(DetectorError) as caught:
        open_detector("dlib-hog")
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "detector dlib-hog needs the peers extra (uv sync --extra peers): No module named 'dlib'"
    )
    monkeypatch.setattr(detect.importlib.util, "find_spec", lambda name: None)
    assert detector_available("dlib-mmod").startswith("not installed")


def test_a_detector_takes_gray_uint8_only() -> None:
    with pytest.raises(ValueError, match="gray uint8"):
        open_detector("haar")(np.zeros((40, 40, 3), dtype=np.uint8))


def test_iou_and_matching() -> None:
    a = FaceBox(0.0, 0.0, 10.0, 10.0, 1.0)
    b = FaceBox(5.0, 0.0, 15.0, 10.0, 1.0)
    assert evaluate.iou(a, b) == pytest.approx(50 / 150)
    assert evaluate.iou(a, FaceBox(20.0, 20.0, 30.0, 30.0, 1.0)) == 0.0
    # Each found box matches one true face at most, the best overlap first.
    assert evaluate.match_boxes([a, b], [b], threshold=0.3) == {1: 0}
    assert evaluate.match_boxes([a], [b], threshold=0.4) == {}


@pytest.mark.parametrize("name", ["haar", "dlib-hog"])
def test_boxes_are_pixel_edges_of_a_synthetic_face(name: str) -> None:
    if name != "haar":
        pytest.importorskip("dlib", reason="dlib-hog needs the peers extra (dlib-bin)")
    scenes = evaluate.synthetic_scenes(6, seed=1)
    result = evaluate.recall(name, scenes, "synthetic")
    assert result.found >= 2, result.line()
    for scene_index, face, box in result.matches:
        truth = scenes[scene_index].faces[face]
        assert evaluate.iou(truth, box) >= evaluate.IOU_FOUND
        assert box.x_min < box.x_max and box.score == box.score  # a real score, not NaN


@pytest.mark.realdata
@pytest.mark.skipif(
    not PHOTOS.is_dir(), reason="the shared real photos are not beside this checkout"
)
def test_the_default_detector_finds_the_real_photos_faces() -> None:
    scenes = evaluate.photo_scenes(PHOTOS)
    result = evaluate.recall(DEFAULT_DETECTOR, scenes, "photos")
    assert result.images == 60 and result.faces == 60
    assert result.recall >= PHOTO_RECALL_FLOOR, result.line()
    assert result.false_positives <= 6, result.line()


def test_the_survey_counts_recall_and_keeps_raw_frame_times() -> None:
    """The survey behind the detector choice: recall per material and ms per frame from
    raw per-frame samples (one per scene per pass), on two generated 640x480 scenes."""
    scenes = evaluate.synthetic_scenes(2)
    ticks = iter(range(100))
    samples = evaluate.seconds_per_frame("haar", scenes, repeats=2, clock=lambda: next(ticks))
    assert samples == [1, 1, 1, 1]  # one clock pair per scene per pass, warm-up untimed
    [row] = evaluate.survey(["haar"], synthetic_count=2)
    assert row["detector"] == "haar" and row["synthetic 640x480: found"].endswith("/2")
    assert 0 < row["ms/frame 640x480 p50"] <= row["ms/frame 640x480 p90"]
    assert not any(key.startswith("real") for key in row)  # no real material named


def test_haar_on_a_shrunk_frame_gives_boxes_in_the_frames_pixels() -> None:
    """The working-size cap (HAAR_MAX_SIDE) maps its boxes back: on 640x480 scenes they
    overlap the uncapped cascade's boxes closely, and they are found at all."""
    capped, uncapped = detect.haar_detector(), detect.haar_detector(max_side=None)
    overlaps = []
    for scene in evaluate.synthetic_scenes(6, seed=3):
        truth = scene.faces[0]
        small, large = capped(scene.gray), uncapped(scene.gray)
        if small and large:  # each one's box on the true face (not a false positive)
            pair = [
                max(boxes, key=lambda box: evaluate.iou(box, truth)) for boxes in (small, large)
            ]
            overlaps.append(evaluate.iou(*pair))
    assert overlaps and min(overlaps) > 0.7
