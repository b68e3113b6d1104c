"""Tests for fkdbench.reference: the papers' numbers as data, in our names, as printed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fkdbench import reference, runs
from fkdbench.data.schemes import SCHEMES
from fkdbench.data.variants import VARIANTS
from fkdbench.models import list_models
from fkdbench.reference import PaperRow, paper_row, paper_rows

SEEDS = Path(__file__).resolve().parents[2] / "shared/seeds"
PAPER_VARIANTS = ("none", "ffill", "knn", "aug")


def test_rows_use_our_registry_names() -> None:
    known = set(list_models())
    for row in reference.PAPER_ROWS:
        assert row.arch in known, row
        assert row.variant is None or row.variant in VARIANTS, row
        assert row.weights_mode is None or row.weights_mode in runs.WEIGHTS_MODES, row
        assert row.gain_label is None or row.gain_label in reference.TABLE2_LABELS, row
        assert row.source in reference.PAPERS and row.scheme in SCHEMES, row
    assert set(reference.VARIANT_FROM_PAPER.values()) == set(PAPER_VARIANTS)
    assert set(reference.WEIGHTS_FROM_PAPER.values()) <= set(runs.WEIGHTS_MODES)
    for claim in reference.RATIO_CLAIMS:
        assert claim.arch in known and claim.variant in VARIANTS
        assert {claim.worse_mode, claim.better_mode} <= set(runs.WEIGHTS_MODES)
        assert 1 < claim.low <= claim.high


def test_each_table_has_its_printed_shape() -> None:
    table1 = paper_rows(table=reference.TABLE1)
    assert len(table1) == 8 and all(row.params and row.size_mb for row in table1)
    # Tables 2 and 4: one cell per model row and paper column.
    table2 = paper_rows(table=reference.TABLE2)
    assert len(table2) == 4 * 4 and all(row.gain_label for row in table2)
    table4 = paper_rows(table=reference.TABLE4)
    assert len(table4) == 7 * 4 and all(row.seconds_per_100 for row in table4)
    for table in (table2, table4):
        for model in {row.model for row in table}:
            cells = [row.variant for row in table if row.model == model]
            assert cells == list(PAPER_VARIANTS), model
    assert len(reference.PAPER_ROWS) == 8 + 16 + 28 + len(reference.AE_ROWS)
    # Paper 000 prints no number that our metrics measure.
    for row in reference.AE_ROWS:
        assert (row.params, row.size_mb, row.rmse, row.seconds_per_100) == (None,) * 4
        assert row.other and row.source == reference.AE_PAPER


def test_paper_rows_filters_by_table_arch_and_paper() -> None:
    nasnet_times = paper_rows(table=reference.TABLE4, arch="nasnetmobile")
    assert [row.seconds_per_100 for row in nasnet_times] == [
        8.46, 8.4, 8.17, 7.87, 7.95, 7.96, 8.01, 7.68,
    ]  # fmt: skip
    assert paper_rows(source=reference.AE_PAPER) == reference.AE_ROWS
    assert paper_rows(arch="resnet50") == ()
    assert paper_rows() == reference.PAPER_ROWS


def test_paper_row_prefers_the_row_naming_the_exact_value() -> None:
    # Table 1 has one cnn-tuned row per variant, and one cnn-manual row for every variant.
    assert paper_row("cnn-tuned", "knn", "scratch", reference.TABLE1).params == 246_062
    assert paper_row("cnn-tuned", "aug", None, reference.TABLE1).params == 364_318
    manual = paper_row("cnn-manual", "aug", "scratch", reference.TABLE1)
    assert (manual.params, manual.size_mb, manual.variant) == (235_834, 1.0, None)
    frozen = paper_row("mobilenetv2", "knn", "frozen", reference.TABLE2)
    assert (frozen.model, frozen.gain_label) == ("MobileNetV2 baseline model", "+")
    assert paper_row("nasnetmobile", "aug", "finetuned", reference.TABLE4).seconds_per_100 == 7.68
    # No row: an architecture, a variant or a weights mode the paper has no number for.
    assert paper_row("resnet50", "none", "scratch", reference.TABLE1) is None
    assert paper_row("cnn-tuned", "masked", "scratch", reference.TABLE1) is None
    assert paper_row("mobilenetv2", "aug", "scratch", reference.TABLE4) is None


def test_citations_say_where_to_check() -> None:
    row = paper_row("cnn-baseline", "none", "scratch", reference.TABLE1)
    assert row.citation == "seeds/003_337e0ae8e3cf95a5.txt, Table 1"
    assert reference.RATIO_CLAIMS[0].citation == f"{reference.MAIN_PAPER}, Section 4.1"
    assert reference.CITED_RESULTS[0].citation == f"{reference.MAIN_PAPER}, Section 2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.params = 1  # type: ignore[misc]
    assert isinstance(row, PaperRow)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the papers' text is not here")
def test_numbers_are_printed_in_the_paper() -> None:
    lines = (SEEDS.parent / reference.MAIN_PAPER).read_text().splitlines()

    def printed_row(model: str) -> list[str]:
        return next(line for line in lines if line.startswith(model + "\t")).split("\t")

    for row in paper_rows(table=reference.TABLE1):
        cells = printed_row(row.model)
        assert (cells[1], float(cells[2])) == (f"{row.params:,}", row.size_mb), row.model
    table4 = paper_rows(table=reference.TABLE4)
    for model in {row.model for row in table4}:
        printed = [float(value) for value in printed_row(model)[1:] if value.strip()]
        ours = [row.seconds_per_100 for row in table4 if row.model == model]
        assert printed == ours, model
    text = "\n".join(lines)
    for claim in reference.RATIO_CLAIMS:
        assert claim.quote in text
    for cited in reference.CITED_RESULTS:
        assert str(cited.rmse) in text and cited.reference in text
