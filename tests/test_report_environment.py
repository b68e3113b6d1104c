"""Environment: every distinct value of where the numbers came from, and its source."""

from __future__ import annotations

from bench_factory import ENVIRONMENT
from report_factory import result_of, timed

from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.environment import environment_section, environment_table
from fkdbench.report.inputs import RunSummary


def test_bench_and_training_items() -> None:
    records = [
        timed("cnn-manual--none", "onnxruntime", 0.2).flat(),
        timed("cnn-manual--aug", "onnxruntime", 0.2, threads=2).flat(),
    ]
    runs = [
        RunSummary("a", "cnn-manual", "none", data_seed=0, scheme="kaggle15",
                   environment={"cpu_model": "Train CPU", "versions": {"torch": "2.1"}}),
        RunSummary("b", "cnn-manual", "aug", data_seed=1, scheme="kaggle15",
                   environment={"cpu_model": "Train CPU", "versions": {"torch": "2.2"}}),
        RunSummary("u", "cnn-manual", None, trained=False, data_seed=7),
    ]  # fmt: skip
    table = environment_table(runs, records).set_index("item")
    assert table.loc["CPU model", "value"] == ENVIRONMENT["cpu_model"]
    assert table.loc["CPU model", "source"] == "bench records"
    assert table.loc["CPU features", "value"] == " ".join(ENVIRONMENT["cpu_features"])
    assert table.loc["threads", "value"] == "1; 2"  # every distinct value
    assert table.loc["torch (bench)", "value"] == ENVIRONMENT["versions"]["torch"]
    assert table.loc["CPU model (training)", "source"] == "run folders"
    assert table.loc["data seed", "value"] == "0; 1"  # not the untrained folder's
    assert table.loc["torch (training)", "value"] == "2.1; 2.2"
    assert "data source" not in table.index  # no run recorded one


def test_nothing_recorded() -> None:
    assert environment_table([]).empty
    assert environment_section(result_of()) == [
        f"No run folders or bench records: {NOT_MEASURED}.",
        "",
    ]
