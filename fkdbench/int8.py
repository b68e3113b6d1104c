"""INT8 that pays: the quantization choices ONNX Runtime offers, tried per model, and the
fastest kept that stays within :data:`INT8_RMSE_TOLERANCE` of the FP32 graph's test RMSE.

Small graphs spend more on quantizing and dequantizing activations between layers than
INT8 arithmetic saves (in the committed quick run INT8 ran cnn-manual at 0.73-0.93x of
FP32), so one fixed recipe loses on some architectures and wins on others. The choices
that matter (the issue's list, each a field of :class:`Int8Choice`): the graph format
(QDQ pairs that ONNX Runtime fuses, or QOperator's integer operators), per-channel or
per-tensor weight scales, which operators stay FP32 (the first convolution, whose one
input channel gives INT8 little to do, or the last dense layer, which writes the
keypoints), and the calibration method. Measured on cnn-manual (quick run, 2 cores),
leaving both ends FP32 made the graph 0.3-0.6x FP32's speed, since every switch between
precisions costs a quantize or dequantize: so each end is tried alone, never both.

The stem (every node before the second convolution: the first conv and the pooling after
it) is a choice of its own. Profiled on cnn-baseline at batch 32 (2-core AMD EPYC, AVX-512
VNNI), the first conv, with one input channel, took 5.9 ms as QLinearConv against 1.4 ms in
FP32, while the other five convs ran 2.7x faster in INT8; but leaving the conv alone FP32 moves
the quantize to its output, the full-resolution map, and the pooling after it then runs
on uint8 in ONNX Runtime's slow NCHW kernel (8 ms). Leaving the pooling FP32 too quantizes
a map four times smaller; :func:`fkdbench.onnxrt.open_session` turns off the optimizer
pass that would move that quantize back above the pooling (see its comment).

The head (the last conv or dense layer and everything after it) is the other end: a
heatmap model's last conv writes the heatmaps that soft-argmax decodes, and quantized
they lost unet-small 45% of its test RMSE (2.59 px against 1.78) in all 32 choices without it;
with the head FP32, 1.78 px.

Where no choice pays: nasnetmobile (profiled at batch 32 on a calm 2-core AMD EPYC with
VNNI). Its pointwise convs ran 1.7x faster in INT8 (18 ms against 32), but ONNX Runtime's
uint8 depthwise conv took 43 ms against FP32's 21, and QLinearAveragePool 14 ms against 3.
Keeping the 160 depthwise convs (and the pools) FP32 was tried and dropped. Excluded, they
measured 0.95-1.01x of FP32, but only because ORT's WeightBiasQuantization pass had
quantized them back (it does so to a conv kept FP32 that a DequantizeLinear feeds and a
QuantizeLinear follows). With that pass off too they do run FP32, each between an NHWC
uint8 map and an NCHW float one, and the transposes cost 56 ms: about 150 ms a batch
against FP32's 80. The search says "INT8 does not pay" there, and OpenVINO's INT8 is the
one to use (2.1x its FP32).
ae-cnn gains little for a like reason: of its two convs the first (one input channel) is
slower in INT8, and with it FP32 the full-resolution pooling after it (a quarter of the
FP32 pass) stays FP32, since ORT's uint8 pooling there runs NCHW (31 ms against 5.9).

Speed is measured here, in the exporting process, with the candidates' timed passes
taking turns with the FP32 graph's (a slow spell of the machine falls on all alike); the
choice, every candidate's RMSE and time, and the FP32 time are recorded in
``export.json``. The bench then measures the chosen graph properly; this search only
picks it.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# An INT8 graph is kept when its test RMSE is at most this much above the FP32 graph's.
INT8_RMSE_TOLERANCE = 0.02
# Which operators stay FP32 (see :func:`excluded_nodes`), and how export.json says it.
_KEPT_FP32 = {
    "none": "nothing",
    "first-conv": "the first conv",
    "stem": "the stem (the first conv and its pooling)",
    "last-dense": "the last dense",
    "head": "the head (the last conv or dense and all after it)",
}
EXCLUSIONS = tuple(_KEPT_FP32)
FORMATS = ("QDQ", "QOperator")
CALIBRATIONS = ("MinMax", "Percentile")
# Timed turns of every candidate and FP32, and batch passes per turn (the median is kept).
SEARCH_TURNS = 5
PASSES_PER_TURN = 3
SEARCH_BATCH = 32


@dataclass(frozen=True)
class Int8Choice:
    """One way to quantize: graph format, weight scales, operators left FP32, calibration."""

    quant_format: str = "QDQ"
    per_channel: bool = True
    excluded: str = "none"  # one of EXCLUSIONS: which operators stay FP32
    calibration: str = "MinMax"

    def describe(self) -> str:
        scales = "per-channel" if self.per_channel else "per-tensor"
        kept = _KEPT_FP32[self.excluded]
        return (
            f"{self.quant_format} format, {scales} QInt8 weights, {self.calibration} "
            f"calibration, FP32 kept for {kept}"
        )


# Export's recipe before the search existed, and still its default without --int8-search.
DEFAULT_CHOICE = Int8Choice()
# What the search tries: formats x scales x exclusions with MinMax, then Percentile
# calibration for each of those that misses the accuracy bound.
CANDIDATES = tuple(
    Int8Choice(quant_format, per_channel, excluded)
    for quant_format, per_channel, excluded in itertools.product(FORMATS, (True, False), EXCLUSIONS)
)


_DENSE = ("Gemm", "MatMul")
_LAYERS = ("Conv", *_DENSE)


def excluded_nodes(model: Any, excluded: str) -> list[str]:
    """The node names of an ONNX model (its nodes in topological order, as ONNX keeps
    them) that ``excluded`` keeps in FP32."""
    if excluded not in EXCLUSIONS:
        raise ValueError(f"unknown INT8 exclusion {excluded!r}; known: {', '.join(EXCLUSIONS)}")
    nodes = list(model.graph.node)
    if excluded == "last-dense":
        return [node.name for node in nodes if node.op_type in _DENSE][-1:]
    if excluded == "head":  # the layer that writes the keypoints or heatmaps, and decoding
        layers = [index for index, node in enumerate(nodes) if node.op_type in _LAYERS]
        return [node.name for node in nodes[layers[-1] :]] if layers else []
    convs = [index for index, node in enumerate(nodes) if node.op_type == "Conv"]
    if excluded == "none" or not convs:
        return []
    if excluded == "first-conv":
        return [nodes[convs[0]].name]
    # The stem: everything before the second conv (the whole graph, if it has only one).
    return [node.name for node in nodes[: convs[1] if len(convs) > 1 else len(nodes)]]


@dataclass
class Candidate:
    """One tried choice: its accuracy, its speed beside FP32, and whether it may be kept."""

    choice: dict[str, Any]
    test_rmse: float
    seconds_per_100_images: float | None = None
    speedup_vs_fp32: float | None = None
    within_tolerance: bool = False
    error: str | None = None


@dataclass
class SearchResult:
    """The choice kept, why, and everything tried."""

    choice: Int8Choice
    reason: str
    fp32_test_rmse: float
    fp32_seconds_per_100_images: float
    candidates: list[Candidate]

    def record(self) -> dict[str, Any]:
        """What ``export.json`` keeps of the search."""
        return {
            "choice": asdict(self.choice),
            "reason": self.reason,
            "fp32_test_rmse": self.fp32_test_rmse,
            "fp32_seconds_per_100_images": self.fp32_seconds_per_100_images,
            "candidates": [asdict(candidate) for candidate in self.candidates],
            "turns": SEARCH_TURNS,
            "passes_per_turn": PASSES_PER_TURN,
            "batch_size": SEARCH_BATCH,
        }


Predict = Callable[[np.ndarray], np.ndarray]
Quantize = Callable[[Path, Int8Choice], None]


def _seconds_per_100(
    predictors: list[Predict], images: np.ndarray, clock: Callable[[], float]
) -> list[float]:
    """Median seconds per 100 images of each predictor, their timed turns interleaved."""
    starts = range(0, len(images), SEARCH_BATCH)
    batches = [images[start : start + SEARCH_BATCH] for start in starts]
    samples: list[list[float]] = [[] for _ in predictors]
    for predict in predictors:  # warm-up: sessions allocate on their first runs
        for batch in batches:
            predict(batch)
    for _ in range(SEARCH_TURNS):
        for index, predict in enumerate(predictors):
            started = clock()
            for _ in range(PASSES_PER_TURN):
                for batch in batches:
                    predict(batch)
            elapsed = clock() - started
            samples[index].append(elapsed / (PASSES_PER_TURN * len(images)) * 100)
    return [statistics.median(values) for values in samples]


def _try(
    choice: Int8Choice,
    path: Path,
    quantize: Quantize,
    open_predictor: Callable[[Path], Predict],
    score: Callable[[Predict], float],
) -> tuple[Candidate, Predict | None]:
    """Make and score one choice; a choice ONNX Runtime cannot make is a candidate with
    its error, and the search goes on."""
    try:
        quantize(path, choice)
        predict = open_predictor(path)
        return Candidate(asdict(choice), test_rmse=score(predict)), predict
    except Exception as error:  # noqa: BLE001 - one choice failing stops no other
        text = str(error).strip().splitlines()
        return Candidate(asdict(choice), float("nan"), error=text[0] if text else "failed"), None


def search(
    scratch: Path,
    fp32: Predict,
    quantize: Quantize,
    open_predictor: Callable[[Path], Predict],
    score: Callable[[Predict], float],
    timing_images: np.ndarray,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[SearchResult, Path]:
    """Try every candidate in ``scratch``; the result and the chosen graph's path there.

    ``quantize(path, choice)`` writes a choice's INT8 graph, ``open_predictor(path)`` runs
    one, ``score(predict)`` is a predictor's test RMSE; ``fp32`` runs the FP32 graph.
    Candidates within :data:`INT8_RMSE_TOLERANCE` of FP32's RMSE are timed beside FP32
    on ``timing_images`` and the fastest is kept. Percentile calibration is tried only
    when no MinMax candidate is accurate enough; when none is, the most accurate is kept,
    and the reason says so.
    """
    fp32_rmse = score(fp32)
    bound = fp32_rmse * (1 + INT8_RMSE_TOLERANCE)
    tried: list[tuple[Candidate, Predict | None]] = []
    for round_choices in (CANDIDATES, [_percentile(c) for c in CANDIDATES]):
        for choice in round_choices:
            path = Path(scratch) / f"candidate-{len(tried)}.onnx"
            tried.append(_try(choice, path, quantize, open_predictor, score))
        for candidate, _ in tried:
            candidate.within_tolerance = candidate.error is None and candidate.test_rmse <= bound
        if any(candidate.within_tolerance for candidate, _ in tried):
            break
    index, reason, fp32_seconds = time_and_choose(tried, fp32, timing_images, clock)
    candidates = [candidate for candidate, _ in tried]
    result = SearchResult(
        Int8Choice(**candidates[index].choice), reason, fp32_rmse, fp32_seconds, candidates
    )
    return result, Path(scratch) / f"candidate-{index}.onnx"


def time_and_choose(
    tried: list[tuple[Candidate, Predict | None]],
    fp32: Predict,
    timing_images: np.ndarray,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[int, str, float]:
    """Time the candidates marked within tolerance beside ``fp32`` (their turns
    interleaved), fill in their seconds and speed-ups; the index of the one kept, one line
    saying why, and FP32's seconds per 100 images. Also OpenVINO's INT8 choice
    (:mod:`fkdbench.openvino_int8`)."""
    timed = [(i, predict) for i, (c, predict) in enumerate(tried) if c.within_tolerance]
    seconds = _seconds_per_100([fp32, *(p for _, p in timed)], timing_images, clock)
    for (index, _), value in zip(timed, seconds[1:], strict=True):
        tried[index][0].seconds_per_100_images = value
        tried[index][0].speedup_vs_fp32 = seconds[0] / value if value > 0 else None
    index, reason = _chosen([candidate for candidate, _ in tried], timed)
    return index, reason, seconds[0]


def _percentile(choice: Int8Choice) -> Int8Choice:
    return Int8Choice(choice.quant_format, choice.per_channel, choice.excluded, "Percentile")


def _chosen(candidates: list[Candidate], timed: list[tuple[int, Any]]) -> tuple[int, str]:
    """The index of the candidate kept, and one line saying why."""
    limit = f"{100 * INT8_RMSE_TOLERANCE:g}%"
    if not timed:
        scored = [i for i, c in enumerate(candidates) if c.error is None]
        if not scored:
            raise ValueError(f"no INT8 choice could be made ({candidates[0].error})")
        best = min(scored, key=lambda i: candidates[i].test_rmse)
        return best, f"no choice within {limit} of FP32's test RMSE: the most accurate kept"
    fastest = min((i for i, _ in timed), key=lambda i: candidates[i].seconds_per_100_images)
    speedup = candidates[fastest].speedup_vs_fp32 or 0.0
    verdict = "" if speedup >= 1 else "; INT8 does not pay on this model: FP32 is faster"
    return fastest, (
        f"the fastest of {len(timed)} choices within {limit} of FP32's test RMSE: "
        f"{speedup:.2f}x FP32 in the search's timing{verdict}"
    )
