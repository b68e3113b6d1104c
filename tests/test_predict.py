"""``fkdbench predict``: own images of any size, original-pixel coordinates, submissions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fkdbench.cli import app
from fkdbench.data import kaggle
from fkdbench.data.landmarks import to_original
from fkdbench.data.splits import load_split
from fkdbench.onnxrt import images_as_float
from fkdbench.predict import (
    PredictError,
    load_predictor,
    predict_images,
    whole_image_crop,
    write_submission,
)

RUN = "cnn-manual--none"
runner = CliRunner()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_whole_image_crop_and_mapping() -> None:
    np.testing.assert_allclose(whole_image_crop(120, 90, 96), [-0.5, -15.5, 120, 0.8])
    # A 192-pixel square resized to 96: model pixel c covers original 2c-0.5 .. 2c+1.5.
    points = np.array([[0.0, 0.0], [47.5, 95.0]])
    crop = whole_image_crop(192, 192, 96)
    np.testing.assert_allclose(to_original(points, crop), [[0.5, 0.5], [95.5, 190.5]])


def test_predictions_follow_the_image_when_it_is_scaled(
    exported_run: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    test = load_split(tiny_dataset, "test")
    predictor = load_predictor(exported_run, threads=1)
    assert predictor.kind == "onnx" and predictor.input_size == 96
    expected = predictor(images_as_float(test.images[:3]))

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, image in enumerate(test.images[:3]):
        # The same face at 96 px (gray) and at 192 px (RGB, upscaled).
        Image.fromarray(image).save(inputs / f"face{index}.png")
        Image.fromarray(image).convert("RGB").resize((192, 192), Image.Resampling.BICUBIC).save(
            inputs / f"face{index}-big.jpg", quality=98
        )
    # The images are face crops already: no detector (faces found: tests/test_predict_faces.py).
    result = predict_images(
        exported_run, [inputs], tmp_path / "out", threads=1, quiet=True, detector="none"
    )

    assert result.images == 6 and len(result.overlays) == 6
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in result.overlays)
    rows = {Path(row["image"]).name: row for row in _read_csv(result.keypoints_csv)}
    names = predictor.keypoint_names
    for index in range(3):
        small = np.array(
            [[float(rows[f"face{index}.png"][f"{n}_{a}"]) for a in "xy"] for n in names]
        )
        big = np.array(
            [[float(rows[f"face{index}-big.jpg"][f"{n}_{a}"]) for a in "xy"] for n in names]
        )
        assert rows[f"face{index}-big.jpg"]["x_max"] == "191.500"  # the whole image
        np.testing.assert_allclose(small, expected[index], atol=1e-3)
        # Twice the image, twice the coordinates (within resampling noise).
        np.testing.assert_allclose(big, (expected[index] + 0.5) * 2 - 0.5, atol=1.5)


def test_non_square_images_and_checkpoints(exported_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "wide.png"
    Image.fromarray(np.full((60, 150, 3), 128, dtype=np.uint8)).save(image)
    onnx = predict_images(
        exported_run, [image], tmp_path / "a", overlays=False, quiet=True, detector="none"
    )
    checkpoint = predict_images(
        exported_run / "model.pt", [image], tmp_path / "b", overlays=False, quiet=True,
        detector="none",
    )  # fmt: skip
    first, second = _read_csv(onnx.keypoints_csv)[0], _read_csv(checkpoint.keypoints_csv)[0]
    values = [float(value) for key, value in first.items() if key.endswith(("_x", "_y"))]
    again = [float(value) for key, value in second.items() if key.endswith(("_x", "_y"))]
    np.testing.assert_allclose(values, again, atol=1e-2)
    # The 150x60 image is padded to 150x150 around its middle: y spans -45 .. 104.
    ys = np.array(values[1::2])
    assert np.all((ys > -45.5) & (ys < 104.5))


def test_bad_images_are_named_or_skipped(exported_run: Path, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.jpg"
    Image.fromarray(np.zeros((96, 96), dtype=np.uint8)).save(good)
    bad.write_bytes(b"not an image")
    with pytest.raises(PredictError, match=r"bad\.jpg: not a readable image"):
        predict_images(exported_run, [good, bad], tmp_path / "out", quiet=True)
    assert not (tmp_path / "out" / "keypoints.csv").exists()
    result = predict_images(
        exported_run, [good, bad], tmp_path / "out", skip_bad_images=True, quiet=True
    )
    assert result.images == 1 and "bad.jpg" in result.skipped[0]
    with pytest.raises(PredictError, match="no such model"):
        load_predictor(tmp_path / "missing.onnx")


def test_kaggle_submission(exported_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    images = load_split(tiny_dataset, "test").images[:4]
    folder = tmp_path / "kaggle"
    folder.mkdir()
    kaggle.write_test_csv(folder / kaggle.TEST_NAME, images)
    requested = kaggle.kaggle_lookup_request(len(images), seed=0)
    kaggle.write_lookup_csv(folder / kaggle.LOOKUP_NAME, requested)

    result = runner.invoke(
        app,
        ["predict", str(exported_run), "--submission", str(folder), "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "submission.csv")
    assert len(rows) == 2 * int(requested.sum())
    assert [int(row["RowId"]) for row in rows] == list(range(1, len(rows) + 1))
    assert all(0.0 <= float(row["Location"]) <= 96.0 for row in rows)
    # The first requested value is the model's own prediction for image 1.
    expected = load_predictor(exported_run)(images_as_float(images[:1]))[0]
    first = int(np.flatnonzero(requested[0])[0])
    assert float(rows[0]["Location"]) == pytest.approx(np.clip(expected[first, 0], 0, 96), abs=1e-3)
    (folder / kaggle.LOOKUP_NAME).unlink()
    with pytest.raises(PredictError, match="no IdLookupTable.csv"):
        write_submission(exported_run, folder, tmp_path / "s.csv")
