"""A picture of the data: a grid of samples with their keypoints drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fkdbench.data.schemes import KeypointScheme
from fkdbench.io import atomic_path

# Colours by the subject's side, so a flipped or swapped label shows at a glance.
_SUBJECT_LEFT_COLOUR = "#ff3b30"
_SUBJECT_RIGHT_COLOUR = "#00c7be"
_CENTRE_COLOUR = "#ffd60a"


def keypoint_colours(scheme: KeypointScheme) -> list[str]:
    colours = []
    for name in scheme.keypoints:
        if name.startswith("left_") or "_left_" in name:
            colours.append(_SUBJECT_LEFT_COLOUR)
        elif name.startswith("right_") or "_right_" in name:
            colours.append(_SUBJECT_RIGHT_COLOUR)
        else:
            colours.append(_CENTRE_COLOUR)
    return colours


def draw_preview(
    path: Path,
    images: np.ndarray,
    keypoints: np.ndarray,
    scheme: KeypointScheme,
    columns: int = 8,
    rows: int = 4,
    title: str = "",
) -> Path:
    """Save a PNG grid of the first ``columns * rows`` samples; missing keypoints are
    simply not drawn. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    count = min(len(images), columns * rows)
    rows = max(1, int(np.ceil(count / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.6 + 0.5))
    colours = np.array(keypoint_colours(scheme))
    for index, axis in enumerate(np.atleast_1d(axes).flat):
        axis.axis("off")
        if index >= count:
            continue
        axis.imshow(images[index], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        labelled = ~np.isnan(keypoints[index]).any(axis=1)
        points = keypoints[index][labelled]
        axis.scatter(
            points[:, 0], points[:, 1], s=9, c=colours[labelled], marker="+", linewidths=1.0
        )
    legend = [
        Line2D(
            [], [], color=_SUBJECT_LEFT_COLOUR, marker="+", linestyle="", label="subject's left"
        ),
        Line2D(
            [], [], color=_SUBJECT_RIGHT_COLOUR, marker="+", linestyle="", label="subject's right"
        ),
        Line2D([], [], color=_CENTRE_COLOUR, marker="+", linestyle="", label="centre line"),
    ]
    figure.legend(handles=legend, loc="lower center", ncol=3, frameon=False, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return path
