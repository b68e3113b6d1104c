"""The papers' numbers beside ours: which paper row a run of ours sits beside, and the
tables of what the papers print on their own. The numbers themselves are
:mod:`fkdbench.reference`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fkdbench import reference, runs
from fkdbench.report.common import model_label


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


def paper_row_beside(
    arch: str,
    variant: str | None,
    weights_mode: str,
    trained: bool,
    table: str,
    recipe: Sequence[str] = (),
) -> reference.PaperRow | None:
    """The row of the paper's size or time ``table`` a model of ours sits beside (see
    :func:`paper_variant` and :func:`paper_weights_mode`); None where the paper has none,
    and for a row with a recipe other than the papers' (another head, loss or the flip
    test: the papers trained none such, so no number of theirs measures it). A backbone
    pretrained here is no such lever: its row sits beside the paper's frozen or fine-tuned
    one, whose weights were ImageNet's (the report says so)."""
    if runs.lever_parts(recipe):
        return None
    return reference.paper_row(
        arch,
        paper_variant(variant, trained),
        paper_weights_mode(arch, weights_mode),
        table,
    )


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
