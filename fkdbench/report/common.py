"""What every part of the report shares: the words a cell says when there is no number, the
order rows are listed in, model labels and units. A leaf: it imports nothing of the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from fkdbench.bench.options import BACKENDS
from fkdbench.data.variants import VARIANTS
from fkdbench.pretrain.options import METHODS as PRETRAIN_METHODS
from fkdbench.runs import PRETRAINED_PREFIX, WEIGHTS_MODES, pretrained_by

# Under the report's out dir: the PNGs, the report's own and the tune studies' copies.
FIGURES_DIR = "figures"


class ReportError(ValueError):
    """The report cannot be built as asked; the message names the input."""


# What a cell says when there is no number, and why.
NOT_RUN = "not run"
NOT_MEASURED = "not measured"
NOT_EXPORTED = "not exported"
NOT_RECORDED = "not recorded"
NOT_FINISHED = "not finished"  # only time-limited runs: no result
NO_PAPER = "\u2014"  # the paper prints no such number
UNTRAINED_LABEL = "untrained"
# The accuracy table's last row: predict the training mean for every face.
MEAN_SHAPE_ROW = "mean shape"

BYTES_PER_MB = 1_000_000  # MB = 10^6 bytes
# Tables list backends and weights modes in their registries' order (bench.BACKENDS,
# runs.WEIGHTS_MODES); unknown ones sort after them by name.
BACKEND_ORDER = BACKENDS
WEIGHTS_ORDER = WEIGHTS_MODES


# Between a row's model and its recipe parts in a label: "cnn-manual + heatmap + wing".
RECIPE_SEPARATOR = " + "
# The CSV column of a row's recipe: its parts joined by RECIPE_JOIN, "" for the papers'.
RECIPE_COLUMN = "recipe"
RECIPE_JOIN = "+"


def model_label(arch: str, weights_mode: str | None, recipe: Sequence[str] = ()) -> str:
    """``arch`` for scratch weights, ``arch (frozen)`` / ``arch (finetuned)`` otherwise,
    then each part of a recipe other than the papers' (``runs.recipe_parts``):
    ``cnn-manual + heatmap + wing``. The one place a row's label is built."""
    base = arch if weights_mode in (None, "scratch") else f"{arch} ({weights_mode})"
    return RECIPE_SEPARATOR.join((base, *recipe))


def display_name(
    arch: str, weights_mode: str | None, trained: bool, recipe: Sequence[str] = ()
) -> str:
    """The model column of the size and timing tables: the label, marked when untrained."""
    label = model_label(arch, weights_mode, recipe)
    return label if trained else f"{label} ({UNTRAINED_LABEL})"


def recipe_text(recipe: Sequence[str]) -> str:
    """A recipe as its CSV cell: ``heatmap+wing``; "" for the papers' recipe."""
    return RECIPE_JOIN.join(recipe)


def as_recipe(value: Any) -> tuple[str, ...]:
    """A recipe as a record holds it (a JSON list, a tuple, or None in records older
    than the field) as a tuple of parts."""
    return tuple(str(part) for part in value or ())


def without_empty_recipe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without its recipe column when no row has one: a report with only the
    papers' recipe keeps its CSV and JSON bytes (the committed report rebuilds exactly)."""
    if RECIPE_COLUMN not in table.columns or table[RECIPE_COLUMN].fillna("").astype(bool).any():
        return table
    return table.drop(columns=RECIPE_COLUMN)


# -- row orders -----------------------------------------------------------------------------


def variant_key(variant: str | None) -> tuple[int, str]:
    """Known variants in VARIANTS order, then unknown ones by name, then None."""
    if variant is None:
        return (len(VARIANTS) + 1, "")
    if variant in VARIANTS:
        return (VARIANTS.index(variant), variant)
    return (len(VARIANTS), variant)


def weights_key(mode: str | None) -> int:
    """scratch, frozen, finetuned, then anything else."""
    return WEIGHTS_ORDER.index(mode) if mode in WEIGHTS_ORDER else len(WEIGHTS_ORDER)


def backend_key(backend: str) -> tuple[int, str]:
    """BACKEND_ORDER first, then unknown backends by name."""
    order = BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else len(BACKEND_ORDER)
    return (order, backend)


def recipe_key(recipe: Sequence[str]) -> tuple[str, ...]:
    """The papers' recipe (()) first, then recipe rows by their parts."""
    return tuple(recipe)


def run_key(
    arch: str,
    variant: str | None,
    weights_mode: str | None,
    trained: bool,
    recipe: Sequence[str] = (),
) -> tuple:
    """Runs by architecture, weights mode, recipe (the papers' first), trained before
    untrained, then variant."""
    return (arch, weights_key(weights_mode), recipe_key(recipe), not trained, variant_key(variant))


def label_key(label: str) -> tuple:
    """Rows ordered by architecture, then weights mode (scratch, frozen, finetuned), then
    recipe (the papers' first): the order of :func:`run_key`, read from a label."""
    base, *parts = label.split(RECIPE_SEPARATOR)
    arch, _, rest = base.partition(" (")
    return (arch, weights_key(rest.rstrip(")") or "scratch"), recipe_key(parts))


# -- values ---------------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """``value`` as a float; None for None, NaN and anything that is not a number."""
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def mb(size: Any) -> float | None:
    """Bytes as MB (10^6 bytes); None stays None."""
    return None if size is None else float(size) / BYTES_PER_MB


def is_missing(value: Any) -> bool:
    """None, pandas' NA or a float NaN: a cell with no number."""
    if value is None or value is pd.NA:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def pretrained_weights_note(recipes: Sequence[Sequence[str]]) -> list[str]:
    """Where the weights of the ``pretrained-<method>`` rows came from, said beside the
    papers' frozen and fine-tuned cells (whose weights were ImageNet's); [] without such
    rows. ``recipes``: every row's recipe."""
    methods = sorted({method for recipe in recipes if (method := pretrained_by(recipe))})
    if not methods:
        return []
    origins = "; ".join(
        f"{PRETRAINED_PREFIX}{method}: {PRETRAIN_METHODS.get(method, 'unknown method')}"
        for method in methods
    )
    return [
        f"Weights of the {PRETRAINED_PREFIX}<method> rows: made here by `fkdbench pretrain`, "
        f"not ImageNet ({origins}). Paper 003's frozen and fine-tuned rows, whose cells sit "
        "beside them, started from ImageNet weights.",
        "",
    ]
