"""Tuning studies (``fkdbench tune``) as the report reads them, and the snapshot of their files
that the report keeps under its own out dir, so that a report rebuilt from records still has
them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fkdbench import runs
from fkdbench.io import write_bytes_atomic, write_json_atomic
from fkdbench.report.common import FIGURES_DIR, ReportError, number

# Under the runs folder, one folder per study. What the snapshot copies: study.json is
# required; best.json (absent until a trial finishes), pareto.json and trials.csv (not read
# here) are optional.
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


def tune_figure_link(study: str, name: str) -> str:
    """The same figure as REPORT.md and report.json link it (relative to the out dir)."""
    return f"{FIGURES_DIR}/{tune_figure_file(study, name)}"


# -- reading a study ------------------------------------------------------------------------


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


def _optional_record(path: Path) -> dict[str, Any] | None:
    return _read_tune_record(path) if path.is_file() else None


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


def _study_fields(study: dict[str, Any], best: dict[str, Any] | None) -> dict[str, Any]:
    """The :class:`TuneSummary` fields a study.json record gives."""
    counts = study["trials"]
    return {
        "variant": study.get("variant") or (best or {}).get("variant"),
        "objective": study.get("objective"),
        "trials_complete": int(counts.get("complete", 0)),
        "trials_pruned": int(counts.get("pruned", 0)),
        "trials_failed": int(counts.get("failed", 0)),
        "wall_seconds": number(study.get("wall_seconds")),
        "epochs_per_trial": _integer(study.get("epochs_per_trial")),
    }


def _best_fields(best: dict[str, Any]) -> dict[str, Any]:
    """The ``best_*`` fields of a :class:`TuneSummary` from a best.json record."""
    val_rmse = number(best["val_rmse"])
    if val_rmse is None:
        raise ValueError(f"val_rmse {best['val_rmse']!r} is not a number")
    train = best.get("train") or {}
    return {
        "best_trial": int(best["trial"]),
        "best_val_rmse": val_rmse,
        "best_seconds_per_100_images": number(best.get("seconds_per_100_images")),
        "best_params_keras": _integer((best.get("parameters") or {}).get("keras")),
        "best_onnx_bytes": _integer(best.get("onnx_bytes")),
        "best_lr": number(train.get("lr")),
        "best_batch_size": _integer(train.get("batch_size")),
    }


def _front_size(pareto: dict[str, Any]) -> int:
    front = pareto["trials"]
    if not isinstance(front, list):
        raise TypeError(f"'trials' is a {type(front).__name__}, expected a list")
    return len(front)


def _study_figures(folder: Path, figures_dir: Path | None) -> dict[str, str]:
    """Figure stem -> file, for the study's figures that exist."""
    figures = {}
    for name in TUNE_FIGURES:
        path = (
            folder / runs.TUNE_FIGURES_DIR / f"{name}.png"
            if figures_dir is None
            else figures_dir / tune_figure_file(folder.name, name)
        )
        if path.is_file():
            figures[name] = str(path)
    return figures


def _summary_from_study(folder: Path, figures_dir: Path | None) -> TuneSummary:
    study_path = folder / runs.TUNE_STUDY_FILE
    best_path = folder / runs.TUNE_BEST_FILE
    pareto_path = folder / runs.TUNE_PARETO_FILE
    study = _read_tune_record(study_path)
    best = _optional_record(best_path)
    pareto = _optional_record(pareto_path)
    with _blame(study_path):
        from_study = _study_fields(study, best)
    from_best: dict[str, Any] = dict.fromkeys(_BEST_FIELDS)
    if best is not None:
        with _blame(best_path):
            from_best = _best_fields(best)
    pareto_size = None
    if pareto is not None:
        with _blame(pareto_path):
            pareto_size = _front_size(pareto)
    return TuneSummary(
        study=folder.name,
        **from_study,
        **from_best,
        pareto_size=pareto_size,
        figures=_study_figures(folder, figures_dir),
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
    folders = sorted(path.parent for path in tune_dir.glob(f"*/{runs.TUNE_STUDY_FILE}"))
    return _read_studies(folders, problems, figures_dir)


def _read_studies(
    folders: Iterable[Path], problems: list[str], figures_dir: Path | None
) -> list[TuneSummary]:
    found = []
    for folder in folders:
        try:
            found.append(_summary_from_study(folder, figures_dir))
        except ReportError as error:
            # The message names the file; keep all of it (paths are long).
            problems.append(f"skipped tune study {folder.name}: {runs.first_line(error, 400)}")
    return found


# -- the snapshot ---------------------------------------------------------------------------

# Beside each study's copy: the study folder it was copied from, relative to the copy (so it
# holds on another clone). A report removes only copies it made from the same runs folder:
# a snapshot made elsewhere (the committed results/tune/ of a fresh clone) is never its to
# delete.
SNAPSHOT_SOURCE_FILE = "source.json"
SNAPSHOT_FORMAT_VERSION = 1


def _source_link(source: Path, target: Path) -> str:
    return os.path.relpath(Path(source).resolve(), Path(target).resolve())


def _copied_from(target: Path) -> str | None:
    """Where the copy in ``target`` says it came from; None when it says nothing readable
    (a copy made by hand, or by a report older than the marker: not this report's)."""
    try:
        record = json.loads((target / SNAPSHOT_SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    source = record.get("source") if isinstance(record, dict) else None
    return source if isinstance(source, str) else None


def _copy_study_files(study: TuneSummary, target: Path) -> None:
    """The study's TUNE_FILES into ``target``; a copy the study no longer has is removed."""
    for name in TUNE_FILES:
        source = Path(study.folder) / name
        if source.is_file():
            write_bytes_atomic(target / name, source.read_bytes())
        else:
            (target / name).unlink(missing_ok=True)
    marker = {
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "source": _source_link(Path(study.folder), target),
    }
    write_json_atomic(target / SNAPSHOT_SOURCE_FILE, marker)


def _remove_copy(folder: Path) -> None:
    """Empty a stale copy of this report's making, and its folder where that leaves it empty."""
    # Only the files a snapshot writes: anything else someone put there stays.
    for name in (*TUNE_FILES, SNAPSHOT_SOURCE_FILE):
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _remove_figures(figures_dir: Path, study: str, names: Iterable[str]) -> None:
    for name in names:
        (figures_dir / tune_figure_file(study, name)).unlink(missing_ok=True)


def _copy_study(
    study: TuneSummary, tune_dir: Path, figures_dir: Path, in_place: bool
) -> TuneSummary:
    """One study's files and figures into the snapshot; a figure it no longer has goes."""
    target = tune_dir / study.study
    if not in_place:
        _copy_study_files(study, target)
    figures = {}
    for name, source in study.figures.items():
        path = figures_dir / tune_figure_file(study.study, name)
        write_bytes_atomic(path, Path(source).read_bytes())
        figures[name] = str(path)
    _remove_figures(
        figures_dir, study.study, (name for name in TUNE_FIGURES if name not in figures)
    )
    return replace(study, figures=figures, folder=target)


def _other_copies(
    source_dir: Path, tune_dir: Path, figures_dir: Path, problems: list[str]
) -> list[TuneSummary]:
    """The snapshot's studies that ``source_dir`` does not hold: a copy a report made from
    there earlier, of a study since removed from beside the others, is removed with its
    figures; any other copy is kept as it is and read back, so the report still shows it.

    A ``source_dir`` with no study at all removes nothing: a fresh runs folder (a clone, a
    retraining from scratch) has no tune/, which says nothing about the studies reported.
    """
    if not tune_dir.is_dir():
        return []
    in_source = {path.parent.name for path in source_dir.glob(f"*/{runs.TUNE_STUDY_FILE}")}
    kept: list[Path] = []
    for folder in sorted(path for path in tune_dir.iterdir() if path.is_dir()):
        if folder.name in in_source:
            continue
        made_here = _copied_from(folder) == _source_link(source_dir / folder.name, folder)
        if in_source and made_here:
            _remove_copy(folder)
            _remove_figures(figures_dir, folder.name, TUNE_FIGURES)
        elif (folder / runs.TUNE_STUDY_FILE).is_file():
            kept.append(folder)
    return _read_studies(kept, problems, figures_dir)


def snapshot_tune_studies(
    studies: Sequence[TuneSummary],
    source_dir: Path,
    out_dir: Path,
    problems: list[str] | None = None,
) -> list[TuneSummary]:
    """Copy each study's files to ``out_dir/tune/<study>/`` and its figures to
    ``out_dir/figures/tune-<study>-<name>.png``: the records a report rebuilt without the run
    folders reads. Returns the studies of the snapshot, by name: these, as copied, and the
    copies already there of studies ``source_dir`` does not hold.

    Nothing a report did not make is deleted: a copy made earlier from ``source_dir`` whose
    study is gone from there (while others are not) is removed with its figures, but a copy
    made from elsewhere (the committed snapshot of a fresh clone), or any copy when
    ``source_dir`` holds no study, is kept and reported. Copies that cannot be read are
    described in ``problems``.
    """
    source_dir = Path(source_dir)
    tune_dir = Path(out_dir) / runs.TUNE_DIR
    figures_dir = Path(out_dir) / FIGURES_DIR
    # Reporting into the runs folder itself: the study files are already in place, and
    # nothing there is a copy.
    in_place = source_dir.resolve() == tune_dir.resolve()
    copied = [_copy_study(study, tune_dir, figures_dir, in_place) for study in studies]
    if not in_place:
        others = _other_copies(
            source_dir, tune_dir, figures_dir, [] if problems is None else problems
        )
        copied += others
    return sorted(copied, key=lambda study: study.study)
