"""The study's figures: optimisation history, accuracy against CPU time, and parameter
importances. One that cannot be drawn yet (too few finished trials) is left out."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from fkdbench.plotting import new_figure, pareto_front, save_figure


def draw_figures(study: optuna.Study, frame: pd.DataFrame, folder: Path) -> list[Path]:
    """history.png, pareto.png and importances.png from the trials' frame; a figure that
    cannot be drawn is removed if an earlier call left one."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    for name, draw in (
        ("history", _history_figure),
        ("pareto", _pareto_figure),
        ("importances", _importance_figure),
    ):
        figure = draw(study, frame)
        path = folder / f"{name}.png"
        if figure is None:
            path.unlink(missing_ok=True)
        else:
            drawn.append(save_figure(figure, path))
    return drawn


def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["state"] == "complete") & frame["val_rmse"].notna()]


def _history_figure(study: optuna.Study, frame: pd.DataFrame) -> Any | None:
    done = _finished(frame)
    if not len(done):
        return None
    figure = new_figure(6.4, 4.0)
    axes = figure.add_subplot()
    axes.scatter(done["number"], done["val_rmse"], s=18, label="finished trial")
    axes.step(
        done["number"], done["val_rmse"].cummin(), where="post", color="C3", label="best so far"
    )
    axes.set_xlabel("trial")
    axes.set_ylabel("validation RMSE (px)")
    axes.set_title(f"{study.study_name}: optimisation history")
    axes.legend()
    return figure


def _pareto_figure(study: optuna.Study, frame: pd.DataFrame) -> Any | None:
    done = _finished(frame)
    timed = done[done["seconds_per_100_images"].notna()]
    if not len(timed):
        return None
    figure = new_figure(6.4, 4.4)
    axes = figure.add_subplot()
    points = list(zip(timed["seconds_per_100_images"], timed["val_rmse"], strict=True))
    front = pareto_front(points)
    axes.scatter(timed["seconds_per_100_images"], timed["val_rmse"], s=18, alpha=0.6)
    front_points = [points[index] for index in front]
    axes.plot(*zip(*front_points, strict=True), color="C3", marker="o", label="Pareto front")
    for index in front:
        axes.annotate(
            str(int(timed["number"].iloc[index])),
            points[index],
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    axes.set_xlabel("ONNX Runtime seconds per 100 images")
    axes.set_ylabel("validation RMSE (px)")
    axes.set_title(f"{study.study_name}: accuracy vs CPU time")
    axes.legend()
    return figure


def _importance_figure(study: optuna.Study, _frame: pd.DataFrame) -> Any | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(
                study,
                target=lambda t: t.user_attrs.get("val_rmse", math.inf),
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            )
    except (RuntimeError, ValueError):
        return None
    if not importances:
        return None
    names = list(importances)[::-1]
    figure = new_figure(6.4, 0.6 + 0.35 * len(names))
    axes = figure.add_subplot()
    axes.barh(names, [importances[name] for name in names])
    axes.set_xlabel("importance for validation RMSE (fANOVA)")
    axes.set_title(f"{study.study_name}: parameter importances")
    return figure
