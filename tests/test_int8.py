"""The INT8 search (fkdbench.int8): every choice tried, the fastest accurate one kept and
recorded, a choice that fails is a row, and export reuses a searched graph only when it
was searched. The search's own timing runs on a fake clock here: which choice is fastest
is measured by ``fkdbench export --int8-search``, never asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from fkdbench import export, int8
from fkdbench.int8 import CANDIDATES, INT8_RMSE_TOLERANCE, Int8Choice, excluded_nodes


def _fake_search(tmp_path: Path, rmse_of: dict, cost_of: dict, fail: set = frozenset()):
    """A search where a choice's RMSE and time per call are given, not measured."""
    elapsed = [0.0]

    def clock() -> float:
        return elapsed[0]

    def predictor(cost: float):
        def predict(images: np.ndarray) -> np.ndarray:
            elapsed[0] += cost
            return images

        predict.cost = cost
        return predict

    made: dict[Path, Int8Choice] = {}

    def quantize(path: Path, choice: Int8Choice) -> None:
        if choice in fail:
            raise RuntimeError("ConvInteger is not supported\nsecond line")
        path.write_text(str(choice))
        made[path] = choice

    def open_predictor(path: Path):
        predict = predictor(cost_of.get(made[path], 2.0))
        predict.choice = made[path]
        return predict

    def score(predict) -> float:
        return rmse_of.get(getattr(predict, "choice", None), 1.0)

    fp32 = predictor(1.0)
    return int8.search(tmp_path, fp32, quantize, open_predictor, score, np.zeros((8, 1)), clock)


def test_the_fastest_accurate_choice_is_kept_and_everything_is_recorded(tmp_path: Path) -> None:
    fast_but_wrong, fast, broken = CANDIDATES[1], CANDIDATES[4], CANDIDATES[7]
    rmse_of = dict.fromkeys(CANDIDATES, 1.0 + INT8_RMSE_TOLERANCE / 2)
    rmse_of[fast_but_wrong] = 1.0 + 2 * INT8_RMSE_TOLERANCE
    result, path = _fake_search(
        tmp_path,
        rmse_of,
        cost_of={fast_but_wrong: 0.1, fast: 0.5},
        fail={broken},
    )
    assert result.choice == fast and path.read_text() == str(fast)
    assert "2.00x FP32" in result.reason
    rows = {Int8Choice(**c.choice): c for c in result.candidates}
    assert len(rows) == len(CANDIDATES)  # MinMax was enough: no Percentile round
    assert rows[fast_but_wrong].within_tolerance is False
    assert rows[fast_but_wrong].seconds_per_100_images is None  # not timed
    assert (
        rows[broken].error == "ConvInteger is not supported" and not rows[broken].within_tolerance
    )
    assert rows[fast].speedup_vs_fp32 == pytest.approx(2.0)
    record = json.loads(json.dumps(result.record()))
    assert record["choice"] == {**vars(fast)} and len(record["candidates"]) == len(CANDIDATES)


def test_slower_than_fp32_is_said(tmp_path: Path) -> None:
    result, _ = _fake_search(tmp_path, {}, cost_of=dict.fromkeys(CANDIDATES, 1.25))
    assert result.reason.endswith("INT8 does not pay on this model: FP32 is faster")


def test_percentile_is_tried_only_when_minmax_misses(tmp_path: Path) -> None:
    rmse_of = dict.fromkeys(CANDIDATES, 1.5)
    result, _ = _fake_search(tmp_path, rmse_of, cost_of={})
    assert len(result.candidates) == 2 * len(CANDIDATES)
    assert {c.choice["calibration"] for c in result.candidates} == {"MinMax", "Percentile"}
    # The Percentile candidates scored 1.0 (within the bound): the kept one is among them.
    assert result.choice.calibration == "Percentile"

    everything_off = {**rmse_of, **{int8._percentile(c): 1.5 for c in CANDIDATES}}
    (tmp_path / "again").mkdir()
    result, _ = _fake_search(tmp_path / "again", everything_off, cost_of={})
    assert result.reason.startswith("no choice within 2% of FP32's test RMSE")


def test_excluded_nodes_name_the_first_conv_the_stem_or_the_last_dense() -> None:
    nodes = [
        helper.make_node("Div", ["x", "w"], ["n"], name="scale"),
        helper.make_node("Conv", ["n", "w"], ["a"], name="conv0"),
        helper.make_node("Relu", ["a"], ["r"], name="relu0"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool0"),
        helper.make_node("Conv", ["p", "w"], ["b"], name="conv1"),
        helper.make_node("Gemm", ["b", "w"], ["c"], name="fc0"),
        helper.make_node("Gemm", ["c", "w"], ["h"], name="fc1"),
        helper.make_node("Reshape", ["h", "w"], ["y"], name="keypoints"),
    ]
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph(nodes, "g", [value], [value]))
    assert excluded_nodes(model, "none") == []
    assert excluded_nodes(model, "first-conv") == ["conv0"]
    assert excluded_nodes(model, "stem") == ["scale", "conv0", "relu0", "pool0"]
    assert excluded_nodes(model, "last-dense") == ["fc1"]
    assert excluded_nodes(model, "head") == ["fc1", "keypoints"]
    with pytest.raises(ValueError, match="unknown INT8 exclusion 'first-dense'"):
        excluded_nodes(model, "first-dense")
    dense_only = helper.make_model(helper.make_graph(nodes[-3:-1], "g", [value], [value]))
    assert excluded_nodes(dense_only, "stem") == []
    assert excluded_nodes(dense_only, "last-dense") == ["fc1"]


def test_export_with_the_search_records_it_and_is_not_reused_without(
    exported_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / exported_run.name
    shutil.copytree(exported_run, folder)
    plain = export.export_run(folder, exporter="torchscript", quiet=True)
    assert plain.int8_search is None and plain.int8_choice == vars(int8.DEFAULT_CHOICE)
    reason = export.stale_export_reason(
        folder, plain.model_sha256, True, plain.int8_activations, int8_search=True
    )
    assert reason == "the INT8 search was asked for; model.int8.onnx has the fixed recipe"

    searched = export.export_run(folder, exporter="torchscript", quiet=True, int8_search=True)
    record = json.loads((folder / export.EXPORT_RECORD_FILE).read_text())
    assert record["int8_search"]["choice"] == record["int8_choice"] == searched.int8_choice
    kept = Int8Choice(**searched.int8_choice)
    assert kept.describe() in record["int8_recipe"]
    tried = record["int8_search"]["candidates"]
    assert len(tried) >= len(CANDIDATES)
    timed = [c for c in tried if c["within_tolerance"]]
    assert all(c["seconds_per_100_images"] > 0 for c in timed)
    # The kept graph is the fastest of the accurate ones, by the search's own numbers.
    fastest = min(timed, key=lambda c: c["seconds_per_100_images"])
    assert fastest["choice"] == searched.int8_choice
    assert searched.test_rmse_int8 <= record["test_rmse_onnx"] * (1 + INT8_RMSE_TOLERANCE)
    # No candidate is left behind in the run folder.
    assert not list(folder.glob(".int8-search-*"))
    again = export.export_run(folder, exporter="torchscript", quiet=True, int8_search=True)
    assert again.seconds == searched.seconds  # reused
