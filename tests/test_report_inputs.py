"""The report's inputs: run folders and runs.jsonl as RunSummary, bench.jsonl as flat dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_factory import make_bench_record, make_error_record
from report_factory import (
    COORDINATES_PER_FACE,
    SPEC_SOURCE,
    TUNE_RUNS,
    timed,
    write_bench_file,
    write_run,
    write_seeded_run,
)

from fkdbench import runs
from fkdbench.report import build_report
from fkdbench.report.common import ReportError
from fkdbench.report.inputs import (
    RunSummary,
    latest_records,
    load_bench_records,
    load_runs,
    read_run_records,
    write_run_records,
)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    for arch, variant in TUNE_RUNS:
        write_run(tmp_path / "runs", arch, variant, SPEC_SOURCE if arch == "cnn-tuned" else None)
    return tmp_path / "runs"


def test_spec_source_round_trips_through_run_records(runs_dir: Path, tmp_path: Path) -> None:
    summaries = load_runs(runs_dir)
    tuned = next(run for run in summaries if run.run_name == "cnn-tuned--masked")
    assert tuned.spec_source == SPEC_SOURCE
    manual = next(run for run in summaries if run.run_name == "cnn-manual--masked")
    assert manual.spec_source is None
    path = write_run_records(summaries, tmp_path / "runs.jsonl")
    assert read_run_records(path) == summaries
    # A runs.jsonl written before the field existed still loads.
    old = [json.loads(line) for line in path.read_text().splitlines()]
    for record in old:
        del record["spec_source"]
    path.write_text("".join(json.dumps(record) + "\n" for record in old))
    assert {run.spec_source for run in read_run_records(path)} == {None}


def test_runs_are_read_from_their_files_in_table_order(runs_dir: Path) -> None:
    summaries = load_runs(runs_dir)
    assert [run.run_name for run in summaries] == [
        "cnn-baseline--masked",
        "cnn-manual--masked",
        "cnn-tuned--none",
        "cnn-tuned--masked",
    ]
    for run in summaries:
        rmse, keras, model_bytes = TUNE_RUNS[(run.arch, run.variant)]
        assert (run.test_rmse, run.params_keras, run.model_pt_bytes) == (rmse, keras, model_bytes)
        assert run.trained and run.folder == runs_dir / run.run_name and run.history == ()
    assert load_runs(runs_dir.parent / "absent") == []


def test_a_broken_run_folder_is_skipped_and_named(runs_dir: Path) -> None:
    broken = runs_dir / "cnn-manual--masked" / runs.METRICS_FILE
    broken.write_text("{")
    problems: list[str] = []
    summaries = load_runs(runs_dir, problems)
    assert "cnn-manual--masked" not in {run.run_name for run in summaries}
    assert len(summaries) == 3
    assert len(problems) == 1 and problems[0].startswith("skipped run folder cnn-manual--masked: ")
    (runs_dir / "notes").mkdir()  # neither a run nor an untrained folder: not listed
    assert len(load_runs(runs_dir)) == 3


def test_run_records_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no run records"):
        read_run_records(tmp_path / "runs.jsonl")
    path = tmp_path / "runs.jsonl"
    record = {"run_name": "a--none", "arch": "cnn-manual", "variant": "none", "future": 1}
    path.write_text(json.dumps(record) + "\n\n{not json\n")
    with pytest.raises(ReportError, match=rf"{path}: line 3: malformed JSON"):
        read_run_records(path)
    path.write_text(json.dumps(record) + "\n")
    # Older than convergence judging: read as runs.py reads such a run, "not judged".
    not_judged = runs.convergence_of({})
    assert read_run_records(path) == [
        RunSummary(
            "a--none",
            "cnn-manual",
            "none",
            converged=not_judged["converged"],
            convergence_rule=not_judged["rule"],
            convergence_detail=not_judged["detail"],
        )
    ]


def test_bench_records_are_the_flat_view(tmp_path: Path) -> None:
    assert load_bench_records(None) == []
    assert load_bench_records(tmp_path / "absent.jsonl") == []
    record = timed("cnn-manual--none", "onnxruntime", 0.25, batch_size=8)
    path = write_bench_file(tmp_path / "bench.jsonl", [record, make_bench_record()])
    loaded = load_bench_records(path)
    assert len(loaded) == 2
    assert loaded[0] == record.flat()
    assert loaded[0]["seconds_per_100_images"] == 0.25 and loaded[0]["batch_size"] == 8


def test_latest_record_per_measurement() -> None:
    older = {"run_name": "a--none", "backend": "torch", "batch_size": 32, "threads": 1}
    records = [
        {**older, "timestamp": "2026-01-02", "seconds": 1},
        {**older, "timestamp": "2026-01-01", "seconds": 2},  # appended later, but older
        {**older, "timestamp": "2026-01-02", "seconds": 3},  # same time: the later line
        {**older, "backend": "onnxruntime", "timestamp": "2026-01-01", "seconds": 4},
        {**older, "threads": 2, "timestamp": "2026-01-01", "seconds": 5},
    ]
    latest = latest_records(records)
    assert [record["seconds"] for record in latest] == [3, 5, 4]  # torch, then by threads


def test_a_failed_bench_target_is_a_problem_and_keeps_its_last_good_timing(
    tmp_path: Path,
) -> None:
    good = timed("cnn-manual--none", "onnxruntime", 0.25)
    failed = make_error_record(
        "runs/cnn-manual--none/model.onnx: not a loadable ONNX model",
        run_name="cnn-manual--none",
        arch="cnn-manual",
        variant="none",
        backend="onnxruntime",
        threads=good.settings.threads,
        batch_size=good.settings.batch_size,
        timestamp="2026-01-02T00:00:00+00:00",
    )
    bench_file = write_bench_file(tmp_path / "bench.jsonl", [good, failed])
    # The report needs a run; it is not the one timed (the table is built from the records).
    write_run(tmp_path / "runs", "cnn-manual", "masked", None)
    result = build_report(
        tmp_path / "runs", bench_file, tmp_path / "out", formats=("json",), quiet=True
    )
    assert [record["seconds_per_100_images"] for record in result.bench_records] == [0.25]
    assert any(
        "cnn-manual--none onnxruntime failed: runs/cnn-manual--none/model.onnx" in problem
        for problem in result.problems
    ), result.problems


def test_format_2_runs_carry_seed_convergence_per_face_and_training(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    write_seeded_run(runs_dir, "cnn-manual", "none", 1, 2.0)
    write_seeded_run(runs_dir, "cnn-manual", "none", 2, 2.2, stop_reason="time-limited")
    first, second = load_runs(runs_dir)
    assert (first.run_name, first.seed, second.seed) == ("cnn-manual--none--s1", 1, 2)
    assert first.converged is True and "flat" in first.convergence_rule
    assert first.training_seconds == 12.5 and first.images_per_second == 800.0
    assert first.environment["cpu_model"] == "Test CPU"
    assert first.has_per_face and set(first.per_face_coordinates) == {COORDINATES_PER_FACE}
    assert first.finished and not second.finished and first.row == second.row
    path = write_run_records([first, second], tmp_path / "runs.jsonl")
    again = read_run_records(path)
    assert again == [first, second]
    assert again[0].per_face_squared_errors == first.per_face_squared_errors


def test_an_old_time_limit_is_read_as_time_limited(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    record = {"run_name": "a--none", "arch": "cnn-manual", "variant": "none"}
    path.write_text(json.dumps({**record, "stop_reason": "time-limit"}) + "\n")
    (run,) = read_run_records(path)
    assert run.stop_reason == "time-limited" and not run.finished
