"""The edge runtimes (fkdbench.edge): each installed one is made, checked against PyTorch and
timed by the bench with the same records; a missing one is one line and an error record.

The backends come from the optional ``edge`` extra. Where it is absent the tests that need
a runtime skip, saying so, except when ``FKDBENCH_REQUIRE_EDGE=1`` (CI, which installs the
extra): there an absent runtime is a failure. Timing runs on a fake clock: speed is
measured by ``fkdbench bench``, never asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_factory import fake_clock
from hypothesis import given, settings
from hypothesis import strategies as st

from fkdbench import bench, edge, openvino_int8, runs
from fkdbench.bench import BenchOptions, Calibration
from fkdbench.bench.options import NEEDS_INT8
from fkdbench.bench.plan import graph_key
from fkdbench.export import PARITY_TOLERANCE_PIXELS, PixelKeypoints
from fkdbench.io import sha256_file

RUN = "cnn-manual--none"
CALIBRATION = Calibration(
    peak_gflops=100.0, torch_gflops=80.0, onnxruntime_gflops=100.0, threads=1, seconds=0.5
)
REQUIRED = os.environ.get("FKDBENCH_REQUIRE_EDGE") == "1"
EDGE = tuple(edge.EDGE_BACKENDS)


def _installed_or_skip(name: str) -> None:
    reason = edge.missing_reason(name)
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"FKDBENCH_REQUIRE_EDGE=1 but {reason}")
        pytest.skip(reason)


def _options(tmp_path: Path, backends: tuple[str, ...]) -> BenchOptions:
    return BenchOptions(
        backends=backends,
        threads=1,
        repeats=2,
        latency_samples=3,
        latency_warmup=1,
        batch_size=4,
        results=tmp_path / "bench.jsonl",
        quiet=True,
    )


def _bench(folder: Path, options: BenchOptions) -> bench.BenchResult:
    return bench.bench([folder], options, calibration=CALIBRATION, clock=fake_clock())


@pytest.fixture(scope="module")
def edge_bench(trained_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """One bench of a copy of the trained run on torch, onnxruntime-int8 and every edge
    backend that is installed: (run folder, result), shared by the tests below (making the
    ExecuTorch program and compiling with torch.compile take tens of seconds)."""
    root = tmp_path_factory.mktemp("edge")
    folder = root / RUN
    shutil.copytree(trained_runs / RUN, folder)
    installed = tuple(name for name in EDGE if edge.missing_reason(name) is None)
    options = _options(root, ("torch", "onnxruntime", "onnxruntime-int8", *installed))
    return folder, _bench(folder, options)


def _record(result: bench.BenchResult, backend: str) -> bench.BenchRecord:
    [record] = [r for r in result.records if r.identity.backend == backend]
    return record


@pytest.mark.parametrize("name", EDGE)
def test_each_installed_backend_passes_its_check_and_is_timed(edge_bench, name: str) -> None:
    _installed_or_skip(name)
    folder, result = edge_bench
    record = _record(result, name)
    assert record.error is None, record.error
    torch_record = _record(result, "torch")
    # Its own predictions, scored, and the largest difference from PyTorch eager's.
    parity = record.scores.parity_max_abs_diff_pixels
    assert parity is not None and torch_record.scores.parity_max_abs_diff_pixels is None
    if edge.EDGE_BACKENDS[name].int8:
        assert record.scores.test_rmse <= torch_record.scores.test_rmse * (
            1 + edge.INT8_RMSE_TOLERANCE
        )
        if name in NEEDS_INT8:  # it runs export's INT8 graph, and says how that was made
            ort_int8 = _record(result, "onnxruntime-int8").settings
            assert record.settings.int8_activations == ort_int8.int8_activations
            assert record.settings.int8_recipe == ort_int8.int8_recipe is not None
        elif name == "openvino-int8":  # it made its own, and says how
            assert record.settings.int8_recipe == edge.int8_recipe(folder, name)[1] is not None
    else:
        assert parity <= PARITY_TOLERANCE_PIXELS
        assert record.scores.test_rmse == pytest.approx(torch_record.scores.test_rmse, abs=1e-3)
    # The same record fields as the core backends: samples, the file timed and its sha256.
    assert len(record.samples.seconds_per_100_images) == 2
    assert len(record.samples.latency_batch1_ms) == 3
    model_file = Path(record.identity.model_file)
    assert model_file.name == edge.EDGE_BACKENDS[name].file
    assert record.identity.model_sha256 == sha256_file(model_file)
    assert record.model.flops_per_image == torch_record.model.flops_per_image


@pytest.mark.parametrize("name", EDGE)
def test_edge_json_says_what_was_made_from_which_weights(edge_bench, name: str) -> None:
    _installed_or_skip(name)
    folder, _ = edge_bench
    entry = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())[name]
    assert entry["file"] == edge.EDGE_BACKENDS[name].file
    assert entry["file_sha256"] == sha256_file(folder / entry["file"])
    assert entry["model_sha256"] == sha256_file(folder / runs.MODEL_FILE)
    assert entry["max_batch"] == 4 and entry["seconds"] >= 0
    assert all(entry["versions"][module] != "absent" for module in entry["versions"])
    assert edge.stale_reason(folder, name, 4) is None
    for companion in edge.EDGE_BACKENDS[name].companions:  # the files that go with it
        assert entry["companions_sha256"][companion] == sha256_file(folder / companion)


def test_each_runtime_is_its_own_graph_even_on_one_file() -> None:
    model = {"arch": "cnn-manual", "num_outputs": 30, "in_chans": 1, "input_size": 96}
    keys = {backend: graph_key(model, backend, "torchscript") for backend in bench.BACKENDS}
    # OpenVINO times the very model.onnx ONNX Runtime does: still another measurement.
    assert len(set(keys.values())) == len(bench.BACKENDS)


def test_a_made_file_is_reused_until_the_weights_or_the_file_change(edge_bench, tmp_path):
    name = "executorch-xnnpack"
    _installed_or_skip(name)
    source, _ = edge_bench
    folder = tmp_path / RUN
    shutil.copytree(source, folder)
    before = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())[name]
    _bench(folder, _options(tmp_path, (name,)))
    assert json.loads((folder / edge.EDGE_RECORD_FILE).read_text())[name] == before

    # A larger batch than the program was made for: made again, for that batch.
    assert "made for batches of up to 4" in edge.stale_reason(folder, name, 8)
    # A program that is not the one recorded is never run.
    (folder / edge.PTE_FILE).write_bytes(b"not a program")
    assert "is not the file" in edge.stale_reason(folder, name, 4)
    result = _bench(folder, _options(tmp_path, (name,)))
    assert result.failures == []
    after = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())[name]
    assert after["file_sha256"] == sha256_file(folder / edge.PTE_FILE) != "not a program"


def test_a_file_that_goes_with_the_timed_one_is_checked_too(edge_bench, tmp_path) -> None:
    # OpenVINO's .xml names its weights in a .bin beside it, ncnn's .bin its .param: a
    # replaced companion makes the entry stale, so the pair is made again, never mixed.
    name = "openvino-int8"
    _installed_or_skip(name)
    source, _ = edge_bench
    folder = tmp_path / RUN
    shutil.copytree(source, folder)
    (folder / edge.EDGE_BACKENDS[name].companions[0]).write_bytes(b"other weights")
    assert "the files that go with" in edge.stale_reason(folder, name, 4)
    result = _bench(folder, _options(tmp_path, (name,)))
    assert result.failures == [], result.failures[0].error
    assert edge.stale_reason(folder, name, 4) is None


def test_ncnn_is_made_from_a_run_folder_given_relative(
    edge_bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pnnx runs in a scratch folder of its own: a relative path once sent it nowhere.
    _installed_or_skip("ncnn")
    source, _ = edge_bench
    shutil.copytree(source, tmp_path / "runs" / RUN)
    (tmp_path / "runs" / RUN / edge.EDGE_RECORD_FILE).unlink()
    monkeypatch.chdir(tmp_path)
    result = _bench(Path("runs") / RUN, _options(tmp_path, ("ncnn",)))
    assert result.failures == [], result.failures[0].error
    assert edge.stale_reason(Path("runs") / RUN, "ncnn") is None


def test_layers_pnnx_left_unconverted_are_named(edge_bench, tmp_path: Path) -> None:
    """nasnetmobile's param held 8 Tensor.slice layers ncnn cannot run; the error said only
    "no input or output blob". Now it names them, at conversion and when loading."""
    _installed_or_skip("ncnn")
    source, _ = edge_bench
    folder = tmp_path / RUN
    shutil.copytree(source, folder)
    param = folder / edge.NCNN_PARAM
    lines = param.read_text().splitlines()
    assert edge.unconverted_layers("\n".join(lines)) is None
    third = lines[3].split()
    lines[3] = " ".join(["Tensor.slice", *third[1:]])
    param.write_text("\n".join(lines) + "\n")
    assert edge.unconverted_layers(param.read_text()) == "Tensor.slice (1 layer)"
    with pytest.raises(edge.EdgeError, match="pnnx left Tensor.slice \\(1 layer\\) unconverted"):
        edge.edge_predictor(folder, "ncnn", torch.nn.Identity(), 1)


class _Tiny(torch.nn.Module):
    """Conv, then a dense head, then a scaling as PixelKeypoints does: an INT8 head to keep."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 8 * 8, 6)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(image)).flatten(1)
        return (self.head(features) * 8.0).reshape(len(image), 3, 2)


def test_executorch_int8_keeps_the_head_fp32_when_int8_misses_the_check(tmp_path: Path) -> None:
    _installed_or_skip("executorch-xnnpack-int8")
    torch.manual_seed(0)
    module, example = _Tiny().eval(), torch.rand(2, 1, 8, 8)
    assert edge.head_layer(module) == "head"
    graph = torch.export.export(module, (example,)).module().graph
    kept = [node.name for node in graph.nodes if node in edge._from_layer_on(graph, "head")]
    assert kept[0] == "linear" and "mul" in kept and "conv2d" not in kept
    # Scores in the order they are asked: PyTorch, everything INT8 (too far), head FP32.
    scores = iter([1.0, 1.0 * (1 + edge.INT8_RMSE_TOLERANCE) + 0.01, 1.001])
    path = tmp_path / edge.PTE_INT8_FILE
    record = edge._make_xnnpack_int8(
        path, module, example, torch.rand(4, 1, 8, 8), lambda _predict: next(scores), 1
    )
    assert record["choice"] == {"excluded": "head", "kept_fp32": "head"}
    assert record["test_rmse"] == {"none": pytest.approx(1.03), "head": 1.001}
    assert "FP32 kept for the head (head)" in edge.describe_xnnpack_int8(record["choice"])
    predict = edge._executorch(path, 1, 2)
    assert predict(example.numpy()).shape == (2, 3, 2)
    # Good enough whole: no second program is made.
    scores = iter([1.0, 1.01])
    record = edge._make_xnnpack_int8(
        path, module, example, torch.rand(4, 1, 8, 8), lambda _predict: next(scores), 1
    )
    assert record["choice"] == {"excluded": "none"} and list(record["test_rmse"]) == ["none"]


class _Padded(torch.nn.Module):
    """Conv and batch norm, zero-padded, then max pooled, as nasnetmobile's reduction cells
    do: the pad XNNPACK refused while its INT8 parameters were not its input's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4 * 4 * 4, 6)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(self.norm(self.conv(image)), (0, 1, 0, 1))
        return self.head(torch.nn.functional.max_pool2d(padded, 3, stride=2).flatten(1))


def test_executorch_int8_runs_a_model_with_a_constant_pad(tmp_path: Path) -> None:
    _installed_or_skip("executorch-xnnpack-int8")
    torch.manual_seed(0)
    module = _Padded()
    module.norm.running_mean.fill_(0.5)  # the pad's input has negatives, as after a BN
    module, example = module.eval(), torch.rand(2, 1, 8, 8)
    path = tmp_path / edge.PTE_INT8_FILE
    edge._make_pte(path, module, example, torch.rand(8, 1, 8, 8))
    predicted = edge._executorch(path, 1, 2)(example.numpy())
    with torch.no_grad():
        expected = module(example).numpy()
    # INT8, so near PyTorch's answer rather than equal to it.
    assert predicted.shape == expected.shape
    assert np.abs(predicted - expected).max() <= 0.15 * np.abs(expected).max()


def test_a_file_made_by_an_older_recipe_is_made_again(edge_bench, tmp_path: Path) -> None:
    source, _ = edge_bench
    folder = tmp_path / RUN
    shutil.copytree(source, folder)
    for name in ("executorch-xnnpack-int8", "openvino-int8"):
        if edge.missing_reason(name) is not None:
            continue
        assert edge.stale_reason(folder, name, 4) is None
        records = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())
        records[name].pop("int8_choice")
        (folder / edge.EDGE_RECORD_FILE).write_text(json.dumps(records))
        assert edge.stale_reason(folder, name, 4) == "made before fkdbench chose its INT8 recipe"
    if edge.missing_reason("ncnn") is None:
        records = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())
        assert records["ncnn"]["made_from"] == "torchscript"
        records["ncnn"].pop("made_from")
        (folder / edge.EDGE_RECORD_FILE).write_text(json.dumps(records))
        reason = edge.stale_reason(folder, "ncnn")
        assert reason == "converted from model.onnx, now from torchscript"


def test_a_file_that_cannot_be_made_is_recorded_and_not_made_again(
    edge_bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nasnetmobile's ExecuTorch INT8 program was made (minutes) and failed to load on every
    bench; the failure is now recorded, and tried again only when what it came from changes."""
    name = "executorch-xnnpack"
    _installed_or_skip(name)
    source, _ = edge_bench
    folder = tmp_path / RUN
    shutil.copytree(source, folder)
    records = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())
    (folder / edge.EDGE_RECORD_FILE).write_text(json.dumps({**records, name: {}}))
    attempts = []

    def refuse(path: Path, *_args, **_kwargs) -> None:
        attempts.append(path)
        raise edge.EdgeError(f"{path}: XNNPACK cannot lower it")

    monkeypatch.setattr(edge, "_make_pte", refuse)
    errors = [_bench(folder, _options(tmp_path, (name,))).failures[0].error for _ in range(2)]
    assert len(attempts) == 1
    assert errors[0].endswith("XNNPACK cannot lower it")
    assert errors[1].endswith("(recorded in edge.json: not tried again)")
    entry = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())[name]
    assert (
        entry["failed"].endswith("XNNPACK cannot lower it")
        and entry["model_sha256"] == records[name]["model_sha256"]
    )
    # The other backends' entries are kept as they were.
    kept = json.loads((folder / edge.EDGE_RECORD_FILE).read_text())
    assert {key: kept[key] for key in records if key != name} == {
        key: value for key, value in records.items() if key != name
    }
    # Other code that makes the file (or other weights, or another runtime version): tried
    # again. The key is that code's sha256, so a commit elsewhere does not retry it.
    assert entry["makers_sha256"] == edge.makers_sha256()
    monkeypatch.setattr(edge, "makers_sha256", lambda: "other code")
    _bench(folder, _options(tmp_path, (name,)))
    assert len(attempts) == 2
    # So does other code of the architecture (the graph converted is its code's too).
    model = runs.load_model(folder)[0]
    assert edge.architecture_sha256(model) != edge.architecture_sha256(torch.nn.Identity())
    assert entry["architecture_sha256"] == edge.architecture_sha256(PixelKeypoints(model, 96))
    monkeypatch.setattr(edge, "architecture_sha256", lambda _module: "other layers")
    _bench(folder, _options(tmp_path, (name,)))
    assert len(attempts) == 3
    # A full disk is the machine's trouble: not recorded as the model's.
    monkeypatch.setattr(edge, "makers_sha256", lambda: "a third version")
    monkeypatch.setattr(edge, "_make_pte", lambda *_args, **_kwargs: _raise(OSError("disk full")))
    with pytest.raises(OSError):
        edge.prepare_backend(folder, name, torch.nn.Identity(), torch.zeros(4, 1, 96, 96))
    assert edge.recorded_failure(folder, name, torch.nn.Identity(), 4) is None


def _raise(error: Exception) -> None:
    raise error


def test_a_program_executorch_cannot_load_says_why_in_one_line(tmp_path: Path) -> None:
    _installed_or_skip("executorch-xnnpack")
    path = tmp_path / edge.EDGE_BACKENDS["executorch-xnnpack"].file
    path.write_bytes(b"not a program")
    with pytest.raises(edge.EdgeError) as caught:
        edge.edge_predictor(tmp_path, "executorch-xnnpack", torch.nn.Identity(), 1)
    message = str(caught.value)
    assert message.startswith(f"{path}: ExecuTorch cannot load it (") and "\n" not in message


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_reading_any_param_text_never_raises(text: str) -> None:
    left = edge.unconverted_layers(text)
    assert left is None or "layer" in left


def test_a_missing_runtime_is_one_line_and_a_record_not_a_crash(
    trained_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "openvino" else real(name, *args),
    )
    reason = edge.missing_reason("openvino")
    assert reason == f"openvino: {edge.NOT_INSTALLED}; no module 'openvino'"
    folder = tmp_path / RUN
    shutil.copytree(trained_runs / RUN, folder)
    result = _bench(folder, _options(tmp_path, ("torch", "openvino", "openvino-int8")))
    errors = {record.identity.backend: record.error for record in result.records}
    assert errors["torch"] is None
    assert errors["openvino"] == reason and "\n" not in reason
    assert errors["openvino-int8"].startswith(f"openvino-int8: {edge.NOT_INSTALLED}")
    assert result.failure_summary() == "2 of 3 targets failed"
    # Nothing was made for a runtime that is not there.
    assert not (folder / edge.EDGE_RECORD_FILE).exists()


def test_fp32_parity_and_int8_accuracy_rules() -> None:
    truth = np.zeros((3, 15, 2), dtype=np.float32)
    reference = truth + 1.0  # PyTorch's predictions: 1 px off everywhere (RMSE 1)

    def rmse_of(predictions: np.ndarray) -> float:
        return float(np.sqrt(np.mean((predictions - truth) ** 2)))

    close = reference + PARITY_TOLERANCE_PIXELS / 2
    assert edge.check_predictions("openvino", close, reference, rmse_of) == pytest.approx(
        PARITY_TOLERANCE_PIXELS / 2, rel=1e-3
    )
    with pytest.raises(edge.EdgeError, match=r"openvino: predictions differ .* not timed"):
        edge.check_predictions("openvino", reference + 0.01, reference, rmse_of)
    # INT8 is judged by accuracy: 1.5% worse passes, 3% worse does not.
    assert edge.check_predictions("openvino-int8", reference * 1.015, reference, rmse_of) > 0
    with pytest.raises(edge.EdgeError, match=r"more than 2% worse"):
        edge.check_predictions("openvino-int8", reference * 1.03, reference, rmse_of)
    # An untrained run's RMSE means nothing: INT8 is then not judged by it.
    assert edge.check_predictions("openvino-int8", reference * 2, reference, None) == 1.0
    # NaN predictions never pass.
    with pytest.raises(edge.EdgeError):
        edge.check_predictions("ncnn", reference * np.nan, reference, rmse_of)


def test_torch_compiled_raises_rather_than_running_eager_past_its_graphs(tmp_path) -> None:
    # Each run's PixelKeypoints.forward is one code object: dynamo's default of 8 graphs
    # per code object was hit at the third model of a bench, and it then ran eager silently.
    _installed_or_skip("torch-compiled")
    import torch
    import torch._dynamo

    edge.edge_predictor(tmp_path, "torch-compiled", torch.nn.Identity(), threads=1)
    config = torch._dynamo.config
    assert config.recompile_limit >= edge.COMPILED_GRAPHS_LIMIT
    assert config.accumulated_recompile_limit >= edge.COMPILED_GRAPHS_LIMIT
    assert config.fail_on_recompile_limit_hit is True


def test_an_openvino_conversion_error_is_one_line_naming_the_failed_ops() -> None:
    error = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed\n\n"
        "Summary:\n-- No conversion rule found for operations: com.microsoft.QGemm\n"
        "-- Conversion is failed for: QLinearConv-18\n\n"
    )
    assert openvino_int8.error_summary(error) == (
        "No conversion rule found for operations: com.microsoft.QGemm; "
        "Conversion is failed for: QLinearConv-18"
    )
    assert openvino_int8.error_summary(RuntimeError("one line")) == "one line"


def test_openvino_refusing_a_graph_is_an_edge_error(exported_run: Path) -> None:
    _installed_or_skip("openvino")
    broken = exported_run.parent / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(edge.EdgeError, match=r"broken.onnx: OpenVINO cannot run it \("):
        edge._openvino(broken, threads=1)
