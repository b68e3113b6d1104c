"""The runtimes edge users deploy with, beside PyTorch and ONNX Runtime: each an optional
extra (``uv sync --extra edge``), made from the run's files and checked before it is timed.

- ``torch-compiled``: ``torch.compile`` on the CPU (inductor; needs a C++ compiler), so the
  torch column can be PyTorch at its best, not only eager.
- ``openvino``: OpenVINO reading ``model.onnx``, with the FP32 precision hint stated. On a
  CPU with bf16 units OpenVINO's default is bf16: measured here (Xeon with AMX) that missed
  parity by 0.48 px on cnn-manual, so an FP32 row must ask for f32.
- ``openvino-int8``: OpenVINO's INT8 program, saved as IR: NNCF's quantization of
  ``model.onnx`` or ONNX Runtime's QDQ graph, whichever is faster within the RMSE bound
  (:mod:`fkdbench.openvino_int8`; OpenVINO cannot read ONNX Runtime's QOperator graphs).
- ``executorch-xnnpack``: the program phones run, ``torch.export`` lowered to the XNNPACK
  delegate, batch dynamic up to the bench's batch size.
- ``executorch-xnnpack-int8``: the same, quantized first as ExecuTorch's XNNPACK path does
  (PT2E with XNNPACKQuantizer: per-channel symmetric INT8, calibrated on training images;
  the head kept FP32 when all-INT8 misses the accuracy check and that does better).
- ``ncnn``: ncnn through pnnx's conversion of the model traced to TorchScript, with FP32
  weights (pnnx's default stores fp16 weights, which missed parity by 0.003 px). ncnn has no batch
  dimension: a batch is run image by image, as an app does.

Every backend passes a check before it is timed (the bench's, on its predictions of the
whole test split): FP32 within :data:`~fkdbench.export.PARITY_TOLERANCE_PIXELS` of PyTorch
eager, INT8 with a test RMSE at most :data:`INT8_RMSE_TOLERANCE` above PyTorch's.
``edge.json`` in the run folder records, per backend, the file made, its sha256, the
weights it came from and the versions that made it; an entry is reused only while the
weights and the file are the ones it recorded. A file that could not be made (or, made,
not loaded) is recorded too, with why: the next bench gives that line at once instead of
spending minutes making it again, until the weights, the runtime's versions, the fkdbench
code that makes the file or the architecture's code change (:func:`recorded_failure`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fkdbench import int8, openvino_int8, runs
from fkdbench.export import ONNX_FILE, PARITY_TOLERANCE_PIXELS
from fkdbench.int8 import INT8_RMSE_TOLERANCE
from fkdbench.io import sha256_file, write_bytes_atomic, write_json_atomic
from fkdbench.onnxrt import Predictor
from fkdbench.openvino_int8 import (
    OPENVINO_INT8_BIN,
    OPENVINO_INT8_XML,
    compiled_predictor,
    error_summary,
    make_openvino_int8,
)
from fkdbench.openvino_int8 import describe as describe_openvino_int8
from fkdbench.progress import say
from fkdbench.provenance import package_versions

EDGE_EXTRA = "edge"
NOT_INSTALLED = f"not installed (uv sync --extra {EDGE_EXTRA})"
EDGE_RECORD_FILE = "edge.json"
PTE_FILE = "model.xnnpack.pte"
PTE_INT8_FILE = "model.xnnpack.int8.pte"
NCNN_PARAM, NCNN_BIN = "model.ncnn.param", "model.ncnn.bin"


class EdgeError(ValueError):
    """An edge backend that cannot run or be trusted here; one line naming run and cause."""


@dataclass(frozen=True)
class EdgeBackend:
    """One runtime: the modules it needs, the file bench times (and the files that go
    with it), whether it is INT8."""

    name: str
    modules: tuple[str, ...]
    file: str
    int8: bool = False
    companions: tuple[str, ...] = ()


EDGE_BACKENDS = {
    backend.name: backend
    for backend in (
        EdgeBackend("torch-compiled", ("torch",), runs.MODEL_FILE),
        EdgeBackend("openvino", ("openvino",), ONNX_FILE),
        EdgeBackend(
            "openvino-int8",
            ("openvino", "nncf"),
            OPENVINO_INT8_XML,
            int8=True,
            companions=(OPENVINO_INT8_BIN,),
        ),
        EdgeBackend("executorch-xnnpack", ("executorch",), PTE_FILE),
        EdgeBackend("executorch-xnnpack-int8", ("executorch",), PTE_INT8_FILE, int8=True),
        EdgeBackend("ncnn", ("ncnn", "pnnx"), NCNN_BIN, companions=(NCNN_PARAM,)),
    )
}


NO_COMPILER = "no C++ compiler on PATH (torch.compile's CPU backend needs one)"


def is_unavailable(error: str) -> bool:
    """Whether a bench error line says a runtime is absent here (not that it failed)."""
    return NOT_INSTALLED in error or NO_COMPILER in error


def missing_reason(name: str) -> str | None:
    """None when backend ``name`` can run here, else why not (one line)."""
    backend = EDGE_BACKENDS[name]
    absent = [module for module in backend.modules if importlib.util.find_spec(module) is None]
    if absent:
        return f"{name}: {NOT_INSTALLED}; no module {absent[0]!r}"
    if name == "torch-compiled" and shutil.which("g++") is None and shutil.which("c++") is None:
        return f"{name}: {NO_COMPILER}"
    return None


# -- predictors: float32 (n, C, H, W) -> (n, K, 2) pixels -------------------------------------


# Graphs torch.compile may keep per code object. Every run's PixelKeypoints.forward is one
# code object, compiled once per model and batch shape (the batch, the test split's last
# partial batch, 1): dynamo's default of 8 was hit at the third model of a bench, after
# which it ran eager without a word (a "compiled" row that was not).
COMPILED_GRAPHS_LIMIT = 256


def _torch_compiled(folder: Path, module: torch.nn.Module, threads: int) -> Predictor:
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, COMPILED_GRAPHS_LIMIT)
    config.accumulated_recompile_limit = max(
        config.accumulated_recompile_limit, COMPILED_GRAPHS_LIMIT
    )
    config.fail_on_recompile_limit_hit = True  # beyond it: an error record, never eager
    compiled = torch.compile(module, dynamic=False)

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compiled(torch.from_numpy(images)).numpy()

    return predict


def _openvino(path: Path, threads: int) -> Predictor:
    import openvino

    try:
        return compiled_predictor(openvino.Core().read_model(str(path)), threads)
    except RuntimeError as error:
        raise EdgeError(f"{path}: OpenVINO cannot run it ({error_summary(error)})") from None


def _executorch(path: Path, threads: int, max_batch: int) -> Predictor:
    import executorch.extension.pybindings.portable_lib as portable
    from executorch.runtime import Runtime

    portable._unsafe_reset_threadpool(threads)  # XNNPACK's pool is process-wide
    method, failure = None, ""
    with _stderr_lines() as printed:
        try:
            method = Runtime.get().load_program(str(path)).load_method("forward")
        except RuntimeError as error:
            failure = runs.first_line(error)
    if method is None:
        # The runtime's exception says only "Failed to load method forward"; why is in the
        # log it printed (nasnetmobile INT8: XNNPACK's StaticConstantPad refused the pad).
        why = [line for line in printed if "failed" in line.lower()]
        reason = re.sub(r"^\[[^\]]*\]\s*", "", why[0]) if why else failure
        raise EdgeError(f"{path}: ExecuTorch cannot load it ({reason})")

    def predict(images: np.ndarray) -> np.ndarray:
        batches = [
            method.execute([torch.from_numpy(images[start : start + max_batch])])[0].numpy()
            for start in range(0, len(images), max_batch)
        ]
        return np.concatenate(batches)

    return predict


@contextlib.contextmanager
def _stderr_lines() -> Iterator[list[str]]:
    """The lines native code writes to the process's stderr (file descriptor 2) inside the
    block, kept instead of printed; the list fills when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += sink.read().decode("utf-8", errors="replace").splitlines()


def _ncnn(folder: Path, threads: int) -> Predictor:
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    # FP32 throughout: ncnn stores and computes in fp16 or bf16 where the CPU has them.
    for option in dir(net.opt):
        if "fp16" in option or "bf16" in option:
            setattr(net.opt, option, False)
    param = folder / NCNN_PARAM
    if net.load_param(str(param)) != 0 or net.load_model(str(folder / NCNN_BIN)) != 0:
        left = unconverted_layers(param.read_text())
        why = f"pnnx left {left} unconverted" if left else "ncnn cannot load it"
        raise EdgeError(f"{param}: {why}")
    if not net.input_names() or not net.output_names():
        raise EdgeError(f"{param}: ncnn finds no input or output blob in it")
    input_name, output_name = net.input_names()[0], net.output_names()[0]

    def one(image: np.ndarray) -> np.ndarray:
        extractor = net.create_extractor()
        # A Mat over a numpy array borrows its memory; the clone owns its own, so nothing
        # is freed while ncnn reads it (the borrowed one crashed the process here).
        extractor.input(input_name, ncnn.Mat(np.ascontiguousarray(image)).clone())
        _, out = extractor.extract(output_name)
        return np.array(out)

    def predict(images: np.ndarray) -> np.ndarray:
        return np.stack([one(image) for image in images]).astype(np.float32)

    return predict


def edge_predictor(folder: Path, name: str, module: torch.nn.Module, threads: int) -> Predictor:
    """The predictor of edge backend ``name`` for a run whose file :func:`prepare_backend`
    made (``module`` answers in pixels); :class:`EdgeError` when it is not installed."""
    reason = missing_reason(name)
    if reason is not None:
        raise EdgeError(reason)
    path = Path(folder) / EDGE_BACKENDS[name].file
    if name == "torch-compiled":
        return _torch_compiled(folder, module, threads)
    if name.startswith("openvino"):
        return _openvino(path, threads)
    if name.startswith("executorch"):
        return _executorch(path, threads, int(_recorded(folder, name).get("max_batch") or 1))
    return _ncnn(Path(folder), threads)


# -- making the files --------------------------------------------------------------------------


def _make_pte(
    path: Path,
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: torch.Tensor | None = None,
    kept_fp32: str | None = None,
) -> None:
    """The ExecuTorch program of ``module`` lowered to XNNPACK; with ``calibration``
    images, first quantized the way ExecuTorch's XNNPACK path quantizes (PT2E with
    XNNPACKQuantizer: per-channel symmetric INT8 weights, INT8 activations calibrated on
    those images), but for the submodule named ``kept_fp32``, which stays FP32."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    # XNNPACK plans memory for the example's size: the largest batch it will be given.
    shapes = ({0: torch.export.Dim("batch", min=1, max=len(example))},)
    if calibration is not None:
        module = _quantized_pt2e(module, example, calibration, shapes, kept_fp32)
    program = torch.export.export(module, (example,), dynamic_shapes=shapes)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    write_bytes_atomic(path, lowered.to_executorch().buffer)


def head_layer(module: torch.nn.Module) -> str | None:
    """The name of ``module``'s last conv or dense layer (the one that writes the keypoints
    or heatmaps), in the order the modules were registered; None when it has none."""
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    names = [name for name, child in module.named_modules() if isinstance(child, layers)]
    return names[-1] if names else None


def _make_xnnpack_int8(
    path: Path,
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: torch.Tensor,
    score: Callable[[Predictor], float] | None,
    threads: int,
) -> dict[str, Any]:
    """The quantized ExecuTorch program, everything INT8; when that misses the bench's INT8
    check (test RMSE within :data:`INT8_RMSE_TOLERANCE` of PyTorch's) and the head kept
    FP32 does better, that one. A heatmap head quantized lost unet-small 2.3% RMSE here, as
    it did in ONNX Runtime (fkdbench.int8). The choice and the RMSEs measured are recorded
    (``edge.json``); an untrained run (``score`` None) is quantized whole."""
    _make_pte(path, module, example, calibration)
    record: dict[str, Any] = {"choice": {"excluded": "none"}}
    if score is None:
        return record

    def torch_predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(images)).numpy()

    max_batch = len(example)
    fp32_rmse = score(torch_predict)
    whole_rmse = score(_executorch(path, threads, max_batch))
    record |= {"fp32_test_rmse": fp32_rmse, "test_rmse": {"none": whole_rmse}}
    head = head_layer(module)
    if whole_rmse <= fp32_rmse * (1 + INT8_RMSE_TOLERANCE) or head is None:
        return record
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".xnnpack-") as scratch:
        candidate = Path(scratch) / path.name
        _make_pte(candidate, module, example, calibration, kept_fp32=head)
        head_rmse = score(_executorch(candidate, threads, max_batch))
        record["test_rmse"]["head"] = head_rmse
        if head_rmse < whole_rmse:
            write_bytes_atomic(path, candidate.read_bytes())
            record["choice"] = {"excluded": "head", "kept_fp32": head}
    return record


def describe_xnnpack_int8(choice: dict[str, Any] | None) -> str | None:
    """One line for an ExecuTorch INT8 choice, as records and reports say it."""
    if choice is None:
        return None
    kept = choice.get("kept_fp32")
    precision = f"FP32 kept for the head ({kept})" if kept else "everything INT8"
    return (
        "PT2E with XNNPACKQuantizer: per-channel symmetric INT8 calibrated on training "
        f"images, {precision}"
    )


def _from_layer_on(graph: torch.fx.Graph, layer: str) -> set[torch.fx.Node]:
    """The nodes of an exported graph from the first one of submodule ``layer`` to the end
    (the head as :mod:`fkdbench.int8` means it: the last layer and all after it)."""
    kept: set[torch.fx.Node] = set()
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        paths = [path.removeprefix("L['self'].") for path, _ in stack.values()]
        if kept or (paths and paths[-1] == layer):
            kept.add(node)
    return kept


_PADS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)


def _pads_sharing(quantizer_class: type) -> type:
    """``quantizer_class`` (XNNPACKQuantizer) with each constant pad sharing its input's
    INT8 parameters. XNNPACKQuantizer leaves ``aten.pad`` unannotated, so a pad sat between
    its input's dequantize and a quantize with other parameters, and XNNPACK's static
    constant pad, which needs the same on both sides, refused nasnetmobile's program
    ("Failed to create StaticConstantPad node"). Zero, all a pad adds, is exact in any
    affine INT8 parameters, so sharing them loses nothing."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        propagate_annotation,
    )
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = quantizer_class.annotate(self, model)
        for node in model.graph.nodes:
            if node.op != "call_function" or node.target not in _PADS:
                continue
            source = node.args[0]
            annotated = source.meta.get(Q_ANNOTATION_KEY)
            wanted = self.filter_fn is None or self.filter_fn(node)  # the head kept FP32
            if Q_ANNOTATION_KEY in node.meta or not wanted or annotated is None:
                continue
            if annotated.output_qspec is None:  # an FP32 input: the pad stays FP32 too
                continue
            shared = SharedQuantizationSpec(source)
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                input_qspec_map={source: shared}, output_qspec=shared, _annotated=True
            )
        propagate_annotation(model)  # what follows a pad (a crop) shares it in turn
        return model

    return type(
        f"PadsSharing{quantizer_class.__name__}", (quantizer_class,), {"annotate": annotate}
    )


def _quantized_pt2e(
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: torch.Tensor,
    shapes: tuple,
    kept_fp32: str | None = None,
) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(module, (example,), dynamic_shapes=shapes).module()
    quantizer = _pads_sharing(XNNPACKQuantizer)().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    if kept_fp32 is not None:
        kept = _from_layer_on(captured.graph, kept_fp32)
        quantizer.set_filter_function(lambda node: node not in kept)
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for start in range(0, len(calibration), len(example)):
            prepared(calibration[start : start + len(example)])
    return convert_pt2e(prepared)


# What pnnx converts: the run's module traced to TorchScript, pnnx's own input. From
# model.onnx it lost the axes of unet-small's soft-argmax sums (ReduceSum takes them as an
# input since opset 13), and ncnn's predictions were 42 px off; traced, 4.6e-5 px, and the
# other architectures within 4e-5 px either way.
NCNN_SOURCE = "torchscript"


def _make_ncnn(folder: Path, module: torch.nn.Module, example: torch.Tensor) -> None:
    pnnx = Path(sys.executable).parent / "pnnx"
    command = str(pnnx) if pnnx.is_file() else shutil.which("pnnx")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pnnx-") as name:
        # pnnx runs in the scratch folder: every path it is given must be absolute.
        scratch = Path(name).resolve()
        source = scratch / "model.pt"
        one = example[:1]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constant shapes
            torch.jit.trace(module.eval(), one).save(str(source))
        shape = f"inputshape=[{','.join(str(size) for size in one.shape)}]"
        done = subprocess.run(
            [command or "pnnx", str(source), shape, "fp16=0"],
            cwd=scratch,
            capture_output=True,
            text=True,
        )
        made = [scratch / made_name for made_name in ("model.ncnn.param", "model.ncnn.bin")]
        if done.returncode != 0 or not all(path.is_file() for path in made):
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EdgeError(f"{folder}: pnnx could not convert the traced model ({tail[0]})")
        left = unconverted_layers(made[0].read_text())
        if left:
            raise EdgeError(f"{folder}: pnnx left {left} unconverted; ncnn cannot run them")
        for path, kept in zip(made, (NCNN_PARAM, NCNN_BIN), strict=True):
            write_bytes_atomic(folder / kept, path.read_bytes())


def unconverted_layers(param: str) -> str | None:
    """The layers of an ncnn ``.param`` text that pnnx could not turn into ncnn layers, as
    "Tensor.slice (8 layers)"; None when there are none. ncnn's layer types are plain
    words; what pnnx leaves unconverted keeps its PyTorch name (``Tensor.slice``, ``F.pad``),
    and ncnn then loads no layer of the file (nasnetmobile: its shifted-pooling slices)."""
    counts: dict[str, int] = {}
    for line in param.splitlines()[2:]:  # the magic number, then the layer and blob counts
        kind = line.split(maxsplit=1)[0] if line.strip() else ""
        if "." in kind:
            counts[kind] = counts.get(kind, 0) + 1
    parts = [f"{kind} ({count} layer{'s' if count > 1 else ''})" for kind, count in counts.items()]
    return ", ".join(parts) or None


def _records(folder: Path) -> dict[str, Any]:
    path = Path(folder) / EDGE_RECORD_FILE
    return runs.read_json(path) if path.is_file() else {}


def _recorded(folder: Path, name: str) -> dict[str, Any]:
    return _records(folder).get(name) or {}


def int8_recipe(folder: Path, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """How edge backend ``name`` quantized a run, as recorded: (the choice, one line);
    (None, None) for a backend that chooses nothing or has not made its file."""
    choice = (_recorded(folder, name).get("int8_choice") or {}).get("choice")
    if name == "openvino-int8":
        return choice, describe_openvino_int8(choice)
    if name == "executorch-xnnpack-int8":
        return choice, describe_xnnpack_int8(choice)
    return None, None


def stale_reason(folder: Path, name: str, max_batch: int = 1) -> str | None:
    """Why the made file of ``name`` cannot be reused for batches of up to ``max_batch``
    (None: it can)."""
    entry = _recorded(folder, name)
    if not entry:
        return f"no {EDGE_RECORD_FILE} entry"
    if name.startswith("executorch") and int(entry.get("max_batch") or 0) < max_batch:
        return f"made for batches of up to {entry.get('max_batch')}, {max_batch} asked"
    if EDGE_BACKENDS[name].int8 and "int8_choice" not in entry:
        return "made before fkdbench chose its INT8 recipe"
    if name == "ncnn" and entry.get("made_from") != NCNN_SOURCE:
        return f"converted from model.onnx, now from {NCNN_SOURCE}"
    if entry.get("model_sha256") != sha256_file(Path(folder) / runs.MODEL_FILE):
        return f"{runs.MODEL_FILE} changed since {name} was made"
    path = Path(folder) / EDGE_BACKENDS[name].file
    if not path.is_file() or sha256_file(path) != entry.get("file_sha256"):
        return f"{path.name} is not the file {EDGE_RECORD_FILE} recorded"
    if entry.get("companions_sha256") != _companions_sha256(Path(folder), name):
        return f"the files that go with {path.name} are not the ones {EDGE_RECORD_FILE} recorded"
    return None


def makers_sha256() -> str:
    """The sha256 of the fkdbench code that makes the edge files (this module and the INT8
    choices it calls): a recorded failure is tried again when that code changes, not on
    every commit."""
    digest = hashlib.sha256()
    for source in (__file__, int8.__file__, openvino_int8.__file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def architecture_sha256(module: torch.nn.Module) -> str:
    """The sha256 of the fkdbench source files that define ``module``'s layers: the graph a
    runtime converts is that code's as much as the weights' (nasnetmobile's reductions were
    rewritten so that pnnx could convert them, with the same weights)."""
    sources = {
        inspect.getsourcefile(type(layer))
        for layer in module.modules()
        if type(layer).__module__.split(".")[0] == "fkdbench"
    }
    digest = hashlib.sha256()
    for source in sorted(str(path) for path in sources if path):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def _failure_key(
    folder: Path, name: str, module: torch.nn.Module, max_batch: int
) -> dict[str, Any]:
    """What a failure to make ``name``'s file depends on: while it is the same, making the
    file again would fail the same way."""
    return {
        "model_sha256": sha256_file(folder / runs.MODEL_FILE),
        "max_batch": max_batch,
        "versions": package_versions(EDGE_BACKENDS[name].modules),
        "makers_sha256": makers_sha256(),
        "architecture_sha256": architecture_sha256(module),
    }


def recorded_failure(
    folder: Path, name: str, module: torch.nn.Module, max_batch: int
) -> str | None:
    """The line a recorded failure to make ``name``'s file from ``module`` gave, while what
    it depends on (:func:`_failure_key`) is unchanged; None when there is none or it is out
    of date."""
    entry = _recorded(Path(folder), name)
    if "failed" not in entry:
        return None
    current = _failure_key(Path(folder), name, module, max_batch)
    if any(entry.get(key) != value for key, value in current.items()):
        return None
    return str(entry["failed"])


def _record_failure(
    folder: Path, name: str, module: torch.nn.Module, max_batch: int, error: Exception
) -> None:
    key = _failure_key(folder, name, module, max_batch)
    entry = {"failed": runs.first_line(error, limit=1000), **key}
    write_json_atomic(folder / EDGE_RECORD_FILE, {**_records(folder), name: entry})


def _companions_sha256(folder: Path, name: str) -> dict[str, str | None]:
    files = [folder / companion for companion in EDGE_BACKENDS[name].companions]
    return {path.name: sha256_file(path) if path.is_file() else None for path in files}


def _make_file(
    folder: Path,
    name: str,
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: Callable[[], torch.Tensor] | None,
    score: Callable[[Predictor], float] | None,
    threads: int,
) -> dict[str, Any]:
    """Make backend ``name``'s file for a run (:func:`prepare_backend`); what it chose,
    for its ``edge.json`` entry."""
    path = folder / EDGE_BACKENDS[name].file
    extra: dict[str, Any] = {}
    if name == "executorch-xnnpack":
        _make_pte(path, module, example)
    elif name == "executorch-xnnpack-int8":
        if calibration is None:
            raise EdgeError(f"{folder}: {name} needs training images to calibrate on")
        extra["int8_choice"] = _make_xnnpack_int8(
            path, module, example, calibration(), score, threads
        )
    elif name == "openvino-int8":
        if calibration is None:
            raise EdgeError(f"{folder}: {name} needs training images to calibrate on")
        extra["int8_choice"] = make_openvino_int8(
            folder, calibration().numpy(), example.numpy(), threads, score
        )
    elif name == "ncnn":
        _make_ncnn(folder, module, example)
        extra["made_from"] = NCNN_SOURCE
    return extra


def prepare_backend(
    folder: Path,
    name: str,
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: Callable[[], torch.Tensor] | None = None,
    quiet: bool = True,
    *,
    score: Callable[[Predictor], float] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Make (or reuse) the file backend ``name`` runs for a run and record it in
    ``edge.json``; :class:`EdgeError` when it is not installed or cannot be made.

    ``module`` answers in pixels; ``example`` is a batch of the largest size the bench will
    pass (ExecuTorch plans its memory for it); ``calibration`` gives the training images
    an INT8 program is calibrated on (read only when one is made). OpenVINO's INT8 choice
    scores its candidates with ``score(predict)`` (test RMSE; None for an untrained run)
    and times them on ``threads`` threads. A file is reused only while
    :func:`stale_reason` finds nothing; otherwise one line (unless ``quiet``) says why it
    is made again. The parity check is the bench's: it scores every backend's predictions
    of the whole test split against PyTorch's before timing it.
    """
    folder = Path(folder)
    reason = missing_reason(name)
    if reason is not None:
        raise EdgeError(reason)
    stale = stale_reason(folder, name, len(example))
    if stale is None:
        return _recorded(folder, name)
    failure = recorded_failure(folder, name, module, len(example))
    if failure is not None:
        raise EdgeError(f"{failure} (recorded in {EDGE_RECORD_FILE}: not tried again)")
    if "failed" in _recorded(folder, name):
        say(
            f"{folder.name}: {name} tried again (what its recorded failure came from changed)",
            quiet,
        )
    elif _recorded(folder, name):
        say(f"{folder.name}: {name} made again ({stale})", quiet)
    started = time.perf_counter()
    try:
        extra = _make_file(folder, name, module, example, calibration, score, threads)
    except (OSError, MemoryError):
        raise  # the machine's trouble, not the model's: tried again next time
    except Exception as error:
        _record_failure(folder, name, module, len(example), error)
        raise
    path = folder / EDGE_BACKENDS[name].file
    if not path.is_file():
        raise EdgeError(f"{folder}: {name} needs {path.name}, which is not there")
    entry = {
        "file": path.name,
        "file_sha256": sha256_file(path),
        "companions_sha256": _companions_sha256(folder, name),
        "model_sha256": sha256_file(folder / runs.MODEL_FILE),
        "max_batch": len(example),
        "seconds": time.perf_counter() - started,
        "versions": package_versions(EDGE_BACKENDS[name].modules),
        **extra,
    }
    write_json_atomic(folder / EDGE_RECORD_FILE, {**_records(folder), name: entry})
    return entry


# -- the bench's checks ---------------------------------------------------------------------


def max_difference(predictions: np.ndarray, reference: np.ndarray) -> float:
    """The largest difference (px) between two backends' predictions of the same images."""
    return float(np.max(np.abs(predictions - reference))) if len(reference) else 0.0


def check_predictions(
    name: str, predictions: np.ndarray, reference: np.ndarray, rmse_of: Callable | None
) -> float:
    """The largest difference (px) of backend ``name``'s predictions of the test split
    from PyTorch eager's (``reference``), after the backend's check: FP32 within
    :data:`~fkdbench.export.PARITY_TOLERANCE_PIXELS`; INT8 with a test RMSE at most
    :data:`INT8_RMSE_TOLERANCE` above PyTorch's (``rmse_of(predictions)``; None for an
    untrained run, whose RMSE means nothing, so only FP32 backends are checked there).
    :class:`EdgeError` when the check fails."""
    difference = max_difference(predictions, reference)
    if not EDGE_BACKENDS[name].int8:
        if not difference <= PARITY_TOLERANCE_PIXELS:
            raise EdgeError(
                f"{name}: predictions differ from PyTorch's by {difference:.3g} px "
                f"(more than {PARITY_TOLERANCE_PIXELS:g} px): not timed"
            )
    elif rmse_of is not None:
        ours, fp32 = rmse_of(predictions), rmse_of(reference)
        if not ours <= fp32 * (1 + INT8_RMSE_TOLERANCE):
            raise EdgeError(
                f"{name}: test RMSE {ours:.4f} px against PyTorch's {fp32:.4f} px, more than "
                f"{100 * INT8_RMSE_TOLERANCE:g}% worse: not timed"
            )
    return difference
