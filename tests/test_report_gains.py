"""Gains by variant: our Table 2 computed from the runs, its labels, the ratios, the text."""

from __future__ import annotations

import pytest

from fkdbench import reference
from fkdbench.report.common import NOT_RUN
from fkdbench.report.gains import (
    WORSE_LABEL,
    gain_label,
    gains_markdown,
    gains_table,
    ratio_table,
    ratios_markdown,
)
from fkdbench.report.inputs import RunSummary


def test_gains_are_computed_from_the_runs() -> None:
    made = [
        RunSummary("m--none", "mobilenetv2", "none", "finetuned", test_rmse=2.0),
        RunSummary("m--aug", "mobilenetv2", "aug", "finetuned", test_rmse=1.0),
        RunSummary("m--knn", "mobilenetv2", "knn", "finetuned", test_rmse=2.2),
    ]
    gains = gains_table(made).set_index("variant")
    assert gains.loc["aug", "gain_percent"] == pytest.approx(50.0)
    assert gains.loc["aug", "label"] == "+++"
    assert gains.loc["aug", "paper_label"] == "+++"  # Table 2, MobileNetV2 fine tuned
    assert gains.loc["knn", "gain_percent"] == pytest.approx(-10.0)
    assert gains.loc["knn", "label"] == WORSE_LABEL
    assert gains.loc["ffill", "label"] == NOT_RUN
    labels = [gain_label(g) for g in (4.9, -4.9, 5.0, 14.9, 15.0, 30.0, -5.0)]
    assert labels == ["Similar", "Similar", "+", "+", "++", "+++", WORSE_LABEL]
    assert gain_label(float("nan")) == NOT_RUN


def test_gains_markdown_says_why_a_gain_is_missing() -> None:
    made = [
        RunSummary("a--aug", "cnn-manual", "aug", test_rmse=1.0),  # no `none` run
        RunSummary("b--none", "cnn-baseline", "none", test_rmse=2.0),
        RunSummary("b--aug", "cnn-baseline", "aug", test_rmse=1.5),
    ]
    text = gains_markdown(gains_table(made))
    manual = next(line for line in text.splitlines() if line.startswith("| cnn-manual "))
    baseline = next(line for line in text.splitlines() if line.startswith("| cnn-baseline "))
    assert "| not run (no `none` run) " in manual
    assert "| +25.0% ++ " in baseline
    assert gains_markdown(gains_table([])) == ""


def test_ratios_are_ours_beside_the_papers() -> None:
    claim = reference.RATIO_CLAIMS[0]
    made = [
        RunSummary("w", claim.arch, claim.variant, claim.worse_mode, test_rmse=3.0),
        RunSummary("b", claim.arch, claim.variant, claim.better_mode, test_rmse=2.0),
    ]
    ratios = ratio_table(made)
    assert len(ratios) == len(reference.RATIO_CLAIMS)
    assert ratios.loc[0, "ours"] == pytest.approx(1.5)
    assert (ratios.loc[0, "paper_low"], ratios.loc[0, "paper_high"]) == (claim.low, claim.high)
    text = ratios_markdown(ratios)
    assert "| 1.50x " in text
    unmeasured = ratio_table([])
    assert unmeasured["ours"].isna().all()
    assert f"| {NOT_RUN} " in ratios_markdown(unmeasured)
