"""``fkdbench report``: our measurements beside the papers', as Markdown, CSV, JSON and PNG.

The report is a pure function of its inputs: the run folders (``config.json``,
``metrics.json``, ``history.csv``, ``export.json``), the tuning studies
(``<runs>/tune/<study>/``), the bench records (``results/bench.jsonl``) and the papers'
numbers (:mod:`fkdbench.reference`). It adds no timestamp of its own, sorts everything and
formats every float with a fixed format, so the same inputs give byte-identical
``REPORT.md`` and CSVs (the PNGs are written without the Software stamp, and are stable in
practice but not promised).

Shape (pyperf's habit): records are loaded once into plain values (:class:`RunSummary`,
bench dicts), each table is a small function from those values to a numeric
``pandas.DataFrame`` (what the CSVs and JSON hold, and what tests compare with the records),
and only the Markdown layer turns numbers into text ("not run", bold, units).
Tables are rendered with ``DataFrame.to_markdown`` (tabulate), never glued by hand.

Where an input is missing (no bench file, an untrained model, a backend that was not timed,
a paper that prints no number) the cell or section says so; nothing is filled in.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fkdbench import reference, runs
from fkdbench.data.variants import VARIANTS
from fkdbench.io import write_bytes_atomic, write_text_atomic
from fkdbench.progress import say

REPORT_FORMAT_VERSION = 1
FORMATS = ("md", "csv", "json")
MARKDOWN_FILE = "REPORT.md"
JSON_FILE = "report.json"
FIGURES_DIR = "figures"

# The ## sections of REPORT.md, in order.
SECTIONS = (
    "Summary",
    "Parameters and size",
    "Accuracy",
    "Gains by variant",
    "Inference time",
    "Tuned CNN",
    "Figures",
    "Environment",
)

# Figure file stem -> one-line caption (and the paper figure it mirrors).
FIGURES: dict[str, str] = {
    "params_vs_size": "Parameters (Keras count) vs state-dict size, ours and the paper's "
    "Table 1 (paper Fig. 8).",
    "rmse_by_variant": "Test RMSE per architecture and data variant (paper Fig. 6-7).",
    "training_curves": "Validation RMSE per epoch, one panel per architecture, one line per "
    "variant (paper Fig. 9-11).",
    "predictions": "The same test faces for every architecture (its best run): ground truth "
    "green dots, prediction red crosses (paper Fig. 12).",
    "accuracy_vs_speed": "Test RMSE vs ONNX Runtime seconds per 100 images; the Pareto front "
    "(nothing both faster and more accurate) is joined.",
    "ced": "Cumulative error distribution: share of test faces with NME at most x, up to the "
    "failure threshold; AUC@0.1 is the area under it / 0.1.",
}

# -- tuning studies (``fkdbench tune``) ------------------------------------------------------
# Under the runs folder, one folder per study; the report snapshots the same files under
# its own out dir, so that a report rebuilt from records still has them.
# What the snapshot copies. study.json is required; best.json (absent until a trial
# finishes), pareto.json and trials.csv (not read here) are optional.
TUNE_FILES = (
    runs.TUNE_STUDY_FILE,
    runs.TUNE_BEST_FILE,
    runs.TUNE_PARETO_FILE,
    runs.TUNE_TRIALS_FILE,
)
# Figure stem (in ``<study>/figures/``) -> caption; the report's copy is
# ``figures/tune-<study>-<stem>.png``.
TUNE_FIGURES: dict[str, str] = {
    "history": "Validation RMSE of each finished trial, and the best so far.",
    "pareto": "Validation RMSE vs ONNX Runtime seconds per 100 images, one point per finished "
    "trial; the Pareto front (nothing both faster and more accurate) is joined.",
    "importances": "Which searched settings mattered for validation RMSE (Optuna's fANOVA "
    "importances, over the settings every finished trial has).",
}
# The architecture a tuned spec trains as, and the paper's other custom CNNs set beside it
# (column prefix, arch).
TUNED_ARCH = "cnn-tuned"
TUNED_COMPARED = (("manual", "cnn-manual"), ("baseline", "cnn-baseline"))

# -- the mapping of our gains onto the paper's Table 2 labels --------------------------------
# Gain of a variant = (RMSE(none) - RMSE(variant)) / RMSE(none) x 100, same architecture and
# weights mode. |gain| < SIMILAR_BAND_PERCENT reads "Similar"; a larger gain takes the label
# of the highest threshold it reaches; a loss beyond the band reads WORSE_LABEL. The paper
# does not state its thresholds: these are ours, stated in the report.
SIMILAR_BAND_PERCENT = 5.0
GAIN_LABEL_THRESHOLDS: tuple[tuple[float, str], ...] = ((30.0, "+++"), (15.0, "++"), (5.0, "+"))
SIMILAR_LABEL = "Similar"
WORSE_LABEL = "\u2212"  # a minus sign: worse than `none` by more than the band

# What a cell says when there is no number, and why.
NOT_RUN = "not run"
NOT_MEASURED = "not measured"
NOT_EXPORTED = "not exported"
NOT_RECORDED = "not recorded"
NO_PAPER = "\u2014"  # the paper prints no such number
UNTRAINED_LABEL = "untrained"
MEAN_SHAPE_ROW = "mean shape"

BYTES_PER_MB = 1_000_000  # MB = 10^6 bytes
# Order of backends in tables; unknown ones sort after these by name.
BACKEND_ORDER = ("torch", "onnxruntime", "onnxruntime-int8")
WEIGHTS_ORDER = ("scratch", "frozen", "finetuned")
PREDICTION_FACES = 8
# Settings shared by every bench record are what the accuracy-vs-speed figure uses.
SPEED_BACKEND = "onnxruntime"
CSV_FLOAT_FORMAT = "%.6g"
FIGURE_DPI = 100


class ReportError(ValueError):
    """The report cannot be built as asked; the message names the input."""


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """What the report needs from one run folder (trained or not), as plain values."""

    run_name: str
    arch: str
    # None for an untrained folder.
    variant: str | None
    weights_mode: str = "scratch"
    trained: bool = True
    test_rmse: float | None = None
    test_nme: float | None = None
    test_fr: float | None = None
    test_auc: float | None = None
    # The CED sampled from NME 0 to the failure threshold (metrics.json "test_ced").
    test_ced: tuple[float, ...] = field(default=(), compare=False)
    failure_threshold: float | None = None
    test_nme_per_subset: dict[str, float | None] = field(default_factory=dict, compare=False)
    mean_shape_rmse: float | None = None
    params_pytorch: int | None = None
    params_keras: int | None = None
    model_pt_bytes: int | None = None
    onnx_bytes: int | None = None
    int8_bytes: int | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    stop_reason: str | None = None
    training_seconds: float | None = None
    data_source: str | None = None
    data_seed: int | None = None
    data_dir: str | None = None
    manifest_sha256: str | None = None
    scheme: str | None = None
    image_size: int | None = None
    test_rows: int | None = None
    # Where a CNN spec came from (config.json ``model.spec_source``: a file, a tune study's
    # trial...); None for other architectures and for runs older than the field.
    spec_source: str | None = None
    environment: dict[str, Any] = field(default_factory=dict, compare=False)
    # Keypoint-phase epochs: (epoch, val_rmse) pairs, for the training-curve figure.
    history: tuple[tuple[int, float], ...] = field(default=(), compare=False)
    # None when the summary was read back from runs.jsonl rather than a run folder.
    folder: Path | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """The table row this run belongs to: the architecture, plus a non-scratch mode."""
        return model_label(self.arch, self.weights_mode)


def model_label(arch: str, weights_mode: str | None) -> str:
    """``arch`` for scratch weights, ``arch (frozen)`` / ``arch (finetuned)`` otherwise."""
    return arch if weights_mode in (None, "scratch") else f"{arch} ({weights_mode})"


def _variant_key(variant: str | None) -> tuple[int, str]:
    if variant is None:
        return (len(VARIANTS) + 1, "")
    if variant in VARIANTS:
        return (VARIANTS.index(variant), variant)
    return (len(VARIANTS), variant)


def _weights_key(mode: str | None) -> int:
    return WEIGHTS_ORDER.index(mode) if mode in WEIGHTS_ORDER else len(WEIGHTS_ORDER)


def _backend_key(backend: str) -> tuple[int, str]:
    order = BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else len(BACKEND_ORDER)
    return (order, backend)


def _run_key(arch: str, variant: str | None, weights_mode: str | None, trained: bool) -> tuple:
    return (arch, _weights_key(weights_mode), not trained, _variant_key(variant))


def _label_key(label: str) -> tuple:
    """Rows ordered by architecture, then weights mode (scratch, frozen, finetuned)."""
    arch, _, rest = label.partition(" (")
    return (arch, _weights_key(rest.rstrip(")") or "scratch"))


def _summary_from_finished(folder: Path) -> RunSummary:
    config = runs.read_config(folder)
    metrics = runs.read_metrics(folder)
    export = _read_export(folder)
    data = config.get("data", {})
    parameters = metrics.get("parameters", {})
    model = config.get("model", {})
    variant = metrics.get("variant") or config.get("train", {}).get("variant")
    return RunSummary(
        run_name=metrics.get("run_name") or config.get("run_name") or folder.name,
        arch=metrics.get("arch") or model.get("arch"),
        variant=variant,
        weights_mode=metrics.get("weights_mode") or config.get("weights_mode") or "scratch",
        trained=True,
        test_rmse=_number(metrics.get("test_rmse")),
        test_nme=_number(metrics.get("test_nme")),
        test_fr=_number(metrics.get("test_fr")),
        test_auc=_number(metrics.get("test_auc")),
        test_ced=tuple(metrics.get("test_ced") or ()),
        failure_threshold=_number(metrics.get("failure_threshold")),
        test_nme_per_subset=dict(metrics.get("test_nme_per_subset") or {}),
        mean_shape_rmse=_number(metrics.get("mean_shape_rmse")),
        params_pytorch=parameters.get("pytorch"),
        params_keras=parameters.get("keras"),
        model_pt_bytes=metrics.get("model_file_bytes") or _file_size(folder / runs.MODEL_FILE),
        onnx_bytes=export.get("onnx_bytes"),
        int8_bytes=export.get("int8_bytes") if export.get("int8") else None,
        best_epoch=metrics.get("best_epoch"),
        epochs_run=metrics.get("epochs_run"),
        stop_reason=metrics.get("stop_reason"),
        training_seconds=_number(metrics.get("training_seconds")),
        data_source=data.get("source"),
        data_seed=data.get("seed"),
        data_dir=data.get("data_dir"),
        manifest_sha256=data.get("manifest_sha256"),
        scheme=data.get("scheme") or model.get("scheme"),
        image_size=data.get("image_size") or model.get("input_size"),
        test_rows=metrics.get("rows", {}).get("test"),
        spec_source=model.get("spec_source"),
        environment=metrics.get("environment") or config.get("environment") or {},
        history=_read_history(folder),
        folder=folder,
    )


def _summary_from_untrained(folder: Path, config: dict[str, Any]) -> RunSummary:
    export = _read_export(folder)
    data = config.get("data", {})
    model = config.get("model", {})
    return RunSummary(
        run_name=config.get("run_name") or folder.name,
        arch=model.get("arch"),
        variant=None,
        weights_mode=config.get("weights_mode") or "scratch",
        trained=False,
        model_pt_bytes=_file_size(folder / runs.MODEL_FILE),
        onnx_bytes=export.get("onnx_bytes"),
        int8_bytes=export.get("int8_bytes") if export.get("int8") else None,
        data_dir=data.get("data_dir"),
        scheme=data.get("scheme") or model.get("scheme"),
        image_size=data.get("image_size") or model.get("input_size"),
        spec_source=model.get("spec_source"),
        environment=config.get("environment") or {},
        folder=folder,
    )


def load_runs(runs_dir: Path, problems: list[str] | None = None) -> list[RunSummary]:
    """Every finished run and every untrained (timing-only) folder under ``runs_dir``.

    A folder whose files cannot be read is skipped and described in ``problems`` (the
    report lists them) rather than stopping the whole report.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found: list[RunSummary] = []
    for folder in sorted(path for path in runs_dir.iterdir() if path.is_dir()):
        try:
            if runs.is_finished(folder):
                found.append(_summary_from_finished(folder))
                continue
            if not (folder / runs.CONFIG_FILE).is_file():
                continue
            config = runs.read_config(folder)
            if config.get("trained") is False and (folder / runs.MODEL_FILE).is_file():
                found.append(_summary_from_untrained(folder, config))
        except (runs.CheckpointError, KeyError, TypeError, AttributeError) as error:
            if problems is not None:
                problems.append(f"skipped run folder {folder.name}: {runs.first_line(error)}")
    return sorted(found, key=lambda r: _run_key(r.arch, r.variant, r.weights_mode, r.trained))


RUN_RECORDS_FILE = "runs.jsonl"


def write_run_records(run_summaries: Sequence[RunSummary], path: Path) -> Path:
    """The report's view of every run as JSON lines: with ``bench.jsonl``, everything the
    tables need, so a committed report can be regenerated without the run folders."""
    lines = []
    for run in run_summaries:
        record = {key: value for key, value in asdict(run).items() if key != "folder"}
        record["history"] = [list(pair) for pair in run.history]
        lines.append(json.dumps(record, sort_keys=True) + "\n")
    write_text_atomic(Path(path), "".join(lines))
    return Path(path)


def read_run_records(path: Path) -> list[RunSummary]:
    """Summaries written by :func:`write_run_records` (their ``folder`` is None)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no run records (build the report from --runs-dir first)")
    summaries = []
    known = {item.name for item in fields(RunSummary)}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}: line {number}: malformed JSON ({error.msg})") from None
        record = {key: value for key, value in record.items() if key in known}
        record["history"] = tuple((int(e), float(v)) for e, v in record.get("history", ()))
        record["test_ced"] = tuple(record.get("test_ced", ()))
        summaries.append(RunSummary(**record))
    return sorted(summaries, key=lambda r: _run_key(r.arch, r.variant, r.weights_mode, r.trained))


def _read_export(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "export.json"
    return runs.read_json(path) if path.is_file() else {}


def _file_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


# -- tuning studies -------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneSummary:
    """What the report needs from one ``fkdbench tune`` study folder, as plain values.

    ``best_*`` describe the complete trial with the lowest validation RMSE (best.json);
    None while no trial has finished.
    """

    # The study folder's name (``fkdbench tune`` names it after the study).
    study: str
    variant: str | None
    # "rmse+latency" (two objectives, a Pareto front) or "rmse".
    objective: str | None
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    # From the first trial's start to the last trial's end (every worker's).
    wall_seconds: float | None
    epochs_per_trial: int | None
    best_trial: int | None
    best_val_rmse: float | None
    best_seconds_per_100_images: float | None
    best_params_keras: int | None
    best_onnx_bytes: int | None
    best_lr: float | None
    best_batch_size: int | None
    # None when the study wrote no pareto.json.
    pareto_size: int | None
    # Figure stem (a TUNE_FIGURES key) -> the file found.
    figures: dict[str, str] = field(default_factory=dict)
    # Where the study's files were read; None for a summary made by hand.
    folder: Path | None = field(default=None, compare=False)


def tune_figure_file(study: str, name: str) -> str:
    """The report's file name for a study's figure, under ``figures/``."""
    return f"tune-{study}-{name}.png"


@contextlib.contextmanager
def _blame(path: Path) -> Iterator[None]:
    """A record of the wrong shape (a missing key, text where a number goes) raises a
    ReportError naming its file, rather than a bare KeyError from deep inside."""
    try:
        yield
    except KeyError as error:
        raise ReportError(f"{path}: no {error.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise ReportError(f"{path}: {runs.first_line(error)}") from None


def _read_tune_record(path: Path) -> dict[str, Any]:
    try:
        record = runs.read_json(path)
    except runs.CheckpointError as error:
        raise ReportError(str(error)) from None
    if not isinstance(record, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(record).__name__}")
    version = record.get("format_version")
    if version != runs.TUNE_FORMAT_VERSION:
        expected = runs.TUNE_FORMAT_VERSION
        raise ReportError(f"{path}: format_version {version!r}, expected {expected}")
    return record


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)


_BEST_FIELDS = (
    "best_trial",
    "best_val_rmse",
    "best_seconds_per_100_images",
    "best_params_keras",
    "best_onnx_bytes",
    "best_lr",
    "best_batch_size",
)


def _best_fields(best: dict[str, Any]) -> dict[str, Any]:
    """The ``best_*`` fields of a :class:`TuneSummary` from a best.json record."""
    val_rmse = _number(best["val_rmse"])
    if val_rmse is None:
        raise ValueError(f"val_rmse {best['val_rmse']!r} is not a number")
    train = best.get("train") or {}
    return {
        "best_trial": int(best["trial"]),
        "best_val_rmse": val_rmse,
        "best_seconds_per_100_images": _number(best.get("seconds_per_100_images")),
        "best_params_keras": _integer((best.get("parameters") or {}).get("keras")),
        "best_onnx_bytes": _integer(best.get("onnx_bytes")),
        "best_lr": _number(train.get("lr")),
        "best_batch_size": _integer(train.get("batch_size")),
    }


def _summary_from_study(folder: Path, figures_dir: Path | None) -> TuneSummary:
    study_path = folder / runs.TUNE_STUDY_FILE
    best_path = folder / runs.TUNE_BEST_FILE
    pareto_path = folder / runs.TUNE_PARETO_FILE
    study = _read_tune_record(study_path)
    best = _read_tune_record(best_path) if best_path.is_file() else None
    pareto = _read_tune_record(pareto_path) if pareto_path.is_file() else None
    with _blame(study_path):
        counts = study["trials"]
        from_study = {
            "variant": study.get("variant") or (best or {}).get("variant"),
            "objective": study.get("objective"),
            "trials_complete": int(counts.get("complete", 0)),
            "trials_pruned": int(counts.get("pruned", 0)),
            "trials_failed": int(counts.get("failed", 0)),
            "wall_seconds": _number(study.get("wall_seconds")),
            "epochs_per_trial": _integer(study.get("epochs_per_trial")),
        }
    from_best: dict[str, Any] = dict.fromkeys(_BEST_FIELDS)
    if best is not None:
        with _blame(best_path):
            from_best = _best_fields(best)
    pareto_size = None
    if pareto is not None:
        with _blame(pareto_path):
            front = pareto["trials"]
            if not isinstance(front, list):
                raise TypeError(f"'trials' is a {type(front).__name__}, expected a list")
            pareto_size = len(front)
    figures = {}
    for name in TUNE_FIGURES:
        path = (
            folder / runs.TUNE_FIGURES_DIR / f"{name}.png"
            if figures_dir is None
            else figures_dir / tune_figure_file(folder.name, name)
        )
        if path.is_file():
            figures[name] = str(path)
    return TuneSummary(
        study=folder.name,
        **from_study,
        **from_best,
        pareto_size=pareto_size,
        figures=figures,
        folder=folder,
    )


def load_tune_studies(
    tune_dir: Path, problems: list[str], figures_dir: Path | None = None
) -> list[TuneSummary]:
    """Every study under ``tune_dir`` (a folder per study with a study.json), by name.

    Figures are looked for in ``<study>/figures/<name>.png`` (a tune output folder), or with
    ``figures_dir`` in ``<figures_dir>/tune-<study>-<name>.png`` (a report's snapshot). A
    study whose files are missing or malformed is skipped and described in ``problems``.
    """
    tune_dir = Path(tune_dir)
    if not tune_dir.is_dir():
        return []
    found = []
    for folder in sorted(path.parent for path in tune_dir.glob(f"*/{runs.TUNE_STUDY_FILE}")):
        try:
            found.append(_summary_from_study(folder, figures_dir))
        except ReportError as error:
            # The message names the file; keep all of it (paths are long).
            problems.append(f"skipped tune study {folder.name}: {runs.first_line(error, 400)}")
    return found


def snapshot_tune_studies(
    studies: Sequence[TuneSummary], source_dir: Path, out_dir: Path
) -> list[TuneSummary]:
    """Copy each study's files to ``out_dir/tune/<study>/`` and its figures to
    ``out_dir/figures/tune-<study>-<name>.png``: the records a report rebuilt without the run
    folders reads. Copies of studies (and figures) no longer in ``source_dir`` are removed,
    so the snapshot is these studies and nothing else. Returns the studies as copied.
    """
    tune_dir = Path(out_dir) / runs.TUNE_DIR
    figures_dir = Path(out_dir) / FIGURES_DIR
    # Reporting into the runs folder itself: the study files are already in place, and
    # nothing there is a stale copy to delete.
    in_place = Path(source_dir).resolve() == tune_dir.resolve()
    copied: list[TuneSummary] = []
    for study in studies:
        target = tune_dir / study.study
        if not in_place:
            for name in TUNE_FILES:
                source = Path(study.folder) / name
                if source.is_file():
                    write_bytes_atomic(target / name, source.read_bytes())
                else:
                    (target / name).unlink(missing_ok=True)
        figures = {}
        for name, source in study.figures.items():
            path = figures_dir / tune_figure_file(study.study, name)
            write_bytes_atomic(path, Path(source).read_bytes())
            figures[name] = str(path)
        copied.append(replace(study, figures=figures, folder=target))
    if tune_dir.is_dir() and not in_place:
        current = {study.study for study in studies}
        for folder in sorted(path for path in tune_dir.iterdir() if path.is_dir()):
            if folder.name in current:
                continue
            # Only the files a snapshot writes: anything else someone put there stays.
            for name in TUNE_FILES:
                (folder / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
    kept = {Path(path).name for study in copied for path in study.figures.values()}
    if figures_dir.is_dir():
        for path in figures_dir.glob("tune-*.png"):
            if path.name not in kept:
                path.unlink()
    return copied


def load_bench_records(bench_file: Path | None) -> list[dict[str, Any]]:
    """Every record of the bench JSON-lines file, in file order; [] when it is absent."""
    if bench_file is None or not Path(bench_file).is_file():
        return []
    try:
        from fkdbench.bench import read_records
    except ImportError:  # bench is optional for the report: parse the lines ourselves
        return [
            json.loads(line) for line in Path(bench_file).read_text().splitlines() if line.strip()
        ]
    return read_records(Path(bench_file))


def latest_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest record per (run, backend, batch size, threads): by timestamp, then by
    position in the file (re-runs append), sorted for display."""
    latest: dict[tuple, tuple[tuple[str, int], dict[str, Any]]] = {}
    for position, record in enumerate(records):
        key = (
            record.get("run_name"),
            record.get("backend"),
            record.get("batch_size"),
            record.get("threads"),
        )
        order = (str(record.get("timestamp") or ""), position)
        if key not in latest or order >= latest[key][0]:
            latest[key] = (order, record)
    chosen = [record for _, record in latest.values()]
    return sorted(chosen, key=_record_key)


def _record_key(record: dict[str, Any]) -> tuple:
    return (
        *_run_key(
            str(record.get("arch")),
            record.get("variant"),
            record.get("weights_mode"),
            bool(record.get("trained", True)),
        ),
        str(record.get("run_name")),
        _backend_key(str(record.get("backend"))),
        record.get("batch_size") or 0,
        record.get("threads") or 0,
    )


# -- the paper beside ours ------------------------------------------------------------------


def paper_variant(variant: str | None, trained: bool = True) -> str | None:
    """The paper column a run sits beside: its own variant; an untrained model the
    No-imputation column (its weights do not change its size or its work per image)."""
    return "none" if (not trained or variant is None) else variant


def paper_weights_mode(arch: str, weights_mode: str) -> str:
    """For size and time only: a transfer architecture trained from scratch (or untrained)
    sits beside the paper's non-fine-tuned row; weights do not change the work per image."""
    transfer_modes = {row.weights_mode for row in reference.paper_rows(arch=arch)}
    if weights_mode == "scratch" and "frozen" in transfer_modes:
        return "frozen"
    return weights_mode


# -- tables (numbers) -----------------------------------------------------------------------


def size_table(
    run_summaries: Sequence[RunSummary], bench_records: Sequence[dict[str, Any]] = ()
) -> pd.DataFrame:
    """Paper Table 1 beside ours: one row per model (run folder or benched model).

    Parameters come from metrics.json, else from bench records; file sizes from the run
    folder (metrics, export.json), else from the bench records. MB = 10^6 bytes.
    """
    by_name: dict[str, dict[str, Any]] = {}
    for run in run_summaries:
        by_name[run.run_name] = {
            "run_name": run.run_name,
            "arch": run.arch,
            "variant": run.variant,
            "weights_mode": run.weights_mode,
            "trained": run.trained,
            "params_pytorch": run.params_pytorch,
            "params_keras": run.params_keras,
            "model_pt_bytes": run.model_pt_bytes,
            "onnx_bytes": run.onnx_bytes,
            "int8_bytes": run.int8_bytes,
        }
    bench_fields = {
        "params_pytorch": "parameters_pytorch",
        "params_keras": "parameters_keras",
        "model_pt_bytes": "model_pt_bytes",
        "onnx_bytes": "onnx_bytes",
        "int8_bytes": "int8_onnx_bytes",
    }
    ordered = sorted(
        enumerate(bench_records), key=lambda item: (str(item[1].get("timestamp") or ""), item[0])
    )
    for _, record in reversed(ordered):  # newest first: fill each gap from the latest
        name = record.get("run_name")
        row = by_name.setdefault(
            name,
            {
                "run_name": name,
                "arch": record.get("arch"),
                "variant": record.get("variant"),
                "weights_mode": record.get("weights_mode") or "scratch",
                "trained": bool(record.get("trained", True)),
            },
        )
        for ours, theirs in bench_fields.items():
            if row.get(ours) is None and record.get(theirs) is not None:
                row[ours] = record[theirs]
    rows = []
    for row in by_name.values():
        paper = reference.paper_row(
            row["arch"],
            paper_variant(row["variant"], row["trained"]),
            paper_weights_mode(row["arch"], row["weights_mode"]),
            reference.TABLE1,
        )
        rows.append(
            {
                "model": _display_name(row["arch"], row["weights_mode"], row["trained"]),
                "run_name": row["run_name"],
                "arch": row["arch"],
                "variant": row["variant"],
                "weights_mode": row["weights_mode"],
                "trained": row["trained"],
                "params_pytorch": row.get("params_pytorch"),
                "params_keras": row.get("params_keras"),
                "state_dict_mb": _mb(row.get("model_pt_bytes")),
                "onnx_mb": _mb(row.get("onnx_bytes")),
                "int8_mb": _mb(row.get("int8_bytes")),
                "paper_model": paper.model if paper else None,
                "paper_params": paper.params if paper else None,
                "paper_mb": paper.size_mb if paper else None,
                "paper_citation": paper.citation if paper else None,
            }
        )
    rows.sort(key=lambda r: _run_key(r["arch"], r["variant"], r["weights_mode"], r["trained"]))
    frame = pd.DataFrame(rows, columns=_SIZE_COLUMNS)
    for column in ("params_pytorch", "params_keras", "paper_params"):
        frame[column] = frame[column].astype("Int64")
    return frame


_SIZE_COLUMNS = [
    "model",
    "run_name",
    "arch",
    "variant",
    "weights_mode",
    "trained",
    "params_pytorch",
    "params_keras",
    "state_dict_mb",
    "onnx_mb",
    "int8_mb",
    "paper_model",
    "paper_params",
    "paper_mb",
    "paper_citation",
]


def _display_name(arch: str, weights_mode: str | None, trained: bool) -> str:
    label = model_label(arch, weights_mode)
    return label if trained else f"{label} ({UNTRAINED_LABEL})"


def _mb(size: Any) -> float | None:
    return None if size is None else float(size) / BYTES_PER_MB


def accuracy_table(run_summaries: Sequence[RunSummary], metric: str = "test_rmse") -> pd.DataFrame:
    """Rows = architecture (+ weights mode), columns = data variants; NaN where not run.

    ``metric`` is a :class:`RunSummary` field (``test_rmse`` or ``test_nme``). The RMSE table
    ends with the mean-shape row (predict the training mean for every face), the floor any
    model must beat; for a column with several runs it is their median.
    """
    trained = [run for run in run_summaries if run.trained]
    labels = sorted({run.label for run in trained}, key=_label_key)
    variants = list(VARIANTS) + sorted(
        {run.variant for run in trained if run.variant not in VARIANTS}
    )
    frame = pd.DataFrame(np.nan, index=pd.Index(labels, name="model"), columns=variants)
    for run in trained:
        value = getattr(run, metric)
        frame.loc[run.label, run.variant] = np.nan if value is None else float(value)
    if metric == "test_rmse" and trained:
        floors = {}
        for variant in variants:
            values = [run.mean_shape_rmse for run in trained if run.variant == variant]
            values = [value for value in values if value is not None]
            floors[variant] = float(np.median(values)) if values else np.nan
        frame.loc[MEAN_SHAPE_ROW] = pd.Series(floors)
    frame.columns.name = "variant"
    return frame.astype(float)


def landmark_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """The field's landmark metrics per trained run: NME, FR and AUC at the failure
    threshold, and NME per subset where the data has subsets (WFLW's attributes)."""
    trained = [run for run in run_summaries if run.trained]
    subsets = sorted({name for run in trained for name in run.test_nme_per_subset})
    rows = []
    for run in trained:
        row = {
            "model": run.label,
            "variant": run.variant,
            "scheme": run.scheme,
            "nme": run.test_nme,
            "fr": run.test_fr,
            "auc": run.test_auc,
            "threshold": run.failure_threshold,
        }
        row.update({f"nme_{name}": run.test_nme_per_subset.get(name) for name in subsets})
        rows.append(row)
    columns = ["model", "variant", "scheme", "nme", "fr", "auc", "threshold"]
    frame = pd.DataFrame(rows, columns=columns + [f"nme_{name}" for name in subsets])
    numeric = [column for column in frame.columns if column not in ("model", "variant", "scheme")]
    frame[numeric] = frame[numeric].astype(float)
    return frame


def figure_ced(run_summaries: Sequence[RunSummary], path: Path) -> Path | None:
    """CED curves, one per trained run that recorded one."""
    curves = [run for run in run_summaries if run.trained and run.test_ced]
    if not curves:
        return None
    figure = new_figure(6.5, 4.5)
    axes = figure.add_subplot()
    for number, run in enumerate(curves):
        fraction = np.array([np.nan if v is None else v for v in run.test_ced], dtype=float)
        limit = run.failure_threshold or 0.1
        axes.plot(
            np.linspace(0.0, limit, len(fraction)), fraction, label=run.run_name,
            color=_colour(number), linewidth=1.2,
        )  # fmt: skip
    axes.set_xlabel("NME (normalised by the scheme's two points)")
    axes.set_ylabel("share of test faces")
    axes.set_ylim(0, 1)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return save_figure(figure, path)


def gain_label(gain_percent: float) -> str:
    """The paper's Table 2 label for a gain over ``none``, with this module's thresholds."""
    if gain_percent is None or math.isnan(gain_percent):
        return NOT_RUN
    if abs(gain_percent) < SIMILAR_BAND_PERCENT:
        return SIMILAR_LABEL
    if gain_percent < 0:
        return WORSE_LABEL
    for threshold, label in GAIN_LABEL_THRESHOLDS:
        if gain_percent >= threshold:
            return label
    return SIMILAR_LABEL  # unreachable with a threshold at the band's edge


def gains_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """Each variant's RMSE gain over ``none`` for the same architecture and weights mode.

    Long format, one row per (model, variant): ``gain_percent`` =
    (RMSE(none) - RMSE(variant)) / RMSE(none) x 100 (positive = better), its label, and the
    paper's Table 2 label for the same architecture, weights mode and variant where it has
    one. Computed from the runs only: nothing is typed in.
    """
    accuracy = accuracy_table(run_summaries)
    accuracy = accuracy.drop(index=MEAN_SHAPE_ROW, errors="ignore")
    modes = {run.label: (run.arch, run.weights_mode) for run in run_summaries if run.trained}
    rows = []
    for label in accuracy.index:
        arch, weights_mode = modes[label]
        base = accuracy.loc[label, "none"] if "none" in accuracy.columns else np.nan
        for variant in accuracy.columns:
            if variant == "none":
                continue
            value = accuracy.loc[label, variant]
            gain = (base - value) / base * 100.0 if base > 0 else np.nan
            paper = reference.paper_row(arch, variant, weights_mode, reference.TABLE2)
            rows.append(
                {
                    "model": label,
                    "arch": arch,
                    "weights_mode": weights_mode,
                    "variant": variant,
                    "rmse_none": base,
                    "rmse": value,
                    "gain_percent": gain,
                    "label": gain_label(gain),
                    "paper_label": paper.gain_label if paper else None,
                    "paper_citation": paper.citation if paper else None,
                }
            )
    columns = [
        "model",
        "arch",
        "weights_mode",
        "variant",
        "rmse_none",
        "rmse",
        "gain_percent",
        "label",
        "paper_label",
        "paper_citation",
    ]
    return pd.DataFrame(rows, columns=columns)


def paper_gains_table() -> pd.DataFrame:
    """The paper's Table 2 as printed: rows = its models, columns = variants."""
    rows: dict[str, dict[str, Any]] = {}
    for row in reference.paper_rows(table=reference.TABLE2):
        entry = rows.setdefault(
            row.model,
            {
                "paper_model": row.model,
                "model": model_label(row.arch, row.weights_mode),
                "citation": row.citation,
            },
        )
        entry[row.variant] = row.gain_label
    columns = ["paper_model", "model", "none", "ffill", "knn", "aug", "citation"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def ratio_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """The paper's stated fine-tuned vs non-fine-tuned RMSE ratios beside ours."""
    rmse = {
        (run.arch, run.variant, run.weights_mode): run.test_rmse
        for run in run_summaries
        if run.trained and run.test_rmse is not None
    }
    rows = []
    for claim in reference.RATIO_CLAIMS:
        worse = rmse.get((claim.arch, claim.variant, claim.worse_mode))
        better = rmse.get((claim.arch, claim.variant, claim.better_mode))
        rows.append(
            {
                "arch": claim.arch,
                "variant": claim.variant,
                "ratio": f"RMSE {claim.worse_mode} / RMSE {claim.better_mode}",
                "paper_low": claim.low,
                "paper_high": claim.high,
                "ours": worse / better if worse is not None and better else np.nan,
                "citation": claim.citation,
            }
        )
    return pd.DataFrame(rows)


def cited_table() -> pd.DataFrame:
    """RMSEs of earlier Kaggle work that paper 003 cites (Section 2)."""
    return pd.DataFrame(
        [
            {
                "work": cited.work,
                "reference": cited.reference,
                "rmse": cited.rmse,
                "citation": cited.citation,
            }
            for cited in reference.CITED_RESULTS
        ]
    )


def timing_table(bench_records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Paper Table 4 beside ours: the latest record per run x backend x batch x threads.

    ``speedup_vs_paper`` = the paper's seconds / ours (the paper timed Keras on a Colab CPU,
    so this compares set-ups, not only models).
    """
    rows = []
    for record in latest_records(bench_records):
        arch = str(record.get("arch"))
        trained = bool(record.get("trained", True))
        weights_mode = record.get("weights_mode") or "scratch"
        paper = reference.paper_row(
            arch,
            paper_variant(record.get("variant"), trained),
            paper_weights_mode(arch, weights_mode),
            reference.TABLE4,
        )
        seconds = _number(record.get("seconds_per_100_images"))
        paper_seconds = paper.seconds_per_100 if paper else None
        flops = _number(record.get("flops_per_image"))
        rows.append(
            {
                "model": _display_name(arch, weights_mode, trained),
                "run_name": record.get("run_name"),
                "arch": arch,
                "variant": record.get("variant"),
                "weights_mode": weights_mode,
                "trained": trained,
                "backend": record.get("backend"),
                "batch_size": record.get("batch_size"),
                "threads": record.get("threads"),
                "images": record.get("images"),
                "repeats": record.get("repeats"),
                "seconds_per_100": seconds,
                "seconds_per_100_q1": _number(record.get("seconds_per_100_images_q1")),
                "seconds_per_100_q3": _number(record.get("seconds_per_100_images_q3")),
                "seconds_per_100_iqr": _number(record.get("seconds_per_100_images_iqr")),
                "paper_model": paper.model if paper else None,
                "paper_seconds_per_100": paper_seconds,
                "speedup_vs_paper": paper_seconds / seconds
                if paper_seconds is not None and seconds
                else None,
                "latency_p50_ms": _number(record.get("latency_batch1_p50_ms")),
                "latency_p99_ms": _number(record.get("latency_batch1_p99_ms")),
                "gflops_per_image": flops / 1e9 if flops is not None else None,
                "achieved_gflops": _number(record.get("achieved_gflops")),
                "fraction_of_peak": _number(record.get("fraction_of_peak")),
                "test_rmse": _number(record.get("test_rmse")),
                "paper_citation": paper.citation if paper else None,
            }
        )
    columns = [
        "model",
        "run_name",
        "arch",
        "variant",
        "weights_mode",
        "trained",
        "backend",
        "batch_size",
        "threads",
        "images",
        "repeats",
        "seconds_per_100",
        "seconds_per_100_q1",
        "seconds_per_100_q3",
        "seconds_per_100_iqr",
        "paper_model",
        "paper_seconds_per_100",
        "speedup_vs_paper",
        "latency_p50_ms",
        "latency_p99_ms",
        "gflops_per_image",
        "achieved_gflops",
        "fraction_of_peak",
        "test_rmse",
        "paper_citation",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("batch_size", "threads", "images", "repeats"):
        frame[column] = frame[column].astype("Int64")
    return frame


def tuned_studies_table(studies: Sequence[TuneSummary]) -> pd.DataFrame:
    """One row per tuning study: its trials, and its best trial (lowest validation RMSE)."""
    rows = [
        {
            "study": study.study,
            "variant": study.variant,
            "objective": study.objective,
            "epochs_per_trial": study.epochs_per_trial,
            "trials_complete": study.trials_complete,
            "trials_pruned": study.trials_pruned,
            "trials_failed": study.trials_failed,
            "wall_minutes": None if study.wall_seconds is None else study.wall_seconds / 60.0,
            "best_trial": study.best_trial,
            "best_val_rmse": study.best_val_rmse,
            "best_seconds_per_100": study.best_seconds_per_100_images,
            "best_params_keras": study.best_params_keras,
            "best_onnx_mb": _mb(study.best_onnx_bytes),
            "best_lr": study.best_lr,
            "best_batch_size": study.best_batch_size,
            "pareto_size": study.pareto_size,
        }
        for study in studies
    ]
    texts = ("study", "variant", "objective")
    return _typed_frame(rows, _TUNED_STUDIES_COLUMNS, _TUNED_STUDIES_INTEGERS, texts)


def _typed_frame(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    integers: Sequence[str],
    texts: Sequence[str],
) -> pd.DataFrame:
    """``rows`` as a frame whose integer columns are nullable ints and every other
    non-text column floats, so that missing cells stay NA and the CSV prints no "3.0"."""
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in integers:
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    floats = [column for column in frame.columns if column not in (*texts, *integers)]
    frame[floats] = frame[floats].astype(float)
    return frame


_TUNED_STUDIES_COLUMNS = [
    "study",
    "variant",
    "objective",
    "epochs_per_trial",
    "trials_complete",
    "trials_pruned",
    "trials_failed",
    "wall_minutes",
    "best_trial",
    "best_val_rmse",
    "best_seconds_per_100",
    "best_params_keras",
    "best_onnx_mb",
    "best_lr",
    "best_batch_size",
    "pareto_size",
]
_TUNED_STUDIES_INTEGERS = (
    "epochs_per_trial",
    "trials_complete",
    "trials_pruned",
    "trials_failed",
    "best_trial",
    "best_params_keras",
    "best_batch_size",
    "pareto_size",
)


def tuned_vs_paper_table(
    run_summaries: Sequence[RunSummary], size: pd.DataFrame, timing: pd.DataFrame
) -> pd.DataFrame:
    """The paper's Keras Optimized CNN beside our ``cnn-tuned`` run, one row per variant
    that the paper (Table 1 / Table 4) or we have.

    Ours: parameters and state-dict MB as the size table has them, test RMSE from the run,
    and ONNX Runtime seconds per 100 images as the accuracy-vs-speed figure picks them
    (:func:`speed_rows`); the same variant's cnn-manual and cnn-baseline for comparison.
    """
    scratch = {
        (run.arch, run.variant): run
        for run in run_summaries
        if run.trained and run.weights_mode == "scratch" and run.variant is not None
    }
    speed = speed_rows(timing)
    ort_seconds = dict(zip(speed["run_name"], speed["seconds_per_100"], strict=True))
    sizes = size.set_index("run_name")
    paper_variants = {
        row.variant
        for table in (reference.TABLE1, reference.TABLE4)
        for row in reference.paper_rows(table=table, arch=TUNED_ARCH)
        if row.variant is not None
    }
    our_variants = {variant for arch, variant in scratch if arch == TUNED_ARCH}
    rows = []
    for variant in sorted(paper_variants | our_variants, key=_variant_key):
        params = reference.paper_row(TUNED_ARCH, variant, "scratch", reference.TABLE1)
        seconds = reference.paper_row(TUNED_ARCH, variant, "scratch", reference.TABLE4)
        paper = [row for row in (params, seconds) if row is not None]
        run = scratch.get((TUNED_ARCH, variant))
        ours = sizes.loc[run.run_name] if run is not None and run.run_name in sizes.index else {}
        row = {
            "variant": variant,
            "paper_model": paper[0].model if paper else None,
            "paper_params": params.params if params else None,
            "paper_mb": params.size_mb if params else None,
            "paper_seconds_per_100": seconds.seconds_per_100 if seconds else None,
            "run_name": run.run_name if run else None,
            "spec_source": run.spec_source if run else None,
            "params_keras": ours.get("params_keras"),
            "state_dict_mb": ours.get("state_dict_mb"),
            "test_rmse": run.test_rmse if run else None,
            "seconds_per_100": ort_seconds.get(run.run_name) if run else None,
        }
        for prefix, arch in TUNED_COMPARED:
            other = scratch.get((arch, variant))
            row[f"{prefix}_test_rmse"] = other.test_rmse if other else None
            row[f"{prefix}_seconds_per_100"] = ort_seconds.get(other.run_name) if other else None
        row["paper_citation"] = "; ".join(cited.citation for cited in paper) or None
        rows.append(row)
    texts = ("variant", "paper_model", "run_name", "spec_source", "paper_citation")
    return _typed_frame(rows, _TUNED_VS_PAPER_COLUMNS, ("paper_params", "params_keras"), texts)


_TUNED_VS_PAPER_COLUMNS = [
    "variant",
    "paper_model",
    "paper_params",
    "paper_mb",
    "paper_seconds_per_100",
    "run_name",
    "spec_source",
    "params_keras",
    "state_dict_mb",
    "test_rmse",
    "seconds_per_100",
    *(
        f"{prefix}_{column}"
        for prefix, _ in TUNED_COMPARED
        for column in ("test_rmse", "seconds_per_100")
    ),
    "paper_citation",
]


def environment_table(
    run_summaries: Sequence[RunSummary], bench_records: Sequence[dict[str, Any]] = ()
) -> pd.DataFrame:
    """Where the numbers came from: machine, threads, versions, commits, data, settings.

    One row per item; a value that differs between records lists every distinct value.
    """
    trained = [run for run in run_summaries if run.trained]
    rows: list[dict[str, str]] = []

    def add(item: str, values: Iterable[Any], source: str) -> None:
        distinct = sorted({_plain_text(value) for value in values if value not in (None, "")})
        if distinct:
            rows.append({"item": item, "value": "; ".join(distinct), "source": source})

    bench = list(bench_records)
    if bench:
        source = "bench records"
        add("CPU model", (r.get("cpu_model") for r in bench), source)
        add("CPU cores", (r.get("cpu_cores") for r in bench), source)
        add("CPU features", (" ".join(r.get("cpu_features") or []) for r in bench), source)
        add("threads", (r.get("threads") for r in bench), source)
        add("batch size", (r.get("batch_size") for r in bench), source)
        add("timed passes (repeats)", (r.get("repeats") for r in bench), source)
        add("warm-up passes", (r.get("warmup_passes") for r in bench), source)
        add("batch-1 latency samples", (r.get("latency_samples") for r in bench), source)
        add("test images timed", (r.get("images") for r in bench), source)
        add("ONNX exporter", (r.get("exporter") for r in bench), source)
        add("git commit (bench)", (r.get("git_commit") for r in bench), source)
        add("data set (bench)", (r.get("data_dir") for r in bench), source)
        add("data manifest sha256 (bench)", (r.get("data_manifest_sha256") for r in bench), source)
        packages = sorted({name for r in bench for name in (r.get("versions") or {})})
        for package in packages:
            add(
                f"{package} (bench)",
                ((r.get("versions") or {}).get(package) for r in bench),
                source,
            )
    if trained:
        source = "run folders"
        environments = [run.environment for run in trained]
        add("CPU model (training)", (e.get("cpu_model") for e in environments), source)
        add("CPU cores (training)", (e.get("cpu_cores") for e in environments), source)
        add("git commit (training)", (e.get("git_commit") for e in environments), source)
        add("data source", (run.data_source for run in trained), source)
        add("data seed", (run.data_seed for run in trained), source)
        add("data set", (run.data_dir for run in trained), source)
        add("data manifest sha256", (run.manifest_sha256 for run in trained), source)
        add("keypoint scheme", (run.scheme for run in trained), source)
        add("image size", (run.image_size for run in trained), source)
        packages = sorted({name for e in environments for name in (e.get("versions") or {})})
        for package in packages:
            values = ((e.get("versions") or {}).get(package) for e in environments)
            add(f"{package} (training)", values, source)
    return pd.DataFrame(rows, columns=["item", "value", "source"])


def _plain_text(value: Any) -> str:
    return str(value)


# -- Markdown formatting --------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def _fmt(value: Any, spec: str, missing: str) -> str:
    return missing if _missing(value) else format(value, spec)


def _fmt_int(value: Any, missing: str) -> str:
    return missing if _missing(value) else f"{int(value):,}"


def _printed(value: Any) -> str:
    """A paper's number as printed: the shortest text that round-trips (7.6, 18.48)."""
    return NO_PAPER if _missing(value) else repr(float(value))


def _markdown(frame: pd.DataFrame) -> str:
    """A pipe table of already-formatted text: tabulate must not re-parse the numbers."""
    return frame.to_markdown(index=False, disable_numparse=True)


def _size_markdown(table: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            "model": table["model"],
            "variant": table["variant"].map(lambda v: UNTRAINED_LABEL if _missing(v) else v),
            "params (PyTorch)": table["params_pytorch"].map(lambda v: _fmt_int(v, NOT_MEASURED)),
            "params (Keras)": table["params_keras"].map(lambda v: _fmt_int(v, NOT_MEASURED)),
            "state dict MB": table["state_dict_mb"].map(lambda v: _fmt(v, ".2f", NOT_MEASURED)),
            "ONNX MB": table["onnx_mb"].map(lambda v: _fmt(v, ".2f", NOT_EXPORTED)),
            "INT8 MB": table["int8_mb"].map(lambda v: _fmt(v, ".2f", NOT_EXPORTED)),
            "paper model": table["paper_model"].map(lambda v: NO_PAPER if _missing(v) else v),
            "paper params": table["paper_params"].map(lambda v: _fmt_int(v, NO_PAPER)),
            "paper MB": table["paper_mb"].map(_printed),
        }
    )
    return _markdown(shown)


def _accuracy_markdown(table: pd.DataFrame, spec: str) -> str:
    models = table.drop(index=MEAN_SHAPE_ROW, errors="ignore")
    best = models.min(axis=0, skipna=True)
    shown = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    for label in table.index:
        for variant in table.columns:
            value = table.loc[label, variant]
            if _missing(value):
                shown.loc[label, variant] = NOT_MEASURED if label == MEAN_SHAPE_ROW else NOT_RUN
                continue
            text = format(value, spec)
            is_best = label != MEAN_SHAPE_ROW and value == best[variant]
            shown.loc[label, variant] = f"**{text}**" if is_best else text
    return _markdown(shown.reset_index().rename(columns={"index": "model"}))


def _landmark_markdown(table: pd.DataFrame) -> str:
    shown = table.astype(object).copy()
    for column in table.columns:
        if column in ("model", "variant", "scheme"):
            continue
        spec = ".2f" if column == "threshold" else ".4f"
        shown[column] = [_fmt(value, spec, NOT_MEASURED) for value in table[column]]
    return _markdown(shown)


def _gains_markdown(gains: pd.DataFrame) -> str:
    if gains.empty:
        return ""
    labels = sorted(gains["model"].unique(), key=_label_key)
    variants = [v for v in list(VARIANTS) if v != "none" and v in set(gains["variant"])]
    variants += sorted(set(gains["variant"]) - set(variants))
    shown = pd.DataFrame(index=labels, columns=variants, dtype=object)
    for row in gains.itertuples(index=False):
        if _missing(row.gain_percent):
            cell = f"{NOT_RUN} (no `none` run)" if _missing(row.rmse_none) else NOT_RUN
        else:
            cell = f"{row.gain_percent:+.1f}% {row.label}"
        if not _missing(row.paper_label):
            cell += f" (paper: {row.paper_label})"
        shown.loc[row.model, row.variant] = cell
    return _markdown(shown.rename_axis("model").reset_index())


def _timing_markdown(table: pd.DataFrame) -> str:
    def seconds(row: Any) -> str:
        return _fmt(row.seconds_per_100, ".4f", NOT_MEASURED)

    shown = pd.DataFrame(
        {
            "model": table["model"],
            "variant": table["variant"].map(lambda v: UNTRAINED_LABEL if _missing(v) else v),
            "backend": table["backend"],
            "batch": table["batch_size"].map(lambda v: _fmt_int(v, NOT_MEASURED)),
            "threads": table["threads"].map(lambda v: _fmt_int(v, NOT_MEASURED)),
            "s / 100 images (median)": [seconds(row) for row in table.itertuples()],
            "IQR": table["seconds_per_100_iqr"].map(lambda v: _fmt(v, ".4f", NOT_MEASURED)),
            "paper s / 100": table["paper_seconds_per_100"].map(_printed),
            "speed-up vs paper": table["speedup_vs_paper"].map(
                lambda v: NO_PAPER if _missing(v) else f"{v:.1f}x"
            ),
            "batch-1 p50 ms": table["latency_p50_ms"].map(lambda v: _fmt(v, ".2f", NOT_MEASURED)),
            "batch-1 p99 ms": table["latency_p99_ms"].map(lambda v: _fmt(v, ".2f", NOT_MEASURED)),
            "GFLOPs / image": table["gflops_per_image"].map(lambda v: _fmt(v, ".3f", NOT_MEASURED)),
            "% of peak": table["fraction_of_peak"].map(
                lambda v: NOT_MEASURED if _missing(v) else f"{100 * v:.1f}%"
            ),
            "test RMSE (this backend)": [
                UNTRAINED_LABEL if not row.trained else _fmt(row.test_rmse, ".3f", NOT_MEASURED)
                for row in table.itertuples()
            ],
        }
    )
    return _markdown(shown)


def _tuned_studies_markdown(table: pd.DataFrame) -> str:
    trials = [
        f"{row.trials_complete} / {row.trials_pruned} / {row.trials_failed}"
        for row in table.itertuples()
    ]
    # A single-objective study has no front to speak of.
    front = [
        _fmt_int(row.pareto_size, "one objective" if row.objective == "rmse" else NOT_RECORDED)
        for row in table.itertuples()
    ]
    shown = pd.DataFrame(
        {
            "study": table["study"],
            "variant": table["variant"].map(lambda v: NOT_RECORDED if _missing(v) else v),
            "objective": table["objective"].map(lambda v: NOT_RECORDED if _missing(v) else v),
            "epochs / trial": table["epochs_per_trial"].map(lambda v: _fmt_int(v, NOT_RECORDED)),
            "trials complete / pruned / failed": trials,
            "wall min": table["wall_minutes"].map(lambda v: _fmt(v, ".1f", NOT_RECORDED)),
            "best trial": table["best_trial"].map(lambda v: _fmt_int(v, NOT_RECORDED)),
            "val RMSE": table["best_val_rmse"].map(lambda v: _fmt(v, ".3f", NOT_MEASURED)),
            "ORT s / 100": table["best_seconds_per_100"].map(
                lambda v: _fmt(v, ".4f", NOT_MEASURED)
            ),
            "params (Keras)": table["best_params_keras"].map(lambda v: _fmt_int(v, NOT_MEASURED)),
            "ONNX MB": table["best_onnx_mb"].map(lambda v: _fmt(v, ".2f", NOT_EXPORTED)),
            "lr": table["best_lr"].map(lambda v: _fmt(v, ".3g", NOT_RECORDED)),
            "batch": table["best_batch_size"].map(lambda v: _fmt_int(v, NOT_RECORDED)),
            "Pareto front": front,
        }
    )
    return _markdown(shown)


def _tuned_vs_paper_markdown(table: pd.DataFrame) -> str:
    ran = table["run_name"].notna()

    def ours(column: str, show: Callable[[Any], str]) -> list[str]:
        # A variant we have no cnn-tuned run of: every one of our cells says "not run".
        cells = zip(ran, table[column], strict=True)
        return [show(value) if has_run else NOT_RUN for has_run, value in cells]

    columns = {
        "variant": table["variant"],
        "paper params (Keras)": table["paper_params"].map(lambda v: _fmt_int(v, NO_PAPER)),
        "paper MB": table["paper_mb"].map(_printed),
        "paper s / 100": table["paper_seconds_per_100"].map(_printed),
        "spec source": ours("spec_source", lambda v: NOT_RECORDED if _missing(v) else f"`{v}`"),
        "params (Keras)": ours("params_keras", lambda v: _fmt_int(v, NOT_MEASURED)),
        "state dict MB": ours("state_dict_mb", lambda v: _fmt(v, ".2f", NOT_MEASURED)),
        "test RMSE": ours("test_rmse", lambda v: _fmt(v, ".3f", NOT_MEASURED)),
        "ORT s / 100": ours("seconds_per_100", lambda v: _fmt(v, ".4f", NOT_MEASURED)),
    }
    for prefix, arch in TUNED_COMPARED:
        rmse = table[f"{prefix}_test_rmse"]
        seconds = table[f"{prefix}_seconds_per_100"]
        columns[f"{arch} RMSE"] = rmse.map(lambda v: _fmt(v, ".3f", NOT_RUN))
        # No RMSE: no such run, so nothing was timed either.
        columns[f"{arch} ORT s / 100"] = [
            NOT_RUN if _missing(r) else _fmt(v, ".4f", NOT_MEASURED)
            for r, v in zip(rmse, seconds, strict=True)
        ]
    return _markdown(pd.DataFrame(columns))


def _tune_figure_link(study: str, name: str) -> str:
    return f"{FIGURES_DIR}/{tune_figure_file(study, name)}"


def _tuned_markdown(tables: dict[str, pd.DataFrame], studies: Sequence[TuneSummary]) -> list[str]:
    """The Tuned CNN section's lines after its heading."""
    studies_table = tables["tuned_studies"]
    versus = tables["tuned_vs_paper"]
    lines: list[str] = []
    if studies_table.empty and versus["run_name"].isna().all():
        lines.append(
            f"No tuning studies (`{runs.TUNE_DIR}/`) and no trained `{TUNED_ARCH}` run: "
            f"{NOT_RUN}. Run `fkdbench tune`, then train the best spec as `{TUNED_ARCH}`."
        )
    else:
        lines.append(
            "`fkdbench tune` searches plain CNN specs and training settings with Optuna. Each "
            "trial trains for a short fixed budget (epochs / trial) and is scored by its "
            "validation RMSE and, with objective `rmse+latency`, also by its ONNX Runtime CPU "
            "seconds per 100 images (ORT s / 100): the Pareto front is the trials nothing beats "
            "on both. The best trial is the complete one with the lowest validation RMSE. The "
            "paper tuned a single objective with the Keras tuner, one network per data variant; "
            "it has no `masked` variant (ours only), so that row has no paper numbers."
        )
        lines.append("")
        if studies_table.empty:
            lines.append(f"No tuning studies (`{runs.TUNE_DIR}/`): {NOT_RUN}.")
        else:
            lines.append(_tuned_studies_markdown(studies_table))
        for study in studies:
            for name, caption in TUNE_FIGURES.items():
                if name in study.figures:
                    link = _tune_figure_link(study.study, name)
                    lines += ["", f"![{study.study}: {caption}]({link})"]
            absent = [name for name in TUNE_FIGURES if name not in study.figures]
            if absent:
                names = ", ".join(absent)
                lines += ["", f"- {study.study}: not drawn by `fkdbench tune`: {names}."]
    lines += [
        "",
        f"The paper's Keras Optimized CNN ({reference.TABLE1}: parameters and MB; "
        f"{reference.TABLE4}: seconds per 100 images on a Colab CPU) beside our `{TUNED_ARCH}` "
        "run of the same variant (state dict MB, ONNX Runtime seconds at the batch size and "
        "threads most bench records share), and our `cnn-manual` and `cnn-baseline` of that "
        "variant:",
        "",
        _tuned_vs_paper_markdown(versus),
        "",
    ]
    return lines


# -- figures --------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Any:
    # The object-oriented API: no pyplot, no global backend switch, no GUI, whatever the
    # caller's matplotlib set-up; PNGs are drawn by Agg.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")


def save_figure(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _colour(index: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](index % 10)


def _short_number(value: float, _position: Any = None) -> str:
    """Tick text: 0.25, 3, 300k, 2M rather than 2.5x10^-1."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _log_axis(axes: Any, which: str) -> None:
    """Log scale with ticks at 1-2-5 steps inside the data, labelled as plain numbers.

    Call after plotting: the ticks are chosen from the axis' limits.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = axes.xaxis if which == "x" else axes.yaxis
    (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    low, high = axes.get_xlim() if which == "x" else axes.get_ylim()
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    ticks: list[float] = []
    for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0**e for e in decades for m in mantissas if low <= m * 10.0**e <= high]
        if len(ticks) >= 3:
            break
    if len(ticks) < 2:
        ticks = [float(f"{low:.2g}"), float(f"{high:.2g}")]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(_short_number))
    axis.set_minor_formatter(NullFormatter())


def figure_params_vs_size(size: pd.DataFrame, path: Path) -> Path | None:
    """Paper Fig. 8: parameters (log x) vs MB, our models and the paper's Table 1."""
    ours = size.dropna(subset=["params_keras", "state_dict_mb"])
    ours = ours.drop_duplicates(subset=["arch", "params_keras"])
    paper = reference.paper_rows(table=reference.TABLE1)
    if ours.empty and not paper:
        return None
    figure = new_figure(7.0, 4.5)
    axes = figure.add_subplot()
    if not ours.empty:
        axes.scatter(
            ours["params_keras"].astype(float),
            ours["state_dict_mb"],
            color=_colour(0),
            label="ours",
        )
        for row in ours.itertuples():
            axes.annotate(
                row.arch, (float(row.params_keras), row.state_dict_mb), fontsize=7, xytext=(3, 3),
                textcoords="offset points",
            )  # fmt: skip
    points = [(row.params, row.size_mb, row.model) for row in paper if row.params and row.size_mb]
    if points:
        axes.scatter(
            [p[0] for p in points], [p[1] for p in points], color=_colour(1), marker="s",
            label="paper 003 Table 1",
        )  # fmt: skip
        for params, size_mb, name in points:
            axes.annotate(
                name, (params, size_mb), fontsize=6, xytext=(3, -8), textcoords="offset points"
            )
    _log_axis(axes, "x")
    _log_axis(axes, "y")
    axes.set_xlabel("parameters (Keras count: learnable + BatchNorm statistics)")
    axes.set_ylabel("model file MB (ours: state dict, 10^6 bytes)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def figure_rmse_by_variant(accuracy: pd.DataFrame, path: Path) -> Path | None:
    """Paper Fig. 6-7: grouped bars, one group per model, one bar per variant."""
    models = accuracy.drop(index=MEAN_SHAPE_ROW, errors="ignore")
    columns = [column for column in models.columns if models[column].notna().any()]
    if models.empty or not columns:
        return None
    figure = new_figure(max(6.0, 1.2 * len(models.index) + 2), 4.5)
    axes = figure.add_subplot()
    width = 0.8 / len(columns)
    positions = np.arange(len(models.index))
    for number, variant in enumerate(columns):
        values = models[variant].to_numpy(dtype=float)
        present = ~np.isnan(values)
        axes.bar(
            positions[present] + (number - (len(columns) - 1) / 2) * width,
            values[present],
            width,
            label=variant,
            color=_colour(_variant_key(variant)[0]),
        )
    axes.set_xticks(positions)
    axes.set_xticklabels(models.index, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("test RMSE (px)")
    axes.legend(title="variant", fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    return save_figure(figure, path)


def _read_history(folder: Path) -> tuple[tuple[int, float], ...]:
    """(epoch, val RMSE) of the keypoint phase from ``history.csv``; () when absent."""
    path = folder / runs.HISTORY_FILE
    if not path.is_file():
        return ()
    history = pd.read_csv(path)
    if "phase" in history.columns:
        history = history[history["phase"] == "keypoints"]
    history = history.dropna(subset=["val_rmse"])
    return tuple((int(row.epoch), float(row.val_rmse)) for row in history.itertuples())


def _history(run: RunSummary) -> pd.DataFrame | None:
    if not run.history:
        return None
    return pd.DataFrame(list(run.history), columns=["epoch", "val_rmse"])


def figure_training_curves(run_summaries: Sequence[RunSummary], path: Path) -> Path | None:
    """Paper Fig. 9-11: validation RMSE vs epoch, a panel per model, a line per variant."""
    curves: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for run in run_summaries:
        history = _history(run) if run.trained else None
        if history is not None:
            curves.setdefault(run.label, []).append((run.variant, history))
    if not curves:
        return None
    from matplotlib.ticker import MaxNLocator

    labels = sorted(curves, key=_label_key)
    columns = min(3, len(labels))
    rows = math.ceil(len(labels) / columns)
    figure = new_figure(4.0 * columns, 3.0 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    for number, label in enumerate(labels):
        axes = grid[number // columns][number % columns]
        for variant, history in sorted(curves[label], key=lambda item: _variant_key(item[0])):
            axes.plot(
                history["epoch"], history["val_rmse"], marker="o", markersize=3,
                label=variant, color=_colour(_variant_key(variant)[0]),
            )  # fmt: skip
        axes.set_title(label, fontsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch", fontsize=8)
        axes.set_ylabel("val RMSE (px)", fontsize=8)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    for number in range(len(labels), rows * columns):
        grid[number // columns][number % columns].set_visible(False)
    return save_figure(figure, path)


def _resolve_data_dir(data_dir: str | None, runs_dir: Path) -> Path | None:
    if not data_dir:
        return None
    candidates = [Path(data_dir)]
    if not Path(data_dir).is_absolute():
        candidates.append(Path(runs_dir).parent / data_dir)
    for candidate in candidates:
        if (candidate / "test.npz").is_file():
            return candidate
    return None


def prediction_faces(keypoints: np.ndarray, count: int = PREDICTION_FACES) -> np.ndarray:
    """Indices of the faces to draw: the first ``count`` test rows with every keypoint
    labelled, then (if there are too few) the rows with the most labels, in file order."""
    labelled = (~np.isnan(keypoints).any(axis=-1)).sum(axis=-1)
    order = sorted(range(len(keypoints)), key=lambda index: (-labelled[index], index))
    return np.array(sorted(order[:count]), dtype=int)


def figure_predictions(
    run_summaries: Sequence[RunSummary], runs_dir: Path, path: Path, notes: list[str]
) -> Path | None:
    """Paper Fig. 12: every architecture's best run on the same test faces."""
    import torch

    from fkdbench.data.splits import load_split
    from fkdbench.models.base import denormalise_keypoints

    trained = [run for run in run_summaries if run.trained and run.folder is not None]
    ranked: dict[str, tuple[tuple[float, str], RunSummary]] = {}
    for run in trained:
        score = (run.test_rmse if run.test_rmse is not None else math.inf, run.run_name)
        if run.label not in ranked or score < ranked[run.label][0]:
            ranked[run.label] = (score, run)
    best = {label: run for label, (_, run) in ranked.items()}
    data_dir = next(
        (
            found
            for run in sorted(trained, key=lambda r: r.run_name)
            if (found := _resolve_data_dir(run.data_dir, runs_dir)) is not None
        ),
        None,
    )
    if data_dir is None:
        notes.append("predictions: no run's data set (test split) was found")
        return None
    split = load_split(data_dir, "test")
    faces = prediction_faces(split.keypoints)
    if len(faces) == 0:
        notes.append(f"predictions: the test split of {data_dir} is empty")
        return None
    size = split.images.shape[-1]
    drawn: list[tuple[str, np.ndarray]] = []
    for label in sorted(best, key=_label_key):
        run = best[label]
        if run.image_size not in (None, size):
            notes.append(f"predictions: {run.run_name} takes {run.image_size} px images, skipped")
            continue
        try:
            model, config = runs.load_model(run.folder)
        except (runs.CheckpointError, KeyError, ValueError) as error:
            notes.append(f"predictions: {run.run_name} not drawn ({runs.first_line(error)})")
            continue
        in_chans = int(config["model"].get("in_chans", 1))
        images = torch.from_numpy(split.images[faces].astype(np.float32) / 255.0)[:, None]
        images = images.repeat(1, in_chans, 1, 1)
        with torch.no_grad():
            coords = model(images).numpy().reshape(len(faces), -1, 2)
        drawn.append((f"{label}\n{run.variant}", denormalise_keypoints(coords, size)))
    if not drawn:
        return None
    figure = new_figure(1.5 * len(faces), 1.6 * len(drawn))
    grid = figure.subplots(len(drawn), len(faces), squeeze=False)
    for row, (label, predicted) in enumerate(drawn):
        for column, face in enumerate(faces):
            axes = grid[row][column]
            axes.imshow(split.images[face], cmap="gray", vmin=0, vmax=255)
            truth = split.keypoints[face]
            axes.scatter(truth[:, 0], truth[:, 1], s=6, color="lime", marker="o")
            axes.scatter(predicted[column, :, 0], predicted[column, :, 1], s=8, c="red", marker="x")
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(label, fontsize=7)
            if row == 0:
                axes.set_title(f"test row {face}", fontsize=7)
    return save_figure(figure, path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower x and lower y), by x."""
    order = sorted(range(len(points)), key=lambda index: (points[index][0], points[index][1]))
    front, best_y = [], math.inf
    for index in order:
        if points[index][1] < best_y:
            front.append(index)
            best_y = points[index][1]
    return front


def speed_rows(timing: pd.DataFrame) -> pd.DataFrame:
    """The timing rows that stand for trained runs' speed: ONNX Runtime, at the batch size
    and threads most such records share (so that every model is timed alike)."""
    rows = timing[(timing["backend"] == SPEED_BACKEND) & timing["trained"].astype(bool)]
    rows = rows.dropna(subset=["seconds_per_100"])
    if rows.empty:
        return rows
    settings = Counter(zip(rows["batch_size"], rows["threads"], strict=True))
    chosen = min(settings.items(), key=lambda item: (-item[1], item[0]))[0]
    return rows[(rows["batch_size"] == chosen[0]) & (rows["threads"] == chosen[1])]


def speed_points(
    run_summaries: Sequence[RunSummary], timing: pd.DataFrame
) -> list[tuple[str, float, float]]:
    """(model, seconds per 100 images, test RMSE) per trained run timed on ONNX Runtime,
    at the batch size and threads most records share; RMSE is that backend's own where the
    record has it, else the run's."""
    rows = speed_rows(timing)
    rmse = {run.run_name: run.test_rmse for run in run_summaries if run.trained}
    points = []
    for row in rows.itertuples():
        value = row.test_rmse if not _missing(row.test_rmse) else rmse.get(row.run_name)
        if value is not None and not _missing(value):
            points.append((str(row.run_name), float(row.seconds_per_100), float(value)))
    return sorted(points)


def figure_accuracy_vs_speed(points: Sequence[tuple[str, float, float]], path: Path) -> Path | None:
    """Test RMSE vs ONNX Runtime time (log x), the Pareto front joined."""
    if not points:
        return None
    figure = new_figure(7.0, 4.5)
    axes = figure.add_subplot()
    xs = [point[1] for point in points]
    ys = [point[2] for point in points]
    axes.scatter(xs, ys, color=_colour(0))
    for name, x, y in points:
        axes.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front([(x, y) for _, x, y in points])
    axes.plot(
        [xs[i] for i in front], [ys[i] for i in front], color=_colour(3), marker="o",
        drawstyle="steps-post", label="Pareto front",
    )  # fmt: skip
    _log_axis(axes, "x")
    axes.set_xlabel(f"{SPEED_BACKEND} seconds per 100 images (median)")
    axes.set_ylabel("test RMSE (px)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


# -- the report -----------------------------------------------------------------------------


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and the tables it wrote them from."""

    out_dir: Path
    markdown: Path | None
    csv_files: list[Path]
    json_file: Path | None
    # Figure stem -> file, for the figures drawn.
    figures: dict[str, Path]
    # Figure stem -> why it was not drawn.
    missing_figures: dict[str, str]
    sections: list[str]
    # Table name -> the numbers (what the CSV of the same name holds).
    tables: dict[str, pd.DataFrame]
    # Inputs skipped and why.
    problems: list[str] = field(default_factory=list)
    # The tuning studies reported (their figures: the copies under figures/).
    tune_studies: list[TuneSummary] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """Every file written."""
        written = [self.markdown, self.json_file, *self.csv_files, *self.figures.values()]
        return [path for path in written if path is not None]


def build_report(
    runs_dir: Path | None,
    bench_file: Path | None,
    out_dir: Path,
    formats: Sequence[str] = FORMATS,
    quiet: bool = False,
    run_records: Path | None = None,
) -> ReportResult:
    """Read run folders and bench records; write REPORT.md (+ figures), CSVs and JSON.

    ``formats`` picks among ``md`` (REPORT.md and figures/*.png), ``csv`` (one file per
    table) and ``json`` (report.json: every table and what is missing). Works with runs
    only, bench records only, or both; whatever is absent is said to be absent.

    From ``runs_dir`` the runs' summaries are also written to ``out_dir/runs.jsonl``, and
    the tuning studies (``runs_dir/tune/``) copied to ``out_dir/tune/`` with their figures.
    With ``runs_dir=None`` both are read back from there (the runs from ``run_records``,
    default that file): the report is rebuilt from records alone, and the one figure that
    needs the models themselves (predictions) is kept as it is when present.
    """
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ReportError(f"unknown report format {unknown[0]!r}; known: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    problems: list[str] = []
    if runs_dir is None:
        run_summaries = read_run_records(run_records or out_dir / RUN_RECORDS_FILE)
        tune_studies = load_tune_studies(
            out_dir / runs.TUNE_DIR, problems, figures_dir=out_dir / FIGURES_DIR
        )
        runs_dir = out_dir
    else:
        runs_dir = Path(runs_dir)
        run_summaries = load_runs(runs_dir, problems)
        tune_studies = snapshot_tune_studies(
            load_tune_studies(runs_dir / runs.TUNE_DIR, problems), runs_dir / runs.TUNE_DIR, out_dir
        )
    all_records = load_bench_records(bench_file)
    records = latest_records(all_records)
    say(
        f"report: {sum(r.trained for r in run_summaries)} trained runs, "
        f"{len(records)} bench records (latest of {len(all_records)})",
        quiet,
    )

    size = size_table(run_summaries, records)
    timing = timing_table(records)
    tables: dict[str, pd.DataFrame] = {
        "size": size,
        "accuracy_rmse": accuracy_table(run_summaries, "test_rmse"),
        "accuracy_nme": accuracy_table(run_summaries, "test_nme"),
        "landmark_metrics": landmark_table(run_summaries),
        "gains": gains_table(run_summaries),
        "paper_gains": paper_gains_table(),
        "finetune_ratios": ratio_table(run_summaries),
        "cited_rmse": cited_table(),
        "timing": timing,
        "tuned_studies": tuned_studies_table(tune_studies),
        "tuned_vs_paper": tuned_vs_paper_table(run_summaries, size, timing),
        "environment": environment_table(run_summaries, records),
    }

    figures: dict[str, Path] = {}
    missing: dict[str, str] = {}
    if "md" in formats:
        figures, missing, partial = _draw_figures(run_summaries, tables, runs_dir, out_dir, quiet)
        problems.extend(partial)

    result = ReportResult(
        out_dir=out_dir,
        markdown=None,
        csv_files=[],
        json_file=None,
        figures=figures,
        missing_figures=missing,
        sections=list(SECTIONS),
        tables=tables,
        problems=problems,
        tune_studies=tune_studies,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if run_records is None and any(run.folder is not None for run in run_summaries):
        write_run_records(run_summaries, out_dir / RUN_RECORDS_FILE)
    if "csv" in formats:
        for name, table in tables.items():
            path = out_dir / f"{name}.csv"
            text = table.to_csv(
                index=table.index.name is not None,
                float_format=CSV_FLOAT_FORMAT,
                lineterminator="\n",
            )
            write_text_atomic(path, text)
            result.csv_files.append(path)
    if "md" in formats:
        result.markdown = out_dir / MARKDOWN_FILE
        write_text_atomic(
            result.markdown, render_markdown(run_summaries, records, tables, result, bench_file)
        )
    if "json" in formats:
        result.json_file = out_dir / JSON_FILE
        write_text_atomic(result.json_file, _render_json(result))
    say(f"report: wrote {len(result.paths)} files to {out_dir}", quiet)
    return result


def _draw_figures(
    run_summaries: Sequence[RunSummary],
    tables: dict[str, pd.DataFrame],
    runs_dir: Path,
    out_dir: Path,
    quiet: bool,
) -> tuple[dict[str, Path], dict[str, str], list[str]]:
    folder = out_dir / FIGURES_DIR
    notes: list[str] = []
    drawers: dict[str, tuple[Callable[[Path], Path | None], str]] = {
        "params_vs_size": (
            lambda path: figure_params_vs_size(tables["size"], path),
            "no parameter counts or sizes",
        ),
        "rmse_by_variant": (
            lambda path: figure_rmse_by_variant(tables["accuracy_rmse"], path),
            "no trained runs",
        ),
        "training_curves": (
            lambda path: figure_training_curves(run_summaries, path),
            "no trained run has a history.csv",
        ),
        "predictions": (
            lambda path: figure_predictions(run_summaries, runs_dir, path, notes),
            "no trained run could be drawn",
        ),
        "accuracy_vs_speed": (
            lambda path: figure_accuracy_vs_speed(
                speed_points(run_summaries, tables["timing"]), path
            ),
            f"no {SPEED_BACKEND} bench records of trained runs",
        ),
        "ced": (
            lambda path: figure_ced(run_summaries, path),
            "no trained run recorded its error distribution",
        ),
    }
    figures: dict[str, Path] = {}
    missing: dict[str, str] = {}
    from_records = bool(run_summaries) and all(run.folder is None for run in run_summaries)
    for name, (draw, reason) in drawers.items():
        path = folder / f"{name}.png"
        say(f"report: drawing {path.name}", quiet)
        if name == "predictions" and from_records:
            # Rebuilt from records: the models are not here, the figure drawn from them is.
            if path.is_file():
                figures[name] = path
            else:
                missing[name] = "rebuilt from records, and the models are not at hand"
            continue
        drawn = draw(path)
        if drawn is None:
            # A stale figure from an earlier report must not pass for this one's.
            path.unlink(missing_ok=True)
            details = [note for note in notes if note.startswith(f"{name}:")]
            missing[name] = "; ".join([reason, *(note.split(": ", 1)[1] for note in details)])
        else:
            figures[name] = drawn
    # Notes about a figure that was drawn anyway (a run left out of it) go to the problems.
    partial = [f"figure {note}" for note in notes if note.split(":", 1)[0] not in missing]
    return figures, missing, partial


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _distinct(values: Iterable[Any]) -> str:
    found = sorted({str(value) for value in values if value not in (None, "")})
    return ", ".join(found) if found else NOT_MEASURED


def render_markdown(
    run_summaries: Sequence[RunSummary],
    records: Sequence[dict[str, Any]],
    tables: dict[str, pd.DataFrame],
    result: ReportResult,
    bench_file: Path | None,
) -> str:
    """REPORT.md: the sections of SECTIONS, deterministic for the same inputs."""
    trained = [run for run in run_summaries if run.trained]
    untrained_records = [r for r in records if not r.get("trained", True)]
    lines: list[str] = ["# fkdbench report", ""]

    # 1. Summary
    lines += ["## Summary", ""]
    archs = sorted({run.arch for run in trained})
    variants = sorted({run.variant for run in trained}, key=_variant_key)
    untrained_folders = sum(not run.trained for run in run_summaries)
    lines.append(
        f"- Runs: {_count(len(trained), 'trained run')} of "
        f"{_count(len(archs), 'architecture')} ({', '.join(archs) or 'none'}) on variants "
        f"{', '.join(variants) or 'none'}; "
        f"{_count(untrained_folders, 'untrained (timing-only) folder')}."
    )
    if records:
        models = sorted({str(r.get("run_name")) for r in records})
        backends = sorted({str(r.get("backend")) for r in records}, key=_backend_key)
        lines.append(
            f"- Timing: {_count(len(records), 'bench record')} (the latest per run, backend, "
            f"batch size and threads) of {_count(len(models), 'model')} "
            f"({_count(len(untrained_records), 'record')} of untrained models), "
            f"backends {', '.join(backends)}."
        )
        lines.append(
            f"- Machine: {_distinct(r.get('cpu_model') for r in records)}, "
            f"{_distinct(r.get('cpu_cores') for r in records)} cores, "
            f"threads {_distinct(r.get('threads') for r in records)}."
        )
    else:
        lines.append(f"- Timing: no bench records ({_bench_name(bench_file)}): {NOT_MEASURED}.")
        if trained:
            environments = [run.environment for run in trained]
            lines.append(
                f"- Machine (training): {_distinct(e.get('cpu_model') for e in environments)}, "
                f"{_distinct(e.get('cpu_cores') for e in environments)} cores."
            )
    if trained:
        lines.append(
            f"- Data: source {_distinct(run.data_source for run in trained)}, "
            f"seed {_distinct(run.data_seed for run in trained)}, "
            f"scheme {_distinct(run.scheme for run in trained)}, "
            f"{_distinct(run.test_rows for run in trained)} test faces."
        )
    elif records:
        lines.append(f"- Data: {_distinct(r.get('data_dir') for r in records)}.")
    lines.append(
        "- Paper numbers: `fkdbench/reference.py`, transcribed from "
        f"`{reference.MAIN_PAPER}` and `{reference.AE_PAPER}`; \u2014 means the paper prints "
        "no such number."
    )
    for problem in result.problems:
        lines.append(f"- Skipped: {problem}.")
    lines.append("")

    # 2. Parameters and size
    lines += ["## Parameters and size", ""]
    lines.append(
        "Paper Table 1 beside ours. Parameters counted the PyTorch way (learnable) and the "
        "Keras way (learnable + BatchNorm running statistics, the paper's). MB = 10^6 bytes "
        "of the saved file: state dict (`model.pt`), ONNX (`model.onnx`), INT8 ONNX. "
        "Untrained models sit beside the paper's No-imputation row, transfer architectures "
        "beside its single MobileNetV2 / NASNetMobile row."
    )
    lines.append("")
    size = tables["size"]
    lines.append(_size_markdown(size) if not size.empty else f"No models: {NOT_MEASURED}.")
    notes = [row for row in reference.paper_rows(table=reference.TABLE1) if row.note]
    if notes:
        lines.append("")
        for row in notes:
            lines.append(f"- Paper row *{row.model}*: {row.note}.")
    lines.append("")

    # 3. Accuracy
    lines += ["## Accuracy", ""]
    accuracy = tables["accuracy_rmse"]
    if accuracy.empty:
        lines.append(f"No trained runs: test RMSE and NME {NOT_MEASURED}.")
    else:
        lines.append(
            "Test RMSE in pixels over labelled coordinates (Kaggle's metric); the lowest per "
            "variant in bold; `mean shape` predicts the training set's mean face."
        )
        lines += ["", _accuracy_markdown(accuracy, ".3f"), ""]
        lines.append("NME (mean error / inter-ocular distance):")
        lines += ["", _accuracy_markdown(tables["accuracy_nme"], ".4f"), ""]
        lines.append(
            "Landmark metrics as the field reports them: NME normalised by each scheme's two "
            "points (Kaggle: the eye centres; 300-W: outer eye corners 36/45; WFLW: 60/72), "
            "FR = share of faces with NME above the threshold, AUC = area under the CED up "
            "to the threshold / threshold (1 is perfect); NME per WFLW subset where the data "
            "has them:"
        )
        lines += ["", _landmark_markdown(tables["landmark_metrics"])]
    lines.append("")
    lines.append(
        "Paper RMSE: paper 003 shows its RMSEs only as bar charts (Fig. 6-7) with no printed "
        "values, and paper 000 prints Keras 'accuracy' only, so there is no paper RMSE to set "
        "beside ours. The Kaggle RMSEs paper 003 cites from earlier work:"
    )
    cited = tables["cited_rmse"].copy()
    cited["rmse"] = cited["rmse"].map(lambda v: f"{v:.2f}")
    lines += ["", _markdown(cited), ""]

    # 4. Gains by variant
    lines += ["## Gains by variant", ""]
    bands = ", ".join(
        f"\u2265 {threshold:g}% {label}" for threshold, label in GAIN_LABEL_THRESHOLDS
    )
    lines.append(
        "Paper Table 2, computed from our runs: gain = (RMSE(none) \u2212 RMSE(variant)) / "
        "RMSE(none), same architecture and weights mode; positive is better. Labels: "
        f"|gain| < {SIMILAR_BAND_PERCENT:g}% {SIMILAR_LABEL}, {bands}, worse by "
        f"{SIMILAR_BAND_PERCENT:g}% or more {WORSE_LABEL} (our thresholds: the paper states "
        "none). The paper's label follows where it has one for the same model."
    )
    lines.append("")
    gains = tables["gains"]
    lines.append(_gains_markdown(gains) if not gains.empty else f"No trained runs: {NOT_RUN}.")
    lines += ["", "The paper's Table 2 as printed:", ""]
    paper_gains = tables["paper_gains"].fillna(NO_PAPER)
    lines.append(_markdown(paper_gains.rename(columns={"paper_model": "paper model"})))
    lines += ["", "Ratios the paper states in Section 4.1 (Figure 7), beside ours:", ""]
    ratios = tables["finetune_ratios"].copy()
    ratios["paper"] = [
        f"{low:g}x" if low == high else f"{low:g}-{high:g}x"
        for low, high in zip(ratios["paper_low"], ratios["paper_high"], strict=True)
    ]
    ratios["ours"] = ratios["ours"].map(lambda v: NOT_RUN if _missing(v) else f"{v:.2f}x")
    lines.append(_markdown(ratios[["arch", "variant", "ratio", "paper", "ours", "citation"]]))
    lines.append("")

    # 5. Inference time
    lines += ["## Inference time", ""]
    timing = tables["timing"]
    if timing.empty:
        lines.append(
            f"No bench records ({_bench_name(bench_file)}): inference time {NOT_MEASURED}. "
            "Run `fkdbench bench` to measure it."
        )
    else:
        lines.append(
            "Paper Table 4 beside ours: seconds per 100 test images (Equation 1: the whole "
            "test split in batches, / images x 100), the median of the timed passes and its "
            "interquartile range; batch-1 latency percentiles; work per image (multiply-add "
            "= 2 FLOPs) and the fraction of this machine's measured FP32 matmul peak. The "
            "paper timed Keras on a Colab CPU, and fed MobileNetV2 and NASNetMobile 3-channel "
            "images (NASNetMobile at 224x224) where ours take the data's gray images: "
            "speed-up = paper seconds / ours, a comparison of set-ups, not of models alone. "
            "For INT8, a % of the FP32 peak above 100 is possible: the integer units are "
            "faster. A transfer architecture not fine-tuned (or untrained) sits beside the "
            "paper's non-fine-tuned row, an untrained model beside the No-imputation column."
        )
        lines += ["", _timing_markdown(timing)]
        if "onnxruntime-int8" not in set(timing["backend"]):
            lines += ["", f"ONNX Runtime INT8: {NOT_MEASURED} (no records for that backend)."]
    lines.append("")

    # 6. Tuned CNN
    lines += ["## Tuned CNN", ""]
    lines += _tuned_markdown(tables, result.tune_studies)

    # 7. Figures
    lines += ["## Figures", ""]
    for name, caption in FIGURES.items():
        if name in result.figures:
            lines += [f"![{name}]({FIGURES_DIR}/{name}.png)", "", f"*{caption}*", ""]
        else:
            why = result.missing_figures.get(name, "figures were not requested")
            lines += [f"- `{FIGURES_DIR}/{name}.png`: not drawn ({why}). {caption}", ""]

    # 8. Environment
    lines += ["## Environment", ""]
    environment = tables["environment"]
    if environment.empty:
        lines.append(f"No run folders or bench records: {NOT_MEASURED}.")
    else:
        lines.append(_markdown(environment))
    lines.append("")
    return "\n".join(lines)


def _bench_name(bench_file: Path | None) -> str:
    if bench_file is None:
        return "no bench file given"
    if not Path(bench_file).is_file():
        return f"`{bench_file}` absent"
    return f"`{bench_file}` empty"


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if _missing(value):
        return None
    return value


def _render_json(result: ReportResult) -> str:
    tables = {}
    for name, table in result.tables.items():
        frame = table.reset_index() if table.index.name is not None else table
        frame = frame.astype(object).where(frame.notna(), None)
        tables[name] = frame.to_dict(orient="records")
    payload = {
        "format_version": REPORT_FORMAT_VERSION,
        "sections": result.sections,
        "figures": {
            name: {
                "file": f"{FIGURES_DIR}/{name}.png" if name in result.figures else None,
                "caption": caption,
                "missing": result.missing_figures.get(name),
            }
            for name, caption in FIGURES.items()
        },
        "gain_thresholds": {
            "similar_band_percent": SIMILAR_BAND_PERCENT,
            "labels": [list(pair) for pair in GAIN_LABEL_THRESHOLDS],
            "worse": WORSE_LABEL,
        },
        "problems": result.problems,
        "tables": tables,
        "tune_figures": {
            study.study: {
                name: {"file": _tune_figure_link(study.study, name), "caption": caption}
                for name, caption in TUNE_FIGURES.items()
                if name in study.figures
            }
            for study in result.tune_studies
        },
    }
    return json.dumps(_json_value(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
