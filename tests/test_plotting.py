"""The shared figure helpers: the Pareto front, tick text, and PNGs that depend on the data
only."""

from __future__ import annotations

from pathlib import Path

from fkdbench.plotting import (
    FIGURE_DPI,
    integer_ticks,
    log_axis,
    new_figure,
    pareto_front,
    save_figure,
    short_number,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_pareto_front() -> None:
    points = [(1.0, 3.0), (2.0, 2.0), (3.0, 2.5), (4.0, 1.0)]
    assert pareto_front(points) == [0, 1, 3]
    assert pareto_front([]) == []
    assert pareto_front([(2.0, 1.0), (1.0, 1.0)]) == [1]  # a tie on y: the faster one


def test_short_number() -> None:
    texts = [short_number(value) for value in (0.25, 3, 300_000, 2_000_000, -1500)]
    assert texts == ["0.25", "3", "300k", "2M", "-1.5k"]


def _draw(path: Path) -> Path:
    figure = new_figure(3.0, 2.0)
    axes = figure.add_subplot()
    axes.plot([1, 10, 100], [0.2, 0.5, 3.0])
    log_axis(axes, "x")
    return save_figure(figure, path)


def test_a_figure_is_the_same_png_every_time(tmp_path: Path) -> None:
    first = _draw(tmp_path / "a.png").read_bytes()
    second = _draw(tmp_path / "sub" / "b.png").read_bytes()
    assert first[:8] == PNG_MAGIC
    assert first == second
    assert b"Software" not in first  # no matplotlib version stamp
    figure = new_figure(3.0, 2.0)
    assert figure.get_dpi() == FIGURE_DPI
    assert tuple(figure.get_size_inches()) == (3.0, 2.0)


def test_log_axis_ticks_are_plain_numbers() -> None:
    figure = new_figure(3.0, 2.0)
    axes = figure.add_subplot()
    axes.plot([1, 10, 100], [1, 2, 3])
    log_axis(axes, "x")
    assert axes.get_xscale() == "log"
    ticks = axes.xaxis.get_major_locator()()
    assert len(ticks) >= 3
    labels = [axes.xaxis.get_major_formatter()(tick) for tick in ticks]
    assert "10" in labels and "100" in labels


def test_integer_ticks() -> None:
    figure = new_figure(3.0, 2.0)
    axes = figure.add_subplot()
    axes.plot([1, 2, 3], [1.0, 0.5, 0.25])
    integer_ticks(axes.xaxis)
    ticks = axes.xaxis.get_major_locator().tick_values(1, 3)
    assert all(float(tick).is_integer() for tick in ticks)
