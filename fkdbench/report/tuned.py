"""The "Tuned CNN" section: the tuning studies, and the paper's Keras Optimized CNN beside our
``cnn-tuned`` runs; their numbers and their text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from fkdbench import reference, runs
from fkdbench.report.cells import fmt, fmt_int, markdown_table, printed, text_or
from fkdbench.report.common import (
    NO_PAPER,
    NOT_EXPORTED,
    NOT_MEASURED,
    NOT_RECORDED,
    NOT_RUN,
    is_missing,
    mb,
    variant_key,
)
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult
from fkdbench.report.studies import TUNE_FIGURES, TuneSummary, tune_figure_link
from fkdbench.report.timing import speed_rows

# The architecture a tuned spec trains as, and the paper's other custom CNNs set beside it
# (column prefix, arch).
TUNED_ARCH = "cnn-tuned"
TUNED_COMPARED = (("manual", "cnn-manual"), ("baseline", "cnn-baseline"))

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


# -- tables (numbers) -----------------------------------------------------------------------


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
            "best_onnx_mb": mb(study.best_onnx_bytes),
            "best_lr": study.best_lr,
            "best_batch_size": study.best_batch_size,
            "pareto_size": study.pareto_size,
        }
        for study in studies
    ]
    texts = ("study", "variant", "objective")
    return _typed_frame(rows, _TUNED_STUDIES_COLUMNS, _TUNED_STUDIES_INTEGERS, texts)


def _tuned_vs_paper_row(
    variant: str,
    scratch: dict[tuple[str, str], RunSummary],
    sizes: pd.DataFrame,
    ort_seconds: dict[str, float],
) -> dict[str, Any]:
    """The paper's Optimized CNN for ``variant`` beside our runs of it."""
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
    return row


def tuned_vs_paper_table(
    run_summaries: Sequence[RunSummary], size: pd.DataFrame, timing: pd.DataFrame
) -> pd.DataFrame:
    """The paper's Keras Optimized CNN beside our ``cnn-tuned`` run, one row per variant
    that the paper (Table 1 / Table 4) or we have.

    Ours: parameters and state-dict MB as the size table has them, test RMSE from the run,
    and ONNX Runtime seconds per 100 images as the accuracy-vs-speed figure picks them
    (:func:`fkdbench.report.timing.speed_rows`); the same variant's cnn-manual and
    cnn-baseline for comparison.
    """
    scratch = {
        (run.arch, run.variant): run
        for run in run_summaries
        # The papers' recipe only: a lever row is not the paper's Optimized CNN.
        if run.trained
        and run.weights_mode == "scratch"
        and run.variant is not None
        and not run.recipe
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
    rows = [
        _tuned_vs_paper_row(variant, scratch, sizes, ort_seconds)
        for variant in sorted(paper_variants | our_variants, key=variant_key)
    ]
    texts = ("variant", "paper_model", "run_name", "spec_source", "paper_citation")
    return _typed_frame(rows, _TUNED_VS_PAPER_COLUMNS, ("paper_params", "params_keras"), texts)


# -- Markdown -------------------------------------------------------------------------------


def tuned_studies_markdown(table: pd.DataFrame) -> str:
    """The studies table as REPORT.md shows it."""
    trials = [
        f"{row.trials_complete} / {row.trials_pruned} / {row.trials_failed}"
        for row in table.itertuples()
    ]
    # A single-objective study has no front to speak of.
    front = [
        fmt_int(row.pareto_size, "one objective" if row.objective == "rmse" else NOT_RECORDED)
        for row in table.itertuples()
    ]
    shown = pd.DataFrame(
        {
            "study": table["study"],
            "variant": table["variant"].map(lambda v: text_or(v, NOT_RECORDED)),
            "objective": table["objective"].map(lambda v: text_or(v, NOT_RECORDED)),
            "epochs / trial": table["epochs_per_trial"].map(lambda v: fmt_int(v, NOT_RECORDED)),
            "trials complete / pruned / failed": trials,
            "wall min": table["wall_minutes"].map(lambda v: fmt(v, ".1f", NOT_RECORDED)),
            "best trial": table["best_trial"].map(lambda v: fmt_int(v, NOT_RECORDED)),
            "val RMSE": table["best_val_rmse"].map(lambda v: fmt(v, ".3f", NOT_MEASURED)),
            "ORT s / 100": table["best_seconds_per_100"].map(lambda v: fmt(v, ".4f", NOT_MEASURED)),
            "params (Keras)": table["best_params_keras"].map(lambda v: fmt_int(v, NOT_MEASURED)),
            "ONNX MB": table["best_onnx_mb"].map(lambda v: fmt(v, ".2f", NOT_EXPORTED)),
            "lr": table["best_lr"].map(lambda v: fmt(v, ".3g", NOT_RECORDED)),
            "batch": table["best_batch_size"].map(lambda v: fmt_int(v, NOT_RECORDED)),
            "Pareto front": front,
        }
    )
    return markdown_table(shown)


def tuned_vs_paper_markdown(table: pd.DataFrame) -> str:
    """The paper's Optimized CNN beside ours, as REPORT.md shows it."""
    ran = table["run_name"].notna()

    def ours(column: str, show: Callable[[Any], str]) -> list[str]:
        # A variant we have no cnn-tuned run of: every one of our cells says "not run".
        cells = zip(ran, table[column], strict=True)
        return [show(value) if has_run else NOT_RUN for has_run, value in cells]

    columns = {
        "variant": table["variant"],
        "paper params (Keras)": table["paper_params"].map(lambda v: fmt_int(v, NO_PAPER)),
        "paper MB": table["paper_mb"].map(printed),
        "paper s / 100": table["paper_seconds_per_100"].map(printed),
        "spec source": ours("spec_source", lambda v: NOT_RECORDED if is_missing(v) else f"`{v}`"),
        "params (Keras)": ours("params_keras", lambda v: fmt_int(v, NOT_MEASURED)),
        "state dict MB": ours("state_dict_mb", lambda v: fmt(v, ".2f", NOT_MEASURED)),
        "test RMSE": ours("test_rmse", lambda v: fmt(v, ".3f", NOT_MEASURED)),
        "ORT s / 100": ours("seconds_per_100", lambda v: fmt(v, ".4f", NOT_MEASURED)),
    }
    for prefix, arch in TUNED_COMPARED:
        rmse = table[f"{prefix}_test_rmse"]
        seconds = table[f"{prefix}_seconds_per_100"]
        columns[f"{arch} RMSE"] = rmse.map(lambda v: fmt(v, ".3f", NOT_RUN))
        # No RMSE: no such run, so nothing was timed either.
        columns[f"{arch} ORT s / 100"] = [
            NOT_RUN if is_missing(r) else fmt(v, ".4f", NOT_MEASURED)
            for r, v in zip(rmse, seconds, strict=True)
        ]
    return markdown_table(pd.DataFrame(columns))


_TUNING_EXPLAINED = (
    "`fkdbench tune` searches plain CNN specs and training settings with Optuna. Each "
    "trial trains for a short fixed budget (epochs / trial) and is scored by its "
    "validation RMSE and, with objective `rmse+latency`, also by its ONNX Runtime CPU "
    "seconds per 100 images (ORT s / 100): the Pareto front is the trials nothing beats "
    "on both. The best trial is the complete one with the lowest validation RMSE. The "
    "paper tuned a single objective with the Keras tuner, one network per data variant; "
    "it has no `masked` variant (ours only), so that row has no paper numbers."
)


def _study_figure_lines(study: TuneSummary) -> list[str]:
    """A study's figures as images, then the ones it has not drawn."""
    lines = []
    for name, caption in TUNE_FIGURES.items():
        if name in study.figures:
            lines += ["", f"![{study.study}: {caption}]({tune_figure_link(study.study, name)})"]
    absent = [name for name in TUNE_FIGURES if name not in study.figures]
    if absent:
        lines += ["", f"- {study.study}: not drawn by `fkdbench tune`: {', '.join(absent)}."]
    return lines


def _studies_lines(studies_table: pd.DataFrame, studies: Sequence[TuneSummary]) -> list[str]:
    """What tuning is, the studies table and every study's figures."""
    lines = [_TUNING_EXPLAINED, ""]
    if studies_table.empty:
        lines.append(f"No tuning studies (`{runs.TUNE_DIR}/`): {NOT_RUN}.")
    else:
        lines.append(tuned_studies_markdown(studies_table))
    for study in studies:
        lines += _study_figure_lines(study)
    return lines


def tuned_section(result: ReportResult) -> list[str]:
    """The lines of "Tuned CNN" after its heading."""
    studies_table = result.tables["tuned_studies"]
    versus = result.tables["tuned_vs_paper"]
    if studies_table.empty and versus["run_name"].isna().all():
        lines = [
            f"No tuning studies (`{runs.TUNE_DIR}/`) and no trained `{TUNED_ARCH}` run: "
            f"{NOT_RUN}. Run `fkdbench tune`, then train the best spec as `{TUNED_ARCH}`."
        ]
    else:
        lines = _studies_lines(studies_table, result.tune_studies)
    return [
        *lines,
        "",
        f"The paper's Keras Optimized CNN ({reference.TABLE1}: parameters and MB; "
        f"{reference.TABLE4}: seconds per 100 images on a Colab CPU) beside our `{TUNED_ARCH}` "
        "run of the same variant (state dict MB, ONNX Runtime seconds at the batch size and "
        "threads most bench records share), and our `cnn-manual` and `cnn-baseline` of that "
        "variant:",
        "",
        tuned_vs_paper_markdown(versus),
        "",
    ]
