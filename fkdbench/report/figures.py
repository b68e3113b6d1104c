"""The report's figures (each mirrors a paper figure), drawn from the tables and the runs,
and the "Figures" section that shows them or says why one was not drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fkdbench import reference, runs
from fkdbench.data.splits import load_split
from fkdbench.models.base import denormalise_keypoints
from fkdbench.peers import PEER_MARK
from fkdbench.plotting import (
    colour,
    integer_ticks,
    log_axis,
    new_figure,
    pareto_front,
    save_figure,
)
from fkdbench.progress import say
from fkdbench.report.common import FIGURES_DIR, MEAN_SHAPE_ROW, label_key, variant_key
from fkdbench.report.inputs import RunSummary
from fkdbench.report.peers import PEER_BACKEND, peer_points
from fkdbench.report.result import ReportResult
from fkdbench.report.timing import SPEED_BACKEND, speed_points

# Figure file stem -> one-line caption (and the paper figure it mirrors), in section order.
FIGURES: dict[str, str] = {
    "params_vs_size": "Parameters (Keras count) vs state-dict size, ours and the paper's "
    "Table 1 (paper Fig. 8).",
    "rmse_by_variant": "Test RMSE per architecture and data variant (paper Fig. 6-7).",
    "training_curves": "Validation RMSE per epoch, one panel per architecture, one line per "
    "variant (paper Fig. 9-11).",
    "predictions": "The same test faces for every architecture (its best run): ground truth "
    "green dots, prediction red crosses (paper Fig. 12).",
    "accuracy_vs_speed": "Test RMSE vs ONNX Runtime seconds per 100 images, finished runs "
    "only; the Pareto front (nothing both faster and more accurate) is joined.",
    "ced": "Cumulative error distribution: share of test faces with NME at most x, up to the "
    "failure threshold; AUC@0.1 is the area under it / 0.1.",
}
PREDICTION_FACES = 8
_PEERS_IN_FIGURE = (
    f"*Diamonds: off-the-shelf peers ({PEER_MARK}), timed by `fkdbench peer` one face at a "
    "time with their own detector, on one thread; not on the Pareto front.*"
)


def figure_params_vs_size(size: pd.DataFrame, path: Path) -> Path | None:
    """Paper Fig. 8: parameters (log x) vs MB, our models and the paper's Table 1."""
    ours = size.dropna(subset=["params_keras", "state_dict_mb"])
    ours = ours.drop_duplicates(subset=["arch", "params_keras"])
    paper = reference.paper_rows(table=reference.TABLE1)
    if ours.empty and not paper:
        return None
    figure = new_figure(7.0, 4.5)
    axes = figure.add_subplot()
    if not ours.empty:
        axes.scatter(
            ours["params_keras"].astype(float),
            ours["state_dict_mb"],
            color=colour(0),
            label="ours",
        )
        for row in ours.itertuples():
            axes.annotate(
                # A lever row with its own head has its own size: name its head too.
                row.model if getattr(row, "recipe", "") else row.arch,
                (float(row.params_keras), row.state_dict_mb), fontsize=7, xytext=(3, 3),
                textcoords="offset points",
            )  # fmt: skip
    points = [(row.params, row.size_mb, row.model) for row in paper if row.params and row.size_mb]
    if points:
        axes.scatter(
            [p[0] for p in points], [p[1] for p in points], color=colour(1), marker="s",
            label="paper 003 Table 1",
        )  # fmt: skip
        for params, size_mb, name in points:
            axes.annotate(
                name, (params, size_mb), fontsize=6, xytext=(3, -8), textcoords="offset points"
            )
    log_axis(axes, "x")
    log_axis(axes, "y")
    axes.set_xlabel("parameters (Keras count: learnable + BatchNorm statistics)")
    axes.set_ylabel("model file MB (ours: state dict, 10^6 bytes)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def figure_rmse_by_variant(accuracy: pd.DataFrame, path: Path) -> Path | None:
    """Paper Fig. 6-7: grouped bars, one group per model, one bar per variant."""
    models = accuracy.drop(index=MEAN_SHAPE_ROW, errors="ignore")
    columns = [column for column in models.columns if models[column].notna().any()]
    if models.empty or not columns:
        return None
    figure = new_figure(max(6.0, 1.2 * len(models.index) + 2), 4.5)
    axes = figure.add_subplot()
    width = 0.8 / len(columns)
    positions = np.arange(len(models.index))
    for index, variant in enumerate(columns):
        values = models[variant].to_numpy(dtype=float)
        present = ~np.isnan(values)
        axes.bar(
            positions[present] + (index - (len(columns) - 1) / 2) * width,
            values[present],
            width,
            label=variant,
            color=colour(variant_key(variant)[0]),
        )
    axes.set_xticks(positions)
    axes.set_xticklabels(models.index, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("test RMSE (px)")
    axes.legend(title="variant", fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    return save_figure(figure, path)


def _curves(run_summaries: Sequence[RunSummary]) -> dict[str, list[tuple[str, pd.DataFrame]]]:
    """Row label -> (variant, epoch/val_rmse frame) per trained run with a history."""
    curves: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for run in run_summaries:
        if run.trained and run.history:
            history = pd.DataFrame(list(run.history), columns=["epoch", "val_rmse"])
            curves.setdefault(run.label, []).append((run.variant, history))
    return curves


def figure_training_curves(run_summaries: Sequence[RunSummary], path: Path) -> Path | None:
    """Paper Fig. 9-11: validation RMSE vs epoch, a panel per model, a line per variant."""
    curves = _curves(run_summaries)
    if not curves:
        return None
    labels = sorted(curves, key=label_key)
    columns = min(3, len(labels))
    rows = math.ceil(len(labels) / columns)
    figure = new_figure(4.0 * columns, 3.0 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, label in enumerate(labels):
        axes = grid[index // columns][index % columns]
        for variant, history in sorted(curves[label], key=lambda item: variant_key(item[0])):
            axes.plot(
                history["epoch"], history["val_rmse"], marker="o", markersize=3,
                label=variant, color=colour(variant_key(variant)[0]),
            )  # fmt: skip
        axes.set_title(label, fontsize=9)
        integer_ticks(axes.xaxis)
        axes.set_xlabel("epoch", fontsize=8)
        axes.set_ylabel("val RMSE (px)", fontsize=8)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    for index in range(len(labels), rows * columns):
        grid[index // columns][index % columns].set_visible(False)
    return save_figure(figure, path)


def figure_ced(run_summaries: Sequence[RunSummary], path: Path) -> Path | None:
    """CED curves, one per finished run that recorded one."""
    curves = [run for run in run_summaries if run.finished and run.test_ced]
    if not curves:
        return None
    figure = new_figure(6.5, 4.5)
    axes = figure.add_subplot()
    for index, run in enumerate(curves):
        fraction = np.array([np.nan if v is None else v for v in run.test_ced], dtype=float)
        limit = run.failure_threshold or 0.1
        axes.plot(
            np.linspace(0.0, limit, len(fraction)), fraction, label=run.run_name,
            color=colour(index), linewidth=1.2,
        )  # fmt: skip
    axes.set_xlabel("NME (normalised by the scheme's two points)")
    axes.set_ylabel("share of test faces")
    axes.set_ylim(0, 1)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return save_figure(figure, path)


def _draw_peers(axes: Any, peers: Sequence[tuple[str, float, float]]) -> None:
    """The off-the-shelf peers: another marker, named with the mark, off the front."""
    if not peers:
        return
    axes.scatter(
        [peer[1] for peer in peers], [peer[2] for peer in peers], color=colour(1), marker="D",
        label=f"{PEER_MARK}; {PEER_BACKEND} (not ranked)",
    )  # fmt: skip
    for name, x, y in peers:
        axes.annotate(name, (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")


def figure_accuracy_vs_speed(
    points: Sequence[tuple[str, float, float]],
    path: Path,
    peers: Sequence[tuple[str, float, float]] = (),
) -> Path | None:
    """Test RMSE vs ONNX Runtime time (log x), the Pareto front joined; ``peers`` (name,
    seconds per 100 images, RMSE) drawn apart and left out of the front."""
    if not points:
        return None
    figure = new_figure(7.0, 4.5)
    axes = figure.add_subplot()
    xs = [point[1] for point in points]
    ys = [point[2] for point in points]
    axes.scatter(xs, ys, color=colour(0))
    for name, x, y in points:
        axes.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front([(x, y) for _, x, y in points])
    axes.plot(
        [xs[i] for i in front], [ys[i] for i in front], color=colour(3), marker="o",
        drawstyle="steps-post", label="Pareto front",
    )  # fmt: skip
    _draw_peers(axes, peers)
    log_axis(axes, "x")
    axes.set_xlabel(f"{SPEED_BACKEND} seconds per 100 images (median)")
    axes.set_ylabel("test RMSE (px)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


# -- predictions (drawn from the models themselves) -----------------------------------------


def _resolve_data_dir(data_dir: str | None, runs_dir: Path) -> Path | None:
    if not data_dir:
        return None
    candidates = [Path(data_dir)]
    if not Path(data_dir).is_absolute():
        candidates.append(Path(runs_dir).parent / data_dir)
    for candidate in candidates:
        if (candidate / "test.npz").is_file():
            return candidate
    return None


def prediction_faces(keypoints: np.ndarray, count: int = PREDICTION_FACES) -> np.ndarray:
    """Indices of the faces to draw: the first ``count`` test rows with every keypoint
    labelled, then (if there are too few) the rows with the most labels, in file order."""
    labelled = (~np.isnan(keypoints).any(axis=-1)).sum(axis=-1)
    order = sorted(range(len(keypoints)), key=lambda index: (-labelled[index], index))
    return np.array(sorted(order[:count]), dtype=int)


def _best_runs(trained: Sequence[RunSummary]) -> dict[str, RunSummary]:
    """Row label -> its run with the lowest test RMSE (ties: by run name)."""
    ranked: dict[str, tuple[tuple[float, str], RunSummary]] = {}
    for run in trained:
        score = (run.test_rmse if run.test_rmse is not None else math.inf, run.run_name)
        if run.label not in ranked or score < ranked[run.label][0]:
            ranked[run.label] = (score, run)
    return {label: run for label, (_, run) in ranked.items()}


def _test_data_dir(trained: Sequence[RunSummary], runs_dir: Path) -> Path | None:
    """The first data set (by run name) whose test split is at hand."""
    return next(
        (
            found
            for run in sorted(trained, key=lambda r: r.run_name)
            if (found := _resolve_data_dir(run.data_dir, runs_dir)) is not None
        ),
        None,
    )


def _predict(model: Any, config: dict[str, Any], images: np.ndarray, size: int) -> np.ndarray:
    """``model`` on ``images`` (uint8, N x H x W): keypoints in pixels, N x K x 2."""
    in_chans = int(config["model"].get("in_chans", 1))
    batch = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    batch = batch.repeat(1, in_chans, 1, 1)
    with torch.no_grad():
        coords = model(batch).numpy().reshape(len(images), -1, 2)
    return denormalise_keypoints(coords, size)


def _draw_faces(
    drawn: Sequence[tuple[str, np.ndarray]],
    images: np.ndarray,
    truth: np.ndarray,
    faces: np.ndarray,
    path: Path,
) -> Path:
    """A row per model, a column per face: truth green dots, predictions red crosses."""
    figure = new_figure(1.5 * len(faces), 1.6 * len(drawn))
    grid = figure.subplots(len(drawn), len(faces), squeeze=False)
    for row, (label, predicted) in enumerate(drawn):
        for column, face in enumerate(faces):
            axes = grid[row][column]
            axes.imshow(images[face], cmap="gray", vmin=0, vmax=255)
            axes.scatter(truth[face][:, 0], truth[face][:, 1], s=6, color="lime", marker="o")
            axes.scatter(predicted[column, :, 0], predicted[column, :, 1], s=8, c="red", marker="x")
            axes.set_xticks([])
            axes.set_yticks([])
        grid[row][0].set_ylabel(label, fontsize=7)
    for column, face in enumerate(faces):
        grid[0][column].set_title(f"test row {face}", fontsize=7)
    return save_figure(figure, path)


def figure_predictions(
    run_summaries: Sequence[RunSummary], runs_dir: Path, path: Path, notes: list[str]
) -> Path | None:
    """Paper Fig. 12: every architecture's best run on the same test faces."""
    trained = [run for run in run_summaries if run.trained and run.folder is not None]
    best = _best_runs(trained)
    data_dir = _test_data_dir(trained, runs_dir)
    if data_dir is None:
        notes.append("predictions: no run's data set (test split) was found")
        return None
    split = load_split(data_dir, "test")
    faces = prediction_faces(split.keypoints)
    if len(faces) == 0:
        notes.append(f"predictions: the test split of {data_dir} is empty")
        return None
    size = split.images.shape[-1]
    drawn: list[tuple[str, np.ndarray]] = []
    for label in sorted(best, key=label_key):
        run = best[label]
        if run.image_size not in (None, size):
            notes.append(f"predictions: {run.run_name} takes {run.image_size} px images, skipped")
            continue
        try:
            model, config = runs.load_model(run.folder)
        except (runs.CheckpointError, KeyError, ValueError) as error:
            notes.append(f"predictions: {run.run_name} not drawn ({runs.first_line(error)})")
            continue
        predicted = _predict(model, config, split.images[faces], size)
        drawn.append((f"{label}\n{run.variant}", predicted))
    if not drawn:
        return None
    return _draw_faces(drawn, split.images, split.keypoints, faces, path)


# -- drawing them all -----------------------------------------------------------------------

# Figure stem -> (draw it at a path, or return None; why it was not drawn).
Drawers = dict[str, tuple[Callable[[Path], Path | None], str]]


def _drawers(
    run_summaries: Sequence[RunSummary],
    tables: dict[str, pd.DataFrame],
    runs_dir: Path,
    notes: list[str],
) -> Drawers:
    return {
        "params_vs_size": (
            lambda path: figure_params_vs_size(tables["size"], path),
            "no parameter counts or sizes",
        ),
        "rmse_by_variant": (
            lambda path: figure_rmse_by_variant(tables["accuracy_rmse"], path),
            "no trained runs",
        ),
        "training_curves": (
            lambda path: figure_training_curves(run_summaries, path),
            "no trained run has a history.csv",
        ),
        "predictions": (
            lambda path: figure_predictions(run_summaries, runs_dir, path, notes),
            "no trained run could be drawn",
        ),
        "accuracy_vs_speed": (
            lambda path: figure_accuracy_vs_speed(
                speed_points(run_summaries, tables["timing"]), path, peer_points(tables)
            ),
            f"no {SPEED_BACKEND} bench records of trained runs",
        ),
        "ced": (
            lambda path: figure_ced(run_summaries, path),
            "no trained run recorded its error distribution",
        ),
    }


def _kept_figure(path: Path) -> tuple[Path | None, str | None]:
    """Rebuilt from records: the models are not here, the figure drawn from them is."""
    if path.is_file():
        return path, None
    return None, "rebuilt from records, and the models are not at hand"


def _drawn_figure(
    name: str, draw: Callable[[Path], Path | None], reason: str, path: Path, notes: list[str]
) -> tuple[Path | None, str | None]:
    """(the figure, None), or (None, why not: ``reason`` and the drawer's notes)."""
    drawn = draw(path)
    if drawn is not None:
        return drawn, None
    # A stale figure from an earlier report must not pass for this one's.
    path.unlink(missing_ok=True)
    details = [note.split(": ", 1)[1] for note in notes if note.startswith(f"{name}:")]
    return None, "; ".join([reason, *details])


def draw_figures(
    run_summaries: Sequence[RunSummary],
    tables: dict[str, pd.DataFrame],
    runs_dir: Path,
    out_dir: Path,
    quiet: bool,
) -> tuple[dict[str, Path], dict[str, str], list[str]]:
    """Draw every figure into ``out_dir/figures/``: (drawn, not drawn and why, problems).

    Rebuilt from records, the predictions figure (drawn from the models) is kept as it is.
    """
    notes: list[str] = []
    figures: dict[str, Path] = {}
    missing: dict[str, str] = {}
    from_records = bool(run_summaries) and all(run.folder is None for run in run_summaries)
    for name, (draw, reason) in _drawers(run_summaries, tables, runs_dir, notes).items():
        path = out_dir / FIGURES_DIR / f"{name}.png"
        say(f"report: drawing {path.name}", quiet)
        if name == "predictions" and from_records:
            drawn, why = _kept_figure(path)
        else:
            drawn, why = _drawn_figure(name, draw, reason, path, notes)
        if drawn is None:
            missing[name] = str(why)
        else:
            figures[name] = drawn
    # Notes about a figure that was drawn anyway (a run left out of it) go to the problems.
    partial = [f"figure {note}" for note in notes if note.split(":", 1)[0] not in missing]
    return figures, missing, partial


def figures_section(result: ReportResult) -> list[str]:
    """The lines of "Figures" after its heading: each figure, or why it is not there."""
    lines: list[str] = []
    for name, caption in FIGURES.items():
        if name in result.figures:
            lines += [f"![{name}]({FIGURES_DIR}/{name}.png)", "", f"*{caption}*", ""]
            if name == "accuracy_vs_speed" and peer_points(result.tables):
                lines += [_PEERS_IN_FIGURE, ""]
        else:
            why = result.missing_figures.get(name, "figures were not requested")
            lines += [f"- `{FIGURES_DIR}/{name}.png`: not drawn ({why}). {caption}", ""]
    return lines
