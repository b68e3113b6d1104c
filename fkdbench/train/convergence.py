"""Did a run converge? One rule, decided from the run's history (metrics.json's
``convergence``), so a row that is not a finished result can be marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fkdbench import runs

# The validation curve has flattened when its last epochs improved on the best before
# them by less than this fraction.
FLAT_IMPROVEMENT = 0.01
# The last max(MIN_WINDOW, epochs // WINDOW_DIVISOR) epochs are the ones compared.
MIN_WINDOW = 3
WINDOW_DIVISOR = 4

RULE = (
    "converged when early stopping fired (patience epochs without a better validation "
    f"RMSE), or when the run completed its epochs and the best validation RMSE of the last "
    f"max({MIN_WINDOW}, epochs // {WINDOW_DIVISOR}) epochs improved on the best before them "
    f"by less than {FLAT_IMPROVEMENT:.0%}; a time-limited run never converged"
)


def convergence(
    history_rows: Sequence[dict[str, Any]], stop_reason: str, patience: int | None
) -> dict[str, Any]:
    """``{"converged": bool, "rule": RULE, "detail": why}`` for a run's history rows (the
    keypoint phase's count; any pretraining rows are ignored).

    The rule (:data:`RULE`): converged when early stopping fired (``patience`` epochs
    without a better validation RMSE), or when the run completed its epochs and the best
    validation RMSE of the last ``max(3, epochs // 4)`` epochs improved on the best before
    them by less than 1% (the curve has flattened). A time-limited run is never converged:
    where the safety stop cut it depends on the machine. A run without validation scores
    cannot be judged: not converged, with a ``detail`` starting "unknown:".
    """
    scores = [_finite(row.get("val_rmse")) for row in history_rows if _is_keypoint_row(row)]
    epochs = len(scores)

    def verdict(converged: bool, detail: str) -> dict[str, Any]:
        return {"converged": converged, "rule": RULE, "detail": detail}

    if stop_reason == runs.TIME_LIMITED:
        return verdict(False, f"time-limited after {epochs} epochs (the max_minutes stop)")
    if not any(math.isfinite(score) for score in scores):
        return verdict(False, "unknown: no epoch has a validation RMSE to judge by")
    if stop_reason == "early-stopped":
        return verdict(True, f"early-stopped after {patience} epochs without a better val RMSE")
    window = max(MIN_WINDOW, epochs // WINDOW_DIVISOR)
    before, last = _best(scores[:-window]), _best(scores[-window:])
    if not math.isfinite(before):
        return verdict(False, f"{epochs} epochs: too few to compare the last {window} with")
    if not math.isfinite(last):
        return verdict(False, f"unknown: the last {window} epochs have no validation RMSE")
    improvement = (before - last) / before
    detail = (
        f"best val RMSE of the last {window} epochs {last:.4g} px vs {before:.4g} px before "
        f"them: {improvement:.1%} better"
    )
    flat = improvement < FLAT_IMPROVEMENT
    return verdict(flat, detail + ("" if flat else ", still falling"))


def _is_keypoint_row(row: dict[str, Any]) -> bool:
    return row.get("phase", "keypoints") == "keypoints"


def _best(scores: Sequence[float]) -> float:
    """The lowest finite score; infinity when there is none."""
    return min((score for score in scores if math.isfinite(score)), default=math.inf)


def _finite(value: Any) -> float:
    """A validation RMSE as a float; NaN for a missing or undefined one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
