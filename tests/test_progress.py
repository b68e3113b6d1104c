"""Tests for fkdbench.progress: quiet means silent, one display per flow, status on stderr."""

from __future__ import annotations

import pytest
from rich.progress import Progress

from fkdbench import progress
from fkdbench.progress import FlowStep, flow_progress, make_progress, say


def test_say_writes_one_line_to_stderr_unless_quiet(capsys: pytest.CaptureFixture) -> None:
    say("prepared 120 faces")
    say("not shown", quiet=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "prepared 120 faces\n"


def test_a_bar_shows_its_count_on_stderr(capsys: pytest.CaptureFixture) -> None:
    with make_progress() as display:
        assert isinstance(display, Progress)
        task = display.add_task("bench", total=3)
        display.advance(task, 3)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bench" in captured.err and "3/3" in captured.err


def test_quiet_progress_prints_nothing(capsys: pytest.CaptureFixture) -> None:
    with make_progress(quiet=True) as display:
        task = display.add_task("train", total=2)
        display.advance(task, 2)
        assert display.tasks[0].completed == 2  # counting still works
    assert capsys.readouterr() == ("", "")


def test_steps_inside_a_flow_share_its_display(capsys: pytest.CaptureFixture) -> None:
    with flow_progress() as flow:
        overall = flow.add_task("reproduce", total=2)
        step = make_progress()
        assert isinstance(step, FlowStep)
        with step as display:
            bar = display.add_task("train", total=4)
            display.advance(bar, 4)  # passed through to the flow's display
            assert [task.description for task in flow.tasks] == ["reproduce", "train"]
            assert flow.tasks[1].completed == 4
        # The step's bar is gone when the step ends; the flow's stays.
        assert [task.id for task in flow.tasks] == [overall]
        with make_progress(quiet=True) as quiet_step:
            assert isinstance(quiet_step, Progress) and quiet_step is not flow
        flow.advance(overall, 2)
    assert isinstance(make_progress(), Progress)  # the flow is over
    assert "reproduce" in capsys.readouterr().err


def test_a_quiet_flow_leaves_steps_on_their_own(capsys: pytest.CaptureFixture) -> None:
    with flow_progress(quiet=True):
        assert progress._shared is None
        assert isinstance(make_progress(quiet=True), Progress)
    assert capsys.readouterr() == ("", "")


def test_a_failing_flow_closes_its_display() -> None:
    with pytest.raises(RuntimeError, match="step failed"), flow_progress(quiet=False):
        assert progress._shared is not None
        raise RuntimeError("step failed")
    assert progress._shared is None
