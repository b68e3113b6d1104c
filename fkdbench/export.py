"""``fkdbench export``: a run's model as ONNX (FP32) and as statically quantized INT8 ONNX.

The exported graph is the deployable model, so it carries its own conventions (input
``image``, output ``keypoints`` in the input's pixels; :mod:`fkdbench.onnxrt` defines them
and runs the graphs).

Export is trusted only after a parity check: ONNX Runtime and PyTorch must agree within
:data:`PARITY_TOLERANCE_PIXELS` on real test images. PyTorch's dynamo exporter is tried
first (the default of recent PyTorch) and the TorchScript exporter is the fallback; the
parity check decides which graph is kept, and ``export.json`` says which one was.

INT8 follows ONNX Runtime's recommended recipe: ``quant_pre_process`` (shape inference and
graph clean-up), then static quantization in QDQ format with signed 8-bit weights (per
output channel) and unsigned 8-bit activations (see :data:`INT8_ACTIVATIONS` for why),
calibrated on training images. Its test RMSE is measured
on the whole test split beside the FP32 graph's, so the accuracy it costs is on record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fkdbench import runs
from fkdbench.allocator import keep_freed_memory
from fkdbench.data.schemes import get_scheme
from fkdbench.data.splits import SplitArrays, load_split, read_manifest
from fkdbench.int8 import (
    DEFAULT_CHOICE,
    SEARCH_BATCH,
    Int8Choice,
    SearchResult,
    excluded_nodes,
    search,
)
from fkdbench.io import atomic_path, plain, sha256_file, write_json_atomic
from fkdbench.metrics import normalised_mean_error, rmse
from fkdbench.models.base import denormalise_keypoints
from fkdbench.onnxrt import (
    INPUT_NAME,
    OUTPUT_NAME,
    Predictor,
    images_as_float,
    onnx_predict,
    open_session,
    session_predictor,
)
from fkdbench.progress import make_progress, say
from fkdbench.provenance import environment_record

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_RECORD_FILE = "export.json"
# The dynamo exporter emits opset 18 natively; 17 is the floor the design asks for.
OPSET = 18
PARITY_IMAGES = 32
PARITY_TOLERANCE_PIXELS = 1e-3
CALIBRATION_IMAGES = 256
EXPORTERS = ("auto", "dynamo", "torchscript")


class ExportError(ValueError):
    """An export that cannot be made or trusted; the message names the run or file."""


class PixelKeypoints(nn.Module):
    """A :class:`~fkdbench.models.base.KeypointModel` that answers in pixels, (N, K, 2)."""

    def __init__(self, model: nn.Module, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.image_size = image_size

    def forward(self, image: Tensor) -> Tensor:
        coords = self.model(image)
        return denormalise_keypoints(coords, self.image_size).reshape(coords.shape[0], -1, 2)


@dataclass
class ExportRecord:
    """What ``export.json`` holds: how the ONNX files were made and what they score."""

    run_name: str
    trained: bool
    exporter: str
    opset: int
    parity_max_abs_diff_pixels: float
    parity_images: int
    onnx_bytes: int
    model_sha256: str
    # The graphs' own checksums: a reused export must still be these bytes.
    onnx_sha256: str
    int8_sha256: str | None
    int8: bool
    int8_bytes: int | None
    int8_calibration_images: int | None
    int8_recipe: str | None
    int8_activations: str | None
    test_images: int
    test_rmse_torch: float | None
    test_rmse_onnx: float | None
    test_rmse_int8: float | None
    test_nme_onnx: float | None
    test_nme_int8: float | None
    exporter_attempts: list[str]
    seconds: float
    data_dir: str
    environment: dict[str, Any]
    # How model.int8.onnx was quantized (fkdbench.int8.Int8Choice), and with --int8-search
    # every choice tried, its RMSE and time beside FP32's; None: no INT8 graph, or an
    # export older than the search (the fixed recipe, int8_recipe says).
    int8_choice: dict[str, Any] | None = None
    int8_search: dict[str, Any] | None = None


def run_data_dir(folder: Path, config: dict[str, Any], data_dir: Path | None) -> Path:
    """The data set a run is scored on: ``data_dir`` if given, else the run's own; the
    image size must be the model's."""
    chosen = Path(data_dir) if data_dir is not None else Path(config["data"]["data_dir"])
    if not (chosen / "test.npz").is_file():
        raise ExportError(
            f"{folder}: its data set {chosen} has no test split "
            "(prepare it, or pass --data with a prepared folder)"
        )
    manifest = read_manifest(chosen)
    expected = config["model"]["input_size"]
    got = manifest.get("image_size")
    if got is not None and int(got) != int(expected):
        raise ExportError(
            f"{folder}: the model takes {expected}x{expected} images but {chosen} has {got}x{got}"
        )
    scheme = manifest.get("scheme", "kaggle15")
    if scheme != config["model"]["scheme"]:
        raise ExportError(
            f"{folder}: the model predicts {config['model']['scheme']} keypoints but "
            f"{chosen} is labelled in {scheme}"
        )
    return chosen


# -- export ---------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """The exporters and quantizers print progress and warnings meant for their
    developers; hide them."""
    names = ("torch.onnx", "onnxscript", "torch.export", "nncf")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_graph(module: nn.Module, example: Tensor, path: Path, exporter: str) -> None:
    """Write one ONNX graph with a dynamic batch dimension using ``exporter``."""
    with quiet_libraries(), torch.no_grad():
        if exporter == "dynamo":
            onnx_program = torch.onnx.export(
                module,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamo=True,
                dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1)}},
                external_data=False,
            )
            onnx_program.save(str(path), external_data=False)
        else:
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )


def export_onnx(
    model: nn.Module,
    image_size: int,
    in_chans: int,
    path: Path,
    parity_images: np.ndarray,
    exporter: str = "auto",
) -> tuple[str, float, list[str]]:
    """Export ``model`` (normalised outputs) as a pixel-output ONNX graph at ``path``.

    ``parity_images`` is float32 (N, C, H, W). Returns ``(exporter used, max abs
    difference in pixels against PyTorch, what each attempt did)``. Raises
    :class:`ExportError` when no exporter gives a graph within tolerance; ``path`` is
    written only for a graph that passed.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; known: {', '.join(EXPORTERS)}")
    module = PixelKeypoints(model, image_size).eval()
    with torch.inference_mode():
        reference = module(torch.from_numpy(parity_images)).double().numpy()
    candidates = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    attempts: list[str] = []
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        for candidate in candidates:
            graph = Path(scratch) / f"{candidate}.onnx"
            difference, attempt = _try_exporter(module, parity_images, reference, graph, candidate)
            attempts.append(attempt)
            if difference is not None:
                _copy_atomically(graph, path)
                return candidate, difference, attempts
    raise ExportError(f"{path}: no exporter gave a faithful graph: {'; '.join(attempts)}")


def _copy_atomically(source: Path, target: Path) -> None:
    with atomic_path(target) as temporary:
        Path(temporary).write_bytes(source.read_bytes())


def _try_exporter(
    module: nn.Module, parity_images: np.ndarray, reference: np.ndarray, graph: Path, exporter: str
) -> tuple[float | None, str]:
    """Write ``graph`` with one exporter and compare its pixels on ``parity_images`` with
    PyTorch's ``reference``: ``(max abs difference, None when unfaithful; what happened)``."""
    example = torch.from_numpy(parity_images[: min(2, len(parity_images))])
    try:
        _export_graph(module, example, graph, exporter)
        got = onnx_predict(open_session(graph, threads=1), parity_images)
    except Exception as error:  # noqa: BLE001 - any exporter failure means "try the next"
        return None, f"{exporter}: failed ({runs.first_line(error)})"
    difference = float(np.max(np.abs(got - reference)))
    if not np.isfinite(difference) or difference > PARITY_TOLERANCE_PIXELS:
        return None, f"{exporter}: parity {difference:.2e} px > {PARITY_TOLERANCE_PIXELS:g}"
    return difference, f"{exporter}: parity {difference:.2e} px"


# Activation types. Unsigned (ONNX Runtime's "U8S8") is the default, not the design's
# signed S8S8: x86 integer dot products (VPMADDUBSW, VNNI's VPDPBUSD) multiply u8 by s8, and
# measured on a 2-core AMD EPYC (AVX-512 VNNI) U8S8 ran resnet50 3.2x and mobilenetv2 2x
# faster than FP32, where S8S8 ran them at 0.92x and 1.7x, with the same test RMSE (after
# ReLU, activations are non-negative: both grids hold the same 256 levels).
INT8_ACTIVATIONS = ("uint8", "int8")
DEFAULT_INT8_ACTIVATIONS = "uint8"


def int8_recipe(activations: str, choice: Int8Choice = DEFAULT_CHOICE) -> str:
    """One line saying how ``model.int8.onnx`` was made."""
    kind = {"int8": "QInt8", "uint8": "QUInt8"}[activations]
    return (
        f"onnxruntime static quantization: quant_pre_process, {choice.describe()}, {kind} "
        "activations, calibrated on training images"
    )


def _check_activations(activations: str) -> None:
    if activations not in INT8_ACTIVATIONS:
        raise ExportError(
            f"unknown INT8 activation type {activations!r}; known: {', '.join(INT8_ACTIVATIONS)}"
        )


def _prepared(fp32_path: Path, scratch: Path) -> Path:
    """ONNX Runtime's pre-processing (shape inference, folding) of an FP32 graph."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(scratch) / "prepared.onnx"
    with quiet_libraries():
        quant_pre_process(str(fp32_path), str(prepared))
    return prepared


def _quantize(
    prepared: Path,
    out: Path,
    calibration_images: np.ndarray,
    activations: str,
    choice: Int8Choice,
) -> None:
    """One static quantization of a prepared graph, as ``choice`` says."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class TrainingImages(CalibrationDataReader):
        """Feeds the calibrator batches of training images."""

        def __init__(self, batch_size: int = 32) -> None:
            starts = range(0, len(calibration_images), batch_size)
            self.batches = iter(
                [{INPUT_NAME: calibration_images[i : i + batch_size]} for i in starts]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with quiet_libraries():
        quantize_static(
            str(prepared),
            str(out),
            TrainingImages(),
            quant_format=getattr(QuantFormat, choice.quant_format),
            per_channel=choice.per_channel,
            activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded_nodes(onnx.load(str(prepared)), choice.excluded),
            calibrate_method=getattr(CalibrationMethod, choice.calibration),
        )


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration_images: np.ndarray,
    activations: str = DEFAULT_INT8_ACTIVATIONS,
    choice: Int8Choice = DEFAULT_CHOICE,
) -> None:
    """Statically quantize ``fp32_path`` to ``int8_path`` (see :func:`int8_recipe`)."""
    _check_activations(activations)
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quantize-") as scratch:
        quantized = Path(scratch) / "int8.onnx"
        prepared = _prepared(fp32_path, Path(scratch))
        _quantize(prepared, quantized, calibration_images, activations, choice)
        _copy_atomically(quantized, int8_path)


def search_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration_images: np.ndarray,
    activations: str,
    test: SplitArrays,
    test_images: np.ndarray,
) -> SearchResult:
    """The fastest INT8 graph within the RMSE bound (:func:`fkdbench.int8.search`), written
    to ``int8_path``; every candidate stays in a scratch folder that is removed after."""
    _check_activations(activations)
    int8_path = Path(int8_path)

    def open_predictor(path: Path) -> Predictor:
        return session_predictor(open_session(path))

    def score(predict: Predictor) -> float:
        starts = range(0, len(test_images), SEARCH_BATCH)
        predicted = [predict(test_images[start : start + SEARCH_BATCH]) for start in starts]
        return rmse(np.concatenate(predicted), test.keypoints)

    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".int8-search-") as scratch:
        prepared = _prepared(fp32_path, Path(scratch))

        def quantize(path: Path, choice: Int8Choice) -> None:
            _quantize(prepared, path, calibration_images, activations, choice)

        result, chosen = search(
            Path(scratch),
            open_predictor(fp32_path),
            quantize,
            open_predictor,
            score,
            test_images[: 2 * SEARCH_BATCH],
        )
        _copy_atomically(chosen, int8_path)
    return result


def _scores(predicted: np.ndarray, split: SplitArrays, scheme_name: str) -> tuple[float, float]:
    scheme = get_scheme(scheme_name)
    return (
        rmse(predicted, split.keypoints),
        normalised_mean_error(predicted, split.keypoints, scheme),
    )


def _checked_weights(folder: Path) -> str:
    """The sha256 of a run folder's ``model.pt``; ExportError when there is no run or file."""
    if not (folder / runs.CONFIG_FILE).is_file():
        raise ExportError(f"{folder}: no such run (no {runs.CONFIG_FILE})")
    model_path = folder / runs.MODEL_FILE
    if not model_path.is_file():
        raise ExportError(f"{folder}: no {runs.MODEL_FILE}; the run has no weights yet")
    return sha256_file(model_path)


def _graph_problem(folder: Path, name: str, recorded: Any) -> str | None:
    """Why ``folder/name`` is not the graph ``export.json`` recorded, or None when it is."""
    path = folder / name
    if not path.is_file():
        return f"{name} is missing"
    if not isinstance(recorded, str):
        return f"{EXPORT_RECORD_FILE} records no sha256 of {name} (an older export)"
    if sha256_file(path) != recorded:
        return f"{name} is not the file {EXPORT_RECORD_FILE} recorded (its sha256 differs)"
    return None


def stale_export_reason(
    folder: Path, model_sha: str, int8: bool, int8_activations: str, int8_search: bool = False
) -> str | None:
    """Why the export on disk cannot be reused for these weights and files (None: it can).

    Reused only when ``export.json`` describes these weights and every graph asked for is,
    byte for byte, the one it recorded: a file replaced, truncated or corrupted since is
    exported again rather than trusted with the old parity and scores."""
    existing = read_export_record(folder)
    if existing is None:
        return f"no {EXPORT_RECORD_FILE}"
    if existing.get("model_sha256") != model_sha:
        return f"{runs.MODEL_FILE} changed since the export"
    if int8 and existing.get("int8_activations") not in (None, int8_activations):
        return f"INT8 activations {existing.get('int8_activations')} asked as {int8_activations}"
    if int8 and int8_search and not existing.get("int8_search"):
        return "the INT8 search was asked for; model.int8.onnx has the fixed recipe"
    problem = _graph_problem(folder, ONNX_FILE, existing.get("onnx_sha256"))
    if problem is None and int8:
        problem = _graph_problem(folder, INT8_FILE, existing.get("int8_sha256"))
    return problem


def _current_export(
    folder: Path, model_sha: str, int8: tuple[bool, str, bool], quiet: bool
) -> ExportRecord | None:
    """The export on disk when it can be reused; otherwise None, with one line saying why
    when there was an export to reuse. ``int8``: (asked, activations, searched)."""
    reason = stale_export_reason(folder, model_sha, *int8)
    if reason is None:
        existing = read_export_record(folder) or {}
        fields = ExportRecord.__dataclass_fields__
        return ExportRecord(**{key: existing.get(key) for key in fields})
    if (folder / EXPORT_RECORD_FILE).is_file():
        say(f"{folder.name}: exporting again: {reason}", quiet)
    return None


def _refuse_interrupted(folder: Path) -> None:
    """An interrupted run is refused rather than exported: its ``model.pt`` is the best
    epoch so far, neither the result nor the random initialisation that "untrained"
    (``runs.create_untrained_run``, config ``trained: false``) means, and it has no test
    scores; ``export.json``'s ``trained`` and everything that reads it know only those
    two states. Training resumes from ``last.pt``, and replaces ``model.pt`` anyway."""
    config = runs.read_config(folder)
    if runs.is_finished(folder) or (isinstance(config, dict) and config.get("trained") is False):
        return
    raise ExportError(
        f"{folder}: training was interrupted (partly trained: no {runs.METRICS_FILE}); "
        "finish it first (`fkdbench train` resumes it), then export"
    )


def _score_graph(
    path: Path, test: SplitArrays, test_images: np.ndarray, scheme_name: str
) -> tuple[float, float]:
    """Test RMSE and NME of an ONNX graph's predictions for the whole test split."""
    return _scores(onnx_predict(open_session(path), test_images), test, scheme_name)


@dataclass
class _Graphs:
    """What writing a run's graphs gave, for its ``export.json``."""

    exporter: str
    parity: float
    parity_images: int
    attempts: list[str]
    test_images: int
    test_rmse_onnx: float
    test_nme_onnx: float
    int8_calibration_images: int | None = None
    test_rmse_int8: float | None = None
    test_nme_int8: float | None = None
    int8_choice: Int8Choice | None = None
    int8_search: dict[str, Any] | None = None


def _write_fp32(
    folder: Path,
    model: nn.Module,
    model_info: dict[str, Any],
    test: SplitArrays,
    test_images: np.ndarray,
    exporter: str,
) -> _Graphs:
    """``model.onnx``, checked against PyTorch on test images, then scored."""
    in_chans, image_size = int(model_info["in_chans"]), int(model_info["input_size"])
    exporter_used, parity, attempts = export_onnx(
        model, image_size, in_chans, folder / ONNX_FILE, test_images[:PARITY_IMAGES], exporter
    )
    rmse_onnx, nme_onnx = _score_graph(folder / ONNX_FILE, test, test_images, model_info["scheme"])
    parity_images = min(PARITY_IMAGES, len(test_images))
    return _Graphs(exporter_used, parity, parity_images, attempts, len(test), rmse_onnx, nme_onnx)


def _write_int8(
    graphs: _Graphs,
    folder: Path,
    data: Path,
    test: SplitArrays,
    test_images: np.ndarray,
    model_info: dict[str, Any],
    calibration: tuple[int, str],
    int8_search: bool = False,
) -> _Graphs:
    """``model.int8.onnx`` from ``model.onnx``, calibrated on training images, then scored:
    export's fixed recipe, or with ``int8_search`` the fastest choice within the RMSE
    bound (:func:`search_int8`).

    ``calibration`` is (at most how many images, activation type)."""
    count, activations = calibration
    chosen = calibration_images(data, int(model_info["in_chans"]), count)
    paths = (folder / ONNX_FILE, folder / INT8_FILE)
    choice, searched = DEFAULT_CHOICE, None
    if int8_search:
        result = search_int8(*paths, chosen, activations, test, test_images)
        choice, searched = result.choice, result.record()
    else:
        quantize_int8(*paths, chosen, activations)
    rmse_int8, nme_int8 = _score_graph(folder / INT8_FILE, test, test_images, model_info["scheme"])
    return dataclasses.replace(
        graphs,
        int8_calibration_images=len(chosen),
        test_rmse_int8=rmse_int8,
        test_nme_int8=nme_int8,
        int8_choice=choice,
        int8_search=searched,
    )


def calibration_images(data: Path, in_chans: int, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """At most ``count`` training images of a data set, as float model inputs, to
    calibrate INT8 on (export's ONNX graph and the edge runtimes' INT8 programs alike)."""
    train_images = load_split(data, "train").images
    # Spread over the split rather than its head, seeded by nothing: the split's order
    # is already a seeded shuffle, so evenly spaced rows are a fair sample.
    rows = np.linspace(0, len(train_images) - 1, min(count, len(train_images)))
    return images_as_float(train_images[np.unique(rows.astype(int))], in_chans)


def export_run(
    folder: Path,
    data_dir: Path | None = None,
    exporter: str = "auto",
    int8: bool = True,
    calibration_images: int = CALIBRATION_IMAGES,
    int8_activations: str = DEFAULT_INT8_ACTIVATIONS,
    force: bool = False,
    quiet: bool = False,
    *,
    note_stale: bool | None = None,
    int8_search: bool = False,
) -> ExportRecord:
    """Export one run folder (trained, or untrained from :func:`runs.create_untrained_run`).

    Writes ``model.onnx``, ``model.int8.onnx`` (unless ``int8`` is false) and
    ``export.json``. An export whose ``export.json`` matches the current ``model.pt`` and
    whose graphs are the files it recorded (sha256) is reused unless ``force``; otherwise
    one line says why it is made again (``note_stale``, default ``not quiet``). An
    interrupted run is refused
    (:func:`_refuse_interrupted`). ``data_dir`` defaults to the run's own data set; its test
    split scores the graphs and its training split calibrates INT8.
    """
    started = time.perf_counter()
    keep_freed_memory()  # the INT8 search times as the bench does
    folder = Path(folder)
    model_sha = _checked_weights(folder)
    _refuse_interrupted(folder)
    silent = quiet if note_stale is None else not note_stale
    wanted = (int8, int8_activations, int8_search)
    existing = None if force else _current_export(folder, model_sha, wanted, silent)
    if existing is not None:
        say(f"{folder.name}: already exported, skipped (force to export again)", quiet)
        return existing

    model, config = runs.load_model(folder)
    data = run_data_dir(folder, config, data_dir)
    model_info = config["model"]
    test = load_split(data, "test")
    test_images = images_as_float(test.images, int(model_info["in_chans"]))
    # A stale record must not describe new files: drop it before writing them.
    (folder / EXPORT_RECORD_FILE).unlink(missing_ok=True)
    graphs = _write_fp32(folder, model, model_info, test, test_images, exporter)
    if int8:
        calibration = (calibration_images, int8_activations)
        graphs = _write_int8(
            graphs, folder, data, test, test_images, model_info, calibration, int8_search
        )
    else:
        (folder / INT8_FILE).unlink(missing_ok=True)

    record = _export_record(
        folder,
        config,
        graphs,
        model_sha=model_sha,
        data=data,
        int8_activations=int8_activations if int8 else None,
        seconds=time.perf_counter() - started,
    )
    write_json_atomic(folder / EXPORT_RECORD_FILE, plain(asdict(record)))
    return record


def _export_record(
    folder: Path,
    config: dict[str, Any],
    graphs: _Graphs,
    *,
    model_sha: str,
    data: Path,
    int8_activations: str | None,
    seconds: float,
) -> ExportRecord:
    """``export.json`` of graphs just written (``int8_activations`` None: no INT8 graph)."""
    int8 = int8_activations is not None
    trained = runs.is_finished(folder)
    return ExportRecord(
        run_name=config.get("run_name", folder.name),
        trained=trained,
        exporter=graphs.exporter,
        opset=OPSET,
        parity_max_abs_diff_pixels=graphs.parity,
        parity_images=graphs.parity_images,
        onnx_bytes=(folder / ONNX_FILE).stat().st_size,
        model_sha256=model_sha,
        onnx_sha256=sha256_file(folder / ONNX_FILE),
        int8_sha256=sha256_file(folder / INT8_FILE) if int8 else None,
        int8=int8,
        int8_bytes=(folder / INT8_FILE).stat().st_size if int8 else None,
        int8_calibration_images=graphs.int8_calibration_images,
        int8_recipe=int8_recipe(int8_activations, graphs.int8_choice or DEFAULT_CHOICE)
        if int8_activations
        else None,
        int8_activations=int8_activations,
        test_images=graphs.test_images,
        test_rmse_torch=runs.read_metrics(folder).get("test_rmse") if trained else None,
        test_rmse_onnx=graphs.test_rmse_onnx if trained else None,
        test_rmse_int8=graphs.test_rmse_int8 if trained else None,
        test_nme_onnx=graphs.test_nme_onnx if trained else None,
        test_nme_int8=graphs.test_nme_int8 if trained else None,
        exporter_attempts=graphs.attempts,
        seconds=seconds,
        data_dir=str(data),
        environment=environment_record(),
        int8_choice=asdict(graphs.int8_choice) if int8 and graphs.int8_choice else None,
        int8_search=graphs.int8_search if int8 else None,
    )


def read_export_record(folder: Path) -> dict[str, Any] | None:
    """``export.json`` of a run, or None when it was never exported."""
    path = Path(folder) / EXPORT_RECORD_FILE
    return runs.read_json(path) if path.is_file() else None


def export_targets(runs_dir: Path, names: Sequence[str] = (), all_runs: bool = False) -> list[Path]:
    """Run folders to export: ``names`` (run names under ``runs_dir`` or folders), or
    with ``all_runs`` every finished run (untrained folders are exported by ``bench``)."""
    if all_runs:
        if names:
            raise ExportError("give run names or --all, not both")
        folders = runs.finished_runs(runs_dir)
        if not folders:
            raise ExportError(f"{runs_dir}: no finished runs to export")
        return folders
    if not names:
        raise ExportError("name a run (e.g. cnn-manual--masked) or use --all")
    return [runs.find_run(runs_dir, name) for name in names]


def export_all(
    folders: Sequence[Path],
    data_dir: Path | None = None,
    exporter: str = "auto",
    int8: bool = True,
    int8_activations: str = DEFAULT_INT8_ACTIVATIONS,
    force: bool = False,
    quiet: bool = False,
    on_done: Callable[[ExportRecord], None] | None = None,
    int8_search: bool = False,
) -> list[ExportRecord]:
    """Export several run folders with one progress bar; stops at the first error.

    ``on_done`` is called after each export (``reproduce`` advances its display).
    """
    records = []
    on_done = on_done or (lambda _record: None)
    with make_progress(quiet) as progress:
        task = progress.add_task("export", total=len(folders))
        for folder in folders:
            progress.update(task, description=f"export {Path(folder).name}")
            records.append(
                export_run(
                    folder,
                    data_dir,
                    exporter,
                    int8,
                    int8_activations=int8_activations,
                    force=force,
                    quiet=True,
                    # Reuse is summed up by the caller; a re-export's reason is said here.
                    note_stale=not quiet,
                    int8_search=int8_search,
                )
            )
            progress.advance(task)
            on_done(records[-1])
    return records
