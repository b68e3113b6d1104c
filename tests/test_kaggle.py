"""The Kaggle reader and writer: exact layout, exact round trips, clear errors."""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_REAL_FACES
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis_profiles import FUZZ

from fkdbench.data import kaggle, synthetic
from fkdbench.data.splits import DataError

# The header of the competition's training.csv, typed from the real file.
REAL_KAGGLE_HEADER = [
    "left_eye_center_x",
    "left_eye_center_y",
    "right_eye_center_x",
    "right_eye_center_y",
    "left_eye_inner_corner_x",
    "left_eye_inner_corner_y",
    "left_eye_outer_corner_x",
    "left_eye_outer_corner_y",
    "right_eye_inner_corner_x",
    "right_eye_inner_corner_y",
    "right_eye_outer_corner_x",
    "right_eye_outer_corner_y",
    "left_eyebrow_inner_end_x",
    "left_eyebrow_inner_end_y",
    "left_eyebrow_outer_end_x",
    "left_eyebrow_outer_end_y",
    "right_eyebrow_inner_end_x",
    "right_eyebrow_inner_end_y",
    "right_eyebrow_outer_end_x",
    "right_eyebrow_outer_end_y",
    "nose_tip_x",
    "nose_tip_y",
    "mouth_left_corner_x",
    "mouth_left_corner_y",
    "mouth_right_corner_x",
    "mouth_right_corner_y",
    "mouth_center_top_lip_x",
    "mouth_center_top_lip_y",
    "mouth_center_bottom_lip_x",
    "mouth_center_bottom_lip_y",
    "Image",
]


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    images, keypoints = synthetic.generate_faces(24, seed=5, workers=1)
    keypoints = keypoints.copy()
    keypoints[~synthetic.kaggle_missing_mask(24, seed=5)] = np.nan
    return images, keypoints


def _write(tmp_path: Path, faces) -> Path:
    kaggle.write_training_csv(tmp_path / "training.csv", *faces)
    return tmp_path


def test_header_is_exactly_kaggles(tmp_path: Path, faces) -> None:
    _write(tmp_path, faces)
    with open(tmp_path / "training.csv") as handle:
        assert next(csv.reader(handle)) == REAL_KAGGLE_HEADER


def test_image_cell_is_9216_space_separated_ints(tmp_path: Path, faces) -> None:
    _write(tmp_path, faces)
    with open(tmp_path / "training.csv") as handle:
        row = next(iter(list(csv.DictReader(handle))))
    tokens = row["Image"].split(" ")
    assert len(tokens) == 9216
    assert all(token.isdigit() and 0 <= int(token) <= 255 for token in tokens)


def test_round_trip_gives_identical_arrays(tmp_path: Path, faces) -> None:
    images, keypoints = faces
    table = kaggle.read_training_csv(_write(tmp_path, faces))
    np.testing.assert_array_equal(table.images, images)
    np.testing.assert_array_equal(table.keypoints, keypoints)  # NaN positions included
    assert table.keypoints.dtype == np.float32 and table.images.dtype == np.uint8


def test_reads_competition_zip_forms(tmp_path: Path, faces) -> None:
    plain = _write(tmp_path / "plain", faces) if (tmp_path / "plain").mkdir() is None else None
    kaggle.write_test_csv(plain / "test.csv", faces[0][:3])
    # Form 1: training.zip and test.zip side by side, as the competition ships them.
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for name in ("training", "test"):
        with zipfile.ZipFile(zipped / f"{name}.zip", "w") as archive:
            archive.write(plain / f"{name}.csv", f"{name}.csv")
    # Form 2: one all-in-one zip holding those zips.
    bundle = tmp_path / "facial-keypoints-detection.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name in ("training", "test"):
            archive.write(zipped / f"{name}.zip", f"{name}.zip")
    for location in (zipped, bundle):
        table = kaggle.read_training_csv(location)
        np.testing.assert_array_equal(table.images, faces[0])
        test = kaggle.read_test_csv(location)
        np.testing.assert_array_equal(test.images, faces[0][:3])
        assert test.image_ids.tolist() == [1, 2, 3]


def test_lookup_table_layout(tmp_path: Path) -> None:
    requested = kaggle.kaggle_lookup_request(50, seed=1)
    kaggle.write_lookup_csv(tmp_path / "IdLookupTable.csv", requested)
    rows = kaggle.read_lookup_csv(tmp_path)
    assert list(rows[0]) == ["RowId", "ImageId", "FeatureName", "Location"]
    assert len(rows) == 2 * requested.sum()
    assert [int(row["RowId"]) for row in rows] == list(range(1, len(rows) + 1))
    first_image = [row["FeatureName"] for row in rows if row["ImageId"] == "1"]
    assert len(first_image) in (8, 30)


# -- bad input: one clear error naming file and line ---------------------------------------
def _corrupt(tmp_path: Path, faces, edit) -> Path:
    path = _write(tmp_path, faces) / "training.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))
    return tmp_path


def _replace_cell(line: str, column: int, value: str) -> str:
    cells = next(csv.reader([line]))
    cells[column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


BAD_CASES = {
    "wrong pixel count": (
        lambda lines: [*lines[:3], lines[3].rstrip("\n").rsplit(" ", 1)[0] + "\n", *lines[4:]],
        "line 4: Image has 9215 pixel values, expected 9216",
    ),
    "non-numeric pixel": (
        lambda lines: [*lines[:2], lines[2].replace(" ", " x7 ", 1), *lines[3:]],
        "line 3: Image has 9217 pixel values",
    ),
    "non-numeric coordinate": (
        lambda lines: [lines[0], _replace_cell(lines[1], 0, "abc"), *lines[2:]],
        "line 2: left_eye_center_x is not a number: 'abc'",
    ),
    "coordinate outside the image": (
        lambda lines: [*lines[:5], _replace_cell(lines[5], 1, "120.5"), *lines[6:]],
        "line 6: left_eye_center_y = 120.5 lies outside the 96x96 image",
    ),
    "missing column": (
        lambda lines: [lines[0].replace("nose_tip_x,", ""), *lines[1:]],
        "line 1: missing column(s) nose_tip_x",
    ),
    "truncated file": (
        lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]],
        "line 25:",
    ),
    "empty file": (lambda lines: [], "the file is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_and_line(tmp_path: Path, faces, case: str) -> None:
    edit, expected = BAD_CASES[case]
    folder = _corrupt(tmp_path, faces, edit)
    with pytest.raises(DataError) as raised:
        kaggle.read_training_csv(folder)
    message = str(raised.value)
    assert str(folder / "training.csv") in message
    assert expected in message
    assert "\n" not in message


def test_non_integer_pixel_reason(tmp_path: Path, faces) -> None:
    def edit(lines):
        cells = next(csv.reader([lines[2]]))
        pixels = cells[-1].split(" ")
        pixels[10] = "x7"
        cells[-1] = " ".join(pixels)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(cells)
        return [*lines[:2], out.getvalue(), *lines[3:]]

    with pytest.raises(DataError, match="line 3: Image has a non-integer pixel value 'x7'"):
        kaggle.read_training_csv(_corrupt(tmp_path, faces, edit))


def test_skip_bad_rows_drops_and_reports(tmp_path: Path, faces) -> None:
    def edit(lines):
        lines[3] = _replace_cell(lines[3], 0, "oops")
        lines[7] = _replace_cell(lines[7], 2, "-40")
        return lines

    table = kaggle.read_training_csv(_corrupt(tmp_path, faces, edit), skip_bad_rows=True)
    assert len(table.images) == len(faces[0]) - 2
    assert [row.line for row in table.skipped] == [4, 8]
    assert 2 not in table.row_ids.tolist() and 6 not in table.row_ids.tolist()
    np.testing.assert_array_equal(table.images[2], faces[0][3])


@pytest.mark.realdata
@pytest.mark.skipif(
    not (SHARED_REAL_FACES / "training.zip").is_file(),
    reason="the shared real-faces sample is not beside this checkout",
)
def test_reads_real_faces_sample() -> None:
    table = kaggle.read_training_csv(SHARED_REAL_FACES)
    assert table.images.shape == (3435, 96, 96)
    complete = ~np.isnan(table.keypoints).any(axis=(1, 2))
    assert abs(complete.mean() - 0.297) < 0.01
    # Kaggle's convention holds in real data: the subject's left eye is on the image right.
    labelled = ~np.isnan(table.keypoints[:, :2, 0]).any(axis=1)
    left_x, right_x = table.keypoints[labelled, 0, 0], table.keypoints[labelled, 1, 0]
    assert (left_x > right_x).mean() > 0.99


# -- fuzzing: any bytes give a valid table or one DataError line naming the file ----------
FUZZ_SIZE = 2  # 2x2 images, so generated rows can be valid too
_CELLS = st.one_of(
    st.sampled_from(["", "0", "1.5", "-0.5", "1.6", "nan", "inf", "1e999", " 3 ", "\x00"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)
_PIXELS = st.lists(st.integers(0, 255), min_size=4, max_size=4).map(
    lambda values: " ".join(map(str, values))
)
_COORDINATE = st.one_of(st.just(""), st.floats(-0.5, FUZZ_SIZE - 0.5).map(repr))
_DAMAGE = st.one_of(
    _CELLS, st.lists(st.integers(-3, 300), max_size=6).map(lambda v: " ".join(map(str, v)))
)


def _csv_text(header: list[str], rows: list[list[str]], quoting: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _sometimes(draw, odds: int = 7) -> bool:
    """True once in ``odds + 1`` draws."""
    return draw(st.integers(0, odds)) == 0


def _damaged(draw, cells: list[str]) -> list[str]:
    """``cells``, or a third of the time with one cell damaged or the row cut short."""
    if _sometimes(draw, 2):
        cells[draw(st.integers(0, len(cells) - 1))] = draw(_DAMAGE)
    if _sometimes(draw):
        cells = cells[: draw(st.integers(0, len(cells)))]
    return cells


def _encoded(draw, text: str) -> bytes:
    if _sometimes(draw):
        return draw(st.binary(max_size=300))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return text.encode(encoding, "replace")


@st.composite
def _training_files(draw) -> bytes:
    """Raw bytes, or a training.csv with rows from valid to nonsense."""
    header = kaggle.training_header()
    if _sometimes(draw):
        header = draw(st.permutations(header))[: draw(st.integers(1, len(header)))]
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        coordinates = draw(st.lists(_COORDINATE, min_size=30, max_size=30))
        rows.append(_damaged(draw, [*coordinates, draw(_PIXELS)]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    return _encoded(draw, _csv_text(header, rows, quoting))


@st.composite
def _test_files(draw) -> bytes:
    image_id = st.integers(-(2**70), 2**70).map(str)
    rows = [_damaged(draw, [draw(image_id), draw(_PIXELS)]) for _ in range(draw(st.integers(1, 4)))]
    return _encoded(draw, _csv_text(["ImageId", "Image"], rows, csv.QUOTE_MINIMAL))


def _read_or_one_line_error(read, where: Path):
    """``read()``'s result, or None after checking its DataError is one line naming
    ``where``; any other exception fails the test."""
    try:
        return read()
    except DataError as error:
        message = str(error)
        assert str(where) in message and "\n" not in message, message
        return None


@FUZZ
@given(content=_training_files(), skip=st.booleans())
def test_fuzzed_training_csv(content: bytes, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / kaggle.TRAINING_NAME
        path.write_bytes(content)
        table = _read_or_one_line_error(
            lambda: kaggle.read_training_csv(
                Path(folder), image_size=FUZZ_SIZE, skip_bad_rows=skip
            ),
            path,
        )
    event("read" if table is not None else "one-line error")
    if table is not None:
        assert table.images.dtype == np.uint8 and table.images.shape[1:] == (2, 2)
        assert table.keypoints.shape == (len(table.images), 15, 2)
        labelled = table.keypoints[~np.isnan(table.keypoints)]
        assert ((labelled >= -0.5) & (labelled <= FUZZ_SIZE - 0.5)).all()
        assert len(table.row_ids) == len(table.images)


@FUZZ
@given(content=_test_files(), skip=st.booleans())
@example(content=b"ImageId,Image\n99999999999999999999,1 2 3 4\n", skip=False)  # int64
def test_fuzzed_test_csv(content: bytes, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / kaggle.TEST_NAME
        path.write_bytes(content)
        table = _read_or_one_line_error(
            lambda: kaggle.read_test_csv(Path(folder), image_size=FUZZ_SIZE, skip_bad_rows=skip),
            path,
        )
    event("read" if table is not None else "one-line error")
    if table is not None:
        assert table.images.shape == (len(table.image_ids), 2, 2)


def _valid_zip() -> bytes:
    images = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    keypoints = np.full((2, 15, 2), 0.5, dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        kaggle.write_training_csv(Path(folder) / "training.csv", images, keypoints)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(Path(folder) / "training.csv", "training.csv")
    return buffer.getvalue()


VALID_ZIP = _valid_zip()
_CENTRAL = VALID_ZIP.find(b"PK\x01\x02")
_END = VALID_ZIP.find(b"PK\x05\x06")
# The bytes that decide how a zip is read: flags (encryption), compression method, CRC,
# sizes and offsets in the local and central headers, the first compressed bytes.
_ZIP_FIELDS = [6, 8, 14, 18, 22, 26, 28, 30 + len("training.csv"), 31 + len("training.csv")]
_ZIP_FIELDS += [_CENTRAL + offset for offset in (8, 10, 16, 20, 24, 28, 42)]
_ZIP_FIELDS += [_END + offset for offset in (8, 10, 12, 16)]


@FUZZ
@given(
    damage=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(_ZIP_FIELDS), st.integers(0, len(VALID_ZIP) - 1)),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    ),
    cut=st.one_of(st.just(len(VALID_ZIP)), st.integers(0, len(VALID_ZIP))),
    as_path=st.booleans(),
)
@example(damage=[(6, 1), (_CENTRAL + 8, 1)], cut=len(VALID_ZIP), as_path=False)  # encrypted
@example(damage=[(8, 99), (_CENTRAL + 10, 99)], cut=len(VALID_ZIP), as_path=True)  # method
@example(damage=[(42, 255), (43, 255), (44, 255)], cut=len(VALID_ZIP), as_path=False)  # zlib
def test_fuzzed_training_zip(damage: list[tuple[int, int]], cut: int, as_path: bool) -> None:
    """A damaged or truncated training.zip, found beside the CSV's name or given itself."""
    content = bytearray(VALID_ZIP)
    for offset, value in damage:
        content[offset] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "training.zip"
        path.write_bytes(bytes(content[:cut]))
        table = _read_or_one_line_error(
            lambda: kaggle.read_training_csv(path if as_path else Path(folder), image_size=2),
            Path(folder) if not as_path else path,
        )
    event("read" if table is not None else "one-line error")
    if table is not None:
        assert table.images.shape[1:] == (2, 2)
