"""``prepare --groups``: splits by group (person), the groups file's errors, its part in
deciding reuse, and the groups reader under fuzzed input."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_REAL_FACES
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis_profiles import FUZZ
from PIL import Image
from typer.testing import CliRunner

from fkdbench.cli import app
from fkdbench.data import kaggle
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.data.splits import (
    SPLITS,
    DataError,
    group_split_indices,
    load_split,
    read_groups,
    read_manifest,
)

SIZE = 32  # the smallest image prepare takes: small CSVs
runner = CliRunner()


def _kaggle_folder(folder: Path, rows: int, seed: int = 0) -> Path:
    """A training.csv of ``rows`` random faces, about a third complete."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (rows, SIZE, SIZE), dtype=np.uint8)
    keypoints = rng.uniform(2, SIZE - 3, (rows, 15, 2)).astype(np.float32)
    keypoints[rng.random(rows) > 0.35, 4:] = np.nan
    folder.mkdir(parents=True, exist_ok=True)
    kaggle.write_training_csv(folder / kaggle.TRAINING_NAME, images, keypoints)
    return folder


def _groups_file(path: Path, groups: list) -> Path:
    lines = ["row,group", *(f"{row},{group}" for row, group in enumerate(groups))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _blocks(rows: int, size: int) -> list[str]:
    """Group names for ``rows`` rows in blocks of ``size`` (person 0, 0, 0, 1, ...)."""
    return [f"p{row // size}" for row in range(rows)]


def _options(tmp_path: Path, path: Path, groups: Path | None, **changes) -> PrepareOptions:
    settings = dict(
        source="kaggle",
        path=path,
        groups=groups,
        name="faces",
        data_root=tmp_path / "data",
        image_size=SIZE,
        quiet=True,
    )
    settings.update(changes)
    return PrepareOptions(**settings)


def _groups_by_split(data_dir: Path, group_of_row: list) -> dict[str, set]:
    """The groups (from the file's truth, by source row) in each written split."""
    return {
        split: {group_of_row[row] for row in load_split(data_dir, split).ids.tolist()}
        for split in SPLITS
    }


def _assert_each_group_in_one_split(by_split: dict[str, set], every_group: set) -> None:
    assert all(by_split.values()), by_split  # no split is empty
    for first, second in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not by_split[first] & by_split[second], (first, second)
    assert set().union(*by_split.values()) == every_group


def test_every_group_is_in_exactly_one_split(tmp_path: Path) -> None:
    groups = _blocks(120, 4)  # 30 people, 4 faces each
    source = _kaggle_folder(tmp_path / "kaggle", 120)
    result = prepare(_options(tmp_path, source, _groups_file(tmp_path / "groups.csv", groups)))
    by_split = _groups_by_split(result.data_dir, groups)
    _assert_each_group_in_one_split(by_split, set(groups))
    manifest = result.manifest
    assert manifest["split"] == {"rule": "by group", "groups": 30}
    counts = manifest["counts"]["splits"]
    assert {split: counts[split]["groups"] for split in SPLITS} == {
        split: len(by_split[split]) for split in SPLITS
    }
    assert sum(counts[split]["rows"] for split in SPLITS) == 120
    # The fractions apply to faces, as closely as 4-face groups allow (15% of 120 = 18).
    assert abs(counts["test"]["rows"] - 18) <= 2 and abs(counts["val"]["rows"] - 18) <= 2
    assert manifest["options"]["groups"]["path"] == str(tmp_path / "groups.csv")
    assert len(manifest["options"]["groups"]["sha256"]) == 64


def test_a_split_by_row_is_as_before(tmp_path: Path) -> None:
    """Without --groups the manifest gains nothing (old manifests keep their bytes)."""
    result = prepare(_options(tmp_path, _kaggle_folder(tmp_path / "kaggle", 40), None))
    assert "split" not in result.manifest and "groups" not in result.manifest["options"]
    assert all("groups" not in info for info in result.manifest["counts"]["splits"].values())


def test_dropped_rows_keep_their_groups(tmp_path: Path) -> None:
    """Rows dropped by --skip-bad-rows: the others are matched to the file by their
    source row; matched by position, every face after the gap would take its
    neighbour's group and groups would straddle splits."""
    rows = 90
    groups = _blocks(rows, 3)
    source = _kaggle_folder(tmp_path / "kaggle", rows)
    training = source / kaggle.TRAINING_NAME
    lines = training.read_text().splitlines()
    for row in (4, 31, 32, 60):  # data row r is line r + 2 (1-based, after the header)
        lines[row + 1] = ",".join(lines[row + 1].split(",")[:-1] + ["1 2 3"])
    training.write_text("\n".join(lines) + "\n")
    groups_path = _groups_file(tmp_path / "groups.csv", groups)
    result = prepare(_options(tmp_path, source, groups_path, skip_bad_rows=True))
    assert len(result.bad_rows) == 4
    by_split = _groups_by_split(result.data_dir, groups)
    _assert_each_group_in_one_split(by_split, set(groups))
    counts = result.manifest["counts"]["splits"]
    assert sum(counts[split]["rows"] for split in SPLITS) == rows - 4


def _landmark_csv_source(folder: Path, rows: int) -> tuple[Path, Path]:
    """A landmark CSV with a header, a blank line and ``rows`` records (record 2 names a
    missing image), with its image folder."""
    rng = np.random.default_rng(1)
    images = folder / "images"
    images.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (60, 60), dtype=np.uint8)).save(images / "a.png")
    lines = ["image," + ",".join(f"c{index}" for index in range(30))]
    for row in range(rows):
        name = "missing.png" if row == 2 else "a.png"
        points = rng.uniform(15, 45, 30)
        lines.append(",".join([name, *(f"{value:.2f}" for value in points)]))
        if row == 5:
            lines.append("")
    (folder / "landmarks.csv").write_text("\n".join(lines) + "\n")
    return folder / "landmarks.csv", images


def test_landmark_csv_rows_are_its_records(tmp_path: Path) -> None:
    """csv: a face's row is its record's place among the records (header and blank
    lines are no rows; a skipped record still is one)."""
    groups = _blocks(24, 2)
    path, images = _landmark_csv_source(tmp_path / "csv", 24)
    options = _options(
        tmp_path,
        path,
        _groups_file(tmp_path / "groups.csv", groups),
        source="csv",
        images=images,
        skip_bad_rows=True,
    )
    result = prepare(options)
    assert len(result.bad_rows) == 1
    # ids are the records' line numbers: the header is line 1, the blank line 8.
    line_to_row = {line: line - 2 if line < 8 else line - 3 for line in range(2, 27)}
    by_split = {
        split: {groups[line_to_row[line]] for line in load_split(result.data_dir, split).ids}
        for split in SPLITS
    }
    _assert_each_group_in_one_split(by_split, set(groups))


def test_a_changed_groups_file_is_not_reused(tmp_path: Path) -> None:
    groups = _blocks(60, 3)
    source = _kaggle_folder(tmp_path / "kaggle", 60)
    options = _options(tmp_path, source, _groups_file(tmp_path / "groups.csv", groups))
    first = prepare(options)
    assert prepare(options).skipped_existing  # unchanged: reused
    changed = groups.copy()
    changed[0], changed[-1] = changed[-1], changed[0]
    _groups_file(options.groups, changed)
    with pytest.raises(DataError, match=r"exists with other options \(groups\)"):
        prepare(options)
    redone = prepare(_options(tmp_path, source, options.groups, force=True))
    assert not redone.skipped_existing
    old, new = first.manifest["options"]["groups"], redone.manifest["options"]["groups"]
    assert old["path"] == new["path"] and old["sha256"] != new["sha256"]
    _assert_each_group_in_one_split(_groups_by_split(redone.data_dir, changed), set(changed))
    # Without --groups the same folder is another data set too.
    with pytest.raises(DataError, match=r"other options \(groups\)"):
        prepare(_options(tmp_path, source, None))


def _numbered(*lines: str) -> str:
    return "\n".join(lines) + "\n"


_TWELVE = [f"{row},p{row % 4}" for row in range(12)]
BAD_GROUPS = {
    "no header": (_numbered(*_TWELVE), "line 1: no `row,group` header"),
    "empty": ("", "empty (no `row,group` header)"),
    "header only": ("row,group\n", "names no rows"),
    "not an int": (_numbered("row,group", "0,a", "x1,b", *_TWELVE[2:]), "line 3: row 'x1'"),
    "negative": (_numbered("row,group", "-1,a", *_TWELVE), "line 2: row '-1' is not"),
    "fraction": (_numbered("row,group", "1.0,a", *_TWELVE), "line 2: row '1.0' is not"),
    "out of range": (_numbered("row,group", *_TWELVE, "12,p0"), "row 12 is out of range"),
    "huge": (_numbered("row,group", *_TWELVE, "9" * 30 + ",p0"), "line 14: row 9999"),
    "twice": (
        _numbered("row,group", *_TWELVE[:5], "3,p1", *_TWELVE[5:]),
        "line 7: row 3 listed twice (first on line 5)",
    ),
    "unnamed rows": (
        _numbered("row,group", *_TWELVE[:4], *_TWELVE[6:]),
        "names no group for 2 of the source's 12 rows: 4, 5",
    ),
    "empty group": (_numbered("row,group", "0,", *_TWELVE[1:]), "line 2: the group is empty"),
    "one field": (_numbered("row,group", "0", *_TWELVE[1:]), "line 2: has 1 field(s)"),
    "too few groups": (
        _numbered("row,group", *(f"{row},p{row % 2}" for row in range(12))),
        "the faces fall in 2 group(s); a split by group needs at least 3",
    ),
    "not text": (b"row,group\n0,\xff\xfe\n", "unreadable"),
}


@pytest.mark.parametrize("case", sorted(BAD_GROUPS))
def test_bad_groups_files_fail_in_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    content, problem = BAD_GROUPS[case]
    path = tmp_path / "groups.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    source = _kaggle_folder(tmp_path / "kaggle", 12)
    result = runner.invoke(
        app,
        ["prepare", "--source", "kaggle", "--path", str(source), "--groups", str(path)]
        + ["--size", str(SIZE), "--data-root", str(tmp_path / "data"), "--quiet"],
    )
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert message.startswith(f"error: {path}: ") and problem in message, message
    assert not (tmp_path / "data" / "kaggle").exists()  # nothing written


def test_groups_need_a_file_and_a_source_with_rows(tmp_path: Path) -> None:
    source = _kaggle_folder(tmp_path / "kaggle", 12)
    with pytest.raises(DataError, match=r"nope.csv: no such groups file"):
        prepare(_options(tmp_path, source, tmp_path / "nope.csv"))
    groups = _groups_file(tmp_path / "groups.csv", _blocks(12, 3))
    for other in ("synthetic", "300w", "wflw"):
        options = _options(tmp_path, source, groups, source=other, images=tmp_path)
        with pytest.raises(ValueError, match=r"--groups needs a source with a row order "):
            prepare(options)
    with pytest.raises(ValueError, match=r"\(kaggle, csv\); --source synthetic has none"):
        prepare(_options(tmp_path, source, groups, source="synthetic"))


def test_group_split_is_seeded_and_close_to_the_fractions() -> None:
    sizes = np.random.default_rng(3).integers(5, 16, 200)
    groups = np.repeat(np.arange(200), sizes)
    first = group_split_indices(groups, 7, 0.15, 0.15)
    again = group_split_indices(groups, 7, 0.15, 0.15)
    other = group_split_indices(groups, 8, 0.15, 0.15)
    assert all(np.array_equal(first[split], again[split]) for split in SPLITS)
    assert not np.array_equal(first["test"], other["test"])
    every = np.sort(np.concatenate([first[split] for split in SPLITS]))
    np.testing.assert_array_equal(every, np.arange(len(groups)))
    for split in ("val", "test"):  # within one group (at most 15 faces) of 15%
        assert abs(len(first[split]) - 0.15 * len(groups)) <= 15, split
    # Three groups: one each, however unequal.
    tiny = group_split_indices(np.array([0] * 50 + [1, 2]), 0, 0.15, 0.15)
    assert sorted(len(tiny[split]) for split in SPLITS) == [1, 1, 50]


@pytest.mark.realdata
@pytest.mark.skipif(
    not (SHARED_REAL_FACES / "groups.csv").is_file(),
    reason="the shared real-faces sample (with groups.csv) is not beside this checkout",
)
def test_real_faces_split_by_person(tmp_path: Path) -> None:
    groups_path = SHARED_REAL_FACES / "groups.csv"
    with open(groups_path, newline="") as handle:
        person = {int(row["row"]): row["group"] for row in csv.DictReader(handle)}
    result = prepare(_options(tmp_path, SHARED_REAL_FACES, groups_path, image_size=96))
    by_split = _groups_by_split(result.data_dir, person)
    _assert_each_group_in_one_split(by_split, set(person.values()))
    counts = result.manifest["counts"]
    assert sum(counts["splits"][split]["rows"] for split in SPLITS) == 3435
    assert counts["labelled_rows"] == 3435 == len(person)
    assert sum(len(people) for people in by_split.values()) == 283
    assert result.manifest["split"] == {"rule": "by group", "groups": 283}
    assert read_manifest(result.data_dir) == result.manifest


# -- the groups reader under fuzzed input -----------------------------------------------
_ROW_TEXT = st.one_of(
    st.integers(0, 14).map(str),
    st.sampled_from(["", "-1", "1.0", "1e2", "\u0661", "1_0", " 3 ", "+2", "9" * 25]),
    st.text(max_size=4),
)
_GROUP_TEXT = st.one_of(st.sampled_from(["a", "b", "c", "d", ""]), st.text(max_size=4))


def _usual(draw, usual, *others):
    """``usual`` seven times out of eight, else one of ``others``."""
    return draw(st.sampled_from(others)) if draw(st.integers(0, 7)) == 0 else usual


@st.composite
def _groups_csv(draw) -> tuple[bytes, int]:
    """A groups file and the number of rows of its source: mostly a valid file, else one
    with a drawn flaw or for a source of another size."""
    count = _usual(draw, 12, 11, 13, 0)
    row_count = _usual(draw, max(count, 1), count + 1, max(count - 1, 1), 1)
    rows = [[str(row), "abcd"[row % 4]] for row in range(count)]
    if rows and draw(st.booleans()):
        rows = draw(st.permutations(rows))
    for _ in range(_usual(draw, 0, 1, 2)):
        rows.insert(draw(st.integers(0, len(rows))), [draw(_ROW_TEXT), draw(_GROUP_TEXT)])
    header = _usual(draw, ["row", "group"], ["group", "row"], ["Row", " group "], ["r", "g"], [])
    out = io.StringIO()
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    csv.writer(out, lineterminator=terminator).writerows([header, *rows] if header else rows)
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=120)), row_count
    encoding = _usual(draw, "utf-8", "utf-8-sig", "utf-16", "latin-1")
    return out.getvalue().encode(encoding, "replace"), row_count


def _one_line_error(error: DataError, where: Path) -> None:
    message = str(error)
    assert message.startswith(f"{where}: ") and "\n" not in message and "\r" not in message


@FUZZ
@given(drawn=_groups_csv())
@example(drawn=(b"row,group\n0,a\n0,b\n", 1))
@example(drawn=(b"row,group\n0\x00,a\n", 1))
@example(drawn=(b"row,group\n" + b"9" * 5000 + b",a\n", 1))  # past int()'s digit limit
def test_fuzzed_groups_file(drawn: tuple[bytes, int]) -> None:
    content, row_count = drawn
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "groups.csv"
        path.write_bytes(content)
        try:
            table = read_groups(path)
        except DataError as error:
            _one_line_error(error, path)
            event("one-line error when read")
            return
    assert table.rows.dtype == np.int64 and len(np.unique(table.rows)) == len(table.rows)
    assert (table.rows >= 0).all() and all(group.strip() for group in table.groups)
    face_rows = np.arange(row_count)[::3]  # every third row read, as after bad rows
    try:
        face_groups = table.of_faces(face_rows, row_count)
    except DataError as error:
        _one_line_error(error, path)
        event("one-line error against the source")
        return
    event("grouped")
    assert len(face_groups) == len(face_rows) and len(np.unique(face_groups)) >= 3
    assert sorted(table.rows.tolist()) == list(range(row_count))
