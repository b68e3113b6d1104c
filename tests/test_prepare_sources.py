"""``prepare`` from WFLW, 300-W and landmark-CSV sources, synthetic dense schemes, and the
landmark readers under fuzzed input."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis_profiles import FUZZ
from PIL import Image
from typer.testing import CliRunner

from fkdbench.cli import app
from fkdbench.data.landmarks import read_landmark_csv, read_pts, read_pts_folder, read_wflw
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import DataError, load_split

runner = CliRunner()
FACES = 14


def _faces(folder: Path, count: int, points: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``count`` images of 80-140 px with ``points`` random landmarks well inside them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        width, height = (int(value) for value in rng.integers(80, 140, size=2))
        pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        name = f"face_{index:02d}.png"
        Image.fromarray(pixels).save(folder / name)
        landmarks = np.column_stack(
            [rng.uniform(20, width - 20, points), rng.uniform(20, height - 20, points)]
        )
        made.append((name, landmarks))
    return made


def _prepare(tmp_path: Path, *options: str):
    return runner.invoke(
        app, ["prepare", "--data-root", str(tmp_path / "data"), "--quiet", *options]
    )


def test_landmark_csv_source(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "images", FACES, 15)
    rows = [",".join([name, *(f"{v:.2f}" for v in points.reshape(-1))]) for name, points in faces]
    (tmp_path / "landmarks.csv").write_text("\n".join(rows) + "\n")
    result = _prepare(
        tmp_path,
        "--source", "csv",
        "--path", str(tmp_path / "landmarks.csv"),
        "--images", str(tmp_path / "images"),
        "--scheme", "kaggle15",
        "--name", "mine",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "data/mine/manifest.json").read_text())
    assert manifest["source"] == "csv" and manifest["scheme"] == "kaggle15"
    assert manifest["counts"]["labelled_rows"] == FACES
    assert "landmarks" in manifest["crop"]["policy"]
    train = load_split(tmp_path / "data/mine", "train")
    assert train.images.shape[1:] == (96, 96) and train.keypoints.shape[1:] == (15, 2)


def test_pts_folder_source(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "300w", FACES, 68)
    for name, points in faces:
        lines = ["version: 1", "n_points:  68", "{"]
        lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in points]  # .pts files are 1-based
        (tmp_path / "300w" / name).with_suffix(".pts").write_text("\n".join([*lines, "}"]))
    result = _prepare(tmp_path, "--source", "300w", "--path", str(tmp_path / "300w"))
    assert result.exit_code == 0, result.output
    test = load_split(tmp_path / "data/300w", "test")
    assert test.keypoints.shape[1:] == (68, 2)
    manifest = json.loads((tmp_path / "data/300w/manifest.json").read_text())
    assert manifest["scheme"] == "ibug68" and len(manifest["checksums"]["raw"]) == FACES


def test_wflw_source_keeps_attributes(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "WFLW_images" / "1--Handshaking", FACES, 98)
    lines = []
    for index, (name, points) in enumerate(faces):
        low, high = points.min(axis=0), points.max(axis=0)
        box = [int(low[0]), int(low[1]), int(high[0]), int(high[1])]
        flags = [(index >> bit) & 1 for bit in range(6)]
        fields = [f"{v:.3f}" for v in points.reshape(-1)] + [str(v) for v in box + flags]
        lines.append(" ".join([*fields, f"1--Handshaking/{name}"]))
    annotations = tmp_path / "list_98pt_rect_attr_train.txt"
    annotations.write_text("\n".join(lines) + "\n")
    result = _prepare(
        tmp_path,
        "--source", "wflw",
        "--path", str(annotations),
        "--images", str(tmp_path / "WFLW_images"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    splits = [load_split(tmp_path / "data/wflw", split) for split in ("train", "val", "test")]
    assert all(split.attributes is not None for split in splits)
    assert sum(len(split) for split in splits) == FACES
    assert all(split.attributes.shape[1] == 6 for split in splits)


def test_source_errors_are_one_line(tmp_path: Path) -> None:
    wrong = _prepare(tmp_path, "--source", "300w", "--path", str(tmp_path), "--scheme", "wflw98")
    assert wrong.exit_code == 1 and "labelled in ibug68, not wflw98" in wrong.output
    missing = _prepare(tmp_path, "--source", "csv", "--path", str(tmp_path / "x.csv"))
    assert missing.exit_code == 1 and "no such file or folder" in missing.output
    (tmp_path / "bad.csv").write_text("a.png,1,2,3\n")
    bad = _prepare(
        tmp_path, "--source", "csv", "--path", str(tmp_path / "bad.csv"),
        "--images", str(tmp_path), "--scheme", "ibug68",
    )  # fmt: skip
    assert bad.exit_code == 1 and "bad.csv: line 1:" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    # An unknown scheme: a usage error at the command line (its choices come from the
    # registry), a one-line ValueError from the library.
    unknown = _prepare(tmp_path, "--scheme", "nope")
    assert unknown.exit_code == 2 and "nope" in unknown.output and "kaggle15" in unknown.output
    with pytest.raises(ValueError, match="unknown keypoint scheme 'nope'"):
        prepare(PrepareOptions(scheme="nope", data_root=tmp_path))


@pytest.mark.parametrize("scheme", ["ibug68", "wflw98"])
def test_synthetic_dense_schemes(tmp_path: Path, scheme: str) -> None:
    result = _prepare(
        tmp_path, "--scheme", scheme, "--n-train", "40", "--n-test", "0",
        "--name", scheme, "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    train = load_split(tmp_path / "data" / scheme, "train")
    assert train.keypoints.shape[1] == get_scheme(scheme).num_keypoints
    assert not np.isnan(train.keypoints).any()  # dense schemes label every point


# -- fuzzing the landmark readers: a valid set or one DataError line naming the file ------
# Finite, so a reader must take them: far off the image, huge, subnormal.
_FAR = st.one_of(
    st.sampled_from(["1e308", "-1e308", "5e-324", "1e6", "-3e4", "2e9", "47.0000001"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
SPOTS = [("10", "10"), ("10", "10.0000001"), ("10", "10.01"), ("0", "5e-324")]
_JUNK = st.one_of(
    st.sampled_from(["", "nan", "-inf", "1_0", "0x10", "\u0661", "1e999", "--1"]),
    st.text(max_size=6),
)


def _usual(draw, usual, *others):
    """``usual`` seven times out of eight, else one of ``others``."""
    return draw(st.sampled_from(others)) if draw(st.integers(0, 7)) == 0 else usual


@st.composite
def _numbers(draw, count: int) -> list[str]:
    """``count`` coordinate texts: mostly all on the image, else a few far off it, all
    at one spot, or one junk."""
    # The on-image values from one drawn seed: 200 separate draws (a WFLW line) made
    # Hypothesis' bookkeeping, not the reader, the cost of the fuzzing; the cases that
    # matter (far, one spot, junk) are still drawn, and shrink, one by one.
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).uniform(0, 47, count)  # on the 48x40 image
    cells = [f"{value:.2f}" for value in values]
    kind = draw(st.sampled_from(["inside"] * 4 + ["far"] * 2 + ["spot", "junk"]))
    if kind == "far":
        for _ in range(draw(st.integers(1, 3))):
            cells[draw(st.integers(0, count - 1))] = draw(_FAR)
    elif kind == "spot":  # every point at one spot, or within a hair of it
        spot, first = draw(st.sampled_from(SPOTS))
        cells = [first] + [spot] * (count - 1)
    elif kind == "junk":
        cells[draw(st.integers(0, count - 1))] = draw(_JUNK)
    return cells


def _image_bytes() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = _image_bytes()
_DAMAGED_IMAGES = st.one_of(
    st.binary(max_size=40),
    st.integers(0, len(IMAGE) - 1).map(lambda cut: IMAGE[:cut]),  # truncated
    st.tuples(st.integers(0, len(IMAGE) - 1), st.integers(0, 255)).map(  # one byte damaged
        lambda damage: IMAGE[: damage[0]] + bytes([damage[1]]) + IMAGE[damage[0] + 1 :]
    ),
)
# Seven times out of eight the image that the records name, else a damaged one or a name
# that is not there.
_IMAGES = st.integers(0, 7).flatmap(lambda n: _DAMAGED_IMAGES if n == 0 else st.just(IMAGE))
_NAMES = st.integers(0, 7).flatmap(lambda n: st.text(max_size=6) if n == 0 else st.just("a.png"))


def _encoded(draw, text: str) -> bytes:
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=200))
    encoding = _usual(draw, "utf-8", "utf-8-sig", "utf-16", "latin-1")
    return text.encode(encoding, "replace")


def _read_or_one_line_error(read, where: Path):
    """``read()``'s result, or None after checking its error is one DataError line
    naming ``where``; any other exception fails the test."""
    try:
        return read()
    except DataError as error:
        message = str(error)
        assert str(where) in message and "\n" not in message, message
        return None


def _check_set(faces, size: int, points: int) -> None:
    assert faces.images.dtype == np.uint8 and faces.images.shape[1:] == (size, size)
    assert faces.keypoints.shape == (len(faces.images), points, 2)
    present = faces.keypoints[~np.isnan(faces.keypoints)]
    assert ((present >= -0.5 - 1e-3) & (present <= size - 0.5 + 1e-3)).all()


@st.composite
def _landmark_csv(draw) -> bytes:
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(_NAMES)
        cells = draw(_numbers(_usual(draw, 30, 29, 31)))
        rows.append([name, *cells])
    if draw(st.booleans()):
        rows.insert(0, ["image", *(f"p{i}" for i in range(30))])
    out = io.StringIO()
    csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"]))).writerows(rows)
    return _encoded(draw, out.getvalue())


def _csv_row(*cells: str) -> bytes:
    return ",".join(["a.png", *cells]).encode() + b"\n"


@FUZZ
@given(content=_landmark_csv(), image=_IMAGES, skip=st.booleans())
# A coordinate past the image would crop a box larger than memory; a sub-pixel box
# gave an infinite scale.
@example(content=_csv_row(*["10"] * 29, "1e308"), image=IMAGE, skip=False)
@example(content=_csv_row("5e-324", *["0"] * 29), image=IMAGE, skip=True)
def test_fuzzed_landmark_csv(content: bytes, image: bytes, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path, images = Path(folder) / "landmarks.csv", Path(folder)
        path.write_bytes(content)
        (images / "a.png").write_bytes(image)
        faces = _read_or_one_line_error(
            lambda: read_landmark_csv(path, images, "kaggle15", size=16, skip_bad_rows=skip),
            path,
        )
    event("read" if faces is not None else "one-line error")
    if faces is not None:
        _check_set(faces, 16, 15)


@st.composite
def _pts_text(draw) -> bytes:
    count = _usual(draw, 68, 67, 0, 2)
    lines = [_usual(draw, "version: 1", "version 1", "")]
    lines.append(_usual(draw, f"n_points: {count}", "n_points: 68", "n_points: x", ""))
    lines.append(_usual(draw, "{", "", "{ 1"))
    numbers = draw(_numbers(2 * count)) if count else []
    lines += [f"{x} {y}" for x, y in zip(numbers[::2], numbers[1::2], strict=True)]
    lines.append(_usual(draw, "}", "", "} extra"))
    lines.append(_usual(draw, "", "x", "} 1"))  # what follows the points
    return _encoded(draw, "\n".join(lines))


@FUZZ
@given(content=_pts_text(), image=_IMAGES, skip=st.booleans())
def test_fuzzed_pts(content: bytes, image: bytes, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "face.pts"
        path.write_bytes(content)
        points = _read_or_one_line_error(lambda: read_pts(path), path)
        if points is not None:
            assert points.shape == (68, 2) and np.isfinite(points).all()
        (Path(folder) / "face.png").write_bytes(image)
        faces = _read_or_one_line_error(
            lambda: read_pts_folder(Path(folder), size=16, skip_bad_rows=skip), Path(folder)
        )
    event("read" if faces is not None else "one-line error")
    if faces is not None:
        _check_set(faces, 16, 68)


@st.composite
def _wflw_list(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 2))):
        numbers = [number.replace(" ", "") or "0" for number in draw(_numbers(200))]
        flags = draw(st.lists(st.sampled_from(["0", "1"]), min_size=6, max_size=6))
        flags[draw(st.integers(0, 5))] = _usual(draw, "1", "2", "x", "")
        name = draw(_NAMES)
        fields = [*numbers, *flags, name]
        if draw(st.integers(0, 7)) == 0:  # a field too few
            del fields[draw(st.integers(0, len(fields) - 1))]
        lines.append(" ".join(fields))
    return _encoded(draw, "\n".join(lines))


@FUZZ
@given(content=_wflw_list(), image=_IMAGES, skip=st.booleans(), face_box=st.booleans())
def test_fuzzed_wflw_list(content: bytes, image: bytes, skip: bool, face_box: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path, images = Path(folder) / "list_98pt_rect_attr_train.txt", Path(folder)
        path.write_bytes(content)
        (images / "a.png").write_bytes(image)
        faces = _read_or_one_line_error(
            lambda: read_wflw(path, images, size=16, skip_bad_rows=skip, use_face_box=face_box),
            path,
        )
    event("read" if faces is not None else "one-line error")
    if faces is not None:
        _check_set(faces, 16, 98)
        assert faces.attributes.shape == (len(faces.images), 6)
