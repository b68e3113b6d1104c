"""The convergence rule (metrics.json's ``convergence``), on hand-made histories."""

from __future__ import annotations

import math

from fkdbench.train.convergence import RULE, convergence


def keypoint_rows(val_rmse: list[float]) -> list[dict[str, object]]:
    return [
        {"epoch": epoch, "phase": "keypoints", "val_rmse": value}
        for epoch, value in enumerate(val_rmse, start=1)
    ]


def test_a_flat_curve_that_completed_converged() -> None:
    # 12 epochs: the last max(3, 12 // 4) = 3 improve on 2.00 by 0.5%, under 1%.
    rows = keypoint_rows([4.0, 3.0, 2.5, 2.2, 2.1, 2.05, 2.02, 2.01, 2.00, 1.995, 1.99, 2.0])
    verdict = convergence(rows, "completed", patience=None)
    assert verdict == {"converged": True, "rule": RULE, "detail": verdict["detail"]}
    assert "0.5% better" in verdict["detail"]


def test_a_curve_still_falling_did_not_converge() -> None:
    rows = keypoint_rows([4.0, 3.5, 3.0, 2.6, 2.3, 2.0, 1.8, 1.6])
    verdict = convergence(rows, "completed", patience=10)
    assert verdict["converged"] is False and "still falling" in verdict["detail"]


def test_the_window_grows_with_the_epochs() -> None:
    # 40 epochs: the last 10 are compared. A 2% drop 8 epochs from the end is inside them.
    values = [2.0] * 32 + [1.96] * 8
    assert convergence(keypoint_rows(values), "completed", None)["converged"] is False
    # The same drop 12 epochs from the end is before the window: the last 10 are flat.
    values = [2.0] * 28 + [1.96] * 12
    assert convergence(keypoint_rows(values), "completed", None)["converged"] is True


def test_getting_worse_at_the_end_counts_as_flat() -> None:
    rows = keypoint_rows([3.0, 2.0, 1.5, 1.6, 1.7, 1.8])
    assert convergence(rows, "completed", None)["converged"] is True


def test_early_stopping_is_convergence() -> None:
    rows = keypoint_rows([3.0, 2.0, 2.1, 2.2])
    verdict = convergence(rows, "early-stopped", patience=2)
    assert verdict["converged"] is True and "2 epochs without a better" in verdict["detail"]


def test_a_time_limited_run_never_converged() -> None:
    rows = keypoint_rows([2.0] * 20)  # flat, but cut by the clock
    verdict = convergence(rows, "time-limited", patience=None)
    assert verdict["converged"] is False and verdict["detail"].startswith("time-limited")


def test_too_few_epochs_cannot_show_a_flat_curve() -> None:
    verdict = convergence(keypoint_rows([3.0, 2.9, 2.9]), "completed", None)
    assert verdict["converged"] is False and "too few" in verdict["detail"]


def test_no_validation_scores_is_unknown() -> None:
    verdict = convergence(keypoint_rows([math.nan] * 6), "completed", None)
    assert verdict["converged"] is False and verdict["detail"].startswith("unknown:")
    # history.csv writes an undefined RMSE as an empty cell.
    assert convergence(keypoint_rows([""] * 6), "completed", None)["converged"] is False


def test_pretraining_rows_do_not_count() -> None:
    pretrain = [{"epoch": e, "phase": "pretrain", "val_rmse": math.nan} for e in (1, 2, 3)]
    rows = pretrain + keypoint_rows([4.0, 3.0, 2.0, 2.0, 2.0, 2.0])
    verdict = convergence(rows, "completed", None)
    assert verdict["converged"] is True, verdict
