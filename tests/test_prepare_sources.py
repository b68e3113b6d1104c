"""``prepare`` from WFLW, 300-W and landmark-CSV sources, and synthetic dense schemes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fkdbench.cli import app
from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import load_split

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
    unknown = _prepare(tmp_path, "--scheme", "nope")
    assert unknown.exit_code == 1 and "unknown keypoint scheme 'nope'" in unknown.output


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
