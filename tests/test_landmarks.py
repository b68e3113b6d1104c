"""Landmark readers (WFLW, 300-W .pts, CSV): crop policy, Pillow convention, bad input.

Fixtures are written in ``tmp_path`` in the published layouts: noise images with bright
3x3 dots drawn at the landmark pixels, so the crops can be checked against the keypoints.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fkdbench.data import landmarks
from fkdbench.data.landmarks import (
    ATTRIBUTE_NAMES,
    LandmarkError,
    crop_box,
    crop_image,
    read_landmark_csv,
    read_pts_folder,
    read_wflw,
    to_crop,
    to_original,
)
from fkdbench.data.schemes import SCHEMES, get_scheme

SIZE = 96
BACKGROUND_MAX = 40  # noise 0..40; dots 255

# 15 kaggle15 points in a 5x3 grid inside a 120x90 RGB image (crop enlarges ~1.3x) ...
POINTS_WIDE = np.array([(x, y) for y in (30, 42, 54) for x in (40, 52, 64, 76, 88)], float)
# ... and in a 3x5 grid in a 64x200 gray image (crop shrinks 0.4x and runs past the sides).
POINTS_TALL = np.array([(x, y) for y in (20, 60, 100, 140, 180) for x in (12, 32, 52)], float)


def _image(width: int, height: int, points: np.ndarray, rgb: bool, seed: int) -> Image.Image:
    """Noise with a bright 3x3 dot centred on each (integer) landmark inside the image."""
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if rgb else (height, width)
    pixels = rng.integers(0, BACKGROUND_MAX + 1, size=shape, dtype=np.uint8)
    for x, y in np.round(points[~np.isnan(points).any(axis=1)]).astype(int):
        if 0 <= x < width and 0 <= y < height:
            pixels[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 255
    return Image.fromarray(pixels)


def _assert_dots_at(image: np.ndarray, keypoints: np.ndarray, tolerance: float = 0.25) -> None:
    """The brightness centroid near each keypoint (crop pixels) sits on the keypoint."""
    weights = np.clip(image.astype(float) - BACKGROUND_MAX - 20, 0, None)
    for u, v in keypoints[~np.isnan(keypoints).any(axis=1)]:
        cu, cv = int(round(u)), int(round(v))
        rows, cols = slice(max(cv - 4, 0), cv + 5), slice(max(cu - 4, 0), cu + 5)
        window = weights[rows, cols]
        assert window.sum() > 0, f"no dot near ({u:.1f}, {v:.1f})"
        ys, xs = np.mgrid[rows, cols]
        centroid = np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()
        assert np.abs(centroid - (u, v)).max() < tolerance, (centroid, (u, v))


def _one_line_error(match: str, call) -> str:
    with pytest.raises(LandmarkError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(match, message), message
    return message


# -- geometry -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "crop", "tolerance"),
    [
        ((150, 200), (40.3, 30.7, 60.0, SIZE / 60.0), 1e-3),  # enlarge 1.6x
        ((300, 400), (50.3, 5.2, 288.0, SIZE / 288.0), 0.1),  # shrink 3x (anti-aliased)
    ],
)
def test_pillow_resize_convention_matches_to_original(shape, crop, tolerance) -> None:
    """On linear ramps (value = x, value = y) the crop's pixel (u, v) holds exactly the
    original coordinate ``to_original((u, v))``: Pillow's box is in corner coordinates,
    output pixel j samples ``box0 + (j + 0.5) * step``, so ``box0 = x0 + 0.5``."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    crop = np.array(crop)
    grid = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE)), axis=-1).reshape(-1, 2)
    expected = to_original(grid, crop).reshape(SIZE, SIZE, 2)
    for axis, ramp in enumerate((xs, ys)):
        out = np.asarray(crop_image(Image.fromarray(ramp, mode="F"), crop, SIZE))
        assert np.abs(out - expected[..., axis]).max() < tolerance


def test_to_crop_and_to_original_are_inverses() -> None:
    rng = np.random.default_rng(0)
    crops = np.column_stack(
        [rng.uniform(-50, 50, 5), rng.uniform(-50, 50, 5), sides := rng.uniform(20, 300, 5)]
    )
    crops = np.column_stack([crops, SIZE / sides])
    points = rng.uniform(-100, 400, size=(5, 7, 2))
    points[0, 3] = np.nan
    back = to_original(to_crop(points, crops), crops)
    np.testing.assert_allclose(back, points, atol=1e-9)
    assert np.isnan(back[0, 3]).all()
    single = to_crop(points[1], crops[1])
    np.testing.assert_allclose(single, to_crop(points, crops)[1])
    # The box's edges map to the crop's outer pixel edges.
    x0, y0, side, _ = crops[2]
    np.testing.assert_allclose(
        to_crop([[x0, y0], [x0 + side, y0 + side]], crops[2]), [[-0.5, -0.5], [95.5, 95.5]]
    )


def test_crop_policy_square_centred_on_present_landmarks() -> None:
    points = np.array([[10.0, 20.0], [50.0, 30.0], [30.0, 80.0], [np.nan, np.nan]])
    x0, y0, side, scale = crop_box(points, size=SIZE, margin=0.25)
    assert side == pytest.approx(60.0 * 1.5)  # max(40, 60) * (1 + 2 * 0.25)
    assert (x0 + side / 2, y0 + side / 2) == pytest.approx((30.0, 50.0))
    assert scale == pytest.approx(SIZE / side)
    assert crop_box(points, margin=0.0)[2] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="span no area"):
        crop_box(np.array([[5.0, 5.0], [np.nan, np.nan]]))
    with pytest.raises(ValueError, match="no landmark"):
        crop_box(np.full((3, 2), np.nan))


def test_crop_policy_face_box_grows_but_never_shifts() -> None:
    points = np.array([[20.0, 20.0], [40.0, 40.0], [95.0, 30.0]])  # one point strays right
    x0, y0, side, _ = crop_box(points, margin=0.25, face_box=(10, 10, 50, 50))
    assert (x0 + side / 2, y0 + side / 2) == pytest.approx((30.0, 30.0))  # face box centre
    assert side == pytest.approx(2 * 65.0)  # grown from 60 to reach x = 95
    inside = to_crop(points, np.array([x0, y0, side, SIZE / side]))
    assert inside.min() >= -0.5 - 1e-9 and inside.max() <= SIZE - 0.5 + 1e-9
    x0, y0, side, _ = crop_box(points[:2], margin=0.25, face_box=(10, 10, 50, 50))
    assert (x0, y0, side) == pytest.approx((0.0, 0.0, 60.0))


# -- CSV ----------------------------------------------------------------------------------
def _csv_line(name: str, points: np.ndarray) -> str:
    cells = ["" if np.isnan(v) else f"{v:g}" for v in points.reshape(-1)]
    return ",".join([name, *cells])


def _csv_fixture(tmp_path: Path, header: bool = True) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    _image(120, 90, POINTS_WIDE, rgb=True, seed=1).save(images / "wide.png")
    _image(64, 200, POINTS_TALL, rgb=False, seed=2).save(images / "tall.png")
    lines = [_csv_line("wide.png", POINTS_WIDE), _csv_line("tall.png", POINTS_TALL)]
    if header:
        columns = get_scheme("kaggle15").coordinate_columns()
        lines.insert(0, ",".join(["image", *columns]))
    (tmp_path / "landmarks.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "landmarks.csv"


def test_csv_round_trip_crops_and_dots(tmp_path: Path) -> None:
    path = _csv_fixture(tmp_path)
    result = read_landmark_csv(path, tmp_path / "images", scheme="kaggle15")
    assert result.images.shape == (2, SIZE, SIZE) and result.images.dtype == np.uint8
    assert result.keypoints.shape == (2, 15, 2) and result.keypoints.dtype == np.float32
    assert result.ids.dtype == np.int64 and result.ids.tolist() == [2, 3]  # header is line 1
    assert result.names == ["wide.png", "tall.png"]
    assert result.scheme == "kaggle15" and result.attributes is None
    assert result.crops.dtype == np.float64 and not result.skipped
    written = np.stack([POINTS_WIDE, POINTS_TALL])
    np.testing.assert_allclose(to_original(result.keypoints, result.crops), written, atol=1e-3)
    for i in range(2):
        np.testing.assert_allclose(result.crops[i], crop_box(written[i], SIZE, 0.25))
        _assert_dots_at(result.images[i], result.keypoints[i])
    # The tall image's box runs past its sides: zeros there, never a shifted box.
    x0 = result.crops[1, 0]
    assert x0 == pytest.approx(32 - 160 * 1.5 / 2)
    assert (result.images[1][:, :10] == 0).all() and (result.images[1][:, -10:] == 0).all()


def test_csv_without_header_and_with_missing_points(tmp_path: Path) -> None:
    partial = POINTS_WIDE.copy()
    partial[[0, 4, 14]] = np.nan  # corners of the grid: the box must shrink without them
    images = tmp_path / "images"
    images.mkdir()
    _image(120, 90, POINTS_WIDE, rgb=True, seed=3).save(images / "wide.png")
    path = tmp_path / "plain.csv"
    path.write_text(_csv_line("wide.png", partial) + "\n")
    result = read_landmark_csv(path, images, scheme="kaggle15")
    assert result.ids.tolist() == [1]
    assert np.isnan(result.keypoints[0, [0, 4, 14]]).all()
    np.testing.assert_allclose(result.crops[0], crop_box(partial, SIZE, 0.25))
    np.testing.assert_allclose(to_original(result.keypoints, result.crops)[0], partial, atol=1e-3)
    _assert_dots_at(result.images[0], result.keypoints[0])


def test_point_outside_the_original_image_is_reported_and_kept(tmp_path: Path) -> None:
    points = POINTS_WIDE.copy()
    points[7] = (-5.0, 95.0)  # left of and below the 120x90 image
    images = tmp_path / "images"
    images.mkdir()
    _image(120, 90, points, rgb=True, seed=4).save(images / "wide.png")
    path = tmp_path / "l.csv"
    path.write_text(_csv_line("wide.png", points) + "\n")
    result = read_landmark_csv(path, images, scheme="kaggle15")
    [report] = result.outside_image
    assert (report.file, report.line, report.points, report.count) == (str(path), 1, (7,), 1)
    kept = result.keypoints[0, 7]
    assert kept.min() >= -0.5 and kept.max() <= SIZE - 0.5
    np.testing.assert_allclose(to_original(result.keypoints, result.crops)[0, 7], (-5, 95), 1e-3)


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (28, r"has 14 points, scheme kaggle15 needs 15"),
        (29, r"has 29 coordinate values, an odd number .*"),
        ("abc", r"x3 is not a number: 'abc'"),
        ("missing.png", r"image missing.png not found .*"),
        ("broken.png", r"cannot open image broken.png: .*"),
    ],
)
def test_csv_bad_rows_name_file_and_line(tmp_path: Path, cells, reason) -> None:
    path = _csv_fixture(tmp_path)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png at all")
    lines = path.read_text().splitlines()
    row = lines[1].split(",")
    if isinstance(cells, int):
        row = row[: 1 + cells]
    elif cells == "abc":
        row[1 + 6] = "abc"
    else:
        row[0] = cells
    lines[1] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")
    _one_line_error(
        re.escape(f"{path}: line 2: ") + reason,
        lambda: read_landmark_csv(path, tmp_path / "images", scheme="kaggle15"),
    )
    result = read_landmark_csv(path, tmp_path / "images", scheme="kaggle15", skip_bad_rows=True)
    assert result.names == ["tall.png"] and result.ids.tolist() == [3]
    [bad] = result.skipped
    assert (bad.file, bad.line) == (str(path), 2) and re.fullmatch(reason, bad.reason)


def test_everything_skipped_is_an_error(tmp_path: Path) -> None:
    path = _csv_fixture(tmp_path)
    _one_line_error(
        re.escape(f"{path}: no usable landmark record (2 skipped)"),
        lambda: read_landmark_csv(path, tmp_path, scheme="kaggle15", skip_bad_rows=True),
    )


# -- 300-W .pts ---------------------------------------------------------------------------
def _pts_text(points: np.ndarray, declared: int | None = None) -> str:
    """A .pts file as 300-W writes it: 1-based coordinates."""
    count = len(points) if declared is None else declared
    rows = [f"{x + 1:.3f} {y + 1:.3f}" for x, y in points]
    return "\n".join(["version: 1", f"n_points:  {count}", "{", *rows, "}"]) + "\n"


def _pts_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "300w"
    (folder / "b" / "c").mkdir(parents=True)
    (folder / "a").mkdir()
    _image(64, 200, POINTS_TALL, rgb=False, seed=5).save(folder / "b" / "c" / "y.png")
    (folder / "b" / "c" / "y.pts").write_text(_pts_text(POINTS_TALL))
    _image(120, 90, POINTS_WIDE, rgb=True, seed=6).save(folder / "a" / "x.png")
    (folder / "a" / "x.pts").write_text(_pts_text(POINTS_WIDE))
    _image(30, 30, POINTS_WIDE[:0], rgb=False, seed=7).save(folder / "a" / "unlabelled.png")
    return folder


def test_pts_folder_is_one_based_recursive_and_sorted(tmp_path: Path) -> None:
    folder = _pts_fixture(tmp_path)
    result = read_pts_folder(folder, scheme="kaggle15")
    assert result.names == ["a/x.png", "b/c/y.png"] and result.ids.tolist() == [1, 2]
    written = np.stack([POINTS_WIDE, POINTS_TALL])  # 0-based; the files hold these + 1
    np.testing.assert_allclose(to_original(result.keypoints, result.crops), written, atol=1e-3)
    for i in range(2):
        _assert_dots_at(result.images[i], result.keypoints[i])
    np.testing.assert_allclose(landmarks.read_pts(folder / "a" / "x.pts", "kaggle15"), POINTS_WIDE)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (_pts_text(POINTS_WIDE[:14]), 2, "has 14 points, scheme kaggle15 needs 15"),
        (_pts_text(POINTS_WIDE).replace("53.000 43.000", "53.000 4x3"), 10, "y is not a number"),
        (_pts_text(POINTS_WIDE).replace("53.000 43.000", "53.000"), 10, "expected 'x y'"),
        (_pts_text(POINTS_WIDE[:14], declared=15), 18, "has 14 point lines, n_points says 15"),
        (_pts_text(POINTS_WIDE).replace("}", ""), 18, "no '}' closing the points"),
        (_pts_text(POINTS_WIDE).replace("n_points", "points"), 3, "no 'n_points:' header"),
    ],
)
def test_pts_bad_files_name_file_and_line(tmp_path: Path, text, line, reason) -> None:
    folder = _pts_fixture(tmp_path)
    pts = folder / "a" / "x.pts"
    pts.write_text(text)
    _one_line_error(
        re.escape(f"{pts}: line {line}: {reason}") + ".*",
        lambda: read_pts_folder(folder, scheme="kaggle15"),
    )
    result = read_pts_folder(folder, scheme="kaggle15", skip_bad_rows=True)
    assert result.names == ["b/c/y.png"]
    assert [(bad.file, bad.line) for bad in result.skipped] == [(str(pts), line)]


def test_pts_image_problems_name_the_file(tmp_path: Path) -> None:
    folder = _pts_fixture(tmp_path)
    (folder / "a" / "x.png").write_bytes(b"\x89PNG broken")
    image = folder / "a" / "x.png"
    _one_line_error(
        re.escape(f"{image}: cannot open image x.png: ") + ".*",
        lambda: read_pts_folder(folder, scheme="kaggle15"),
    )
    image.unlink()
    pts = folder / "a" / "x.pts"
    _one_line_error(
        re.escape(f"{pts}: no image beside it") + ".*",
        lambda: read_pts_folder(folder, scheme="kaggle15"),
    )
    result = read_pts_folder(folder, scheme="kaggle15", skip_bad_rows=True)
    assert result.names == ["b/c/y.png"] and result.skipped[0].line is None


# -- WFLW ---------------------------------------------------------------------------------
WFLW_NAMES = ("51--Dresses/51_Dresses_wearingdress_51_377.jpg", "7--Cheering/7_Cheering_9.png")


def _wflw_points(seed: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(0.3, 0.7, 98) * width, rng.uniform(0.3, 0.7, 98) * height]
    ).round(6)


def _wflw_line(points: np.ndarray, box, attributes, name: str) -> str:
    coordinates = [f"{v:.6f}" for v in points.reshape(-1)]
    return " ".join([*coordinates, *map(str, box), *map(str, attributes), name])


def _wflw_fixture(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray]]:
    images = tmp_path / "WFLW_images"
    points = [_wflw_points(1, 120, 90), _wflw_points(2, 64, 200)]
    for name, (width, height), rgb, pts in zip(
        WFLW_NAMES, ((120, 90), (64, 200)), (True, False), points, strict=True
    ):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        _image(width, height, pts, rgb=rgb, seed=8).save(images / name)
    lines = [
        _wflw_line(points[0], (40, 30, 80, 60), (1, 0, 0, 1, 0, 1), WFLW_NAMES[0]),
        _wflw_line(points[1], (20, 60, 44, 140), (0, 1, 1, 0, 1, 0), WFLW_NAMES[1]),
    ]
    annotation = tmp_path / "list_98pt_rect_attr_train.txt"
    annotation.write_text("\n".join(lines) + "\n")
    return annotation, images, points


def test_wflw_points_attributes_and_names(tmp_path: Path) -> None:
    annotation, images, points = _wflw_fixture(tmp_path)
    assert len(annotation.read_text().splitlines()[0].split()) == 207
    result = read_wflw(annotation, images)
    assert result.scheme == "wflw98" and result.keypoints.shape == (2, 98, 2)
    assert result.names == list(WFLW_NAMES) and result.ids.tolist() == [1, 2]
    assert result.attributes.dtype == bool and result.attributes.shape == (2, 6)
    assert len(ATTRIBUTE_NAMES) == 6
    assert result.attributes.astype(int).tolist() == [[1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 1, 0]]
    original = to_original(result.keypoints, result.crops)
    np.testing.assert_allclose(original, np.stack(points), atol=1e-3)


def test_wflw_face_box_crop(tmp_path: Path) -> None:
    annotation, images, points = _wflw_fixture(tmp_path)
    result = read_wflw(annotation, images, use_face_box=True, margin=0.1)
    for crop, box, pts in zip(
        result.crops, ((40, 30, 80, 60), (20, 60, 44, 140)), points, strict=True
    ):
        np.testing.assert_allclose(crop, crop_box(pts, SIZE, 0.1, face_box=box))
        x0, y0, side, _ = crop
        assert (x0 + side / 2, y0 + side / 2) == pytest.approx(
            ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        )
    assert result.keypoints.min() >= -0.5 and result.keypoints.max() <= SIZE - 0.5
    np.testing.assert_allclose(
        to_original(result.keypoints, result.crops), np.stack(points), atol=1e-3
    )


def _edit_wflw(line: str, case: str) -> str:
    fields = line.split()
    if case == "fields":
        return " ".join(fields[:-2] + fields[-1:])
    if case == "number":
        fields[5] = "12,5"
    elif case == "attribute":
        fields[-3] = "2"
    elif case == "missing":
        fields[-1] = "0--Parade/nope.jpg"
    elif case == "broken":
        fields[-1] = "broken.jpg"
    return " ".join(fields)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("fields", r"has 206 fields, a WFLW line needs 207 .*"),
        ("number", r"field 6 is not a number: '12,5'"),
        ("attribute", r"attribute occlusion must be 0 or 1, got '2'"),
        ("missing", r"image 0--Parade/nope.jpg not found .*"),
        ("broken", r"cannot open image broken.jpg: .*"),
    ],
)
def test_wflw_bad_lines_name_file_and_line(tmp_path: Path, case, reason) -> None:
    annotation, images, _ = _wflw_fixture(tmp_path)
    (images / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    lines = annotation.read_text().splitlines()
    lines[1] = _edit_wflw(lines[1], case)
    annotation.write_text("\n".join(lines) + "\n")
    _one_line_error(
        re.escape(f"{annotation}: line 2: ") + reason, lambda: read_wflw(annotation, images)
    )
    result = read_wflw(annotation, images, skip_bad_rows=True)
    assert result.ids.tolist() == [1] and result.attributes.shape == (1, 6)
    [bad] = result.skipped
    assert (bad.file, bad.line) == (str(annotation), 2) and re.fullmatch(reason, bad.reason)
    assert bad.message() == f"{annotation}: line 2: {bad.reason}"


# -- the 68- and 98-point schemes ----------------------------------------------------------


def test_the_readers_schemes_are_registered() -> None:
    assert {"ibug68", "wflw98"} <= set(SCHEMES)
    assert get_scheme("wflw98").num_keypoints == landmarks.WFLW_POINTS == 98
    assert get_scheme("ibug68").num_keypoints == 68


def test_ibug68_pts_folder_and_csv_scheme_mismatch(tmp_path: Path) -> None:
    points = np.column_stack([np.linspace(20, 100, 68), 20 + 40 * np.sin(np.arange(68))])
    folder = tmp_path / "helen"
    folder.mkdir()
    _image(120, 90, points, rgb=True, seed=9).save(folder / "100032540_1.jpg")
    (folder / "100032540_1.pts").write_text(_pts_text(points))
    result = read_pts_folder(folder)
    assert result.scheme == "ibug68" and result.keypoints.shape == (1, 68, 2)
    np.testing.assert_allclose(to_original(result.keypoints, result.crops)[0], points, atol=1e-3)

    csv_path = _csv_fixture(tmp_path)
    _one_line_error(
        re.escape(f"{csv_path}: line 2: has 15 points, scheme ibug68 needs 68"),
        lambda: read_landmark_csv(csv_path, tmp_path / "images", scheme="ibug68"),
    )
