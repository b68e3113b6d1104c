"""The runtimes table: measured cells, "not installed" cells, and the fastest backend per run
at batch 1 and 32, ranked only among backends timed in one bench call."""

from __future__ import annotations

import shutil

from bench_factory import make_bench_record, make_error_record

from fkdbench.edge import NO_COMPILER, NOT_INSTALLED, is_unavailable, missing_reason
from fkdbench.report.runtimes import fastest, runtimes_lines, runtimes_table

NOW, EARLIER = "2026-12-03T10:00:00+00:00", "2026-12-01T10:00:00+00:00"


def _measured(backend: str, latency_ms: float, seconds: float, **fields) -> dict:
    return make_bench_record(
        run_name="cnn-manual--none",
        backend=backend,
        latency_batch1_ms=[latency_ms] * 3,
        seconds_per_100_images=[seconds] * 3,
        timestamp=fields.pop("timestamp", NOW),
        **fields,
    ).flat()


def _not_installed(backend: str) -> dict:
    error = f"{backend}: {NOT_INSTALLED}; no module 'openvino'"
    return make_error_record(error=error, run_name="cnn-manual--none", backend=backend).flat()


def test_no_edge_records_no_table() -> None:
    core = [_measured("torch", 4.0, 0.3), _measured("onnxruntime", 0.5, 0.05)]
    assert runtimes_table(core, [make_error_record().flat()]) is None


def test_cells_fastest_and_not_installed() -> None:
    measured = [
        _measured("torch", 4.0, 0.30),
        _measured("onnxruntime", 0.50, 0.050),
        _measured("executorch-xnnpack", 0.70, 0.040, parity_max_abs_diff_pixels=2e-5),
        # Faster still, but timed in another bench call: not ranked against the others.
        _measured("ncnn", 0.10, 0.010, timestamp=EARLIER),
    ]
    failed = [_not_installed("openvino"), make_error_record(backend="onnxruntime-int8").flat()]
    table = runtimes_table(measured, failed)
    statuses = dict(zip(table["backend"], table["status"], strict=True))
    assert statuses["openvino"] == NOT_INSTALLED
    assert "onnxruntime-int8" not in statuses  # a real failure is a problem line, not a cell
    assert statuses["executorch-xnnpack"] == "measured"
    assert (
        table.set_index("backend").loc["executorch-xnnpack", "parity_max_abs_diff_pixels"] == 2e-5
    )

    [best] = fastest(table).to_dict("records")
    assert best["fastest_batch1"] == "onnxruntime" and best["fastest_batch1_p50_ms"] == 0.5
    assert best["fastest_batch32"] == "executorch-xnnpack"
    assert best["fastest_batch32_seconds_per_100"] == 0.04 and best["backends_compared"] == 3

    text = "\n".join(runtimes_lines(table))
    assert "| cnn-manual--none | 4.00 ms / 0.3000 s" in text
    assert NOT_INSTALLED in text and "onnxruntime (0.50)" in text
    assert "executorch-xnnpack (0.0400)" in text


def test_a_measurement_outranks_an_older_not_installed() -> None:
    table = runtimes_table([_measured("openvino", 1.0, 0.1)], [_not_installed("openvino")])
    assert list(table["status"]) == ["measured"]


def test_not_measured_at_batch_32_is_said() -> None:
    table = runtimes_table([_measured("ncnn", 1.0, 0.1, batch_size=8)], [])
    assert "not measured at batch 32" in "\n".join(runtimes_lines(table))


def test_no_compiler_is_unavailable_too(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = missing_reason("torch-compiled")
    assert reason == f"torch-compiled: {NO_COMPILER}" and is_unavailable(reason)
    failed = make_error_record(error=reason, run_name="cnn-manual--none", backend="torch-compiled")
    table = runtimes_table([], [failed.flat()])
    assert list(table["status"]) == [NO_COMPILER]
    # A runtime that is there but failed is not "unavailable": it is a problem line.
    assert not is_unavailable("ncnn: predictions differ from PyTorch's by 41.2 px")
