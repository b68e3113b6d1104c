"""``fkdbench predict`` on photos with several faces: each found, cropped by the crop
policy and mapped back into the photo's pixels (fkdbench.predict, fkdbench.faces)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fkdbench import predict
from fkdbench.cli import app
from fkdbench.data.schemes import SCHEMES
from fkdbench.data.synthetic import _draw_face, render_face
from fkdbench.data.synthetic_geometry import PoseRanges
from fkdbench.faces import evaluate
from fkdbench.faces.crop import crop_from_box, crop_image, reference_shape, to_crop
from fkdbench.faces.detect import DEFAULT_DETECTOR, open_detector
from fkdbench.onnxrt import images_as_float
from fkdbench.predict import KeypointPredictor, predict_images

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-faces-photos"
runner = CliRunner()
# Faces 0-2 of seed 7, 200 px, 68-point layout, at these top-left corners: the default
# detector (haar) found each of them alone at (220, 140) on this background, and all
# three here, without a false positive (fkdbench.faces.evaluate; checked below).
PLACES = [(10, 20), (220, 270), (430, 30)]


def _scene() -> tuple[np.ndarray, list[np.ndarray]]:
    faces = [render_face(7, index, 200, scheme="ibug68") for index in range(3)]
    background = evaluate.textured_background(np.random.default_rng(5))
    return evaluate.paste_faces(background, faces, PLACES)


def _kaggle_points() -> list[np.ndarray]:
    """The same three faces' 15 Kaggle points, in the scene's pixels."""
    drawn = [_draw_face(7, index, 200, PoseRanges(), "ibug68")[1] for index in range(3)]
    return [points + place for points, place in zip(drawn, PLACES, strict=True)]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _points(row: dict[str, str], names: tuple[str, ...]) -> np.ndarray:
    return np.array([[float(row[f"{name}_{axis}"]) for axis in "xy"] for name in names])


def _truth_model(gray: np.ndarray, truths: list[np.ndarray], tmp: Path) -> KeypointPredictor:
    """A stand-in model that answers the true keypoints of the crop it is shown: it knows
    the crop of every face the default detector finds, and recognises it by its pixels."""
    image = Image.fromarray(gray)
    known = []
    for box in open_detector(DEFAULT_DETECTOR)(gray):
        crop = crop_from_box(box, DEFAULT_DETECTOR, 96)
        pixels = images_as_float(np.asarray(crop_image(image, crop, 96), np.uint8)[None])[0]
        truth = max(truths, key=lambda t: evaluate.iou(evaluate.points_box(t), box))
        known.append((pixels, to_crop(truth, crop)))

    def run(images: np.ndarray) -> np.ndarray:
        answers = []
        for shown in images:
            matches = [points for pixels, points in known if np.array_equal(pixels, shown)]
            assert len(matches) == 1, "predict cut a crop the detector's box does not give"
            answers.append(matches[0])
        return np.stack(answers)

    names = SCHEMES["ibug68"].keypoints
    return KeypointPredictor(tmp / "fake.onnx", "onnx", 96, 1, names, run)


def test_every_face_is_found_and_mapped_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gray, truths = _scene()
    photo = tmp_path / "three.png"
    Image.fromarray(gray).save(photo)
    fake = _truth_model(gray, truths, tmp_path)
    monkeypatch.setattr(predict, "load_predictor", lambda *_args, **_kw: fake)
    result = predict_images(tmp_path / "fake.onnx", [photo], tmp_path / "out", quiet=True)

    rows = _read_csv(result.keypoints_csv)
    assert result.faces == 3 and len(rows) == 3 and result.no_face == []
    assert [row["face"] for row in rows] == ["0", "1", "2"]
    assert len(result.overlays) == 3 and all(p.name.endswith(".png") for p in result.overlays)
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    found = set()
    kaggle = _kaggle_points()
    for row in rows:
        points = _points(row, fake.keypoint_names)
        which = int(np.argmin([np.abs(points - truth).max() for truth in truths]))
        found.add(which)
        # Back in the photo's pixels, to the CSV's three decimals.
        np.testing.assert_allclose(points, truths[which], atol=2e-3)
        box = evaluate.FaceBox(*(float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")), 0)
        assert evaluate.iou(box, evaluate.points_box(truths[which])) >= evaluate.IOU_FOUND
        # Framed like the training crops: the face's 15 Kaggle points lie near the mean
        # shape (the synthetic faces' own scatter about it is 3-6 px RMS).
        inside = to_crop(kaggle[which], crop_from_box(box, DEFAULT_DETECTOR, 96))
        error = np.sqrt(np.mean(np.sum((inside - reference_shape("kaggle15")) ** 2, axis=1)))
        assert error < 8.0, error
    assert found == {0, 1, 2}


def test_an_image_without_a_face_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gray, truths = _scene()
    Image.fromarray(gray).save(tmp_path / "faces.png")
    empty = evaluate.textured_background(np.random.default_rng(5))
    Image.fromarray(empty).save(tmp_path / "empty.png")
    fake = _truth_model(gray, truths, tmp_path)
    monkeypatch.setattr(predict, "load_predictor", lambda *_args, **_kw: fake)
    result = predict_images(tmp_path / "fake.onnx", [tmp_path], tmp_path / "out", quiet=True)
    assert result.images == 2 and result.faces == 3
    assert (
        len(result.no_face) == 1
        and "empty.png: no face found (detector haar)" in (result.no_face[0])
    )
    assert {Path(row["image"]).name for row in _read_csv(result.keypoints_csv)} == {"faces.png"}


def test_detector_none_takes_the_whole_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[np.ndarray] = []

    def run(images: np.ndarray) -> np.ndarray:
        seen.append(images)
        return np.full((len(images), 15, 2), 47.5)  # the crop's centre

    fake = KeypointPredictor(tmp_path / "m.onnx", "onnx", 96, 1, SCHEMES["kaggle15"].keypoints, run)
    monkeypatch.setattr(predict, "load_predictor", lambda *_args, **_kw: fake)
    Image.fromarray(np.full((60, 150), 90, dtype=np.uint8)).save(tmp_path / "wide.png")
    result = predict_images(
        tmp_path / "m.onnx", [tmp_path / "wide.png"], tmp_path / "out", quiet=True, detector="none"
    )
    (row,) = _read_csv(result.keypoints_csv)
    assert list(row)[:7] == ["image", "face", "x_min", "y_min", "x_max", "y_max", "score"]
    assert (row["face"], row["score"], row["clipped"]) == ("0", "", "0")
    box = [float(row[key]) for key in ("x_min", "y_min", "x_max", "y_max")]
    assert box == [-0.5, -0.5, 149.5, 59.5]
    assert (float(row["nose_tip_x"]), float(row["nose_tip_y"])) == (74.5, 29.5)
    assert len(seen) == 1 and seen[0].shape == (1, 1, 96, 96)


def test_an_unknown_or_missing_detector_is_one_line(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(image)
    result = runner.invoke(
        app, ["predict", str(tmp_path / "m.onnx"), str(image), "--detector", "x"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(ValueError, match="unknown detector 'x'"):
        predict_images(tmp_path / "m.onnx", [image], tmp_path / "out", detector="x")


@pytest.mark.realdata
@pytest.mark.skipif(
    not PHOTOS.is_dir(), reason="the shared real photos are not beside this checkout"
)
def test_real_photos_end_to_end(exported_run: Path, tmp_path: Path) -> None:
    scenes = evaluate.photo_scenes(PHOTOS)[:8]
    detect = open_detector(DEFAULT_DETECTOR)
    expected = sum(len(detect(scene.gray)) for scene in scenes)
    paths = [PHOTOS / "images" / scene.name for scene in scenes]
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(exported_run), *map(str, paths), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _read_csv(out / "keypoints.csv")
    assert len(rows) == expected >= 7
    assert len(list((out / "overlays").iterdir())) == expected
    for row in rows:
        scene = scenes[[str(p) for p in paths].index(row["image"])]
        box = evaluate.FaceBox(*(float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")), 0)
        if row["face"] == "0":
            assert evaluate.iou(box, scene.faces[0]) >= evaluate.IOU_FOUND


def test_videos_and_the_camera_go_to_predict_video(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fkdbench.faces import video

    calls: list[tuple[object, dict]] = []
    monkeypatch.setattr(predict, "load_predictor", lambda *_args, **_kw: "model")
    monkeypatch.setattr(
        video, "predict_video", lambda model, source, out, **kw: calls.append((source, kw))
    )
    clip = tmp_path / "clip.mp4"
    predict.predict(tmp_path / "m.onnx", [clip], tmp_path / "out", detector="none")
    predict.predict(tmp_path / "m.onnx", [], tmp_path / "out", camera=0, redetect_every=3)
    assert calls[0][0] == clip and calls[0][1]["out_video"] == tmp_path / "out" / "overlay.mp4"
    assert calls[0][1]["redetect_every"] == video.REDETECT_EVERY
    assert calls[1] == (
        0,
        {"detector": DEFAULT_DETECTOR, "redetect_every": 3, "out_video": None, "quiet": False,
         "keypoints_file": video.KEYPOINTS_FILE},
    )  # fmt: skip
    # Without overlays no overlay video is written unless one is named.
    predict.predict(tmp_path / "m.onnx", [clip], tmp_path / "out", overlays=False)
    assert calls[2][1]["out_video"] is None
    with pytest.raises(predict.PredictError, match="a video or --camera is predicted alone"):
        predict.predict(tmp_path / "m.onnx", [clip, tmp_path / "a.png"], tmp_path / "out")
