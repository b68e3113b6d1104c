"""The report's training throughput: training.json's images/s per trained run, beside the
load it trained under; left out when no run recorded one."""

from __future__ import annotations

from fkdbench.report.inputs import RunSummary
from fkdbench.report.throughput import THROUGHPUT_TABLE, throughput_section, throughput_table


def _run(name: str, images_per_second: float | None, trained: bool = True) -> RunSummary:
    return RunSummary(
        run_name=name,
        arch=name.split("--")[0],
        variant="none" if trained else None,
        trained=trained,
        test_rmse=2.0 if trained else None,
        images_per_second=images_per_second,
        training_seconds=12.5 if images_per_second else None,
        environment={"load_average": [1.25, 1.0, 0.5]},
    )


class _Result:
    def __init__(self, tables: dict) -> None:
        self.tables = tables


def test_each_trained_run_with_a_throughput_is_a_row_by_name() -> None:
    table = throughput_table(
        [
            _run("mobilenetv2--none", 130.0),
            _run("cnn-manual--none", 450.0),
            _run("resnet50", 99.0, trained=False),  # an untrained folder: no training
            _run("cnn-baseline--none", None),  # trained before throughput was recorded
        ]
    )
    assert list(table["run_name"]) == ["cnn-manual--none", "mobilenetv2--none"]
    assert list(table["images_per_second"]) == [450.0, 130.0]
    assert list(table["load_average_1min"]) == [1.25, 1.25]

    lines = throughput_section(_Result({THROUGHPUT_TABLE: table}))
    text = "\n".join(lines)
    assert "| cnn-manual--none " in text and "450.0" in text and "1.25" in text


def test_without_any_throughput_the_section_is_left_out() -> None:
    empty = throughput_table([_run("cnn-baseline--none", None)])
    assert empty.empty
    assert throughput_section(_Result({THROUGHPUT_TABLE: empty})) is None
    assert throughput_section(_Result({})) is None
