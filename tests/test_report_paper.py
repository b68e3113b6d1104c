"""The papers' numbers: reference.py's rows use our names and match the papers' text, and a
model of ours sits beside the right paper row."""

from __future__ import annotations

from pathlib import Path

import pytest

from fkdbench import reference, runs
from fkdbench.data.variants import VARIANTS
from fkdbench.models import list_models
from fkdbench.report.paper import (
    cited_table,
    paper_gains_table,
    paper_row_beside,
    paper_variant,
    paper_weights_mode,
)

SEEDS = Path(__file__).resolve().parents[2] / "shared/seeds"


def test_reference_rows_use_registry_names() -> None:
    known = set(list_models())
    for row in reference.PAPER_ROWS:
        assert row.arch in known
        assert row.variant is None or row.variant in VARIANTS
        assert row.weights_mode is None or row.weights_mode in runs.WEIGHTS_MODES
        assert row.gain_label is None or row.gain_label in reference.TABLE2_LABELS
        assert row.source in reference.PAPERS
    manual = reference.paper_row("cnn-manual", "aug", "scratch", reference.TABLE1)
    assert (manual.params, manual.size_mb) == (235_834, 1.0)
    tuned = reference.paper_row("cnn-tuned", "knn", "scratch", reference.TABLE1)
    assert (tuned.params, tuned.size_mb) == (246_062, 1.58)
    nasnet = reference.paper_row("nasnetmobile", "aug", "finetuned", reference.TABLE4)
    assert nasnet.seconds_per_100 == 7.68
    assert reference.paper_row("resnet50", "none", "scratch", reference.TABLE1) is None
    assert len(reference.paper_rows(table=reference.TABLE4)) == 28


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the papers' text is not here")
def test_reference_numbers_are_printed_in_the_paper() -> None:
    text = (SEEDS.parent / reference.MAIN_PAPER).read_text()
    for row in reference.paper_rows(table=reference.TABLE1):
        line = next(line for line in text.splitlines() if line.startswith(row.model + "\t"))
        assert f"{row.params:,}" in line
        assert float(line.split("\t")[2]) == row.size_mb
    for model in {row.model for row in reference.paper_rows(table=reference.TABLE4)}:
        line = next(line for line in text.splitlines() if line.startswith(model + "\t"))
        printed = [float(value) for value in line.split("\t")[1:] if value.strip()]
        ours = [
            row.seconds_per_100
            for variant in ("none", "ffill", "knn", "aug")
            for row in reference.paper_rows(table=reference.TABLE4)
            if row.model == model and row.variant == variant
        ]
        assert printed == ours


def test_an_untrained_or_scratch_model_sits_beside_the_papers_plain_row() -> None:
    assert paper_variant("aug") == "aug"
    assert paper_variant("aug", trained=False) == "none"
    assert paper_variant(None) == "none"
    # MobileNetV2 has only transfer rows in the paper: scratch sits beside the frozen one.
    assert paper_weights_mode("mobilenetv2", "scratch") == "frozen"
    assert paper_weights_mode("mobilenetv2", "finetuned") == "finetuned"
    assert paper_weights_mode("cnn-manual", "scratch") == "scratch"
    untrained = paper_row_beside("cnn-manual", None, "scratch", False, reference.TABLE4)
    assert untrained == reference.paper_row("cnn-manual", "none", "scratch", reference.TABLE4)
    assert paper_row_beside("resnet50", "none", "scratch", True, reference.TABLE1) is None


def test_the_papers_own_tables_are_reference_py() -> None:
    gains = paper_gains_table()
    table2 = reference.paper_rows(table=reference.TABLE2)
    assert set(gains["paper_model"]) == {row.model for row in table2}
    row = table2[0]
    assert gains.set_index("paper_model").loc[row.model, row.variant] == row.gain_label
    cited = cited_table()
    assert list(cited["rmse"]) == [result.rmse for result in reference.CITED_RESULTS]
