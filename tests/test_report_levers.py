"""Lever rows in the report: each recipe is its own row, set beside its twin (the same
architecture, variant and weights trained the papers' way) with a paired test; a report
without levers keeps every table as it was."""

from __future__ import annotations

import pandas as pd
from report_factory import per_face_errors, result_of, summary, timed

from fkdbench import runs
from fkdbench.report.common import RECIPE_COLUMN, label_key, model_label
from fkdbench.report.levers import LEVERS_TABLE, levers_section
from fkdbench.report.markdown import render_markdown


def _lever(recipe: tuple[str, ...], rmse: float, variant: str = "none", **overrides):
    name = runs.run_name("cnn-manual", variant, recipe=recipe)
    return summary(
        "cnn-manual", variant, rmse, per_face=per_face_errors(rmse), recipe=recipe,
        run_name=name, **overrides,
    )  # fmt: skip


def test_a_planted_gain_is_better_and_an_identical_lever_ties() -> None:
    twin = summary("cnn-manual", "none", 2.0, per_face=per_face_errors(2.0))
    runs_ = [twin, _lever(("heatmap",), 1.6), _lever(("l1",), 2.0)]
    table = result_of(runs_).tables[LEVERS_TABLE].set_index("model")
    assert table.loc["cnn-manual + heatmap", "verdict"] == "better"
    assert table.loc["cnn-manual + heatmap", "high"] < 0
    assert table.loc["cnn-manual + l1", "verdict"] == "tie (not significant)"
    assert table.loc["cnn-manual + l1", "difference"] == 0.0
    # A lever is never counted as one more seed of its twin.
    accuracy = result_of(runs_).tables["accuracy_rmse"]
    assert accuracy.loc["cnn-manual", "none"] == 2.0


def test_a_lever_without_a_twin_has_its_row_but_no_comparison() -> None:
    result = result_of([_lever(("wing",), 1.9, variant="aug"), summary("cnn-manual", "none")])
    assert LEVERS_TABLE not in result.tables
    assert "cnn-manual + wing" in result.tables["accuracy_rmse"].index
    assert levers_section(result) is None


def test_lever_rows_have_no_paper_numbers_beside_them() -> None:
    twin = summary("cnn-manual", "none", 2.0, per_face=per_face_errors(2.0))
    lever = _lever(("heatmap", "wing"), 1.7)
    bench = [
        timed(twin.run_name, "onnxruntime", 0.02).flat(),
        {**timed("cnn-manual--none", "onnxruntime", 0.03).flat(), "run_name": lever.run_name,
         "recipe": ["heatmap", "wing"]},
    ]  # fmt: skip
    tables = result_of([twin, lever], bench).tables
    timing = tables["timing"].set_index("run_name")
    assert timing.loc[lever.run_name, "model"] == "cnn-manual + heatmap + wing"
    assert timing.loc[lever.run_name, RECIPE_COLUMN] == "heatmap+wing"
    assert pd.isna(timing.loc[lever.run_name, "paper_model"])
    assert isinstance(timing.loc[twin.run_name, "paper_model"], str)
    size = tables["size"].set_index("run_name")
    assert pd.isna(size.loc[lever.run_name, "paper_model"])
    levers = tables[LEVERS_TABLE].iloc[0]
    assert (levers["seconds_per_100"], levers["seconds_per_100_twin"]) == (0.03, 0.02)


def test_a_report_without_levers_has_no_recipe_column_or_levers_section() -> None:
    result = result_of([summary("cnn-manual", "none"), summary("cnn-tuned", "none")])
    assert all(RECIPE_COLUMN not in table.columns for table in result.tables.values())
    assert "What each lever buys" not in render_markdown(result)


def test_labels_order_the_papers_recipe_first() -> None:
    labels = [
        model_label("cnn-manual", "scratch", ("wing",)),
        model_label("cnn-manual", "scratch"),
        model_label("cnn-manual", "finetuned"),
        model_label("cnn-manual", "scratch", ("heatmap", "wing")),
    ]
    assert sorted(labels, key=label_key) == [
        "cnn-manual",
        "cnn-manual + heatmap + wing",
        "cnn-manual + wing",
        "cnn-manual (finetuned)",
    ]


def test_a_cost_ratio_across_two_bench_runs_is_marked() -> None:
    twin = summary("cnn-manual", "none", 2.0, per_face=per_face_errors(2.0))
    lever = _lever(("flip",), 1.9)
    lever_record = {**timed("cnn-manual--none", "onnxruntime", 0.04).flat(),
                    "run_name": lever.run_name, "recipe": ["flip"]}  # fmt: skip
    for stamp, marked in (("2026-01-01T00:00:00+00:00", False), ("2026-02-01", True)):
        bench = [timed(twin.run_name, "onnxruntime", 0.02).flat(), {**lever_record,
                 "timestamp": stamp}]  # fmt: skip
        result = result_of([twin, lever], bench)
        assert bool(result.tables[LEVERS_TABLE]["same_bench_run"].iloc[0]) is not marked
        text = "\n".join(levers_section(result))
        assert ("(2.00x*)" in text) is marked and ("(2.00x)" in text) is not marked
        assert ("different bench runs" in text) is marked


def test_an_untimed_lever_says_not_measured_and_no_footnote() -> None:
    twin = summary("cnn-manual", "none", 2.0, per_face=per_face_errors(2.0))
    lever = _lever(("l1",), 1.9)
    result = result_of([twin, lever], [timed(twin.run_name, "onnxruntime", 0.02).flat()])
    text = "\n".join(levers_section(result))
    assert "not measured" in text and "different bench runs" not in text
