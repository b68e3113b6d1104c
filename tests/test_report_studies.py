"""Tuning studies as the report reads them, and the snapshot it keeps of them.

Nothing is tuned: study folders are written by hand (:mod:`report_factory`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from report_factory import (
    BROKEN,
    MASKED,
    NONE_RMSE,
    PNG_MAGIC,
    trial,
    write_study,
    write_tune_inputs,
)

from fkdbench import report
from fkdbench.report.studies import (
    TUNE_FILES,
    TuneSummary,
    load_tune_studies,
    snapshot_tune_studies,
    tune_figure_file,
    tune_figure_link,
)
from fkdbench.report.tuned import tuned_studies_table


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_tune_inputs(tmp_path_factory.mktemp("report-studies"))


@pytest.fixture(scope="module")
def snapshot(inputs: dict[str, Path]) -> tuple[Path, list[TuneSummary]]:
    """The studies of ``inputs`` snapshotted into a report's out dir."""
    out = inputs["root"] / "out"
    problems: list[str] = []
    studies = load_tune_studies(inputs["tune"], problems)
    return out, snapshot_tune_studies(studies, inputs["tune"], out)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_studies_are_read_from_their_files(inputs: dict[str, Path]) -> None:
    problems: list[str] = []
    studies = load_tune_studies(inputs["tune"], problems)
    assert [study.study for study in studies] == [MASKED, NONE_RMSE]
    masked = studies[0]
    best = _json(inputs["tune"] / MASKED / "best.json")
    study = _json(inputs["tune"] / MASKED / "study.json")
    assert masked.variant == study["variant"] == "masked"
    assert masked.objective == "rmse+latency"
    assert (masked.trials_complete, masked.trials_pruned, masked.trials_failed) == (24, 5, 1)
    assert masked.wall_seconds == study["wall_seconds"]
    assert masked.epochs_per_trial == study["epochs_per_trial"]
    assert masked.best_trial == best["trial"] == 17
    assert masked.best_val_rmse == best["val_rmse"]
    assert masked.best_seconds_per_100_images == best["seconds_per_100_images"]
    assert masked.best_params_keras == best["parameters"]["keras"]
    assert masked.best_onnx_bytes == best["onnx_bytes"]
    assert (masked.best_lr, masked.best_batch_size) == (0.002, 64)
    assert masked.pareto_size == 3
    assert set(masked.figures) == {"history", "pareto", "importances"}
    assert masked.figures["pareto"] == str(inputs["tune"] / MASKED / "figures/pareto.png")
    assert studies[1].pareto_size is None and set(studies[1].figures) == {"history"}
    assert len(problems) == 1
    assert problems[0].startswith(f"skipped tune study {BROKEN}: ")
    assert str(inputs["tune"] / BROKEN / "best.json") in problems[0]


@pytest.mark.parametrize(
    ("file", "text", "says"),
    [
        ("best.json", "[1, 2]", "expected a JSON object"),
        ("best.json", '{"format_version": 1, "trial": 3}', "no 'val_rmse'"),
        ("best.json", '{"format_version": 1, "trial": 3, "val_rmse": "low"}', "not a number"),
        ("study.json", '{"format_version": 2, "trials": {}}', "format_version 2"),
        ("study.json", '{"format_version": 1, "trials": [3]}', "list"),
        ("pareto.json", '{"format_version": 1, "trials": {"a": 1}}', "expected a list"),
    ],
)
def test_a_malformed_study_is_skipped_and_named(
    tmp_path: Path, file: str, text: str | None, says: str
) -> None:
    tune_dir = tmp_path / "tune"
    for study in ("a-good", "b-bad", "c-good"):
        write_study(tune_dir, study, "none", "rmse+latency", [trial(1, 2.0, 0.02, "none")], ())
    path = tune_dir / "b-bad" / file
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    problems: list[str] = []
    studies = load_tune_studies(tune_dir, problems)
    assert [study.study for study in studies] == ["a-good", "c-good"]
    assert len(problems) == 1
    assert f"skipped tune study b-bad: {path}" in problems[0]
    assert says in problems[0]


def test_a_study_with_no_finished_trial_yet_is_listed(tmp_path: Path) -> None:
    tune_dir = tmp_path / "tune"
    write_study(tune_dir, "early", "none", "rmse+latency", [trial(1, 2.0, 0.02, "none")], ())
    (tune_dir / "early" / "best.json").unlink()  # tune writes none until a trial finishes
    problems: list[str] = []
    (study,) = load_tune_studies(tune_dir, problems)
    assert problems == []
    assert study.best_trial is None and study.best_val_rmse is None
    assert tuned_studies_table([study])["best_trial"].isna().all()


def test_no_tune_folder_is_no_studies(tmp_path: Path) -> None:
    problems: list[str] = []
    assert load_tune_studies(tmp_path / "absent", problems) == []
    assert problems == []


def test_figure_names_and_links() -> None:
    assert tune_figure_file("s", "pareto") == "tune-s-pareto.png"
    assert tune_figure_link("s", "pareto") == "figures/tune-s-pareto.png"


def test_snapshot_holds_the_study_files_and_figures(
    snapshot: tuple[Path, list[TuneSummary]], inputs: dict
) -> None:
    out, copied = snapshot
    for study in (MASKED, NONE_RMSE):
        for name in TUNE_FILES:
            source = inputs["tune"] / study / name
            copy = out / "tune" / study / name
            assert copy.is_file() == source.is_file(), copy
            if source.is_file():
                assert copy.read_bytes() == source.read_bytes()
    assert not (out / "tune" / NONE_RMSE / "pareto.json").exists()
    assert not (out / "tune" / BROKEN).exists()
    assert not (out / "tune" / "notes").exists()
    copies = sorted(path.name for path in (out / "figures").glob("tune-*.png"))
    assert copies == [
        f"tune-{MASKED}-history.png",
        f"tune-{MASKED}-importances.png",
        f"tune-{MASKED}-pareto.png",
        f"tune-{NONE_RMSE}-history.png",
    ]
    for study in copied:
        assert study.folder == out / "tune" / study.study
        for name, path in study.figures.items():
            assert Path(path) == out / "figures" / f"tune-{study.study}-{name}.png"
            source = inputs["tune"] / study.study / "figures" / f"{name}.png"
            assert Path(path).read_bytes() == source.read_bytes()
            assert Path(path).read_bytes()[:8] == PNG_MAGIC
    # The snapshot reads back as the same studies, its figures where it copied them.
    problems: list[str] = []
    again = load_tune_studies(out / "tune", problems, figures_dir=out / "figures")
    assert problems == []
    assert again == copied


def test_a_study_gone_from_the_runs_leaves_the_snapshot(inputs: dict, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    shutil.copytree(inputs["runs"], runs_dir)
    out = tmp_path / "out"
    report.build_report(runs_dir, inputs["bench"], out, formats=("csv",), quiet=True)
    assert (out / "tune" / NONE_RMSE / "study.json").is_file()
    assert (out / "figures" / f"tune-{NONE_RMSE}-history.png").is_file()
    (out / "tune" / NONE_RMSE / "mine.txt").write_text("not the snapshot's")
    shutil.rmtree(runs_dir / "tune" / NONE_RMSE)
    (runs_dir / "tune" / MASKED / "figures" / "importances.png").unlink()

    result = report.build_report(runs_dir, inputs["bench"], out, formats=("csv",), quiet=True)

    assert [study.study for study in result.tune_studies] == [MASKED]
    assert sorted(path.name for path in (out / "tune" / NONE_RMSE).iterdir()) == ["mine.txt"]
    assert sorted(path.name for path in (out / "figures").glob("tune-*.png")) == [
        f"tune-{MASKED}-history.png",
        f"tune-{MASKED}-pareto.png",
    ]
    rebuilt = report.build_report(None, inputs["bench"], out, formats=("csv",), quiet=True)
    assert list(rebuilt.tables["tuned_studies"]["study"]) == [MASKED]


def test_reporting_into_the_runs_folder_copies_nothing(inputs: dict, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    shutil.copytree(inputs["runs"], runs_dir)
    (runs_dir / "tune" / "old-copy").mkdir()
    (runs_dir / "tune" / "old-copy" / "best.json").write_text("{}")
    problems: list[str] = []
    studies = load_tune_studies(runs_dir / "tune", problems)
    copied = snapshot_tune_studies(studies, runs_dir / "tune", runs_dir)
    assert [study.study for study in copied] == [MASKED, NONE_RMSE]
    assert (runs_dir / "tune" / "old-copy" / "best.json").is_file()  # not a stale copy
    assert (runs_dir / "figures" / f"tune-{MASKED}-pareto.png").is_file()
