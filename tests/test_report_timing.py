"""Inference time: paper Table 4 beside the bench records, and the rows that stand for a
run's speed elsewhere in the report."""

from __future__ import annotations

import pytest
from bench_factory import make_bench_record
from report_factory import result_of, timed

from fkdbench import reference
from fkdbench.report.common import NOT_MEASURED, UNTRAINED_LABEL
from fkdbench.report.inputs import RunSummary
from fkdbench.report.timing import (
    speed_points,
    speed_rows,
    timing_markdown,
    timing_section,
    timing_table,
)


def _untrained(backend: str = "onnxruntime") -> dict:
    scores = dict.fromkeys(("test_rmse", "test_nme", "test_fr", "test_auc"))
    return make_bench_record(
        run_name="cnn-manual--untrained", variant=None, trained=False, backend=backend, **scores
    ).flat()


def test_timing_rows_are_the_records() -> None:
    record = make_bench_record(
        seconds_per_100_images=[0.5, 0.1, 0.3, 0.2, 0.4],
        latency_batch1_ms=[1.0, 2.0, 3.0, 4.0],
        flops_per_image=10_000_000,
        peak_gflops=100.0,
    ).flat()
    table = timing_table([record])
    row = table.iloc[0]
    assert (row["run_name"], row["backend"], row["model"]) == (
        "cnn-manual--none", "onnxruntime", "cnn-manual",
    )  # fmt: skip
    assert row["seconds_per_100"] == record["seconds_per_100_images"] == 0.3
    assert (row["seconds_per_100_q1"], row["seconds_per_100_q3"]) == (0.2, 0.4)
    assert row["seconds_per_100_iqr"] == pytest.approx(0.2)
    paper = reference.paper_row("cnn-manual", "none", "scratch", reference.TABLE4)
    assert row["paper_seconds_per_100"] == paper.seconds_per_100
    assert row["speedup_vs_paper"] == pytest.approx(paper.seconds_per_100 / 0.3)
    assert row["gflops_per_image"] == 0.01
    assert row["achieved_gflops"] == pytest.approx(0.01 * 100 / 0.3)
    assert row["fraction_of_peak"] == pytest.approx(0.01 * 100 / 0.3 / 100.0)
    assert row["latency_p50_ms"] == 2.5 and row["latency_p99_ms"] == pytest.approx(3.97)
    assert row["test_rmse"] == record["test_rmse"]
    assert str(table["batch_size"].dtype) == "Int64" and row["batch_size"] == 32


def test_an_untrained_model_sits_beside_the_papers_none_column() -> None:
    table = timing_table([_untrained()])
    row = table.iloc[0]
    assert row["model"] == f"cnn-manual ({UNTRAINED_LABEL})" and not row["trained"]
    paper = reference.paper_row("cnn-manual", "none", "scratch", reference.TABLE4)
    assert row["paper_seconds_per_100"] == paper.seconds_per_100
    text = timing_markdown(table)
    assert text.count(f"| {UNTRAINED_LABEL} ") == 2  # the variant and the RMSE cells


def test_speed_rows_are_one_setting_for_every_model() -> None:
    records = [
        timed("cnn-manual--none", "onnxruntime", 0.2).flat(),
        timed("cnn-manual--aug", "onnxruntime", 0.3, test_rmse=None).flat(),
        timed("cnn-manual--knn", "onnxruntime", 0.1, batch_size=1).flat(),
        timed("cnn-manual--none", "torch", 0.5).flat(),
        _untrained(),
    ]
    timing = timing_table(records)
    rows = speed_rows(timing)
    assert sorted(rows["run_name"]) == ["cnn-manual--aug", "cnn-manual--none"]
    assert set(rows["batch_size"]) == {32} and set(rows["backend"]) == {"onnxruntime"}
    runs = [
        RunSummary("cnn-manual--none", "cnn-manual", "none", test_rmse=9.0),
        RunSummary("cnn-manual--aug", "cnn-manual", "aug", test_rmse=1.5),
    ]
    # The backend's own RMSE where the record has one, else the run's.
    assert speed_points(runs, timing) == [
        ("cnn-manual--aug", 0.3, 1.5),
        ("cnn-manual--none", 0.2, records[0]["test_rmse"]),
    ]
    assert speed_rows(timing_table([])).empty


def test_the_section_says_what_was_not_measured() -> None:
    why, blank = timing_section(result_of())
    assert why.startswith(f"No bench records (no bench file given): inference time {NOT_MEASURED}")
    assert blank == ""
    section = "\n".join(timing_section(result_of(bench_records=[_untrained("torch")])))
    assert f"ONNX Runtime INT8: {NOT_MEASURED} (no records for that backend)." in section
    assert "Paper Table 4 beside ours" in section


def _format3(run_name: str, seconds: float, **fields) -> dict:
    """A flat record with bench format 3's keys (graph, shared timing, steadiness, peak)."""
    return {
        **timed(run_name, "onnxruntime", seconds).flat(),
        "graph_key": "g" * 64,
        "timed_as": None,
        "unstable": False,
        "unstable_reasons": [],
        "machine_peak_samples_gflops": [80.0, 100.0, 95.0],
        **fields,
    }


def test_shared_timings_unstable_records_and_the_peak_are_said() -> None:
    records = [
        _format3("cnn-manual--none", 0.2),
        _format3("cnn-manual--aug", 0.2, timed_as="cnn-manual--none"),
        _format3("cnn-manual--knn", 0.3, unstable=True, unstable_reasons=["load 3.1 > 2 cores"]),
    ]
    section = "\n".join(timing_section(result_of(bench_records=records)))
    assert section.startswith("**Warning: 1 of 3 records were timed on an unsteady machine**")
    assert "cnn-manual--aug as cnn-manual--none" in section
    assert "yes: load 3.1 > 2 cores" in section and "| itself " in section
    assert "the best of 3 measurements through the bench, 100.0 GFLOP/s" in section
    assert "spread 80.0 to 100.0" in section
    runs = [RunSummary("cnn-manual--knn", "cnn-manual", "knn", stop_reason="time-limited")]
    timing = timing_table(records)
    assert "cnn-manual--knn" not in {point[0] for point in speed_points(runs, timing)}


def test_old_records_show_no_shared_timing_or_peak_lines() -> None:
    new_keys = ("graph_key", "timed_as", "unstable", "unstable_reasons")
    flat = timed("a--none", "torch", 1.0).flat()
    old = {key: value for key, value in flat.items() if key not in new_keys}
    old["machine_peak_samples_gflops"] = None  # bench format 2 and older
    section = "\n".join(timing_section(result_of(bench_records=[old])))
    assert "timed as" not in section and "Warning" not in section and "GFLOP/s" not in section
