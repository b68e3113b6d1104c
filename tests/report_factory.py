"""Inputs for the report's tests, written by hand: nothing is trained, tuned or timed.

Tuning studies (study.json, best.json, pareto.json, trials.csv, figures) and run folders
(config.json, metrics.json, a stand-in model.pt) are the files ``fkdbench tune`` and
``fkdbench train`` write; bench records are built from the record type itself
(:func:`bench_factory.make_bench_record`), so a renamed field breaks the tests.
:func:`write_tune_inputs` writes the Tuned CNN tests' runs folder and bench file;
:func:`result_of` makes the result the section writers read, in memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_factory import make_bench_record
from PIL import Image

from fkdbench import runs
from fkdbench.bench import BenchRecord, append_records
from fkdbench.report import SECTIONS, ReportResult, build_tables
from fkdbench.report.inputs import RunSummary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MASKED = "cnn-tuned-masked"  # two objectives, every figure
NONE_RMSE = "cnn-tuned-none-rmse"  # one objective: no pareto.json, no importances figure
BROKEN = "broken"  # a malformed best.json
SPEC_SOURCE = "tune:cnn-tuned-masked#17"
# (arch, variant) -> (test RMSE, Keras parameters, model.pt bytes)
TUNE_RUNS = {
    ("cnn-tuned", "masked"): (1.7, 250_100, 1_004_000),
    ("cnn-tuned", "none"): (2.1, 300_000, 1_200_000),
    ("cnn-manual", "masked"): (1.8, 235_102, 956_965),
    ("cnn-baseline", "masked"): (1.9, 1_890_846, 7_600_000),  # never benched
}
# The bench records the report must pick: ONNX Runtime at batch 32, 1 thread.
ORT_SECONDS = {"cnn-tuned--masked": 0.02, "cnn-tuned--none": 0.025, "cnn-manual--masked": 0.015}


def png(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 3), shade).save(path)


def write_bench_file(path: Path, records: Sequence[BenchRecord]) -> Path:
    """``records`` as a bench JSON-lines file, written the way ``fkdbench bench`` writes it."""
    Path(path).unlink(missing_ok=True)
    append_records(path, records)
    return Path(path)


def timed(run_name: str, backend: str, seconds: float, **overrides: Any) -> BenchRecord:
    """A trained run's record: ``seconds`` per 100 images in every timed pass."""
    arch, variant = run_name.split("--")
    return make_bench_record(
        run_name=run_name,
        arch=arch,
        variant=variant,
        backend=backend,
        seconds_per_100_images=[seconds] * 3,
        **{"threads": 1, "timestamp": "2026-01-01T00:00:00+00:00", **overrides},
    )


# -- tuning studies ---------------------------------------------------------------------------


def trial(number: int, val_rmse: float, seconds: float, variant: str) -> dict:
    return {
        "variant": variant,
        "trial": number,
        "val_rmse": val_rmse,
        "seconds_per_100_images": seconds,
        "parameters": {"pytorch": 249_000 + number, "keras": 250_000 + number},
        "onnx_bytes": 1_000_000 + number,
        "train": {"lr": 0.002, "batch_size": 64, "epochs": 3},
        "spec": {"conv_blocks": [{"filters": 16}], "dense_units": [64], "dropout": 0.2},
    }


def _study_record(study: str, variant: str, objective: str) -> dict:
    return {
        "format_version": 1,
        "study": study,
        "storage": f"sqlite:///runs/tune/{study}.db",
        "objective": objective,
        "variant": variant,
        "data_dir": "data/synthetic",
        "epochs_per_trial": 3,
        "max_params": 2_000_000,
        "trials": {"complete": 24, "pruned": 5, "failed": 1, "running": 0},
        "wall_seconds": 1234.5,
        "first_trial_start": "2026-01-01T00:00:00+00:00",
        "last_trial_end": "2026-01-01T00:30:00+00:00",
        "environment": {"cpu_model": "Test CPU"},
    }


def _trials_csv(front: list[dict], path: Path) -> None:
    rows = [
        {
            "number": trial["trial"],
            "state": "COMPLETE",
            "val_rmse": trial["val_rmse"],
            "seconds_per_100_images": trial["seconds_per_100_images"],
            "params_keras": trial["parameters"]["keras"],
            "params_pytorch": trial["parameters"]["pytorch"],
            "onnx_bytes": trial["onnx_bytes"],
        }
        for trial in front
    ]
    pd.DataFrame(rows).to_csv(path, index=False)


def write_study(
    tune_dir: Path,
    study: str,
    variant: str,
    objective: str,
    front: list[dict],
    figures: tuple[str, ...],
) -> Path:
    """A study folder as `fkdbench tune` writes it; the best trial is the front's lowest RMSE."""
    folder = tune_dir / study
    folder.mkdir(parents=True)
    best = min(front, key=lambda trial: trial["val_rmse"])
    (folder / "study.json").write_text(json.dumps(_study_record(study, variant, objective)))
    (folder / "best.json").write_text(
        json.dumps({"format_version": 1, "study": study, **best}, indent=2)
    )
    if objective == "rmse+latency":
        pareto = {
            "format_version": 1,
            "study": study,
            "objectives": ["val_rmse", "seconds_per_100_images"],
            "trials": sorted(front, key=lambda trial: trial["seconds_per_100_images"]),
        }
        (folder / "pareto.json").write_text(json.dumps(pareto))
    _trials_csv(front, folder / "trials.csv")
    for shade, name in enumerate(figures):
        png(folder / "figures" / f"{name}.png", 40 * shade)
    return folder


# -- run folders ------------------------------------------------------------------------------


def write_run(runs_dir: Path, arch: str, variant: str, spec_source: str | None) -> Path:
    """A finished run of TUNE_RUNS (metrics.json as train writes it, no history)."""
    rmse, keras, model_bytes = TUNE_RUNS[(arch, variant)]
    name = runs.run_name(arch, variant)
    folder = runs_dir / name
    folder.mkdir(parents=True)
    model = {"arch": arch, "input_size": 96, "scheme": "kaggle15"}
    if spec_source is not None:
        model["spec_source"] = spec_source
    config = {"run_name": name, "model": model, "train": {"variant": variant}, "data": {}}
    (folder / runs.CONFIG_FILE).write_text(json.dumps(config))
    metrics = {
        "arch": arch,
        "run_name": name,
        "variant": variant,
        "weights_mode": "scratch",
        "test_rmse": rmse,
        "parameters": {"pytorch": keras - 480, "keras": keras},
        "model_file_bytes": model_bytes,
    }
    (folder / runs.METRICS_FILE).write_text(json.dumps(metrics))
    (folder / runs.MODEL_FILE).write_bytes(b"not read by the report")
    return folder


# -- runs with seeds, convergence and per-face errors (run format 2) --------------------------

TEST_FACES = 40
COORDINATES_PER_FACE = 30  # kaggle15: 15 keypoints x 2
MANIFEST = "c" * 64


def per_face_errors(rmse: float, seed: int = 0, faces: int = TEST_FACES) -> list[float]:
    """Per-face squared-error sums that vary face to face and pool to exactly ``rmse``."""
    spread = np.random.default_rng(seed).uniform(0.5, 1.5, size=faces)
    scaled = spread / spread.mean() * rmse**2 * COORDINATES_PER_FACE
    return [float(value) for value in scaled]


def summary(
    arch: str = "cnn-manual",
    variant: str = "none",
    rmse: float = 2.0,
    *,
    seed: int | None = None,
    per_face: Sequence[float] | None = (),
    **overrides: Any,
) -> RunSummary:
    """A finished, converged run as the report reads it; ``per_face=None`` derives per-face
    errors pooling to ``rmse`` (seeded by ``seed``)."""
    if per_face is None:
        per_face = per_face_errors(rmse, seed or 0)
    if per_face:
        rmse = float(np.sqrt(sum(per_face) / (COORDINATES_PER_FACE * len(per_face))))
    fields = {
        "run_name": runs.run_name(arch, variant, overrides.get("weights_mode", "scratch"), seed),
        "arch": arch,
        "variant": variant,
        "test_rmse": rmse,
        "test_nme": rmse / 40,
        "mean_shape_rmse": 4.0,
        "stop_reason": "completed",
        "seed": seed,
        "converged": True,
        "convergence_rule": "early stopping",
        "convergence_detail": "patience 5 ran out at epoch 12",
        "per_face_squared_errors": tuple(per_face),
        "per_face_coordinates": (COORDINATES_PER_FACE,) * len(per_face),
        "manifest_sha256": MANIFEST,
        "test_rows": len(per_face) or TEST_FACES,
        "epochs_run": 12,
    }
    return RunSummary(**{**fields, **overrides})


def write_seeded_run(
    runs_dir: Path,
    arch: str,
    variant: str,
    seed: int,
    rmse: float,
    *,
    stop_reason: str = "completed",
    converged: bool = True,
) -> Path:
    """A finished format-2 run folder: metrics.json with seed, convergence and per-face
    errors; training.json with the seconds and the machine."""
    name = runs.run_name(arch, variant, seed=seed)
    folder = runs_dir / name
    folder.mkdir(parents=True)
    model = {"arch": arch, "input_size": 96, "scheme": "kaggle15"}
    data = {"manifest_sha256": MANIFEST, "source": "synthetic", "seed": 0}
    config = {"run_name": name, "model": model, "train": {"variant": variant}, "data": data}
    (folder / runs.CONFIG_FILE).write_text(json.dumps(config))
    per_face = per_face_errors(rmse, seed)
    metrics = {
        "format_version": 2,
        "arch": arch,
        "run_name": name,
        "variant": variant,
        "weights_mode": "scratch",
        "seed": seed,
        "test_rmse": rmse,
        "mean_shape_rmse": 4.0,
        "stop_reason": stop_reason,
        "epochs_run": 3 if stop_reason == "time-limited" else 12,
        "convergence": {
            "converged": converged,
            "rule": "val RMSE flat: < 1% better over the last 3 epochs",
            "detail": "flat from epoch 9" if converged else "still 4% better per epoch",
        },
        "test_per_face": {
            "squared_error_sum": per_face,
            "coordinates": [COORDINATES_PER_FACE] * len(per_face),
        },
        "rows": {"test": len(per_face)},
        "parameters": {"pytorch": 1000, "keras": 1000},
    }
    (folder / runs.METRICS_FILE).write_text(json.dumps(metrics))
    training = {
        "format_version": 2,
        "run_name": name,
        "training_seconds": 12.5,
        "images_per_second": 800.0,
        "environment": {"cpu_model": "Test CPU", "cpu_cores": 2},
    }
    (folder / runs.TRAINING_FILE).write_text(json.dumps(training))
    (folder / runs.MODEL_FILE).write_bytes(b"not read by the report")
    return folder


def write_tune_inputs(root: Path) -> dict[str, Path]:
    """Three studies (one broken), the TUNE_RUNS folders and their ONNX Runtime records."""
    runs_dir = root / "runs"
    tune_dir = runs_dir / "tune"
    masked_front = [
        trial(17, 1.61, 0.0123, "masked"),
        trial(4, 1.75, 0.0081, "masked"),
        trial(9, 1.68, 0.0100, "masked"),
    ]
    write_study(
        tune_dir, MASKED, "masked", "rmse+latency", masked_front,
        ("history", "pareto", "importances"),
    )  # fmt: skip
    write_study(tune_dir, NONE_RMSE, "none", "rmse", [trial(2, 2.2, 0.03, "none")], ("history",))
    write_study(tune_dir, BROKEN, "knn", "rmse", [trial(1, 2.0, 0.02, "knn")], ())
    (tune_dir / BROKEN / "best.json").write_text('{"format_version": 1, "trial": ')
    (tune_dir / "notes").mkdir()  # a folder without study.json is not a study
    (tune_dir / f"{MASKED}.db").write_bytes(b"")  # the Optuna storage beside the folders
    for arch, variant in TUNE_RUNS:
        write_run(runs_dir, arch, variant, SPEC_SOURCE if arch == "cnn-tuned" else None)
    records = [timed(name, "onnxruntime", seconds) for name, seconds in ORT_SECONDS.items()]
    records += [
        # Another backend, and a setting fewer records share: neither is the ORT number.
        timed("cnn-tuned--masked", "torch", 0.5),
        timed("cnn-tuned--masked", "onnxruntime", 0.9, batch_size=1),
    ]
    bench_file = write_bench_file(root / "bench.jsonl", records)
    return {"root": root, "runs": runs_dir, "tune": tune_dir, "bench": bench_file}


def result_of(
    run_summaries: Sequence[Any] = (),
    bench_records: Sequence[dict[str, Any]] = (),
    tune_studies: Sequence[Any] = (),
    bench_file: Path | None = None,
    peers: Sequence[Any] = (),
) -> ReportResult:
    """What ``build_report`` hands the section writers, made in memory: no file written,
    no figure drawn (the video records are read from beside ``bench_file``, as there)."""
    from fkdbench.report.video import read_video_beside

    return ReportResult(
        out_dir=Path("out"),
        markdown=None,
        csv_files=[],
        json_file=None,
        figures={},
        missing_figures={},
        sections=list(SECTIONS),
        tables=build_tables(
            run_summaries, bench_records, tune_studies, (), peers, read_video_beside(bench_file)
        ),
        tune_studies=list(tune_studies),
        run_summaries=list(run_summaries),
        bench_records=list(bench_records),
        bench_file=bench_file,
    )
