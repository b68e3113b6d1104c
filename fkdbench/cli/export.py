"""``fkdbench export`` (fkdbench.export.export_all)."""

from __future__ import annotations

from typing import Annotated

import typer

from fkdbench.cli.options import (
    RUNS_DIR,
    DataOverrideOption,
    Exporter,
    ForceOption,
    Int8Activations,
    Int8SearchOption,
    QuietOption,
    RunNamesArgument,
    RunsDirOption,
    parameter_default,
    value,
)
from fkdbench.cli.output import pixels, user_errors
from fkdbench.export import DEFAULT_INT8_ACTIVATIONS, export_all, export_targets

# The library's default (the one place it is set).
_EXPORTER = parameter_default(export_all, "exporter")


def export(
    run_names: RunNamesArgument = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every finished run.")] = False,
    runs_dir: RunsDirOption = RUNS_DIR,
    data: DataOverrideOption = None,
    exporter: Annotated[
        Exporter, typer.Option(help="auto tries dynamo, then TorchScript.")
    ] = Exporter[_EXPORTER],
    int8: Annotated[
        bool, typer.Option(help="Also write model.int8.onnx (static QDQ quantization).")
    ] = True,
    int8_activations: Annotated[
        Int8Activations, typer.Option(help="INT8 activation type: uint8 is fast on x86.")
    ] = Int8Activations[DEFAULT_INT8_ACTIVATIONS],
    int8_search: Int8SearchOption = False,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export runs to ONNX (checked against PyTorch) and INT8 ONNX, scoring both."""
    with user_errors():
        folders = export_targets(runs_dir, run_names or [], all_runs)
        records = export_all(
            folders,
            data_dir=data,
            exporter=value(exporter),
            int8=int8,
            int8_activations=value(int8_activations),
            force=force,
            quiet=quiet,
            int8_search=int8_search,
        )
    for record in records:
        scores = (
            f"test RMSE torch {pixels(record.test_rmse_torch)}, onnx "
            f"{pixels(record.test_rmse_onnx)}, int8 {pixels(record.test_rmse_int8)}"
            if record.trained
            else "untrained"
        )
        typer.echo(
            f"{record.run_name}: {record.exporter} exporter, parity "
            f"{record.parity_max_abs_diff_pixels:.1e} px; {scores}"
        )
