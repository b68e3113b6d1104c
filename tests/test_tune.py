"""fkdbench tune: a small study end to end, resuming, bad storage, Ctrl-C, early stopping.

Trials are tiny (48-pixel faces, one or two epochs on 64 rows, 16 timed images): these
tests check what the search records and writes, not how good its specs are.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from fkdbench import runs, tune
from fkdbench.cli import app
from fkdbench.data.prepare import PrepareOptions, prepare
from fkdbench.models.cnn import CNNSpec
from fkdbench.train import TrainConfig, TrainingDiverged, train_run
from fkdbench.tune import TuneError, TuneOptions, dominated_now
from fkdbench.tune import objective as tune_objective


@pytest.fixture(scope="module")
def small_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 synthetic 48x48 faces: trials train in about a second."""
    root = tmp_path_factory.mktemp("tune-data")
    result = prepare(
        PrepareOptions(
            data_root=root, n_train=150, n_test=8, image_size=48, seed=5, workers=1, quiet=True
        )
    )
    return result.data_dir


def _options(data_dir: Path, runs_dir: Path, **overrides) -> TuneOptions:
    settings = dict(
        variant="none",
        trials=3,
        data_dir=data_dir,
        runs_dir=runs_dir,
        epochs_per_trial=2,
        max_train_rows=64,
        max_val_rows=16,
        threads=1,
        latency_images=16,
        latency_repeats=1,
        startup_trials=2,
        prune_warmup_epochs=1,
        # Specs that always fit 48-pixel faces and no parameter budget: no trial is rejected,
        # so trial numbers are predictable (the budget test sets its own).
        max_params=None,
        search_space=tune.SearchSpace(conv_blocks=(2, 4), dense_units=(64, 128)),
        quiet=True,
    )
    settings.update(overrides)
    return TuneOptions(**settings)


def _load(options: TuneOptions) -> optuna.Study:
    return optuna.load_study(study_name=options.study_name, storage=options.storage_url)


def test_three_trial_study_writes_every_output(small_faces: Path, tmp_path: Path) -> None:
    options = _options(small_faces, tmp_path / "runs")
    result = tune.tune(options)

    # Three trials trained; specs rejected before training (too big for 48-pixel inputs,
    # say) come on top and do not count.
    assert result.trials_here == list(range(len(result.trials_here)))
    trained = len(result.trials_here) - result.counts["rejected"]
    assert trained == 3
    folder = tmp_path / "runs" / "tune" / "cnn-tuned-none"
    assert result.folder == folder
    assert (tmp_path / "runs" / "tune" / "cnn-tuned-none.db").is_file()

    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["number"]) == result.trials_here
    complete = trials[trials["state"] == "complete"]
    assert len(complete) >= 1
    assert (complete["val_rmse"] > 0).all()
    assert (complete["seconds_per_100_images"] > 0).all()
    for spec in trials["spec"].dropna():
        CNNSpec.from_dict(json.loads(spec))  # every recorded spec builds

    best = json.loads((folder / "best.json").read_text())
    assert best["val_rmse"] == pytest.approx(complete["val_rmse"].min(), rel=1e-5)
    assert best["trial"] == int(complete.loc[complete["val_rmse"].idxmin(), "number"])
    assert best["study"] == "cnn-tuned-none" and best["variant"] == "none"
    assert set(best["train"]) == {"lr", "batch_size", "epochs"}
    # best.json is itself a spec file train accepts.
    assert CNNSpec.from_json_file(folder / "best.json") == CNNSpec.from_dict(best["spec"])

    pareto = json.loads((folder / "pareto.json").read_text())["trials"]
    assert pareto, "a study with finished trials has a front"
    times = [entry["seconds_per_100_images"] for entry in pareto]
    errors = [entry["val_rmse"] for entry in pareto]
    assert times == sorted(times) and errors == sorted(errors, reverse=True)
    fastest = complete["seconds_per_100_images"].min()
    assert times[0] == pytest.approx(fastest, rel=1e-5)
    # Nothing beats a front member on both (the CSV holds 6 significant digits: compare
    # beyond that precision).
    for _, row in complete.iterrows():
        for entry in pareto:
            assert not (
                row["seconds_per_100_images"] < entry["seconds_per_100_images"] * (1 - 1e-5)
                and row["val_rmse"] < entry["val_rmse"] * (1 - 1e-5)
            )

    study_record = json.loads((folder / "study.json").read_text())
    counts = study_record["trials"]
    assert counts["complete"] + counts["pruned"] + counts["failed"] == len(result.trials_here)
    assert counts["rejected"] == result.counts["rejected"]
    assert study_record["objective"] == "rmse+latency"
    assert study_record["settings"]["epochs_per_trial"] == 2
    for name in ("history", "pareto"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 1000

    # The study in the database agrees with the CSV, and holds every trial's numbers.
    study = _load(options)
    assert len(study.directions) == 2
    assert sorted(t.number for t in study.trials) == result.trials_here

    # `train cnn-tuned --variant none` now takes its spec from this study.
    run = train_run(
        TrainConfig(
            arch="cnn-tuned",
            variant="none",
            data_dir=small_faces,
            runs_dir=tmp_path / "runs",
            epochs=1,
            max_train_rows=32,
            device="cpu",
            num_threads=1,
            quiet=True,
        )
    )
    config = runs.read_config(run.run_dir)
    assert config["model"]["kwargs"]["spec"] == CNNSpec.from_dict(best["spec"]).to_dict()
    assert f"trial {best['trial']}" in config["model"]["spec_source"]


def test_resumed_study_continues_its_numbering(small_faces: Path, tmp_path: Path) -> None:
    first = tune.tune(_options(small_faces, tmp_path / "runs", trials=2, epochs_per_trial=1))
    assert first.trials_here == [0, 1]
    again = tune.tune(_options(small_faces, tmp_path / "runs", trials=3, epochs_per_trial=1))
    assert again.trials_here == [2]
    study = _load(_options(small_faces, tmp_path / "runs"))
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    # The resumed worker's sampler starts a new random stream, not trial 0's settings again.
    assert study.trials[2].params != study.trials[0].params
    # Already there: nothing more is run, the outputs are rewritten.
    done = tune.tune(_options(small_faces, tmp_path / "runs", trials=3, epochs_per_trial=1))
    assert done.trials_here == []
    assert len(pd.read_csv(done.folder / "trials.csv")) == 3


def test_parameter_budget_prunes_before_training(small_faces: Path, tmp_path: Path) -> None:
    options = _options(small_faces, tmp_path / "runs", trials=2, max_params=100)
    result = tune.tune(options)
    # Rejections do not count toward --trials; the worker gives up after a bounded number.
    assert result.states_here == ["pruned"] * (2 * tune.MAX_PROPOSALS_PER_TRIAL)
    assert result.counts["rejected"] == len(result.states_here)
    trials = pd.read_csv(result.folder / "trials.csv")
    # (At 48 pixels a spec that pools six times is rejected as well, for its input size.)
    assert trials["reason"].str.contains("> max_params 100|does not fit the input").all()
    assert trials["reason"].str.contains("> max_params 100").sum() > len(trials) / 2
    assert trials["val_rmse"].isna().all()
    assert not list((result.folder / "trials").rglob("model.pt")), "nothing was trained"
    assert not (result.folder / "best.json").exists()
    assert json.loads((result.folder / "pareto.json").read_text())["trials"] == []


def test_single_objective_study(small_faces: Path, tmp_path: Path) -> None:
    options = _options(small_faces, tmp_path / "runs", objective="rmse", trials=3)
    result = tune.tune(options)
    assert len(_load(options).directions) == 1
    assert result.best is not None
    # Latency is still measured for every trained trial, so an rmse study has a front too.
    assert result.pareto_size >= 1
    trials = _load(options).get_trials(states=(TrialState.COMPLETE,))
    for trial in trials:
        assert trial.intermediate_values, "per-epoch values reported to the median pruner"


def test_joining_with_other_settings_is_refused(small_faces: Path, tmp_path: Path) -> None:
    tune.tune(_options(small_faces, tmp_path / "runs", trials=1, epochs_per_trial=1))
    with pytest.raises(TuneError, match=r"epochs_per_trial 2 here, 1 in the study"):
        tune.tune(_options(small_faces, tmp_path / "runs", trials=2, epochs_per_trial=2))
    with pytest.raises(TuneError, match=r"objective"):
        tune.tune(
            _options(small_faces, tmp_path / "runs", trials=2, epochs_per_trial=1, objective="rmse")
        )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url at all", "not a database URL"),
        ("nosuchdb://host/db", "cannot open the database"),
        ("mysql://fk:s3cret@127.0.0.1:9/none", "database driver MySQLdb is not installed"),
        ("postgresql://fk:s3cret@127.0.0.1:9/none", "cannot open the database"),
    ],
)
def test_bad_storage_gives_one_line(url: str, expected: str, small_faces: Path, tmp_path: Path):
    with pytest.raises(TuneError) as caught:
        tune.tune(_options(small_faces, tmp_path / "runs", storage=url))
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert "s3cret" not in message, "passwords never reach messages"


def test_storage_in_a_missing_folder_is_refused(small_faces: Path, tmp_path: Path) -> None:
    """Issue 14: the folders of a mistyped SQLite path were silently created."""
    url = f"sqlite:///{tmp_path}/nonexistent/dir/x.db"
    with pytest.raises(TuneError, match="does not exist") as caught:
        tune.tune(_options(small_faces, tmp_path / "runs", storage=url))
    assert str(caught.value).startswith("--storage ") and "\n" not in str(caught.value)
    assert not (tmp_path / "nonexistent").exists()


def test_bad_storage_on_the_command_line(small_faces: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["tune", "--data", str(small_faces), "--runs-dir", str(tmp_path), "--storage", "nope"],
    )
    assert result.exit_code == 1
    assert "error" in result.output and "not a database URL" in result.output


def test_ctrl_c_keeps_finished_trials(
    small_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def train_then_interrupt(config, on_epoch_end=None):
        calls.append(config)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_run(config, on_epoch_end)

    monkeypatch.setattr(tune_objective, "train_run", train_then_interrupt)
    options = _options(small_faces, tmp_path / "runs", trials=3, epochs_per_trial=1)
    with pytest.raises(KeyboardInterrupt, match=r"trial 1 stopped .* 1 finished trials are kept"):
        tune.tune(options)
    study = _load(options)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    # The outputs were written from the finished trial before the interrupt went on.
    assert json.loads((options.folder / "best.json").read_text())["trial"] == 0
    assert not (options.folder / "trials" / "0001").exists()

    monkeypatch.setattr(tune_objective, "train_run", train_run)
    result = tune.tune(options)  # the failed trial does not count: two more are run
    assert result.trials_here == [2, 3]
    states = [t.state for t in _load(options).trials]
    assert states.count(TrialState.COMPLETE) == 3


def test_diverged_trial_fails_and_the_study_goes_on(
    small_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def diverge_once(config, on_epoch_end=None):
        calls.append(config)
        if len(calls) == 1:
            raise TrainingDiverged("cnn-tuned--none: loss became nan in epoch 1")
        return train_run(config, on_epoch_end)

    monkeypatch.setattr(tune_objective, "train_run", diverge_once)
    result = tune.tune(_options(small_faces, tmp_path / "runs", trials=2, epochs_per_trial=1))
    assert result.states_here == ["fail", "complete", "complete"]
    trials = pd.read_csv(result.folder / "trials.csv")
    assert "loss became nan" in trials.loc[0, "reason"]


def _finished(number: int, seconds: float, curve: list[float]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        values=[curve[-1], seconds],
        params={},
        distributions={},
        user_attrs={"seconds_per_100_images": seconds, "val_rmse_by_epoch": curve},
    )


def test_multi_objective_early_stop_needs_domination_at_the_same_epoch() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trial(_finished(0, seconds=0.02, curve=[3.0, 2.0, 1.5]))
    study.add_trial(_finished(1, seconds=0.05, curve=[2.0, 1.2, 1.0]))
    # Slower than trial 0 and worse than it at epoch 2: dominated.
    assert dominated_now(study, 2, val_rmse=2.5, seconds=0.03) == 0
    # Worse than trial 1 at epoch 2 but faster than every trial that beats it: kept.
    assert dominated_now(study, 2, val_rmse=1.9, seconds=0.03) is None
    # The fastest of all is never dominated, however poor its RMSE so far.
    assert dominated_now(study, 1, val_rmse=9.0, seconds=0.01) is None


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variant", ["masked", "aug"])
def test_package_default_spec_is_the_committed_tune_result(variant: str) -> None:
    """The shipped per-variant spec is a valid spec, copied from a real tune run's best.json;
    that study's outputs are kept in tests/data/tune/ (the report's snapshot of them, in
    results/tune/, must agree only while it is a snapshot of the same study)."""
    from fkdbench.models.cnn import variant_spec_path

    # The study that made the default, as tune wrote it: kept in tests/data/ because
    # results/tune/ is rewritten by whoever reports a new study of the same name.
    kept = REPO / "tests" / "data" / "tune" / f"cnn-tuned-{variant}"
    packaged = json.loads(variant_spec_path(variant).read_text())
    CNNSpec.from_json_file(variant_spec_path(variant))  # raises SpecError if it cannot build
    assert packaged == json.loads((kept / "best.json").read_text())
    study = json.loads((kept / "study.json").read_text())
    trials = pd.read_csv(kept / "trials.csv")
    assert study["variant"] == packaged["variant"] == variant
    assert study["study"] == packaged["study"] == f"cnn-tuned-{variant}"
    assert study["trials"]["complete"] == (trials["state"] == "complete").sum() >= 1
    best_row = trials[trials["number"] == packaged["trial"]].iloc[0]
    assert best_row["state"] == "complete"
    assert best_row["val_rmse"] == pytest.approx(packaged["val_rmse"], rel=1e-5)
    assert best_row["val_rmse"] == trials.loc[trials["state"] == "complete", "val_rmse"].min()
    snapshot = REPO / "results" / "tune" / f"cnn-tuned-{variant}"
    if (snapshot / "study.json").is_file():
        same_study = json.loads((snapshot / "study.json").read_text()) == study
        if same_study:
            assert json.loads((snapshot / "best.json").read_text()) == packaged
