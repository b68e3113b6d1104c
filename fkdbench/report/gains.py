"""The "Gains by variant" section: paper Table 2 computed from our runs, the paper's Table 2
as printed, and the fine-tuning ratios the paper states; their numbers and their text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fkdbench import reference, runs
from fkdbench.data.variants import VARIANTS
from fkdbench.report.accuracy import accuracy_table
from fkdbench.report.cells import markdown_table
from fkdbench.report.common import (
    MEAN_SHAPE_ROW,
    NO_PAPER,
    NOT_RUN,
    RECIPE_COLUMN,
    is_missing,
    label_key,
    pretrained_weights_note,
    recipe_text,
)
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult

# -- the mapping of our gains onto the paper's Table 2 labels --------------------------------
# Gain of a variant = (RMSE(none) - RMSE(variant)) / RMSE(none) x 100, same architecture and
# weights mode. |gain| < SIMILAR_BAND_PERCENT reads "Similar"; a larger gain takes the label
# of the highest threshold it reaches; a loss beyond the band reads WORSE_LABEL. The paper
# does not state its thresholds: these are ours, stated in the report.
SIMILAR_BAND_PERCENT = 5.0
GAIN_LABEL_THRESHOLDS: tuple[tuple[float, str], ...] = ((30.0, "+++"), (15.0, "++"), (5.0, "+"))
SIMILAR_LABEL = "Similar"
WORSE_LABEL = "\u2212"  # a minus sign: worse than `none` by more than the band

_GAINS_COLUMNS = [
    "model",
    "arch",
    "weights_mode",
    RECIPE_COLUMN,
    "variant",
    "rmse_none",
    "rmse",
    "gain_percent",
    "label",
    "paper_label",
    "paper_citation",
]


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
    accuracy = accuracy_table(run_summaries).drop(index=MEAN_SHAPE_ROW, errors="ignore")
    modes = {run.label: run.row for run in run_summaries if run.trained}
    rows = []
    for label in accuracy.index:
        arch, _, weights_mode, recipe = modes[label]
        base = accuracy.loc[label, "none"] if "none" in accuracy.columns else np.nan
        for variant in (column for column in accuracy.columns if column != "none"):
            value = accuracy.loc[label, variant]
            gain = (base - value) / base * 100.0 if base > 0 else np.nan
            # The papers trained no other recipe: a lever row has no label of theirs (a
            # backbone pretrained here has: it stands where their ImageNet weights did).
            paper = None
            if not runs.lever_parts(recipe):
                paper = reference.paper_row(arch, variant, weights_mode, reference.TABLE2)
            rows.append(
                {
                    "model": label,
                    "arch": arch,
                    "weights_mode": weights_mode,
                    RECIPE_COLUMN: recipe_text(recipe),
                    "variant": variant,
                    "rmse_none": base,
                    "rmse": value,
                    "gain_percent": gain,
                    "label": gain_label(gain),
                    "paper_label": paper.gain_label if paper else None,
                    "paper_citation": paper.citation if paper else None,
                }
            )
    return pd.DataFrame(rows, columns=_GAINS_COLUMNS)


def ratio_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """The paper's stated fine-tuned vs non-fine-tuned RMSE ratios beside ours: per claim,
    one row for weights from a file (ImageNet's, as the paper's) and one per pretraining
    method of ours that has runs there; each RMSE the mean over the row's seeds."""
    samples: dict[tuple, list[float]] = {}
    for run in run_summaries:
        if run.trained and run.test_rmse is not None and not runs.lever_parts(run.recipe):
            key = (run.arch, run.variant, run.weights_mode, runs.pretrained_by(run.recipe))
            samples.setdefault(key, []).append(run.test_rmse)
    rmse = {key: float(np.mean(values)) for key, values in samples.items()}
    rows = []
    for claim in reference.RATIO_CLAIMS:
        methods = sorted(
            {key[3] for key in rmse if key[:2] == (claim.arch, claim.variant) and key[3]}
        )
        for method in (None, *methods):
            worse = rmse.get((claim.arch, claim.variant, claim.worse_mode, method))
            better = rmse.get((claim.arch, claim.variant, claim.better_mode, method))
            ratio = f"RMSE {claim.worse_mode} / RMSE {claim.better_mode}"
            rows.append(
                {
                    "arch": claim.arch,
                    "variant": claim.variant,
                    "ratio": f"{ratio}, {runs.PRETRAINED_PREFIX}{method}" if method else ratio,
                    "paper_low": claim.low,
                    "paper_high": claim.high,
                    "ours": worse / better if worse is not None and better else np.nan,
                    "citation": claim.citation,
                }
            )
    return pd.DataFrame(rows)


def gains_markdown(gains: pd.DataFrame) -> str:
    """Gains as a model x variant grid, each cell the gain, its label and the paper's."""
    if gains.empty:
        return ""
    labels = sorted(gains["model"].unique(), key=label_key)
    variants = [v for v in list(VARIANTS) if v != "none" and v in set(gains["variant"])]
    variants += sorted(set(gains["variant"]) - set(variants))
    shown = pd.DataFrame(index=labels, columns=variants, dtype=object)
    for row in gains.itertuples(index=False):
        if is_missing(row.gain_percent):
            cell = f"{NOT_RUN} (no `none` run)" if is_missing(row.rmse_none) else NOT_RUN
        else:
            cell = f"{row.gain_percent:+.1f}% {row.label}"
        if not is_missing(row.paper_label):
            cell += f" (paper: {row.paper_label})"
        shown.loc[row.model, row.variant] = cell
    return markdown_table(shown.rename_axis("model").reset_index())


def ratios_markdown(ratios: pd.DataFrame) -> str:
    """The ratio table with the paper's range and ours as "1.2-1.5x" text."""
    shown = ratios.copy()
    shown["paper"] = [
        f"{low:g}x" if low == high else f"{low:g}-{high:g}x"
        for low, high in zip(shown["paper_low"], shown["paper_high"], strict=True)
    ]
    shown["ours"] = shown["ours"].map(lambda v: NOT_RUN if is_missing(v) else f"{v:.2f}x")
    return markdown_table(shown[["arch", "variant", "ratio", "paper", "ours", "citation"]])


def _labels_explained() -> str:
    bands = ", ".join(
        f"\u2265 {threshold:g}% {label}" for threshold, label in GAIN_LABEL_THRESHOLDS
    )
    return (
        "Paper Table 2, computed from our runs: gain = (RMSE(none) \u2212 RMSE(variant)) / "
        "RMSE(none), same architecture and weights mode; positive is better. Labels: "
        f"|gain| < {SIMILAR_BAND_PERCENT:g}% {SIMILAR_LABEL}, {bands}, worse by "
        f"{SIMILAR_BAND_PERCENT:g}% or more {WORSE_LABEL} (our thresholds: the paper states "
        "none). The paper's label follows where it has one for the same model."
    )


def gains_section(result: ReportResult) -> list[str]:
    """The lines of "Gains by variant" after its heading."""
    tables = result.tables
    gains = tables["gains"]
    paper_gains = tables["paper_gains"].fillna(NO_PAPER)
    recipes = [run.recipe for run in result.run_summaries if run.trained]
    return [
        _labels_explained(),
        "",
        *pretrained_weights_note(recipes),
        gains_markdown(gains) if not gains.empty else f"No trained runs: {NOT_RUN}.",
        "",
        "The paper's Table 2 as printed:",
        "",
        markdown_table(paper_gains.rename(columns={"paper_model": "paper model"})),
        "",
        "Ratios the paper states in Section 4.1 (Figure 7), beside ours:",
        "",
        ratios_markdown(tables["finetune_ratios"]),
        "",
    ]
