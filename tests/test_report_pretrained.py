"""Rows whose backbone was pretrained here (``pretrained-<method>``) in the report: set
against the same model from scratch, beside the paper's frozen and fine-tuned cells, in
the paper's fine-tune ratios, and always said not to be ImageNet."""

from __future__ import annotations

import pytest
from report_factory import per_face_errors, result_of, summary

from fkdbench import runs
from fkdbench.report.levers import LEVERS_TABLE, twin_of
from fkdbench.report.markdown import render_markdown

PRETRAINED = ("pretrained-synthetic-landmarks",)


def _pretrained(mode: str, rmse: float, variant: str = "aug", seed: int | None = None):
    name = runs.run_name("mobilenetv2", variant, mode, seed, PRETRAINED)
    return summary(
        "mobilenetv2", variant, rmse, per_face=per_face_errors(rmse, seed or 0),
        weights_mode=mode, recipe=PRETRAINED, run_name=name, seed=seed,
    )  # fmt: skip


def test_a_pretrained_row_is_set_against_the_model_from_scratch() -> None:
    scratch = summary("mobilenetv2", "aug", 3.0, per_face=per_face_errors(3.0))
    rows = [scratch, _pretrained("finetuned", 2.4), _pretrained("frozen", 3.3)]
    table = result_of(rows).tables[LEVERS_TABLE].set_index("model")
    finetuned = "mobilenetv2 (finetuned) + pretrained-synthetic-landmarks"
    assert list(table["twin"]) == ["mobilenetv2", "mobilenetv2"]
    assert table.loc[finetuned, "verdict"] == "better"
    assert table.loc["mobilenetv2 (frozen) + pretrained-synthetic-landmarks", "verdict"] == "worse"


def test_the_twin_of_a_pretrained_lever_keeps_the_lever() -> None:
    row = _pretrained("frozen", 2.0).row._replace(recipe=(*PRETRAINED, "flip"))
    assert twin_of(row) == row._replace(weights_mode="scratch", recipe=("flip",))
    assert twin_of(row._replace(recipe=())) is None


def test_a_lower_backbone_lr_is_a_lever_beside_the_same_row_at_the_full_rate() -> None:
    slow = (*PRETRAINED, "backbone-lr0.3")
    name = runs.run_name("mobilenetv2", "aug", "finetuned", None, slow)
    rows = [
        summary("mobilenetv2", "aug", 3.0, per_face=per_face_errors(3.0)),
        _pretrained("finetuned", 2.4),
        summary(
            "mobilenetv2", "aug", 2.0, per_face=per_face_errors(2.0), weights_mode="finetuned",
            recipe=slow, run_name=name,
        ),
    ]  # fmt: skip
    result = result_of(rows)
    table = result.tables[LEVERS_TABLE].set_index("model")
    full_rate = "mobilenetv2 (finetuned) + pretrained-synthetic-landmarks"
    assert table.loc[f"{full_rate} + backbone-lr0.3", "twin"] == full_rate
    assert table.loc[f"{full_rate} + backbone-lr0.3", "verdict"] == "better"
    assert table.loc[full_rate, "twin"] == "mobilenetv2"
    # Only the full-rate row stands for the paper's fine-tuned cell.
    gains = result.tables["gains"]
    slow_gains = gains[gains["model"].str.contains("backbone-lr")]
    assert len(slow_gains) and slow_gains["paper_label"].isna().all()
    assert gains[gains["model"] == full_rate]["paper_label"].notna().any()
    assert "backbone-lr<fraction>" in render_markdown(result)


def test_pretrained_rows_sit_beside_the_papers_cells_and_say_they_are_not_imagenet() -> None:
    rows = [
        _pretrained("finetuned", 2.5, "none"),
        _pretrained("finetuned", 2.0, "aug"),
        summary("mobilenetv2", "none", 3.0),
    ]
    result = result_of(rows)
    gains = result.tables["gains"].set_index(["model", "variant"])
    cell = gains.loc[("mobilenetv2 (finetuned) + pretrained-synthetic-landmarks", "aug")]
    assert cell["paper_label"] is not None and cell["gain_percent"] == pytest.approx(20.0)
    text = render_markdown(result)
    assert text.count("not ImageNet") == 2  # under Accuracy and beside Table 2
    assert "68 dense landmarks" in text
    plain = render_markdown(result_of([summary("mobilenetv2", "none", 3.0)]))
    assert "not ImageNet" not in plain


def test_the_fine_tune_ratio_of_pretrained_rows_is_its_own_row_over_seeds() -> None:
    rows = [
        _pretrained("frozen", 4.0, "aug", seed=0),
        _pretrained("frozen", 6.0, "aug", seed=1),
        _pretrained("finetuned", 2.0, "aug", seed=0),
        _pretrained("finetuned", 3.0, "aug", seed=1),
    ]
    ratios = result_of(rows).tables["finetune_ratios"]
    mobilenet = ratios[(ratios["arch"] == "mobilenetv2") & (ratios["variant"] == "aug")]
    assert list(mobilenet["ratio"]) == [
        "RMSE frozen / RMSE finetuned",
        "RMSE frozen / RMSE finetuned, pretrained-synthetic-landmarks",
    ]
    assert mobilenet["ours"].isna().iloc[0]
    assert mobilenet["ours"].iloc[1] == pytest.approx(5.0 / 2.5)
