"""OpenVINO's INT8 program of a run: NNCF's post-training quantization of ``model.onnx``, or
ONNX Runtime's QDQ graph read by OpenVINO, whichever is faster within
:data:`~fkdbench.int8.INT8_RMSE_TOLERANCE` of the FP32 graph's test RMSE.

OpenVINO reads QDQ graphs but not ONNX Runtime's QOperator ones (QLinearConv, QGemm: "No
conversion rule found"), and the export's INT8 search picks QOperator on most small
models; so the ONNX Runtime candidate is always a QDQ graph, made with the export's choice
in every other field. NNCF is OpenVINO's own path and is tried with both of its presets:
``performance`` (symmetric activations) and ``mixed`` (asymmetric activations, which fit
the outputs of layers that are not ReLUs). The chosen model is saved as OpenVINO IR
(``.xml`` + ``.bin``) with FP32 weights where it keeps FP32, so the bench reads one file
whatever made it; ``edge.json`` records every candidate's RMSE and time and why one won.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fkdbench.export import (
    DEFAULT_INT8_ACTIVATIONS,
    ONNX_FILE,
    quantize_int8,
    quiet_libraries,
    read_export_record,
)
from fkdbench.int8 import (
    DEFAULT_CHOICE,
    INT8_RMSE_TOLERANCE,
    SEARCH_BATCH,
    Candidate,
    Int8Choice,
    time_and_choose,
)
from fkdbench.io import write_bytes_atomic
from fkdbench.onnxrt import Predictor

OPENVINO_INT8_XML = "model.openvino.int8.xml"
OPENVINO_INT8_BIN = "model.openvino.int8.bin"
NNCF_PRESETS = ("performance", "mixed")
# OpenVINO's default on CPUs with bf16 units is bf16 for whatever stays float; f32 keeps
# the float parts of an INT8 program as exact as the FP32 row (see fkdbench.edge).
HINTS = {"INFERENCE_PRECISION_HINT": "f32"}

Score = Callable[[Predictor], float]


def compiled_predictor(model: Any, threads: int) -> Predictor:
    """A predictor of an OpenVINO model (read from a file or made in memory), on
    ``threads`` threads, with float parts in f32 (:data:`HINTS`)."""
    import openvino

    compiled = openvino.Core().compile_model(
        model, "CPU", {**HINTS, "INFERENCE_NUM_THREADS": threads}
    )
    request = compiled.create_infer_request()

    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer([images])[0])

    return predict


def error_summary(error: Exception) -> str:
    """The lines after "Summary:" of an OpenVINO conversion error (which ops failed), or its
    last line; its first line is only a source location."""
    lines = [line.strip(" -") for line in str(error).splitlines() if line.strip(" -")]
    if "Summary:" in lines:
        return "; ".join(lines[lines.index("Summary:") + 1 :])
    return lines[-1] if lines else type(error).__name__


def _nncf(onnx_path: Path, calibration: np.ndarray, preset: str) -> Any:
    import nncf
    import openvino

    model = openvino.Core().read_model(str(onnx_path))
    # One image per item: NNCF's statistics assume items of batch 1.
    dataset = nncf.Dataset([calibration[index : index + 1] for index in range(len(calibration))])
    with quiet_libraries():  # its progress bars and log lines are not ours
        return nncf.quantize(
            model,
            dataset,
            preset=getattr(nncf.QuantizationPreset, preset.upper()),
            subset_size=len(calibration),
        )


def _onnxruntime_qdq(folder: Path, scratch: Path, calibration: np.ndarray) -> Any:
    """The export's INT8 choice made as a QDQ graph (made here, from ``model.onnx``, so a
    stale ``model.int8.onnx`` is never read)."""
    import openvino

    record = read_export_record(folder) or {}
    choice = Int8Choice(**(record.get("int8_choice") or dataclasses.asdict(DEFAULT_CHOICE)))
    activations = record.get("int8_activations") or DEFAULT_INT8_ACTIVATIONS
    path = scratch / "qdq.onnx"
    qdq = dataclasses.replace(choice, quant_format="QDQ")
    quantize_int8(folder / ONNX_FILE, path, calibration, activations, qdq)
    return openvino.Core().read_model(str(path))


def describe(choice: dict[str, Any] | None) -> str | None:
    """One line saying how an OpenVINO INT8 program was made (None: not recorded)."""
    if not choice:
        return None
    if choice.get("path") == "nncf":
        return f"NNCF post-training quantization, {choice.get('preset')} preset"
    return "ONNX Runtime's QDQ graph (the export's INT8 choice in QDQ format), read by OpenVINO"


def _candidates(folder: Path, scratch: Path, calibration: np.ndarray) -> list[tuple[dict, Any]]:
    """Every way to make the INT8 program: (its description, a function making it)."""
    made: list[tuple[dict, Any]] = [
        (
            {"path": "nncf", "preset": preset},
            lambda preset=preset: _nncf(folder / ONNX_FILE, calibration, preset),
        )
        for preset in NNCF_PRESETS
    ]
    made.append(
        ({"path": "onnxruntime-qdq"}, lambda: _onnxruntime_qdq(folder, scratch, calibration))
    )
    return made


def make_openvino_int8(
    folder: Path,
    calibration: np.ndarray,
    timing_images: np.ndarray,
    threads: int,
    score: Score | None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Make ``model.openvino.int8.xml`` (+ ``.bin``) for a run; the record of the choice.

    ``score(predict)`` is a predictor's test RMSE (None for an untrained run: its RMSE
    means nothing, so every candidate counts as accurate and speed alone decides).
    Candidates are timed beside OpenVINO's FP32 program on ``timing_images``.
    """
    import openvino

    folder = Path(folder)
    fp32 = compiled_predictor(openvino.Core().read_model(str(folder / ONNX_FILE)), threads)
    fp32_rmse = score(fp32) if score is not None else None
    bound = None if fp32_rmse is None else fp32_rmse * (1 + INT8_RMSE_TOLERANCE)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".openvino-int8-") as scratch:
        tried, models = [], []
        for described, make in _candidates(folder, Path(scratch), calibration):
            candidate, model, predict = _try(described, make, threads, score, bound)
            tried.append((candidate, predict))
            models.append(model)
        if not any(candidate.error is None for candidate, _ in tried):
            first = tried[0][0].error
            raise ValueError(f"{folder}: no OpenVINO INT8 program could be made ({first})")
        index, reason, fp32_seconds = time_and_choose(tried, fp32, timing_images, clock)
        _save(models[index], folder, Path(scratch))
    return {
        "choice": tried[index][0].choice,
        "reason": reason if score is not None else f"untrained run, chosen on speed: {reason}",
        "fp32_test_rmse": fp32_rmse,
        "fp32_seconds_per_100_images": fp32_seconds,
        "candidates": [dataclasses.asdict(candidate) for candidate, _ in tried],
        "batch_size": SEARCH_BATCH,
    }


def _try(
    described: dict, make: Callable[[], Any], threads: int, score: Score | None, bound: float | None
) -> tuple[Candidate, Any, Predictor | None]:
    """Make, compile and score one candidate; one that fails is a candidate with its error."""
    try:
        model = make()
        predict = compiled_predictor(model, threads)
        rmse = score(predict) if score is not None else float("nan")
    except Exception as error:  # noqa: BLE001 - one candidate failing stops no other
        return Candidate(described, float("nan"), error=error_summary(error)), None, None
    within = bound is None or rmse <= bound
    return Candidate(described, rmse, within_tolerance=within), model, predict


def _save(model: Any, folder: Path, scratch: Path) -> None:
    """The chosen model as IR in the run folder, each file atomically, the ``.bin`` first
    (``edge.json``, written after, records both files' sha256)."""
    import openvino

    xml = scratch / OPENVINO_INT8_XML
    openvino.save_model(model, str(xml), compress_to_fp16=False)
    for name in (OPENVINO_INT8_BIN, OPENVINO_INT8_XML):
        write_bytes_atomic(folder / name, (scratch / name).read_bytes())
