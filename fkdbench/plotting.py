"""Figure helpers shared by the report and ``fkdbench tune``: one figure style, PNGs that
do not change unless their data does.

matplotlib is imported inside the helpers, not at the top: it is slow to import and only
the commands that draw need it (``fkdbench --help`` and ``bench`` should not pay for it).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fkdbench.io import write_bytes_atomic

FIGURE_DPI = 100


def new_figure(width: float, height: float) -> Any:
    """A ``matplotlib.figure.Figure`` of ``width`` x ``height`` inches, constrained layout."""
    # The object-oriented API: no pyplot, no global backend switch, no GUI, whatever the
    # caller's matplotlib set-up; PNGs are drawn by Agg.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` (atomically) and return ``path``."""
    buffer = io.BytesIO()
    # No Software stamp: the bytes depend on the data, not on the matplotlib version.
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    write_bytes_atomic(path, buffer.getvalue())
    return path


def colour(index: int) -> Any:
    """The ``index``-th colour of the tab10 cycle (wrapping after ten)."""
    import matplotlib

    return matplotlib.colormaps["tab10"](index % 10)


def short_number(value: float, _position: Any = None) -> str:
    """Tick text: 0.25, 3, 300k, 2M rather than 2.5x10^-1."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def log_axis(axes: Any, which: str) -> None:
    """Log scale with ticks at 1-2-5 steps inside the data, labelled as plain numbers.

    Call after plotting: the ticks are chosen from the axis' limits.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = axes.xaxis if which == "x" else axes.yaxis
    (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    low, high = axes.get_xlim() if which == "x" else axes.get_ylim()
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    ticks: list[float] = []
    for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0**e for e in decades for m in mantissas if low <= m * 10.0**e <= high]
        if len(ticks) >= 3:
            break
    if len(ticks) < 2:
        ticks = [float(f"{low:.2g}"), float(f"{high:.2g}")]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(short_number))
    axis.set_minor_formatter(NullFormatter())


def integer_ticks(axis: Any) -> None:
    """Major ticks of ``axis`` (``axes.xaxis``: epochs, counts) at whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower x and lower y), by x."""
    order = sorted(range(len(points)), key=lambda index: (points[index][0], points[index][1]))
    front, best_y = [], math.inf
    for index in order:
        if points[index][1] < best_y:
            front.append(index)
            best_y = points[index][1]
    return front
