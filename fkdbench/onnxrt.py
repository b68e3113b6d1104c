"""Running an exported model with ONNX Runtime on the CPU: sessions, inputs, predictions.

The exported graph's conventions (see :mod:`fkdbench.export`) are fixed here, because every
user of a graph (export's parity check and scores, bench, predict, tune) relies on them:

- input ``image``: float32 ``(N, C, H, W)``, gray values in [0, 1], any batch size;
- output ``keypoints``: float32 ``(N, K, 2)``, (x, y) in the input image's pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fkdbench import runs
from fkdbench.provenance import available_cores, check_threads

INPUT_NAME = "image"
OUTPUT_NAME = "keypoints"
# Batch of the predictions used for scores (not for timing: bench owns timing).
SCORING_BATCH = 128

Predictor = Callable[[np.ndarray], np.ndarray]


class OnnxModelError(ValueError):
    """An ONNX file that cannot be run as an exported model; the message names the file."""


def images_as_float(images: np.ndarray, in_chans: int = 1) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, C, H, W) in [0, 1], the exported model's input."""
    batch = np.ascontiguousarray(images, dtype=np.float32)[:, None] / np.float32(255.0)
    return np.repeat(batch, in_chans, axis=1) if in_chans > 1 else batch


# ONNX Runtime's pass that moves a QuantizeLinear up through MaxPool, Reshape and the like
# is off. An INT8 graph whose stem stays FP32 (fkdbench.int8) has its quantize after the
# stem's pooling on purpose; moved above it, the pooling ran on uint8 in a slow NCHW kernel
# (cnn-baseline, batch 32, 2-core AMD EPYC: 8 ms of a 17 ms pass; with the pass off, 7.5 ms
# in all against FP32's 14). On fully quantized graphs the pass finds nothing to move: the
# optimized graphs of cnn-manual and cnn-baseline are identical with it on or off.
DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]


def open_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session set up as the design's measurement rules ask.

    ``intra_op_num_threads`` is always explicit (ONNX Runtime's own default gives erratic
    timings), one inter-op thread, sequential execution, every graph optimisation on but
    :data:`DISABLED_OPTIMIZERS`.
    A missing or unreadable model raises :class:`OnnxModelError` naming the file.
    """
    import onnxruntime as ort  # heavy; imported when a session is first needed

    check_threads(threads)
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX model (run `fkdbench export` first)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or available_cores())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=DISABLED_OPTIMIZERS,
        )
    except Exception as error:  # noqa: BLE001 - ORT raises its own types on bad files
        reason = runs.first_line(error)
        raise OnnxModelError(f"{path}: not a loadable ONNX model ({reason})") from None
    names = [node.name for node in session.get_inputs()]
    if names != [INPUT_NAME]:
        raise OnnxModelError(f"{path}: expected one input named {INPUT_NAME!r}, found {names}")
    return session


def check_session_input(session: Any, path: Path, in_chans: int, image_size: int) -> None:
    """Refuse a graph whose declared input does not take ``(N, in_chans, size, size)``."""
    shape = session.get_inputs()[0].shape
    expected = [in_chans, image_size, image_size]
    declared = [dim if isinstance(dim, int) else None for dim in shape[1:]]
    mismatched = len(shape) != 4 or any(
        size is not None and size != want for size, want in zip(declared, expected, strict=True)
    )
    if mismatched:
        raise OnnxModelError(
            f"{path}: its input is {shape}, the data needs (N, {in_chans}, {image_size}, "
            f"{image_size})"
        )


def onnx_predict(session: Any, images: np.ndarray, batch_size: int = SCORING_BATCH) -> np.ndarray:
    """Run a session over float32 images (N, C, H, W) in batches; (N, K, 2) pixels."""
    outputs = [
        session.run(None, {INPUT_NAME: images[start : start + batch_size]})[0]
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float64)


def session_predictor(session: Any) -> Predictor:
    """``predict(images)`` for an ONNX Runtime session of an exported model: one call, the
    session's own output dtype (what timing measures)."""
    output_name = session.get_outputs()[0].name

    def predict_onnx(images: np.ndarray) -> np.ndarray:
        return session.run([output_name], {INPUT_NAME: images})[0]

    return predict_onnx
