"""The report's inputs as plain values: one :class:`RunSummary` per run folder (or per line of
a committed ``runs.jsonl``), and the bench records as the flat dicts ``bench.jsonl`` holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from fkdbench import runs
from fkdbench.bench import read_records
from fkdbench.io import write_text_atomic
from fkdbench.report.common import (
    ReportError,
    as_recipe,
    backend_key,
    model_label,
    number,
    run_key,
)

# Under the report's out dir: every run's summary, so the report rebuilds without the runs.
RUN_RECORDS_FILE = "runs.jsonl"


class Row(NamedTuple):
    """The result several seeds are samples of: one table row per variant."""

    arch: str
    variant: str | None
    weights_mode: str
    # runs.recipe_parts: () for the papers' recipe.
    recipe: tuple[str, ...]


@dataclass(frozen=True)
class RunSummary:
    """What the report needs from one run folder (trained or not), as plain values."""

    run_name: str
    arch: str
    # None for an untrained folder.
    variant: str | None
    weights_mode: str = "scratch"
    # What the run does beyond the papers' recipe (runs.recipe_parts): () for the papers'
    # own and for every run older than the field.
    recipe: tuple[str, ...] = ()
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
    # One of runs.STOP_REASONS ("time-limit" of older records read as "time-limited").
    stop_reason: str | None = None
    # The training seed: several seeds of one row are one sample each.
    seed: int | None = None
    # metrics.json "convergence" (runs.convergence_of: older runs are "not judged").
    converged: bool | None = None
    convergence_rule: str | None = None
    convergence_detail: str | None = None
    # metrics.json "test_per_face": per test face, its summed squared error (px^2) and how
    # many coordinates were labelled; () for runs older than the field.
    per_face_squared_errors: tuple[float, ...] = field(default=(), compare=False)
    per_face_coordinates: tuple[int, ...] = field(default=(), compare=False)
    training_seconds: float | None = None
    images_per_second: float | None = None
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

    def __post_init__(self) -> None:
        # Records written before the rename say "time-limit": read them under today's name.
        object.__setattr__(self, "stop_reason", runs.current_stop_reason(self.stop_reason))
        object.__setattr__(self, "recipe", as_recipe(self.recipe))

    @property
    def label(self) -> str:
        """The table row this run belongs to: the architecture, plus a non-scratch mode
        and a recipe other than the papers'."""
        return model_label(self.arch, self.weights_mode, self.recipe)

    @property
    def row(self) -> Row:
        """The result this run is one seed of: (arch, variant, weights mode, recipe)."""
        return Row(self.arch, self.variant, self.weights_mode, self.recipe)

    @property
    def finished(self) -> bool:
        """Trained and not stopped by the time limit (an unknown stop reason counts as
        finished: records older than the field)."""
        return self.trained and self.stop_reason != runs.TIME_LIMITED

    @property
    def has_per_face(self) -> bool:
        """Per-face test errors were recorded (paired tests and face bootstraps need them)."""
        return bool(self.per_face_squared_errors) and len(self.per_face_squared_errors) == len(
            self.per_face_coordinates
        )


def _summary_key(run: RunSummary) -> tuple:
    # The run name last: the seeds of one row in name order.
    key = run_key(run.arch, run.variant, run.weights_mode, run.trained, run.recipe)
    return (*key, run.run_name)


# -- run folders ----------------------------------------------------------------------------


def _per_face(metrics: dict[str, Any]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    per_face = metrics.get("test_per_face") or {}
    squared = tuple(float(value) for value in per_face.get("squared_error_sum") or ())
    return squared, tuple(int(value) for value in per_face.get("coordinates") or ())


def _recipe(metrics: dict[str, Any], config: dict[str, Any]) -> tuple[str, ...]:
    """metrics.json's recipe, else what config.json says (() for runs older than both)."""
    if "recipe" in metrics:
        return as_recipe(metrics["recipe"])
    return tuple(runs.recipe_of(config))


def _summary_from_finished(folder: Path) -> RunSummary:
    config = runs.read_config(folder)
    metrics = runs.read_metrics(folder)
    training = runs.read_training(folder)
    convergence = runs.convergence_of(metrics)
    squared, coordinates = _per_face(metrics)
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
        recipe=_recipe(metrics, config),
        trained=True,
        test_rmse=number(metrics.get("test_rmse")),
        test_nme=number(metrics.get("test_nme")),
        test_fr=number(metrics.get("test_fr")),
        test_auc=number(metrics.get("test_auc")),
        test_ced=tuple(metrics.get("test_ced") or ()),
        failure_threshold=number(metrics.get("failure_threshold")),
        test_nme_per_subset=dict(metrics.get("test_nme_per_subset") or {}),
        mean_shape_rmse=number(metrics.get("mean_shape_rmse")),
        params_pytorch=parameters.get("pytorch"),
        params_keras=parameters.get("keras"),
        model_pt_bytes=metrics.get("model_file_bytes") or _file_size(folder / runs.MODEL_FILE),
        onnx_bytes=export.get("onnx_bytes"),
        int8_bytes=export.get("int8_bytes") if export.get("int8") else None,
        best_epoch=metrics.get("best_epoch"),
        epochs_run=metrics.get("epochs_run"),
        stop_reason=runs.stop_reason_of(metrics),
        seed=metrics.get("seed", config.get("train", {}).get("seed")),
        converged=convergence.get("converged"),
        convergence_rule=convergence.get("rule"),
        convergence_detail=convergence.get("detail"),
        per_face_squared_errors=squared,
        per_face_coordinates=coordinates,
        training_seconds=number(training.get("training_seconds")),
        images_per_second=number(training.get("images_per_second")),
        data_source=data.get("source"),
        data_seed=data.get("seed"),
        data_dir=data.get("data_dir"),
        manifest_sha256=data.get("manifest_sha256"),
        scheme=data.get("scheme") or model.get("scheme"),
        image_size=data.get("image_size") or model.get("input_size"),
        test_rows=metrics.get("rows", {}).get("test"),
        spec_source=model.get("spec_source"),
        environment=training.get("environment") or config.get("environment") or {},
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
        recipe=tuple(runs.recipe_of(config)),
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


def _summary_of_folder(folder: Path) -> RunSummary | None:
    """A finished run, an untrained (timing-only) folder, or None for anything else."""
    if runs.is_finished(folder):
        return _summary_from_finished(folder)
    if not (folder / runs.CONFIG_FILE).is_file():
        return None
    config = runs.read_config(folder)
    if config.get("trained") is False and (folder / runs.MODEL_FILE).is_file():
        return _summary_from_untrained(folder, config)
    return None


def load_runs(runs_dir: Path, problems: list[str] | None = None) -> list[RunSummary]:
    """Every finished run and every untrained (timing-only) folder under ``runs_dir``.

    A folder whose files cannot be read is skipped and described in ``problems`` (the
    report lists them) rather than stopping the whole report.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    problems = [] if problems is None else problems
    found: list[RunSummary | None] = []
    for folder in sorted(path for path in runs_dir.iterdir() if path.is_dir()):
        try:
            found.append(_summary_of_folder(folder))
        except (runs.CheckpointError, KeyError, TypeError, AttributeError) as error:
            problems.append(f"skipped run folder {folder.name}: {runs.first_line(error)}")
    return sorted((run for run in found if run is not None), key=_summary_key)


def _read_export(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "export.json"
    return runs.read_json(path) if path.is_file() else {}


def _file_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


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


# -- run records (runs.jsonl) ---------------------------------------------------------------


def write_run_records(run_summaries: Sequence[RunSummary], path: Path) -> Path:
    """The report's view of every run as JSON lines: with ``bench.jsonl``, everything the
    tables need, so a committed report can be regenerated without the run folders."""
    lines = []
    for run in run_summaries:
        record = {key: value for key, value in asdict(run).items() if key != "folder"}
        record["history"] = [list(pair) for pair in run.history]
        record["per_face_squared_errors"] = list(run.per_face_squared_errors)
        record["per_face_coordinates"] = list(run.per_face_coordinates)
        record["recipe"] = list(run.recipe)
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
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}: line {line_number}: malformed JSON ({error.msg})") from None
        record = {key: value for key, value in record.items() if key in known}
        record["history"] = tuple((int(e), float(v)) for e, v in record.get("history", ()))
        record["test_ced"] = tuple(record.get("test_ced", ()))
        record["per_face_squared_errors"] = tuple(record.get("per_face_squared_errors", ()))
        record["per_face_coordinates"] = tuple(record.get("per_face_coordinates", ()))
        if "converged" not in record and record.get("trained", True):
            # Records older than convergence judging: what runs.py says of such a run.
            convergence = runs.convergence_of({})
            record["converged"] = convergence["converged"]
            record["convergence_rule"] = convergence["rule"]
            record["convergence_detail"] = convergence["detail"]
        summaries.append(RunSummary(**record))
    return sorted(summaries, key=_summary_key)


# -- bench records (bench.jsonl) ------------------------------------------------------------


def load_bench_records(bench_file: Path | None) -> list[dict[str, Any]]:
    """Every record of the bench JSON-lines file, in file order; [] when it is absent.

    The only place the report reads ``bench.jsonl``: everything after this sees the flat
    view (format 1's field names, statistics derived from the samples) of each record.
    """
    if bench_file is None or not Path(bench_file).is_file():
        return []
    return [record.flat() for record in read_records(Path(bench_file))]


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
        *run_key(
            str(record.get("arch")),
            record.get("variant"),
            record.get("weights_mode"),
            bool(record.get("trained", True)),
            as_recipe(record.get("recipe")),
        ),
        str(record.get("run_name")),
        backend_key(str(record.get("backend"))),
        record.get("batch_size") or 0,
        record.get("threads") or 0,
    )


# -- video records (video.jsonl, beside bench.jsonl) ------------------------------------------


def video_file_beside(bench_file: Path | None) -> Path | None:
    """Where ``bench --video`` put its records for ``bench_file``; None without one."""
    from fkdbench.bench import video_results_path

    return None if bench_file is None else video_results_path(Path(bench_file))


def load_video_records(video_file: Path | None) -> list[Any]:
    """The measured (not failed) records of ``video.jsonl``, the latest per run, backend,
    video and threads, sorted like the bench records; [] when the file is absent (the
    report then leaves the video section out)."""
    from fkdbench.bench import read_video_records

    if video_file is None or not Path(video_file).is_file():
        return []
    latest: dict[tuple, Any] = {}
    for record in read_video_records(Path(video_file)):
        if record.failed or record.video is None:
            continue
        identity = record.identity
        key = (identity.run_name, identity.backend, record.video.sha256, record.settings.threads)
        latest[key] = record  # file order: a re-run appends, so the last one wins
    return sorted(
        latest.values(),
        key=lambda record: (
            *run_key(
                str(record.identity.arch),
                record.identity.variant,
                record.identity.weights_mode,
                bool(record.identity.trained),
                record.identity.recipe,
            ),
            record.identity.run_name,
            backend_key(record.identity.backend),
        ),
    )
