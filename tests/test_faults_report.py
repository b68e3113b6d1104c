"""Fault cases of ``report`` and ``reproduce`` (issue 14): committed results are never lost.

A report writes only what it built. A ``--runs-dir`` that is missing or holds no run is one
line and exit 1, with every file of the out dir as it was (bytes and mtimes); a bad input
read after the runs (the bench file) leaves it as it was too. A tune snapshot the report did
not make (the committed ``results/tune/`` of a fresh clone, whose runs folder has no
``tune/``) is kept, with its figures, and still reported; a report over real runs still
rewrites everything it built.

Nothing is trained or tuned: inputs are written by hand (:mod:`report_factory`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from report_factory import MASKED, NONE_RMSE, png, trial, write_run, write_study, write_tune_inputs
from typer.testing import CliRunner

from fkdbench import report, runs
from fkdbench import reproduce as reproduce_module
from fkdbench.cli import app
from fkdbench.report.studies import SNAPSHOT_SOURCE_FILE, tune_figure_file
from fkdbench.train import RunResult

runner = CliRunner()
FOREIGN = "cnn-tuned-foreign"


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mtime in ns)."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _snapshot_files(out: Path) -> dict[str, tuple[bytes, int]]:
    """The tune snapshot and its figures, as :func:`_files` gives them."""
    files = _files(out)
    return {
        name: value
        for name, value in files.items()
        if name.startswith(f"{runs.TUNE_DIR}/") or name.startswith("figures/tune-")
    }


def _as_committed(out: Path) -> None:
    """Make the snapshot under ``out`` look like a fresh clone's results/tune/: made by
    another machine's report (its copies name no source this report knows)."""
    for marker in (out / runs.TUNE_DIR).glob(f"*/{SNAPSHOT_SOURCE_FILE}"):
        marker.unlink()


def _runs_without_tune(source: Path, target: Path) -> Path:
    """The run folders of ``source`` and no tune/: what a fresh clone's training leaves."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(runs.TUNE_DIR))
    return target


def _tuned_section(markdown: str) -> str:
    return markdown.split("## Tuned CNN")[1].split("## Figures")[0]


@pytest.fixture
def reported(tmp_path: Path) -> dict[str, Path]:
    """A complete report (every format, the tune snapshot and its figures) in ``out``."""
    inputs = write_tune_inputs(tmp_path / "inputs")
    out = tmp_path / "results"
    report.build_report(inputs["runs"], inputs["bench"], out, quiet=True)
    assert (out / runs.TUNE_DIR / MASKED / runs.TUNE_BEST_FILE).is_file()
    assert (out / "figures" / tune_figure_file(MASKED, "pareto")).is_file()
    return {**inputs, "out": out}


# -- a runs folder with no runs ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "empty", "no-run-folder"])
def test_a_runs_dir_without_runs_is_one_line_and_changes_nothing(
    reported: dict[str, Path], tmp_path: Path, case: str
) -> None:
    runz = tmp_path / "runz"
    if case != "missing":
        runz.mkdir()
    if case == "no-run-folder":
        (runz / "notes").mkdir()  # a folder, but no config.json: not a run
    out = reported["out"]
    before = _files(out)

    result = runner.invoke(
        app,
        ["report", "--runs-dir", str(runz), "--bench-file", str(reported["bench"]),
         "--out", str(out), "--quiet"],
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert str(runz) in lines[0] and "nothing written" in lines[0]
    assert "Traceback" not in result.output
    assert _files(out) == before


def test_a_bad_bench_file_is_refused_before_the_snapshot_is_touched(
    reported: dict[str, Path],
) -> None:
    out = reported["out"]
    before = _files(out)
    bench = reported["root"] / "broken.jsonl"
    bench.write_text('{"format_version": 2, "run_name": \n')

    with pytest.raises(ValueError, match="broken.jsonl: line 1"):
        report.build_report(reported["runs"], bench, out, quiet=True)

    assert _files(out) == before


# -- a snapshot the report did not make ------------------------------------------------------


@pytest.mark.parametrize("made_by", ["another clone", "this runs folder, since emptied"])
def test_report_without_runs_tune_keeps_and_reports_the_snapshot(
    reported: dict[str, Path], tmp_path: Path, made_by: str
) -> None:
    out = reported["out"]
    if made_by == "another clone":
        _as_committed(out)
        runs_dir = _runs_without_tune(reported["runs"], tmp_path / "fresh-runs")
    else:
        runs_dir = reported["runs"]
        shutil.rmtree(runs_dir / runs.TUNE_DIR)
    before = _snapshot_files(out)
    assert any(name.startswith("figures/tune-") for name in before)

    result = report.build_report(runs_dir, reported["bench"], out, quiet=True)

    assert _snapshot_files(out) == before  # not deleted, not rewritten
    assert [study.study for study in result.tune_studies] == [MASKED, NONE_RMSE]
    assert list(result.tables["tuned_studies"]["study"]) == [MASKED, NONE_RMSE]
    markdown = result.markdown.read_text()
    assert f"figures/{tune_figure_file(MASKED, 'pareto')}" in markdown
    rebuilt = report.build_report(None, reported["bench"], out, formats=("md",), quiet=True)
    assert _tuned_section(rebuilt.markdown.read_text()) == _tuned_section(markdown)


def _fake_steps(monkeypatch: pytest.MonkeyPatch, data_dir: Path, status: str = "finished") -> None:
    """reproduce's prepare/train/export/bench as stubs; its report step is the real one.
    Training writes one finished run into the runs folder (none if ``status`` is "failed"),
    and no tune/."""

    def fake_train(preset, data_dir, runs_dir, force, quiet, on_run_end, seeds=None, **where):
        folder = runs_dir / "cnn-manual--masked"
        if status == "finished":
            write_run(runs_dir, "cnn-manual", "masked", None)
        result = RunResult(folder.name, folder, "cnn-manual", "masked", "scratch", status)
        on_run_end(result)
        return [result]

    fakes = {
        "prepare": lambda options: SimpleNamespace(data_dir=data_dir),
        "train_matrix": fake_train,
        "export_all": lambda folders, force, quiet, on_done: None,
        "bench": lambda targets, options, on_done: SimpleNamespace(records=[]),
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(reproduce_module, name, fake)


def _one_run_preset(tmp_path: Path) -> Path:
    preset = tmp_path / "one.json"
    document = {
        "name": "one",
        "runs": [{"arch": "cnn-manual", "variants": ["masked"]}],
        "bench": {"time_untrained": False},
    }
    preset.write_text(json.dumps(document))
    return preset


def test_reproduce_on_a_fresh_clone_keeps_the_committed_snapshot(
    reported: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = reported["out"]
    _as_committed(out)
    shutil.copy(reported["bench"], out / "bench.jsonl")
    old_report = (out / "REPORT.md").read_bytes()
    before = _snapshot_files(out)
    _fake_steps(monkeypatch, tmp_path / "data" / "synthetic")

    result = reproduce_module.reproduce(
        _one_run_preset(tmp_path), tmp_path / "data", tmp_path / "runs", out, quiet=True
    )

    assert _snapshot_files(out) == before
    assert result.report == out / "REPORT.md"
    rewritten = result.report.read_text()
    assert rewritten.encode() != old_report  # what it built (the runs) is rewritten
    assert MASKED in _tuned_section(rewritten)
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [record["run_name"] for record in records] == ["cnn-manual--masked"]


def test_reproduce_with_every_run_failed_leaves_the_results_as_they_were(
    reported: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = reported["out"]
    before = _files(out)
    _fake_steps(monkeypatch, tmp_path / "data" / "synthetic", status="failed")

    result = reproduce_module.reproduce(
        _one_run_preset(tmp_path), tmp_path / "data", tmp_path / "runs", out, quiet=True
    )

    assert result.report is None
    assert [run.status for run in result.runs] == ["failed"]
    assert _files(out) == before


# -- what a report built, it rewrites ---------------------------------------------------------


def _foreign_study(out: Path) -> None:
    """A study copied into the snapshot by some other report (no marker of ours)."""
    staging = out.parent / "elsewhere"
    write_study(staging, FOREIGN, "none", "rmse", [trial(3, 2.5, 0.04, "none")], ("history",))
    shutil.copytree(
        staging / FOREIGN, out / runs.TUNE_DIR / FOREIGN, ignore=shutil.ignore_patterns("figures")
    )
    png(out / "figures" / tune_figure_file(FOREIGN, "history"), 99)


def test_a_report_over_real_runs_rewrites_what_it_built(reported: dict[str, Path]) -> None:
    out, runs_dir = reported["out"], reported["runs"]
    _foreign_study(out)
    foreign_before = {
        name: value for name, value in _snapshot_files(out).items() if FOREIGN in name
    }
    # The runs changed: a new score; a study changed (its best trial), one was removed.
    metrics_path = runs_dir / "cnn-manual--masked" / runs.METRICS_FILE
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "test_rmse": 1.234}))
    best_path = runs_dir / runs.TUNE_DIR / MASKED / runs.TUNE_BEST_FILE
    best_path.write_text(json.dumps({**json.loads(best_path.read_text()), "val_rmse": 1.5}))
    shutil.rmtree(runs_dir / runs.TUNE_DIR / NONE_RMSE)

    result = report.build_report(runs_dir, reported["bench"], out, quiet=True)

    assert result.tables["accuracy_rmse"].loc["cnn-manual", "masked"] == pytest.approx(1.234)
    assert "1.234" in (out / "accuracy_rmse.csv").read_text()
    assert "1.234" in (out / "runs.jsonl").read_text()
    copy = out / runs.TUNE_DIR / MASKED / runs.TUNE_BEST_FILE
    assert copy.read_bytes() == best_path.read_bytes()
    # The copy this report made of the removed study goes, with its figure...
    assert not (out / runs.TUNE_DIR / NONE_RMSE).exists()
    assert not (out / "figures" / tune_figure_file(NONE_RMSE, "history")).exists()
    # ...one it did not make stays, untouched, and is reported.
    assert {
        name: value for name, value in _snapshot_files(out).items() if FOREIGN in name
    } == foreign_before
    assert [study.study for study in result.tune_studies] == [FOREIGN, MASKED]
    rebuilt = report.build_report(None, reported["bench"], out, formats=("csv",), quiet=True)
    assert list(rebuilt.tables["tuned_studies"]["study"]) == [FOREIGN, MASKED]
