"""Parameters and size: paper Table 1 beside our run folders and bench records."""

from __future__ import annotations

from report_factory import result_of, timed

from fkdbench import reference
from fkdbench.report.common import BYTES_PER_MB, NOT_EXPORTED, NOT_MEASURED
from fkdbench.report.inputs import RunSummary
from fkdbench.report.size import size_markdown, size_section, size_table


def test_run_folders_first_then_the_latest_bench_record() -> None:
    run = RunSummary(
        "cnn-manual--none", "cnn-manual", "none", params_keras=235_102, model_pt_bytes=956_965
    )
    records = [
        timed("cnn-manual--none", "onnxruntime", 0.2, onnx_bytes=1_000_000).flat(),
        timed(
            "cnn-manual--none", "onnxruntime", 0.2, onnx_bytes=2_000_000, parameters_keras=1,
            timestamp="2026-02-01T00:00:00+00:00",
        ).flat(),  # newer: fills the gaps first
        timed("cnn-baseline--aug", "torch", 0.5, parameters_keras=1_890_846).flat(),
    ]  # fmt: skip
    table = size_table([run], records).set_index("run_name")
    ours = table.loc["cnn-manual--none"]
    assert ours["params_keras"] == 235_102  # the run folder's, not the record's
    assert ours["state_dict_mb"] == 956_965 / BYTES_PER_MB
    assert ours["onnx_mb"] == 2.0
    assert ours["params_pytorch"] == records[1]["parameters_pytorch"]
    benched = table.loc["cnn-baseline--aug"]  # no run folder: the bench record alone
    assert benched["params_keras"] == 1_890_846 and benched["model"] == "cnn-baseline"
    paper = reference.paper_row("cnn-manual", "none", "scratch", reference.TABLE1)
    assert (ours["paper_params"], ours["paper_mb"]) == (paper.params, paper.size_mb)
    assert list(table.index) == ["cnn-baseline--aug", "cnn-manual--none"]


def test_the_markdown_says_what_is_missing() -> None:
    runs = [RunSummary("cnn-manual--untrained", "cnn-manual", None, trained=False)]
    text = size_markdown(size_table(runs))
    row = next(line for line in text.splitlines() if line.startswith("| cnn-manual (untrained) "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "untrained"
    assert cells[2:5] == [NOT_MEASURED] * 3 and cells[5:7] == [NOT_EXPORTED] * 2
    paper = reference.paper_row("cnn-manual", "none", "scratch", reference.TABLE1)
    assert cells[7:] == [paper.model, f"{paper.params:,}", repr(paper.size_mb)]
    assert size_section(result_of())[2] == f"No models: {NOT_MEASURED}."
