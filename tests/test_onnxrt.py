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
