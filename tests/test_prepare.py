"""``prepare``: outputs, determinism, atomicity, and reading real Kaggle files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_REAL_FACES

from fkdbench.data import kaggle
from fkdbench.data.prepare import (
    SOURCE_READERS,
    SOURCES,
    PrepareOptions,
    prepare,
    split_indices,
)
from fkdbench.data.schemes import KAGGLE15, get_scheme
from fkdbench.data.splits import SPLITS, DataError, load_split, read_manifest


def _small(root: Path, **changes) -> PrepareOptions:
    options = dict(data_root=root, n_train=80, n_test=8, seed=4, workers=1, quiet=True)
    options.update(changes)
    return PrepareOptions(**options)


def test_outputs_and_manifest(tiny_dataset: Path) -> None:
    raw = tiny_dataset / "raw"
    assert {path.name for path in raw.iterdir()} == {
        "training.csv",
        "test.csv",
        "IdLookupTable.csv",
    }
    manifest = read_manifest(tiny_dataset)
    total = 0
    for split in SPLITS:
        arrays = load_split(tiny_dataset, split)
        assert arrays.images.dtype == np.uint8 and arrays.keypoints.dtype == np.float32
        assert manifest["counts"]["splits"][split]["rows"] == len(arrays)
        total += len(arrays)
    assert total == manifest["counts"]["labelled_rows"] == 120
    assert manifest["counts"]["unlabelled_rows"] == 12
    assert list(manifest["missing_per_keypoint"]) == sorted(KAGGLE15.keypoints)
    assert 1.0 < manifest["mean_shape_rmse"]["test"] < 10.0
    assert set(manifest["checksums"]["splits"]) == {"train.npz", "val.npz", "test.npz"}
    provenance = json.loads((tiny_dataset / "provenance.json").read_text())
    assert provenance["environment"]["versions"]["numpy"]


def test_splits_equal_the_raw_csv(tiny_dataset: Path) -> None:
    table = kaggle.read_training_csv(tiny_dataset / "raw")
    for split in SPLITS:
        arrays = load_split(tiny_dataset, split)
        np.testing.assert_array_equal(arrays.images, table.images[arrays.ids])
        np.testing.assert_array_equal(arrays.keypoints, table.keypoints[arrays.ids])


def test_split_is_disjoint_stratified_and_deterministic() -> None:
    keypoints = np.zeros((1000, 15, 2), dtype=np.float32)
    keypoints[::3, 5] = np.nan  # a third incomplete
    first = split_indices(keypoints, seed=1, val_fraction=0.15, test_fraction=0.15)
    again = split_indices(keypoints, seed=1, val_fraction=0.15, test_fraction=0.15)
    everything = np.concatenate(list(first.values()))
    assert sorted(everything.tolist()) == list(range(1000))
    for split in SPLITS:
        np.testing.assert_array_equal(first[split], again[split])
        share = np.isnan(keypoints[first[split]]).any(axis=(1, 2)).mean()
        assert abs(share - 1 / 3) < 0.02


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    one = prepare(_small(tmp_path / "a")).data_dir
    two = prepare(_small(tmp_path / "b", workers=2)).data_dir
    files = sorted(path.relative_to(one) for path in one.rglob("*") if path.is_file())
    assert Path("manifest.json") in files and Path("raw/training.csv") in files
    for relative in files:
        if relative.name == "provenance.json":  # timestamps and machine, by design
            continue
        assert (one / relative).read_bytes() == (two / relative).read_bytes(), relative


def test_existing_data_is_kept_unless_forced(tmp_path: Path) -> None:
    first = prepare(_small(tmp_path))
    again = prepare(_small(tmp_path))
    assert again.skipped_existing
    with pytest.raises(DataError, match="exists with other options"):
        prepare(_small(tmp_path, seed=5))
    forced = prepare(_small(tmp_path, seed=5, force=True))
    assert forced.manifest["seed"] == 5 and first.manifest["seed"] == 4


def test_failure_leaves_previous_data_untouched(tmp_path: Path) -> None:
    source = tmp_path / "kaggle_files"
    source.mkdir()
    (source / "training.csv").write_text(",".join(kaggle.training_header()) + "\n1,2\n")
    target = tmp_path / "data" / "mine"
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="line 2"):
        prepare(
            PrepareOptions(
                source="kaggle",
                path=source,
                name="mine",
                data_root=tmp_path / "data",
                quiet=True,
                force=True,
            )
        )
    assert (target / "keep.txt").read_text() == "precious"
    assert [path.name for path in (tmp_path / "data").iterdir()] == ["mine"]


def test_preview_is_written(tmp_path: Path) -> None:
    result = prepare(_small(tmp_path, preview=tmp_path / "preview.png"))
    assert result.preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sources_come_from_one_table() -> None:
    assert SOURCES == tuple(SOURCE_READERS) == ("synthetic", "kaggle", "wflw", "300w", "csv")
    for name, reader in SOURCE_READERS.items():
        assert reader.scheme is None or get_scheme(reader.scheme).name == reader.scheme
        assert reader.draws_faces == (reader.path_help == ""), name  # the rest read --path
    with pytest.raises(ValueError, match="unknown source 'nope'; known: synthetic, kaggle, "):
        prepare(PrepareOptions(source="nope"))


def test_identity_holds_what_the_source_uses() -> None:
    """The manifest's ``options``: sizes only for drawn faces, crop options only for
    cropped sources, the scheme only when it is not Kaggle's (so old manifests keep
    their bytes)."""
    drawn = PrepareOptions(margin=0.4).identity()
    assert drawn["n_train"] == 7049 and "margin" not in drawn and "scheme" not in drawn
    read = PrepareOptions(source="kaggle", path=Path("k")).identity()
    assert "n_train" not in read and "images" not in read and read["path"] == "k"
    cropped = PrepareOptions(source="wflw", path=Path("w"), images=Path("i"), margin=0.3)
    assert cropped.identity()["margin"] == 0.3 and cropped.identity()["images"] == "i"
    assert cropped.identity()["scheme"] == "wflw98" == cropped.scheme_name
    assert PrepareOptions(source="300w", scheme="kaggle15").scheme_name == "ibug68"
    assert PrepareOptions(source="csv", scheme="ibug68").scheme_name == "ibug68"


def test_options_a_source_needs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--source kaggle needs --path"):
        prepare(PrepareOptions(source="kaggle", data_root=tmp_path))
    with pytest.raises(ValueError, match="--source csv needs --images"):
        prepare(PrepareOptions(source="csv", path=tmp_path, data_root=tmp_path))
    with pytest.raises(ValueError, match="--n-train must be at least 10"):
        prepare(PrepareOptions(n_train=5, data_root=tmp_path))


@pytest.mark.realdata
@pytest.mark.skipif(
    not (SHARED_REAL_FACES / "training.zip").is_file(),
    reason="the shared real-faces sample is not beside this checkout",
)
def test_prepare_real_faces(tmp_path: Path) -> None:
    result = prepare(
        PrepareOptions(
            source="kaggle", path=SHARED_REAL_FACES, name="real", data_root=tmp_path, quiet=True
        )
    )
    manifest = result.manifest
    assert manifest["counts"]["labelled_rows"] == 3435
    assert "training.zip" in manifest["checksums"]["raw"]
    # The sample's README: tighter, more varied crops than Kaggle, mean-shape RMSE ~8.6 px.
    assert 7.0 < manifest["mean_shape_rmse"]["test"] < 10.0
