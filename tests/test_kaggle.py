"""The Kaggle reader and writer: exact layout, exact round trips, clear errors."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_REAL_FACES

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
