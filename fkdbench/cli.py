"""The command line. Each command parses its options and calls one library function;
no logic lives here. Errors the user can fix print one line and exit 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from fkdbench import __version__
from fkdbench.progress import console

app = typer.Typer(
    name="fkdbench",
    help="Benchmark facial keypoint detection models: accuracy, size and CPU speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts use [brackets] for defaults; rich markup would swallow them.
    rich_markup_mode=None,
)

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fkdbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Benchmark facial keypoint detection models: accuracy, size and CPU speed."""


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's errors into one line on stderr and a non-zero exit."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        # A library may say what was kept (tune: the finished trials); the default holds
        # for every command, since all of them write atomically.
        said = str(interrupt) or "nothing half-written was kept"
        console.print(f"[red]interrupted[/red]: {said}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except (ValueError, OSError) as error:  # DataError and friends are ValueErrors
        console.print(f"[red]error[/red]: {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def prepare(
    source: Annotated[
        str, typer.Option(help="Where the data comes from: synthetic | kaggle | wflw | 300w | csv.")
    ] = "synthetic",
    path: Annotated[
        Path | None,
        typer.Option(
            help="kaggle: folder with training.csv/.zip (or one zip); wflw: the annotation "
            "list (list_98pt_rect_attr_*.txt); 300w: folder of images with .pts files; "
            "csv: the landmark CSV."
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="wflw, csv: the folder image paths are relative to.")
    ] = None,
    scheme: Annotated[
        str,
        typer.Option(help="Keypoint scheme: kaggle15 | ibug68 | wflw98 (synthetic and csv)."),
    ] = "kaggle15",
    margin: Annotated[
        float, typer.Option(help="wflw, 300w, csv: crop margin around the face box.")
    ] = 0.25,
    name: Annotated[
        str | None, typer.Option(help="Data set folder name under --data-root [source].")
    ] = None,
    data_root: Annotated[Path, typer.Option(help="Where data sets live.")] = Path("data"),
    n_train: Annotated[int, typer.Option(help="Synthetic labelled rows.")] = 7049,
    n_test: Annotated[int, typer.Option(help="Synthetic unlabelled rows (test.csv).")] = 1783,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 96,
    seed: Annotated[int, typer.Option(help="Seed of faces, missing labels and split.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share held out for validation.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share held out for test.")] = 0.15,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Drop malformed rows and report them instead of stopping.")
    ] = False,
    preview: Annotated[
        Path | None, typer.Option(help="Also save a PNG grid of samples with keypoints.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes drawing faces [all cores].")
    ] = None,
    force: Annotated[bool, typer.Option(help="Redo even if already prepared.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Make a data set: draw synthetic faces, or read Kaggle, WFLW, 300-W or landmark CSV."""
    from fkdbench.data.prepare import PrepareOptions
    from fkdbench.data.prepare import prepare as run_prepare

    options = PrepareOptions(
        source=source,
        path=path,
        images=images,
        scheme=scheme,
        margin=margin,
        name=name,
        data_root=data_root,
        n_train=n_train,
        n_test=n_test,
        image_size=size,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        skip_bad_rows=skip_bad_rows,
        preview=preview,
        workers=workers,
        force=force,
        quiet=quiet,
    )
    with _user_errors():
        result = run_prepare(options)
    if result.skipped_existing:
        return
    manifest = result.manifest
    counts = manifest["counts"]
    splits = ", ".join(f"{split} {info['rows']}" for split, info in counts["splits"].items())
    typer.echo(
        f"prepared {result.data_dir} in {result.seconds:.1f} s: "
        f"{counts['labelled_rows']} labelled ({splits}), "
        f"{counts['unlabelled_rows']} unlabelled; "
        f"complete rows {manifest['complete_row_fraction']:.1%}; "
        f"mean-shape test RMSE {manifest['mean_shape_rmse']['test']:.2f} px"
    )
    if result.bad_rows:
        first = result.bad_rows[0]
        typer.echo(
            f"skipped {len(result.bad_rows)} bad row(s); first: line {first.line}: {first.reason}"
        )
    if result.preview:
        typer.echo(f"preview: {result.preview}")


@app.command()
def train(
    arch: Annotated[
        str | None, typer.Argument(help="Architecture (see `fkdbench models`); omit with --all.")
    ] = None,
    variant: Annotated[
        str, typer.Option(help="Data variant: none | ffill | knn | aug | masked.")
    ] = "none",
    all_runs: Annotated[
        bool, typer.Option("--all", help="Train every run of --preset; finished runs skip.")
    ] = False,
    preset: Annotated[
        str, typer.Option(help="With --all: quick | paper, or a preset JSON file.")
    ] = "quick",
    data: Annotated[Path, typer.Option(help="Prepared data folder.")] = Path("data/synthetic"),
    runs_dir: RunsDirOption = Path("runs"),
    epochs: Annotated[int | None, typer.Option(help="Most epochs [30; preset's].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size [64].")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate [1e-3].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed [0].")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock cap per run, minutes.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early stopping: epochs without improvement [10].")
    ] = None,
    ae_pretrain_epochs: Annotated[
        int | None, typer.Option(help="ae-cnn: reconstruction epochs before keypoints [10].")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    weights: Annotated[
        Path | None,
        typer.Option(help="Local pretrained backbone weights (.pth/.safetensors, timm keys)."),
    ] = None,
    weights_mode: Annotated[
        str, typer.Option(help="With --weights: frozen (head only) | finetuned (all layers).")
    ] = "finetuned",
    spec: Annotated[
        Path | None, typer.Option(help="cnn-tuned: the architecture spec JSON file.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads [torch's].")] = None,
    force: Annotated[bool, typer.Option(help="Retrain finished runs; drop resume state.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train one architecture on one data variant, or a whole preset with --all."""
    from fkdbench.train import TrainConfig, train_matrix, train_run

    # Only options the user set override the preset's (or the config's) defaults.
    overrides = {
        key: value
        for key, value in dict(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_minutes=max_minutes,
            patience=patience,
            ae_pretrain_epochs=ae_pretrain_epochs,
        ).items()
        if value is not None
    }
    if spec is not None:
        overrides["model_kwargs"] = {"spec": str(spec)}
    with _user_errors():
        if all_runs:
            if arch is not None:
                raise ValueError("give either ARCH or --all, not both")
            results = train_matrix(
                preset,
                data_dir=data,
                runs_dir=runs_dir,
                force=force,
                quiet=quiet,
                device=device,
                num_threads=threads,
                **overrides,
            )
        else:
            if arch is None:
                raise ValueError("name an architecture (e.g. cnn-manual) or use --all")
            config = TrainConfig(
                arch=arch,
                variant=variant,
                data_dir=data,
                runs_dir=runs_dir,
                weights=weights,
                weights_mode=weights_mode,
                device=device,
                num_threads=threads,
                force=force,
                quiet=quiet,
                **overrides,
            )
            results = [train_run(config)]
    _report_runs(results)


@app.command()
def models() -> None:
    """List the registered architectures with their parameter counts."""
    from fkdbench.models import count_parameters, create_model, get_arch_info, list_models

    for name in list_models():
        info = get_arch_info(name)
        counts = count_parameters(create_model(name))
        typer.echo(
            f"{name:14s} {counts.pytorch:>12,d} params ({counts.keras:,d} Keras)  "
            f"{info.description}"
        )


RunsOption = Annotated[
    list[str] | None,
    typer.Argument(help="Run names (folders under --runs-dir) or run folders; or use --all."),
]
RunsDirOption = Annotated[Path, typer.Option(help="Where run folders live.")]
DataOverrideOption = Annotated[
    Path | None,
    typer.Option("--data", help="Prepared data folder to score/time on [each run's own]."),
]


@app.command()
def export(
    run_names: RunsOption = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every finished run.")] = False,
    runs_dir: RunsDirOption = Path("runs"),
    data: DataOverrideOption = None,
    exporter: Annotated[
        str, typer.Option(help="auto (dynamo, then TorchScript) | dynamo | torchscript.")
    ] = "auto",
    int8: Annotated[
        bool, typer.Option(help="Also write model.int8.onnx (static QDQ quantization).")
    ] = True,
    int8_activations: Annotated[
        str, typer.Option(help="INT8 activation type: uint8 (fast on x86) | int8 (signed).")
    ] = "uint8",
    force: Annotated[bool, typer.Option(help="Export again even if up to date.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Export runs to ONNX (checked against PyTorch) and INT8 ONNX, scoring both."""
    from fkdbench.export import export_all, export_targets

    with _user_errors():
        folders = export_targets(runs_dir, run_names or [], all_runs)
        records = export_all(
            folders,
            data_dir=data,
            exporter=exporter,
            int8=int8,
            int8_activations=int8_activations,
            force=force,
            quiet=quiet,
        )
    for record in records:
        scores = (
            f"test RMSE torch {_pixels(record.test_rmse_torch)}, onnx "
            f"{_pixels(record.test_rmse_onnx)}, int8 {_pixels(record.test_rmse_int8)}"
            if record.trained
            else "untrained"
        )
        typer.echo(
            f"{record.run_name}: {record.exporter} exporter, parity "
            f"{record.parity_max_abs_diff_pixels:.1e} px; {scores}"
        )


@app.command()
def bench(
    run_names: RunsOption = None,
    all_models: Annotated[
        bool,
        typer.Option("--all", help="Every finished run, plus every other architecture untrained."),
    ] = False,
    runs_dir: RunsDirOption = Path("runs"),
    data: DataOverrideOption = None,
    backend: Annotated[
        list[str] | None,
        typer.Option(help="torch | onnxruntime | onnxruntime-int8; repeat for several [all]."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads for every backend [this machine's cores].")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per call when timing.")] = 32,
    repeats: Annotated[int, typer.Option(help="Timed passes over the test split.")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed passes first.")] = 1,
    latency_samples: Annotated[int, typer.Option(help="Batch-1 calls timed.")] = 200,
    results: Annotated[Path, typer.Option(help="JSON-lines file records are appended to.")] = Path(
        "results/bench.jsonl"
    ),
    skip_existing: Annotated[
        bool, typer.Option(help="Skip run/backend pairs already in --results (same settings).")
    ] = False,
    baseline: Annotated[
        Path | None, typer.Option(help="Regression gate: compare with this baseline file.")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Gate: allowed slow-down, 0.25 = 25%.")] = 0.25,
    save_baseline: Annotated[
        Path | None, typer.Option(help="Write this run's times as a baseline file.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Time models on CPU (seconds per 100 images, batch-1 latency) on every backend."""
    from fkdbench import bench as benchmark

    with _user_errors():
        options = benchmark.BenchOptions(
            backends=tuple(backend) if backend else benchmark.BACKENDS,
            threads=threads,
            batch_size=batch_size,
            warmup_passes=warmup,
            repeats=repeats,
            latency_samples=latency_samples,
            data_dir=data,
            results=results,
            skip_existing=skip_existing,
            quiet=quiet,
        )
        folders = benchmark.bench_targets(runs_dir, run_names or [], all_models, data)
        records, gate = benchmark.bench_and_gate(
            folders, options, baseline, tolerance, save_baseline
        )
    if records:
        typer.echo(benchmark.summary_table(records).to_markdown(index=False, floatfmt=".4g"))
    typer.echo(f"{len(records)} record(s) appended to {results}")
    if save_baseline is not None:
        typer.echo(f"baseline written to {save_baseline}")
    if gate is not None:
        for line in benchmark.gate_report(gate):
            typer.echo(line)
        if not gate.passed:
            raise typer.Exit(1)


@app.command()
def predict(
    model: Annotated[
        Path, typer.Argument(help="model.onnx / model.int8.onnx, a run folder, or model.pt.")
    ],
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders (searched recursively).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where keypoints.csv and overlays/ go.")] = Path(
        "predictions"
    ),
    overlays: Annotated[bool, typer.Option(help="Write one PNG per image.")] = True,
    submission: Annotated[
        Path | None,
        typer.Option(
            help="Kaggle folder/zip with test.csv + IdLookupTable.csv: write "
            "--out/submission.csv instead."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads [all cores].")] = None,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Skip unreadable images and report them.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Run a trained model on your own images (any size; keypoints in their pixels)."""
    from fkdbench.predict import predict_images, write_submission

    with _user_errors():
        if submission is not None:
            path = write_submission(model, submission, out / "submission.csv", threads)
            typer.echo(f"submission: {path}")
            return
        if not images:
            raise ValueError("name image files or folders (or use --submission)")
        result = predict_images(model, images, out, threads, overlays, skip_bad_images, quiet)
    typer.echo(
        f"{result.images} image(s) in {result.seconds:.1f} s: {result.keypoints_csv}"
        + (f", {len(result.overlays)} overlays in {out / 'overlays'}" if result.overlays else "")
    )
    for problem in result.skipped:
        typer.echo(f"skipped: {problem}")


@app.command()
def report(
    runs_dir: RunsDirOption = Path("runs"),
    bench_file: Annotated[Path, typer.Option(help="Bench records (JSON lines).")] = Path(
        "results/bench.jsonl"
    ),
    out: Annotated[Path, typer.Option(help="Where REPORT.md, the CSVs and figures/ go.")] = Path(
        "results"
    ),
    report_format: Annotated[
        list[str] | None,
        typer.Option("--format", help="md | csv | json; repeat for several [all]."),
    ] = None,
    from_records: Annotated[
        bool,
        typer.Option(help="Rebuild from --out/runs.jsonl instead of the run folders."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Write the papers' tables and figures, measured here, beside the papers' numbers."""
    from fkdbench.report import FORMATS, build_report

    with _user_errors():
        result = build_report(
            None if from_records else runs_dir,
            bench_file,
            out,
            formats=tuple(report_format) if report_format else FORMATS,
            quiet=quiet,
        )
    for path in result.paths:
        typer.echo(str(path))
    for name, reason in result.missing_figures.items():
        typer.echo(f"figure {name} not drawn: {reason}")


@app.command()
def tune(
    variant: Annotated[
        str, typer.Option(help="Data variant: none | ffill | knn | aug | masked.")
    ] = "none",
    trials: Annotated[
        int,
        typer.Option(
            help="Trials the study should have trained in all, every worker's counted "
            "(specs rejected before training do not count); 0 rewrites the outputs only."
        ),
    ] = 20,
    objective: Annotated[
        str,
        typer.Option(help="rmse+latency (Pareto front of val RMSE and CPU time) | rmse."),
    ] = "rmse+latency",
    study: Annotated[
        str | None,
        typer.Option(help="Study to create, resume or join [cnn-tuned-<variant>]."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Database URL (any Optuna supports, e.g. postgresql://user:pass@host/db) "
            "[sqlite:///<runs-dir>/tune/<study>.db]."
        ),
    ] = None,
    data: Annotated[Path, typer.Option(help="Prepared data folder.")] = Path("data/synthetic"),
    runs_dir: RunsDirOption = Path("runs"),
    epochs: Annotated[int, typer.Option(help="Training epochs of every trial.")] = 4,
    max_params: Annotated[
        int, typer.Option(help="Reject specs over this many (Keras) parameters before training.")
    ] = 2_000_000,
    max_latency: Annotated[
        float | None,
        typer.Option(
            help="Reject specs slower than this many ONNX Runtime s/100 images (timed before "
            "training) [no limit]."
        ),
    ] = None,
    trial_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock cap on each trial's training [none].")
    ] = None,
    max_train_rows: Annotated[
        int | None, typer.Option(help="Train each trial on at most this many rows [all].")
    ] = None,
    max_val_rows: Annotated[
        int | None, typer.Option(help="Validate on the first this-many rows [all].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every trial's training.")] = 0,
    sampler_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the sampler [--seed]; give concurrent workers different ones."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads for training and timing [every usable core].")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Search cnn-tuned specs with Optuna for validation RMSE and ONNX Runtime CPU time."""
    from fkdbench.tune import TuneOptions
    from fkdbench.tune import tune as run_tune

    with _user_errors():
        result = run_tune(
            TuneOptions(
                variant=variant,
                trials=trials,
                objective=objective,
                study=study,
                storage=storage,
                data_dir=data,
                runs_dir=runs_dir,
                epochs_per_trial=epochs,
                max_params=max_params,
                max_seconds_per_100_images=max_latency,
                trial_minutes=trial_minutes,
                max_train_rows=max_train_rows,
                max_val_rows=max_val_rows,
                seed=seed,
                sampler_seed=sampler_seed,
                threads=threads,
                quiet=quiet,
            )
        )
    counts = ", ".join(f"{count} {state}" for state, count in result.counts.items() if count)
    typer.echo(
        f"study {result.study} ({result.storage}): {counts or 'no trials'}; "
        f"{len(result.trials_here)} run here in {result.seconds / 60:.1f} min"
    )
    if result.best is not None:
        best = result.best
        typer.echo(
            f"best: trial {best['trial']}, val RMSE {best['val_rmse']:.3f} px, "
            f"{best['seconds_per_100_images']:.4f} s/100 images, "
            f"{best['parameters']['keras']:,} params; Pareto front: {result.pareto_size} trials"
        )
    for path in result.written:
        typer.echo(str(path))


@app.command()
def reproduce(
    preset: Annotated[str, typer.Option(help="quick | paper, or a preset JSON file.")] = "quick",
    data_root: Annotated[Path, typer.Option(help="Where data sets live.")] = Path("data"),
    runs_dir: RunsDirOption = Path("runs"),
    results_dir: Annotated[
        Path, typer.Option(help="Where bench.jsonl, REPORT.md and figures go.")
    ] = Path("results"),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data set.")] = 0,
    n_train: Annotated[int, typer.Option(help="Synthetic labelled rows.")] = 7049,
    n_test: Annotated[int, typer.Option(help="Synthetic unlabelled rows.")] = 1783,
    force: Annotated[bool, typer.Option(help="Retrain and re-export finished runs.")] = False,
    quiet: QuietOption = False,
) -> None:
    """The whole flow on the synthetic default: prepare, train, export, bench, report."""
    from fkdbench.reproduce import reproduce as run_reproduce

    with _user_errors():
        result = run_reproduce(
            preset=preset,
            data_root=data_root,
            runs_dir=runs_dir,
            results_dir=results_dir,
            seed=seed,
            n_train=n_train,
            n_test=n_test,
            force=force,
            quiet=quiet,
        )
    steps = ", ".join(f"{name} {seconds / 60:.1f}" for name, seconds in result.step_seconds.items())
    typer.echo(
        f"reproduce --preset {preset}: {len(result.runs)} runs, {result.bench_records} bench "
        f"records in {result.seconds / 60:.1f} min ({steps} min; data: {result.data_dir})"
    )
    _report_runs(result.runs, exit_on_failure=False)
    if result.report is not None:
        typer.echo(f"report: {result.report}")
    if any(run.status == "failed" for run in result.runs):
        raise typer.Exit(1)


def _report_runs(results: list, exit_on_failure: bool = True) -> None:
    """One line per run; exit 1 when any run failed (the others are kept)."""
    for result in results:
        metrics = result.metrics or {}
        if result.status == "failed":
            typer.echo(f"{result.run_name}: failed: {result.error}")
            continue
        typer.echo(
            f"{result.run_name}: {result.status}; test RMSE "
            f"{_pixels(metrics.get('test_rmse'))} (mean shape "
            f"{_pixels(metrics.get('mean_shape_rmse'))}), NME "
            f"{_fraction(metrics.get('test_nme'))}, FR@0.1 {_fraction(metrics.get('test_fr'))}, "
            f"AUC@0.1 {_fraction(metrics.get('test_auc'))}"
        )
    if exit_on_failure and any(result.status == "failed" for result in results):
        raise typer.Exit(1)


def _pixels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} px"


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main() -> None:
    app()
