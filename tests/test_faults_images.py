"""Faults of ``fkdbench predict`` (issue 14, items 4, 6, 7 and 9): image modes read as they
look, one-line errors instead of tracebacks, nothing written by a failed call, and no
keypoint silently outside its image."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fkdbench import predict
from fkdbench.cli import app
from fkdbench.data.splits import load_split
from fkdbench.onnxrt import images_as_float
from fkdbench.predict import PredictError, min_image_side, predict_images

RUN = "cnn-manual--none"
Model = Callable[[np.ndarray], np.ndarray]
runner = CliRunner()


@pytest.fixture(scope="module")
def face(tiny_dataset: Path) -> np.ndarray:
    """One 96x96 uint8 test face, with a bright band so that clipping 16-bit to white or
    dropping alpha changes what the model sees."""
    return load_split(tiny_dataset, "test").images[0].copy()


def _centroids(images: np.ndarray) -> np.ndarray:
    """A stand-in model that looks at every pixel (the tiny trained one answers nearly its
    mean shape whatever it is shown): brightness centroids of the whole image, of its top
    half and of its left half, and the darkness centroid; (N, 4, 2) model pixels."""
    gray = images[:, 0].astype(np.float64)
    size = gray.shape[-1]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)

    def centroid(weights: np.ndarray) -> np.ndarray:
        total = weights.sum(axis=(1, 2)) + 1e-9
        return np.stack([(weights * xs).sum((1, 2)) / total, (weights * ys).sum((1, 2)) / total], 1)

    top, left = gray * (ys < size / 2), gray * (xs < size / 2)
    return np.stack([centroid(gray), centroid(top), centroid(left), centroid(1 - gray)], axis=1)


@pytest.fixture
def seeing_model(
    exported_run: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[np.ndarray], np.ndarray]:
    """Make ``predict`` use :func:`_centroids`; returns it on uint8 (96, 96) gray arrays."""
    names = tuple(f"point_{index}" for index in range(4))
    fake = predict.KeypointPredictor(exported_run, "onnx", 96, 1, names, _centroids)
    monkeypatch.setattr(predict, "load_predictor", lambda *_args, **_kw: fake)
    return lambda gray: _centroids(images_as_float(gray[None]))[0]


def _predict_crop_cli(model: Path, image: Path, out: Path):
    """``fkdbench predict`` on a face crop (the whole image is the face)."""
    return runner.invoke(
        app, ["predict", str(model), str(image), "--out", str(out), "--detector", "none"]
    )


def _points(folder: Path, image: Path, out: Path) -> np.ndarray:
    result = predict_images(folder, [image], out, overlays=False, quiet=True, detector="none")
    with open(result.keypoints_csv, newline="") as handle:
        row = next(csv.DictReader(handle))
    values = [float(value) for key, value in row.items() if key.endswith(("_x", "_y"))]
    return np.array(values).reshape(-1, 2)


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.max(np.abs(a - b))) > 0.5


# -- item 4: image modes -----------------------------------------------------------------------


def test_16_bit_gray_gives_the_keypoints_of_the_8_bit_image(
    exported_run: Path, face: np.ndarray, tmp_path: Path, seeing_model: Model
) -> None:
    eight, sixteen = tmp_path / "face8.png", tmp_path / "face16.png"
    Image.fromarray(face, mode="L").save(eight)
    Image.fromarray(face.astype(np.uint16) * 257).save(sixteen)  # full 16-bit scale
    assert Image.open(sixteen).mode.startswith("I")
    expected = _points(exported_run, eight, tmp_path / "a")
    np.testing.assert_allclose(expected, seeing_model(face), atol=1e-3)
    np.testing.assert_allclose(_points(exported_run, sixteen, tmp_path / "b"), expected, atol=1e-3)
    # What the old code saw (every non-black pixel white) gives other keypoints.
    assert _differs(seeing_model(np.where(face > 0, 255, 0).astype(np.uint8)), expected)


def test_palette_and_cmyk_give_the_keypoints_of_the_gray_image(
    exported_run: Path, face: np.ndarray, tmp_path: Path, seeing_model: Model
) -> None:
    expected = seeing_model(face)
    palette, cmyk = tmp_path / "face-p.png", tmp_path / "face-cmyk.tif"
    Image.fromarray(face, mode="L").convert("P").save(palette)
    Image.fromarray(face, mode="L").convert("CMYK").save(cmyk)
    assert Image.open(palette).mode == "P" and Image.open(cmyk).mode == "CMYK"
    np.testing.assert_allclose(_points(exported_run, palette, tmp_path / "a"), expected, atol=1e-3)
    np.testing.assert_allclose(_points(exported_run, cmyk, tmp_path / "b"), expected, atol=2e-2)


def _half_transparent(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gray values white on the left half with alpha 0 there, as (H, W, 2)); what that
    means composited on black."""
    values = face.copy()
    values[:, :48] = 255
    alpha = np.full_like(face, 255)
    alpha[:, :48] = 0
    on_black = face.copy()
    on_black[:, :48] = 0
    return np.dstack([values, alpha]), on_black


@pytest.mark.parametrize("mode", ["LA", "RGBA", "P"])
def test_transparency_is_composited_on_black(
    exported_run: Path, face: np.ndarray, tmp_path: Path, seeing_model: Model, mode: str
) -> None:
    la, on_black = _half_transparent(face)
    path = tmp_path / f"face-{mode}.png"
    if mode == "LA":
        Image.fromarray(la, mode="LA").save(path)
    elif mode == "RGBA":
        rgba = np.dstack([la[..., 0]] * 3 + [la[..., 1]])
        Image.fromarray(rgba, mode="RGBA").save(path)
    else:
        # A gray palette whose entry 255 (white) is the transparent one.
        opaque = np.minimum(face, 254)
        gray = np.where(la[..., 1] == 0, 255, opaque).astype(np.uint8)
        Image.fromarray(gray, mode="L").convert("P").save(path, transparency=255)
        on_black = np.where(la[..., 1] == 0, 0, opaque).astype(np.uint8)
    assert Image.open(path).mode == mode
    expected = seeing_model(on_black)
    np.testing.assert_allclose(_points(exported_run, path, tmp_path / "out"), expected, atol=1e-3)
    # Ignoring alpha (the old reading: white on the left) gives other keypoints.
    assert _differs(seeing_model(la[..., 0]), expected)


def test_exif_orientation_is_applied(
    exported_run: Path, face: np.ndarray, tmp_path: Path, seeing_model: Model
) -> None:
    upright = seeing_model(face)
    stored = Image.fromarray(face, mode="L").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: "rotate 90 clockwise to display", undoing ROTATE_90
    path = tmp_path / "rotated.png"
    stored.save(path, exif=exif)
    np.testing.assert_allclose(_points(exported_run, path, tmp_path / "out"), upright, atol=1e-3)
    # The stored pixels, read as they lie, give the keypoints of a rotated face.
    assert _differs(seeing_model(np.asarray(stored)), upright)


# -- item 6: one line, not a traceback ------------------------------------------------------


def _one_line_error(result, *words: str) -> None:  # noqa: ANN001 - click's Result
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "error" in result.output
    for word in words:
        assert word in result.output, result.output


def test_config_without_model_is_one_line(
    exported_run: Path, face: np.ndarray, tmp_path: Path
) -> None:
    folder = tmp_path / RUN
    shutil.copytree(exported_run, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["model"]
    (folder / "config.json").write_text(json.dumps(config))
    image = tmp_path / "face.png"
    Image.fromarray(face).save(image)
    _one_line_error(_predict_crop_cli(folder, image, tmp_path / "o"), "config.json", "'model'")


def test_decompression_bomb_is_one_line(
    exported_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real 14000x14000 PNG takes 200 MB to make; the limit is what decides, so lower it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    image = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((100, 100), dtype=np.uint8)).save(image)
    result = _predict_crop_cli(exported_run, image, tmp_path / "o")
    _one_line_error(result, "bomb.png", "decompression-bomb")
    assert not (tmp_path / "o").exists()


# -- item 7: a failed call writes nothing ---------------------------------------------------


def test_a_failed_predict_writes_nothing(
    exported_run: Path, face: np.ndarray, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(face).save(inputs / name)
    (inputs / "c.png").write_bytes(b"not an image")
    out = tmp_path / "fresh"
    with pytest.raises(PredictError, match=r"c\.png: not a readable image"):
        predict_images(exported_run, [inputs], out, quiet=True, detector="none")
    assert not out.exists()

    # Over the outputs of an earlier call: they stay byte for byte.
    out = tmp_path / "earlier"
    predict_images(exported_run, [inputs / "a.png"], out, quiet=True, detector="none")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert len(before) == 2
    with pytest.raises(PredictError):
        predict_images(exported_run, [inputs], out, quiet=True, detector="none")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


# -- item 9: too small, and keypoints outside the image -------------------------------------


def test_a_too_small_image_is_one_line(exported_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(image)
    assert min_image_side(96) == 32
    with pytest.raises(PredictError, match=r"dot\.png: 1x1 pixels is too small.*at least 32"):
        predict_images(exported_run, [image], tmp_path / "o", quiet=True, detector="none")
    result = _predict_crop_cli(exported_run, image, tmp_path / "o")
    _one_line_error(result, "dot.png", "too small")


def test_keypoints_outside_the_image_are_clipped_and_warned(
    exported_run: Path, face: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strip = np.zeros((3000, 50), dtype=np.uint8)
    strip[1476:1524] = face[24:72, 23:73]  # a slice of a face in the middle of a tall strip
    image = tmp_path / "strip.png"
    Image.fromarray(strip).save(image)
    result = predict_images(exported_run, [image], tmp_path / "o", quiet=True, detector="none")
    points = _points(exported_run, image, tmp_path / "p")
    assert np.all(points[:, 0] >= -0.5) and np.all(points[:, 0] <= 49.5)
    assert np.all(points[:, 1] >= -0.5) and np.all(points[:, 1] <= 2999.5)
    with open(result.keypoints_csv, newline="") as handle:
        clipped = int(next(csv.DictReader(handle))["clipped"])
    assert clipped > 0
    assert len(result.warnings) == 1 and f"{clipped} of 15 keypoints" in result.warnings[0]
    assert "strip.png" in capsys.readouterr().err
