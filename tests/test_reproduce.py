"""reproduce: the five steps in order, each given what the one before produced. The steps
themselves are stubs here (each has its own tests; test_cli.py runs the real flow)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from fkdbench import reproduce as reproduce_module
from fkdbench import runs
from fkdbench.presets import load_preset
from fkdbench.reproduce import (
    STEPS,
    BenchExtras,
    bench_settings,
    finished_folders,
    reproduce,
)
from fkdbench.train import RunResult


def _preset(tmp_path: Path, bench: dict) -> Path:
    path = tmp_path / "two.json"
    document = {"name": "two", "runs": [{"arch": "cnn-manual", "variants": ["none", "masked"]}]}
    path.write_text(json.dumps({**document, "bench": bench}))
    return path


def _result(runs_dir: Path, variant: str, status: str) -> RunResult:
    folder = runs_dir / f"cnn-manual--{variant}"
    if status == "finished":
        folder.mkdir(parents=True)
        for name in (runs.CONFIG_FILE, runs.MODEL_FILE, runs.METRICS_FILE):
            (folder / name).write_text("{}")
    return RunResult(folder.name, folder, "cnn-manual", variant, "scratch", status)


def test_steps_run_in_order_on_what_the_last_one_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, object]] = []
    data_dir, runs_dir = tmp_path / "data" / "synthetic", tmp_path / "runs"

    def fake_prepare(options):
        calls.append(("prepare", (options.n_train, options.n_test, options.seed)))
        return SimpleNamespace(data_dir=data_dir)

    def fake_train(preset, data_dir, runs_dir, force, quiet, on_run_end, seeds, **where):
        calls.append(("train", (preset.name, data_dir, seeds)))
        results = [_result(runs_dir, "none", "finished"), _result(runs_dir, "masked", "failed")]
        for result in results:
            on_run_end(result)
        return results

    def fake_export(folders, force, quiet, on_done):
        calls.append(("export", [folder.name for folder in folders]))

    def fake_bench(targets, options, on_done):
        calls.append(("bench", ([target.name for target in targets], options.repeats)))
        return SimpleNamespace(records=[object()] * 3)

    def fake_report(runs_dir, bench_file, results_dir, quiet):
        calls.append(("report", bench_file))
        return SimpleNamespace(markdown=results_dir / "REPORT.md")

    for name, fake in (
        ("prepare", fake_prepare),
        ("train_matrix", fake_train),
        ("export_all", fake_export),
        ("bench", fake_bench),
        ("build_report", fake_report),
    ):
        monkeypatch.setattr(reproduce_module, name, fake)
    preset = _preset(tmp_path, {"repeats": 2, "time_untrained": False})
    result = reproduce(
        preset, tmp_path / "data", runs_dir, tmp_path / "results", n_train=60, n_test=6, quiet=True
    )

    assert [name for name, _ in calls] == list(STEPS)
    assert calls[0][1] == (60, 6, 0)
    assert calls[1][1] == ("two", data_dir, None)
    # The failed run is neither exported nor benched; untrained architectures are not
    # timed when the preset says so.
    assert calls[2][1] == ["cnn-manual--none"]
    assert calls[3][1] == (["cnn-manual--none"], 2)
    assert calls[4][1] == tmp_path / "results" / "bench.jsonl"
    assert result.bench_records == 3 and result.report == tmp_path / "results" / "REPORT.md"
    assert [r.status for r in result.runs] == ["finished", "failed"]
    assert list(result.step_seconds) == list(STEPS)
    assert result.seconds >= sum(result.step_seconds.values())


def test_bench_settings_take_the_preset_under_the_overrides(tmp_path: Path) -> None:
    preset = load_preset(_preset(tmp_path, {"repeats": 2, "backends": ["torch"]}))
    options, time_untrained, extras = bench_settings(preset, {"repeats": 7}, tmp_path, True)
    assert (options.repeats, options.backends, time_untrained) == (7, ("torch",), True)
    assert options.results == tmp_path / "bench.jsonl" and options.skip_existing
    assert extras == BenchExtras(video_bench=False, peers=())
    overrides = {"time_untrained": False, "video_bench": True, "peers": ["dlib-ert68"]}
    _, time_untrained, extras = bench_settings(preset, overrides, tmp_path, quiet=True)
    assert time_untrained is False
    assert extras == BenchExtras(video_bench=True, peers=("dlib-ert68",))


def test_the_bench_step_times_video_and_scores_peers_when_the_preset_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """video_bench: one folder per architecture (the finished none run over the masked
    one) through bench_video on ONNX Runtime, on the generated clip under data/video/;
    peers: each scored on the prepared data, with reuse."""
    calls: dict[str, object] = {}
    runs_dir, data_dir = tmp_path / "runs", tmp_path / "data" / "synthetic"
    results = [_result(runs_dir, variant, "finished") for variant in ("masked", "none")]
    for result in results:
        config = {"model": {"arch": "cnn-manual"}, "train": {"variant": result.variant}}
        (result.run_dir / runs.CONFIG_FILE).write_text(json.dumps(config))
    monkeypatch.setattr(reproduce_module, "prepare", lambda o: SimpleNamespace(data_dir=data_dir))
    monkeypatch.setattr(reproduce_module, "train_matrix", lambda *a, **k: results)
    monkeypatch.setattr(reproduce_module, "export_all", lambda *a, **k: None)
    monkeypatch.setattr(reproduce_module, "bench", lambda *a, **k: SimpleNamespace(records=[]))
    monkeypatch.setattr(reproduce_module, "build_report", lambda *a, **k: SimpleNamespace(
        markdown=None))  # fmt: skip

    def fake_bench_video(folders, clip, options):
        calls["video"] = ([folder.name for folder in folders], clip, options.backends)

    def fake_clip(folder):
        return folder / "clip.mp4"

    def fake_score(name, data_dir, runs_dir, quiet, reuse):
        calls["peer"] = (name, data_dir, reuse)
        return SimpleNamespace(line=lambda: f"{name}: scored")

    monkeypatch.setattr(reproduce_module, "bench_video", fake_bench_video)
    monkeypatch.setattr("fkdbench.faces.synthetic_video.bench_clip", fake_clip)
    monkeypatch.setattr("fkdbench.peers.score.score_peer", fake_score)
    bench = {"time_untrained": False, "video_bench": True, "peers": ["dlib-ert68"]}
    reproduce(_preset(tmp_path, bench), tmp_path / "data", runs_dir, tmp_path / "results",
              quiet=True)  # fmt: skip
    clip = tmp_path / "data" / "video" / "clip.mp4"
    assert calls["video"] == (["cnn-manual--none"], clip, ("onnxruntime",))
    assert calls["peer"] == ("dlib-ert68", data_dir, True)


def test_finished_folders_leave_out_failed_and_unfinished_runs(tmp_path: Path) -> None:
    done = _result(tmp_path, "none", "finished")
    skipped = _result(tmp_path, "aug", "finished")
    skipped.status = "skipped"
    unfinished = _result(tmp_path, "knn", "finished")
    (unfinished.run_dir / runs.METRICS_FILE).unlink()
    failed = _result(tmp_path, "masked", "failed")
    assert finished_folders([done, skipped, unfinished, failed]) == [done.run_dir, skipped.run_dir]


def test_a_prepared_data_set_replaces_the_synthetic_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--data: nothing is prepared; --seeds reaches the matrix; a real-faces run-records
    file under the results folder is handed to the report to compare rankings with."""
    calls: dict[str, object] = {}
    prepared = tmp_path / "real"
    prepared.mkdir()
    (prepared / "manifest.json").write_text(json.dumps({"image_size": 96}))
    results_dir = tmp_path / "results"
    (results_dir / "real-faces").mkdir(parents=True)
    (results_dir / "real-faces" / "runs.jsonl").write_text("")

    def no_prepare(options):
        raise AssertionError("prepare must not run with a prepared data_dir")

    def fake_train(preset, data_dir, runs_dir, force, quiet, on_run_end, seeds, **where):
        calls["train"] = (data_dir, seeds)
        return [_result(runs_dir, "none", "finished")]

    def fake_report(runs_dir, bench_file, out_dir, quiet, compare_with=None):
        calls["compare_with"] = compare_with
        return SimpleNamespace(markdown=out_dir / "REPORT.md")

    monkeypatch.setattr(reproduce_module, "prepare", no_prepare)
    monkeypatch.setattr(reproduce_module, "train_matrix", fake_train)
    monkeypatch.setattr(reproduce_module, "export_all", lambda *a, **k: None)
    monkeypatch.setattr(reproduce_module, "bench", lambda *a, **k: SimpleNamespace(records=[]))
    monkeypatch.setattr(reproduce_module, "build_report", fake_report)
    preset = _preset(tmp_path, {"time_untrained": False})
    result = reproduce(
        preset, runs_dir=tmp_path / "runs", results_dir=results_dir, data_dir=prepared,
        seeds=3, quiet=True,
    )  # fmt: skip
    assert result.data_dir == prepared and calls["train"] == (prepared, 3)
    assert calls["compare_with"] == results_dir / "real-faces" / "runs.jsonl"
    # The real-faces report itself compares with nothing.
    reproduce(
        preset, runs_dir=tmp_path / "runs-real", results_dir=results_dir / "real-faces",
        data_dir=prepared, quiet=True,
    )  # fmt: skip
    assert calls["compare_with"] is None


def test_a_data_dir_that_is_not_prepared_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"manifest\.json: no manifest"):
        reproduce(
            _preset(tmp_path, {}), runs_dir=tmp_path / "runs", results_dir=tmp_path / "r",
            data_dir=tmp_path / "nothing", quiet=True,
        )  # fmt: skip
