"""The "Which differences are real" section: the leading finished rows, each compared with
the best on the same test faces (a paired bootstrap of the RMSE difference and a Wilcoxon
signed-rank test of the per-face RMSEs), so that a tie reads as a tie.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fkdbench.report.cells import fmt, markdown_table
from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.inputs import RunSummary
from fkdbench.report.result import ReportResult
from fkdbench.report.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    WILCOXON_ALPHA,
    paired_difference,
)
from fkdbench.report.uncertainty import Row, cell_interval, finished_rows, row_key

# How many of the best rows are compared (the best itself included).
LEADING_ROWS = 5
REAL = "real"
TIE = "tie (not significant)"
BEST = "best"

_COLUMNS = [
    "rank", "model", "variant", "n_seeds", "rmse", "difference", "low", "high",
    "wilcoxon_p", "verdict",
]  # fmt: skip


def comparable(seeds: Sequence[RunSummary]) -> bool:
    """Every seed recorded per-face errors, on one test split and the same faces."""
    first = seeds[0]
    return all(
        run.has_per_face
        and run.manifest_sha256 == first.manifest_sha256
        and run.test_rows == first.test_rows
        and run.per_face_coordinates == first.per_face_coordinates
        for run in seeds
    )


def split_verdict(real: bool, wilcoxon_p: float) -> str:
    """When the RMSE interval (``real``: it excludes 0) and the Wilcoxon test disagree,
    what each says, as a sentence to follow a verdict; "" when they agree."""
    if real and wilcoxon_p >= WILCOXON_ALPHA:
        return (
            " The RMSE gap is real (its interval excludes 0) but the typical face's error "
            "is not significantly different (Wilcoxon): the gap comes from a few faces."
        )
    if not real and wilcoxon_p < WILCOXON_ALPHA:
        return (
            " The per-face errors differ (Wilcoxon) but the RMSE gap's interval holds 0: not "
            "significant for RMSE."
        )
    return ""


def mean_rmse(seeds: Sequence[RunSummary]) -> float:
    """The row's mean test RMSE over its seeds (NaN when none recorded one)."""
    return float(cell_interval(seeds, "test_rmse")[0].value)


def per_face_of(seeds: Sequence[RunSummary]) -> np.ndarray:
    """The row's per-face squared-error sums, averaged over its seeds."""
    return np.mean([np.asarray(run.per_face_squared_errors, dtype=float) for run in seeds], axis=0)


def leading_rows(run_summaries: Sequence[RunSummary]) -> list[tuple[Row, list[RunSummary]]]:
    """The best LEADING_ROWS finished rows by mean RMSE that can be paired with the best:
    per-face errors on the same test split (manifest and test rows) and the same faces."""
    rows = [
        (row, seeds)
        for row, seeds in finished_rows(run_summaries).items()
        if comparable(seeds) and not np.isnan(mean_rmse(seeds))
    ]
    rows.sort(key=lambda item: (mean_rmse(item[1]), row_key(item[0])))
    if not rows:
        return []
    best = rows[0][1][0]
    same_faces = [
        (row, seeds)
        for row, seeds in rows
        if seeds[0].manifest_sha256 == best.manifest_sha256
        and seeds[0].per_face_coordinates == best.per_face_coordinates
    ]
    return same_faces[:LEADING_ROWS]


def differences_table(run_summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """Each leading row against the best: RMSE(row) - RMSE(best) with its 95% paired
    bootstrap interval, the Wilcoxon p, and "real" when the interval excludes 0."""
    leading = leading_rows(run_summaries)
    rows = []
    for rank, (row, seeds) in enumerate(leading, start=1):
        entry = {
            "rank": rank, "model": seeds[0].label, "variant": row.variant, "n_seeds": len(seeds),
            "rmse": mean_rmse(seeds),
        }  # fmt: skip
        if rank == 1:
            entry["verdict"] = BEST
        else:
            best_seeds = leading[0][1]
            compared = paired_difference(
                per_face_of(best_seeds), per_face_of(seeds), best_seeds[0].per_face_coordinates
            )
            entry.update(
                difference=compared.difference.value, low=compared.difference.low,
                high=compared.difference.high, wilcoxon_p=compared.wilcoxon_p,
                verdict=REAL if compared.real else TIE,
            )  # fmt: skip
        rows.append(entry)
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    for column in ("rmse", "difference", "low", "high", "wilcoxon_p"):
        frame[column] = frame[column].astype(float)
    return frame


def _without_per_face(run_summaries: Sequence[RunSummary]) -> int:
    return sum(not comparable(seeds) for seeds in finished_rows(run_summaries).values())


def differences_section(result: ReportResult) -> list[str]:
    """The lines of "Which differences are real" after its heading."""
    table = result.tables["differences"]
    left_out = _without_per_face(result.run_summaries)
    left = (
        f" {left_out} finished row(s) recorded no per-face test errors and are not compared."
        if left_out
        else ""
    )
    if len(table) < 2:
        return [
            "Fewer than two finished rows with per-face test errors on the same test faces: "
            f"no difference to test.{left}",
            "",
        ]
    shown = pd.DataFrame(
        {
            "rank": table["rank"].astype(str),
            "model": table["model"],
            "variant": table["variant"],
            "seeds": table["n_seeds"].astype(str),
            "test RMSE": table["rmse"].map(lambda v: fmt(v, ".3f", NOT_MEASURED)),
            "RMSE - best [95% interval]": [
                "\u2014"
                if row.verdict == BEST
                else f"{row.difference:+.3f} [{row.low:+.3f}, {row.high:+.3f}]"
                for row in table.itertuples()
            ],
            "Wilcoxon p": table["wilcoxon_p"].map(lambda v: fmt(v, ".3g", "\u2014")),
            "verdict": table["verdict"],
        }
    )
    return [
        f"The {len(table)} best finished rows by mean test RMSE, scored on the same test "
        "faces (one data manifest), each against the best: the difference of RMSE and its "
        f"95% paired bootstrap interval over the test faces ({BOOTSTRAP_RESAMPLES:,} "
        f"resamples, seed {BOOTSTRAP_SEED}; per-face errors averaged over seeds), and the "
        "Wilcoxon signed-rank p of the per-face RMSEs. `real`: the interval excludes 0; "
        f"otherwise the two are a tie at this test set's size.{left}",
        "",
        markdown_table(shown),
        "",
    ]
