"""The "Synthetic vs real faces" section: the same matrix trained on other data (another
report's ``runs.jsonl``, ``--compare-with``), both rankings of the rows they share side by
side, and Spearman's rank correlation between them: how far this report's ranking can be
trusted beyond its own data.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fkdbench.report.cells import fmt, markdown_table
from fkdbench.report.common import NOT_MEASURED
from fkdbench.report.differences import mean_rmse
from fkdbench.report.inputs import Row, RunSummary
from fkdbench.report.result import ReportResult
from fkdbench.report.statistics import RankCorrelation, spearman
from fkdbench.report.uncertainty import finished_rows

# Fewer shared rows than this and no correlation is stated.
MIN_SHARED_ROWS = 3
# |rho| at or above: "agree"; at or above the second: "partly agree"; below: "disagree".
STRONG_RHO = 0.8
MODERATE_RHO = 0.5
# A rank correlation with p at or above this is not evidence either way.
ALPHA = 0.05

_COLUMNS = ["model", "variant", "rmse", "rank", "other_rmse", "other_rank"]


def _mean_rmses(run_summaries: Sequence[RunSummary]) -> dict[Row, tuple[str, float]]:
    return {
        row: (seeds[0].label, mean_rmse(seeds))
        for row, seeds in finished_rows(run_summaries).items()
        if not pd.isna(mean_rmse(seeds))
    }


def agreement_table(
    run_summaries: Sequence[RunSummary], other_runs: Sequence[RunSummary]
) -> pd.DataFrame:
    """The finished rows (arch, variant, weights mode, recipe) present in both: the mean RMSE and
    rank (1 = best, among the shared rows) here and in ``other_runs``."""
    ours, theirs = _mean_rmses(run_summaries), _mean_rmses(other_runs)
    shared = [row for row in ours if row in theirs]
    frame = pd.DataFrame(
        [
            {
                "model": ours[row][0],
                "variant": row.variant,
                "rmse": ours[row][1],
                "other_rmse": theirs[row][1],
            }
            for row in shared
        ],
        columns=_COLUMNS,
    )
    frame["rank"] = frame["rmse"].rank(method="average")
    frame["other_rank"] = frame["other_rmse"].rank(method="average")
    return frame.sort_values(["rank", "model", "variant"], ignore_index=True)


def rank_correlation_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """One row: the number of shared rows, Spearman's rho and its p (NaN: too few rows)."""
    found = rank_correlation(agreement)
    return pd.DataFrame(
        [{"n": found.n, "spearman_rho": found.rho, "p": found.p}],
        columns=["n", "spearman_rho", "p"],
    ).astype({"spearman_rho": float, "p": float})


def rank_correlation(agreement: pd.DataFrame) -> RankCorrelation:
    """Spearman's rho between the two RMSE columns of :func:`agreement_table`."""
    return spearman(list(agreement["rmse"]), list(agreement["other_rmse"]))


def meaning(found: RankCorrelation) -> str:
    """One sentence on what ``found`` means for trusting the synthetic default."""
    if found.rho is None:
        return (
            f"With {found.n} shared finished rows (at least {MIN_SHARED_ROWS} needed, with "
            "differing RMSEs) no rank correlation can be stated: the synthetic ranking is "
            "untested against real faces."
        )
    significance = (
        f"p = {found.p:.3g}" if found.p < ALPHA else f"p = {found.p:.3g}, not significant"
    )
    if found.p >= ALPHA:
        # However high rho is, a correlation chance could give says nothing yet.
        verdict = (
            "an agreement this many rows could show by chance: the synthetic ranking is not "
            "yet tested against real faces"
        )
    elif found.rho >= STRONG_RHO:
        verdict = "the synthetic ranking largely carries over to real faces: trust its order"
    elif found.rho >= MODERATE_RHO:
        verdict = "the rankings partly agree: trust the synthetic order for large gaps only"
    else:
        verdict = (
            "the synthetic ranking does not predict the real-face one: treat it as a smoke "
            "test, not an answer"
        )
    return f"Spearman rho = {found.rho:.2f} over {found.n} rows ({significance}): {verdict}."


def agreement_section(result: ReportResult) -> list[str]:
    """The lines of "Synthetic vs real faces" after its heading."""
    if result.compare_with is None:
        return [
            "No comparison given (`fkdbench report --compare-with <other>/runs.jsonl`, e.g. "
            "the same matrix trained on real faces): how far this ranking carries over to "
            f"other data is {NOT_MEASURED}.",
            "",
        ]
    table = result.tables["agreement"]
    found = rank_correlation(table)
    lines = [
        f"This report's finished rows beside those of `{result.compare_with}` (the same "
        "architecture, variant and weights mode; mean test RMSE over seeds, rank 1 = best "
        "among the shared rows).",
        "",
    ]
    if not table.empty:
        shown = pd.DataFrame(
            {
                "model": table["model"],
                "variant": table["variant"],
                "RMSE here": table["rmse"].map(lambda v: fmt(v, ".3f", NOT_MEASURED)),
                "rank here": table["rank"].map(lambda v: f"{v:g}"),
                "RMSE there": table["other_rmse"].map(lambda v: fmt(v, ".3f", NOT_MEASURED)),
                "rank there": table["other_rank"].map(lambda v: f"{v:g}"),
            }
        )
        lines += [markdown_table(shown), ""]
    return [*lines, meaning(found), ""]
