"""Rows over seeds, intervals, unfinished rows apart, real differences, and the rank
agreement with another report: the statistics the report states, on made-up runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_factory import per_face_errors, result_of, summary, write_seeded_run

from fkdbench.report import build_report
from fkdbench.report.accuracy import accuracy_section, not_finished_section
from fkdbench.report.agreement import agreement_section, meaning
from fkdbench.report.differences import REAL, TIE, differences_section, differences_table
from fkdbench.report.inputs import write_run_records
from fkdbench.report.statistics import (
    RankCorrelation,
    bootstrap_rmse,
    paired_difference,
    spearman,
    t_interval,
)
from fkdbench.report.uncertainty import NO_INTERVAL, OVER_FACES, OVER_SEEDS, accuracy_cells


def test_t_interval_and_bootstrap_are_what_they_say() -> None:
    found = t_interval([1.0, 2.0, 3.0])
    # mean 2, sem 1/sqrt(3), t(0.975, 2) = 4.3027
    assert found.value == 2.0 and found.high - 2.0 == pytest.approx(4.3027 / np.sqrt(3), 1e-4)
    assert t_interval([1.0]).low is None
    errors = per_face_errors(2.0)
    faces = bootstrap_rmse(errors, [30] * len(errors))
    assert faces.value == pytest.approx(2.0) and faces.low < 2.0 < faces.high
    assert bootstrap_rmse(errors, [30] * len(errors)) == faces  # seeded: byte-stable


def test_cells_over_seeds_over_faces_or_none() -> None:
    runs = [
        summary("cnn-manual", "none", 2.0, seed=1),
        summary("cnn-manual", "none", 2.2, seed=2),
        summary("cnn-manual", "none", 2.4, seed=3),
        summary("cnn-baseline", "none", 3.0, per_face=None),
        summary("mobilenetv2", "none", 3.5),
    ]
    cells = accuracy_cells(runs).set_index(["metric", "arch"])
    seeds = cells.loc[("test_rmse", "cnn-manual")]
    assert (seeds["method"], seeds["n_seeds"]) == (OVER_SEEDS, 3)
    assert seeds["mean"] == pytest.approx(2.2) and seeds["low"] < 2.2 < seeds["high"]
    assert cells.loc[("test_rmse", "cnn-baseline"), "method"] == OVER_FACES
    assert cells.loc[("test_nme", "cnn-baseline"), "method"] == NO_INTERVAL
    assert cells.loc[("test_rmse", "mobilenetv2"), "method"] == NO_INTERVAL
    # 3.5 > 0.75 x 4.0: barely better than the mean face.
    assert cells.loc[("test_rmse", "mobilenetv2"), "barely_better"]
    assert not cells.loc[("test_rmse", "cnn-manual"), "barely_better"]


def test_a_time_limited_run_is_kept_out_of_the_ranking_and_listed() -> None:
    runs = [
        summary("cnn-manual", "none", 2.0),
        # The lowest RMSE, but stopped by the clock: not a result.
        summary("cnn-baseline", "none", 1.0, stop_reason="time-limited", epochs_run=2),
        summary("ae-cnn", "none", 2.5, converged=False, convergence_detail="still falling"),
    ]
    # Per-face errors for the differences (the RMSE table then shows no "no interval").
    paired = [summary(run.arch, "none", run.test_rmse, per_face=None, stop_reason=run.stop_reason)
              for run in runs]  # fmt: skip
    result = result_of(runs)
    rmse = result.tables["accuracy_rmse"]
    assert np.isnan(rmse.loc["cnn-baseline", "none"])
    text = "\n".join(accuracy_section(result)).split("NME (mean error")[0]
    row = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert "| not finished " in row["cnn-baseline"]
    assert "**2.000**" in row["cnn-manual"] and "(no interval)" in row["cnn-manual"]
    assert "\u2020" in row["ae-cnn"] and "still falling" in text
    listed = "\n".join(not_finished_section(result))
    assert "cnn-baseline--none" in listed and "time-limited" in listed and "| 2 " in listed
    differences = result_of(paired).tables["differences"]
    assert list(differences["model"]) == ["cnn-manual", "ae-cnn"]
    assert "cnn-baseline" not in set(result.tables["landmark_metrics"]["model"])


def test_a_planted_difference_is_real_and_identical_runs_tie() -> None:
    best = per_face_errors(2.0, seed=0)
    worse = [value * 1.5 for value in per_face_errors(2.0, seed=1)]
    runs = [
        summary("cnn-manual", "none", per_face=best),
        summary("cnn-baseline", "none", per_face=list(best)),  # the same errors: a tie
        summary("ae-cnn", "none", per_face=worse),
    ]
    table = differences_table(runs).set_index("model")
    # Equal RMSEs: the best is the first in table order (cnn-baseline), its twin a tie.
    assert table.loc["cnn-baseline", "verdict"] == "best"
    assert table.loc["cnn-manual", "verdict"] == TIE
    assert table.loc["cnn-manual", "wilcoxon_p"] == 1.0
    assert table.loc["cnn-manual", "difference"] == 0.0
    assert table.loc["ae-cnn", "verdict"] == REAL
    assert table.loc["ae-cnn", "low"] > 0 and table.loc["ae-cnn", "wilcoxon_p"] < 0.01
    paired = paired_difference(best, best, [30] * len(best))
    assert not paired.real and paired.wilcoxon_p == 1.0
    assert "tie (not significant)" in "\n".join(differences_section(result_of(runs)))


def test_rows_on_other_test_faces_are_not_paired() -> None:
    runs = [
        summary("cnn-manual", "none", 2.0, per_face=None),
        summary("cnn-baseline", "none", 2.1, per_face=None, manifest_sha256="d" * 64),
    ]
    assert len(differences_table(runs)) == 1
    assert "no difference to test" in differences_section(result_of(runs))[0]


def _records(path: Path, rmses: dict[str, float]) -> Path:
    runs = [summary(arch, "none", rmse) for arch, rmse in rmses.items()]
    return write_run_records(runs, path)


SYNTHETIC = {"cnn-manual": 1.5, "cnn-baseline": 1.8, "ae-cnn": 3.0, "resnet50": 3.3}


@pytest.mark.parametrize(
    ("real", "rho"),
    [
        ({"cnn-manual": 2.5, "cnn-baseline": 2.6, "ae-cnn": 4.0, "resnet50": 4.5}, 1.0),
        ({"cnn-manual": 4.5, "cnn-baseline": 4.0, "ae-cnn": 2.6, "resnet50": 2.5}, -1.0),
    ],
)
def test_the_real_faces_ranking_is_set_beside_with_spearman(
    tmp_path: Path, real: dict[str, float], rho: float
) -> None:
    runs_dir = tmp_path / "runs"
    for arch, rmse in SYNTHETIC.items():
        write_seeded_run(runs_dir, arch, "none", 1, rmse)
    other = _records(tmp_path / "real" / "runs.jsonl", {**real, "mobilenetv2": 9.0})
    result = build_report(
        runs_dir, None, tmp_path / "out", formats=("md", "json"), quiet=True, compare_with=other
    )
    correlation = result.tables["rank_correlation"].iloc[0]
    assert (correlation["n"], correlation["spearman_rho"]) == (4, pytest.approx(rho))
    assert len(result.tables["agreement"]) == 4  # mobilenetv2 is in one report only
    payload = json.loads((tmp_path / "out" / "report.json").read_text())
    assert payload["compare_with"] == str(other)
    section = result.markdown.read_text().split("## Synthetic vs real faces")[1]
    assert f"Spearman rho = {rho:.2f} over 4 rows" in section


def test_fewer_than_three_shared_rows_says_so(tmp_path: Path) -> None:
    ours = [summary("cnn-manual", "none", 1.5), summary("ae-cnn", "none", 3.0)]
    result = result_of(ours)
    assert "No comparison given" in agreement_section(result)[0]
    assert spearman([1.0, 2.0], [2.0, 1.0]).rho is None


def test_a_high_rho_that_chance_could_give_is_not_called_agreement() -> None:
    # Four rows, one swap: rho 0.8, but p = 0.2.
    found = spearman([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 4.0])
    assert found.rho == pytest.approx(0.8) and found.p > 0.05
    assert "not yet tested" in meaning(found) and "trust its order" not in meaning(found)
    strong = RankCorrelation(n=9, rho=0.87, p=0.0025)
    assert "trust its order" in meaning(strong)
