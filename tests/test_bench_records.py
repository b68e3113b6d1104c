"""Bench records: format 4 on disk, formats 1-3 upgraded on read, the flat view, bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_factory import ENVIRONMENT, make_bench_record, make_error_record

from fkdbench.bench import (
    BENCH_FORMAT_VERSION,
    BenchError,
    RecordedLatency,
    append_records,
    read_records,
    record_from_json,
)

FORMAT1_FIXTURE = Path(__file__).parent / "data" / "bench-format1.jsonl"
# The 42 format-1 records of the quick run once committed in results/bench.jsonl, kept here
# because results/ is rewritten by every `fkdbench reproduce` (no test may depend on it).
FORMAT2_FIXTURE = Path(__file__).parent / "data" / "bench-format2.jsonl"
COMMITTED = Path(__file__).resolve().parent / "data" / "bench-format1-quick-run.jsonl"
FORMAT3_KEYS = (
    "graph_key",
    "timed_as",
    "unstable",
    "unstable_reasons",
    "seconds_per_100_images_spread",
    "machine_peak_samples_gflops",
    "load_averages",
    "usable_cores",
    "other_cpu_cores",
    "passes_per_sample",
)
FORMAT4_KEYS = ("recipe",)
FORMAT5_KEYS = ("parity_max_abs_diff_pixels", "int8_recipe")
MACHINE_FIELDS = ("cpu_model", "cpu_cores", "cpu_features", "versions", "git_commit")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_flat_view_is_the_line(path: Path) -> int:
    """Every field of every format-1 line, bit for bit and type for type, in the flat view."""
    originals = _lines(path)
    records = read_records(path)
    assert len(records) == len(originals)
    for number, (original, record) in enumerate(zip(originals, records, strict=True), 1):
        assert original["format_version"] == 1
        flat = record.flat()
        for name, value in original.items():
            if name == "format_version":
                continue
            assert (flat[name], type(flat[name])) == (value, type(value)), (number, name)
        # Format 1's optional fields (FR, AUC) read as absent, format 3's and 5's as unknown;
        # nothing else is added.
        added = {"error", "test_fr", "test_auc", *FORMAT3_KEYS, *FORMAT4_KEYS, *FORMAT5_KEYS}
        assert set(flat) - set(original) <= added
        assert flat["recipe"] == []  # every run of format 1 trained the papers' recipe
        assert flat["format_version"] == BENCH_FORMAT_VERSION and flat["error"] is None
    return len(records)


def test_format1_fixture_is_upgraded_without_inventing_samples() -> None:
    original = _lines(FORMAT1_FIXTURE)[0]
    record = read_records(FORMAT1_FIXTURE)[0]
    assert record.format_version == BENCH_FORMAT_VERSION == 5 and not record.failed
    assert record.samples.seconds_per_100_images == original["seconds_per_100_images_all"]
    # Format 1 kept no latency samples: its percentiles are kept as recorded, and said so.
    assert record.samples.latency_batch1_ms == []
    assert record.samples.latency_batch1_recorded == RecordedLatency(
        original["latency_batch1_p50_ms"], original["latency_batch1_p99_ms"]
    )
    assert record.latency_ms(50) == original["latency_batch1_p50_ms"]
    assert record.settings.latency_warmup is None and record.calibration.matrix_sizes is None
    assert record.environment == original["environment"]
    assert _assert_flat_view_is_the_line(FORMAT1_FIXTURE) == 4


def test_every_committed_record_reads_back_as_written() -> None:
    assert _assert_flat_view_is_the_line(COMMITTED) == 42


def test_format1_without_an_environment_block_keeps_its_machine_fields() -> None:
    line = _lines(FORMAT1_FIXTURE)[0]
    del line["environment"]
    record = record_from_json(line)
    assert {name: record.environment[name] for name in MACHINE_FIELDS} == {
        name: line[name] for name in MACHINE_FIELDS
    }


def test_format2_round_trip_stores_samples_and_one_environment() -> None:
    record = make_bench_record(
        seconds_per_100_images=[0.3, 0.1, 0.2], latency_batch1_ms=[4.0, 1.0, 3.0, 2.0]
    )
    line = record.to_json()
    assert record_from_json(json.loads(json.dumps(line))) == record
    assert line["format_version"] == BENCH_FORMAT_VERSION
    # Samples, not statistics; machine facts only in `environment`.
    assert line["samples"]["latency_batch1_ms"] == [4.0, 1.0, 3.0, 2.0]
    assert not set(line) & {*MACHINE_FIELDS, "seconds_per_100_images", "normalised_time"}
    flat = record.flat()
    assert flat["seconds_per_100_images"] == 0.2
    assert flat["seconds_per_100_images_all"] == [0.3, 0.1, 0.2]
    assert flat["latency_batch1_p50_ms"] == 2.5
    assert flat["latency_batch1_p99_ms"] == pytest.approx(3.97, abs=1e-12)
    assert flat["achieved_gflops"] == 10_000_000 * 100 / 0.2 / 1e9
    assert flat["normalised_time"] == 0.2 * 100.0
    assert flat["cpu_model"] == ENVIRONMENT["cpu_model"] and flat["threads"] == 2


def test_error_record_flat_view_carries_the_error_and_no_timing() -> None:
    record = make_error_record("runs/x/model.onnx: not a loadable ONNX model")
    assert record.failed
    flat = record_from_json(record.to_json()).flat()
    assert flat["error"] == "runs/x/model.onnx: not a loadable ONNX model"
    timing = ("seconds_per_100_images", "latency_batch1_p50_ms", "normalised_time")
    assert all(flat[name] is None for name in (*timing, "achieved_gflops", "test_rmse"))
    unread = make_error_record(model=None, arch=None).flat()
    assert unread["flops_per_image"] is None and unread["parameters_keras"] is None


def test_files_append_and_mix_formats(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text(FORMAT1_FIXTURE.read_text().splitlines()[0] + "\n")
    new = [make_bench_record(backend="torch"), make_error_record()]
    append_records(path, new)
    records = read_records(path)
    assert [record.format_version for record in records] == [BENCH_FORMAT_VERSION] * 3
    assert records[1:] == new
    assert read_records(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "line 2: malformed JSON"),
        ("[1, 2]", "line 2: not a JSON object"),
        ('{"format_version": 9}', "line 2: format_version 9 is newer than this fkdbench reads"),
        ('{"run_name": "x"}', "line 2: no valid format_version"),
        ('{"format_version": 1, "run_name": "x"}', "line 2: a format-1 record without"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(make_bench_record().to_json()) + "\n" + line + "\n")
    with pytest.raises(BenchError, match=f"bench.jsonl: {problem}") as caught:
        read_records(path)
    assert "\n" not in str(caught.value)


def test_unknown_and_missing_fields_are_named(tmp_path: Path) -> None:
    line = make_bench_record().to_json()
    line["settings"]["colour"] = "blue"
    with pytest.raises(BenchError, match="'settings': unknown field 'colour'"):
        record_from_json(line)
    line = make_bench_record().to_json()
    del line["identity"]["backend"]
    with pytest.raises(BenchError, match="'identity': no field 'backend'"):
        record_from_json(line)


def test_format2_fixture_is_upgraded_with_format3_fields_unknown() -> None:
    originals = _lines(FORMAT2_FIXTURE)
    records = read_records(FORMAT2_FIXTURE)
    assert [line["format_version"] for line in originals] == [2, 2, 2]
    for original, record in zip(originals, records, strict=True):
        assert record.format_version == BENCH_FORMAT_VERSION
        assert record.identity.recipe == ()
        assert (
            record.samples.seconds_per_100_images == original["samples"]["seconds_per_100_images"]
        )
        assert record.error == original["error"]
        # Its one peak is its only peak sample; what format 2 never checked reads as unknown.
        assert record.calibration.peak_samples == [original["calibration"]["peak_gflops"]]
        assert record.calibration.load_averages is None
        assert record.identity.graph_key is None and record.identity.timed_as is None
        assert record.unstable is None and record.unstable_reasons == []
        flat = record.flat()
        assert flat["unstable"] is None and flat["machine_peak_samples_gflops"] == [100.0]
    assert records[0].flat()["seconds_per_100_images"] == 0.3
    assert records[2].failed


def test_format3_fields_round_trip_and_show_in_the_flat_view() -> None:
    record = make_bench_record(
        seconds_per_100_images=[0.1, 0.2, 0.15],
        timed_as="cnn-manual--aug",
        peak_samples=[90.0, 100.0],
        load_averages=[0.5, 3.5],
        unstable=True,
        unstable_reasons=["load average 3.50 above the 2 usable cores"],
    )
    assert record_from_json(json.loads(json.dumps(record.to_json()))) == record
    flat = record.flat()
    assert {name: flat[name] for name in FORMAT3_KEYS} == {
        "graph_key": "c" * 64,
        "timed_as": "cnn-manual--aug",
        "unstable": True,
        "unstable_reasons": ["load average 3.50 above the 2 usable cores"],
        "seconds_per_100_images_spread": (0.2 - 0.1) / 0.15,
        "machine_peak_samples_gflops": [90.0, 100.0],
        "load_averages": [0.5, 3.5],
        "usable_cores": 2,
        "other_cpu_cores": None,
        "passes_per_sample": 1,
    }


def test_format3_record_is_upgraded_with_the_papers_recipe() -> None:
    line = make_bench_record().to_json()
    del line["identity"]["recipe"]
    line["format_version"] = 3
    record = record_from_json(line)
    assert record.format_version == BENCH_FORMAT_VERSION and record.identity.recipe == ()
    assert record.flat()["recipe"] == []


def test_format4_record_is_upgraded_without_a_parity_it_never_checked() -> None:
    line = make_bench_record().to_json()
    del line["scores"]["parity_max_abs_diff_pixels"]
    line["format_version"] = 4
    record = record_from_json(line)
    assert record.format_version == BENCH_FORMAT_VERSION
    assert record.scores.parity_max_abs_diff_pixels is None
    assert record.flat()["parity_max_abs_diff_pixels"] is None


def test_recipe_round_trips_as_a_tuple_and_shows_as_a_list() -> None:
    record = make_bench_record(recipe=["heatmap", "wing", "flip"])
    assert record.identity.recipe == ("heatmap", "wing", "flip")
    line = json.loads(json.dumps(record.to_json()))
    assert line["identity"]["recipe"] == ["heatmap", "wing", "flip"]
    assert record_from_json(line) == record
    assert record.flat()["recipe"] == ["heatmap", "wing", "flip"]
