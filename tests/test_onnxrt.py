"""ONNX Runtime helpers: inputs as the graph takes them, sessions, batched predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, save_model

from fkdbench.onnxrt import (
    OnnxModelError,
    check_session_input,
    images_as_float,
    onnx_predict,
    open_session,
    session_predictor,
)


def _identity_graph(path: Path, input_name: str = "image", chans: int = 1) -> Path:
    """A graph whose output is its input, shaped (batch, chans, 4, 4)."""
    shape = ["batch", chans, 4, 4]
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["keypoints"])],
        "identity",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    save_model(model, str(path))
    return path


def test_images_as_float() -> None:
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    gray = images_as_float(images)
    assert gray.dtype == np.float32 and gray.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(gray[0, 0], np.array([[0, 1], [0.2, 0.4]], dtype=np.float32))
    rgb = images_as_float(images, in_chans=3)
    assert rgb.shape == (1, 3, 2, 2)
    assert all(np.array_equal(rgb[0, channel], gray[0, 0]) for channel in range(3))


def test_predictions_in_batches_match_one_call(tmp_path: Path) -> None:
    session = open_session(_identity_graph(tmp_path / "model.onnx"), threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    images = np.random.default_rng(0).random((7, 1, 4, 4), dtype=np.float32)
    batched = onnx_predict(session, images, batch_size=3)
    assert batched.dtype == np.float64
    np.testing.assert_array_equal(batched, images)
    single = session_predictor(session)(images)
    assert single.dtype == np.float32
    np.testing.assert_array_equal(single, images)


def test_session_input_checked_against_the_data(tmp_path: Path) -> None:
    path = _identity_graph(tmp_path / "model.onnx")
    session = open_session(path, threads=1)
    check_session_input(session, path, in_chans=1, image_size=4)
    with pytest.raises(OnnxModelError, match=r"model\.onnx: its input is .* needs \(N, 3, 4, 4\)"):
        check_session_input(session, path, in_chans=3, image_size=4)
    with pytest.raises(OnnxModelError, match=r"needs \(N, 1, 96, 96\)"):
        check_session_input(session, path, in_chans=1, image_size=96)


def test_bad_files_are_one_line_naming_them(tmp_path: Path) -> None:
    with pytest.raises(OnnxModelError, match="missing.onnx: no such ONNX model"):
        open_session(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(OnnxModelError, match=r"corrupt\.onnx: not a loadable ONNX model") as caught:
        open_session(corrupt)
    assert "\n" not in str(caught.value)
    other = _identity_graph(tmp_path / "other.onnx", input_name="x")
    with pytest.raises(OnnxModelError, match=r"other\.onnx: expected one input named 'image'"):
        open_session(other)


def _pool_then_quantize(path: Path) -> Path:
    """Conv -> MaxPool -> QuantizeLinear -> DequantizeLinear: an INT8 graph whose stem
    stays FP32, with its quantize after the pooling on purpose (fkdbench.int8)."""
    rng = np.random.default_rng(0)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], rng.random(36).tolist())
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05])
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [0])
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("QuantizeLinear", ["p", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["keypoints"]),
    ]
    graph = helper.make_graph(
        nodes,
        "stem",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, None)],
        [weights, scale, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    save_model(model, str(path))
    return path


def _optimized_ops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, open_graph) -> list[str]:
    """The op types of the graph as the session ``open_graph()`` opens optimized it."""
    import onnx
    import onnxruntime as ort

    optimized = tmp_path / "optimized.onnx"
    optimized.unlink(missing_ok=True)
    real_options = ort.SessionOptions

    def saving_options() -> ort.SessionOptions:
        options = real_options()
        options.optimized_model_filepath = str(optimized)
        return options

    with monkeypatch.context() as patch:
        patch.setattr(ort, "SessionOptions", saving_options)
        open_graph()
    return [node.op_type for node in onnx.load(str(optimized)).graph.node]


def test_sessions_keep_a_quantize_below_the_pooling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import onnxruntime as ort

    path = _pool_then_quantize(tmp_path / "stem.onnx")

    def default_session() -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    # ONNX Runtime's own default moves the quantize above the pooling (a uint8 MaxPool)...
    moved = _optimized_ops(monkeypatch, tmp_path, default_session)
    assert moved.index("QuantizeLinear") < moved.index("MaxPool")
    # ...open_session keeps it where the graph put it.
    kept = _optimized_ops(monkeypatch, tmp_path, lambda: open_session(path, threads=1))
    assert kept.index("MaxPool") < kept.index("QuantizeLinear")
