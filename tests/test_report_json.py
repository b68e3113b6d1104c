"""report.json: every table as records, no NaN, the figures and what is missing."""

from __future__ import annotations

import json

from report_factory import result_of

from fkdbench.report.figures import FIGURES
from fkdbench.report.gains import GAIN_LABEL_THRESHOLDS, WORSE_LABEL
from fkdbench.report.inputs import RunSummary
from fkdbench.report.json_report import REPORT_FORMAT_VERSION, render_json


def test_every_table_and_no_nan() -> None:
    result = result_of([RunSummary("m--aug", "cnn-manual", "aug", test_rmse=1.0)])
    result.missing_figures = {"ced": "no trained run recorded its error distribution"}
    text = render_json(result)
    payload = json.loads(text)  # would fail on NaN: render_json forbids it
    assert text.endswith("}\n") and "NaN" not in text
    assert payload["format_version"] == REPORT_FORMAT_VERSION
    assert set(payload["tables"]) == set(result.tables)
    assert payload["tables"]["accuracy_rmse"][0]["model"] == "cnn-manual"
    assert payload["tables"]["accuracy_rmse"][0]["none"] is None
    assert payload["tables"]["accuracy_rmse"][0]["aug"] == 1.0
    assert set(payload["figures"]) == set(FIGURES)
    assert payload["figures"]["ced"] == {
        "file": None,
        "caption": FIGURES["ced"],
        "missing": "no trained run recorded its error distribution",
    }
    assert payload["gain_thresholds"]["labels"] == [list(pair) for pair in GAIN_LABEL_THRESHOLDS]
    assert payload["gain_thresholds"]["worse"] == WORSE_LABEL
    assert payload["tune_figures"] == {} and payload["problems"] == []
    assert render_json(result) == text  # deterministic
