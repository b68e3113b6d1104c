"""The report's shared vocabulary: row orders, labels, units and missing values."""

from __future__ import annotations

import math

import pandas as pd

from fkdbench.data.variants import VARIANTS
from fkdbench.report.common import (
    BYTES_PER_MB,
    UNTRAINED_LABEL,
    backend_key,
    display_name,
    is_missing,
    label_key,
    mb,
    model_label,
    number,
    run_key,
    variant_key,
)


def test_labels() -> None:
    assert model_label("cnn-manual", "scratch") == model_label("cnn-manual", None) == "cnn-manual"
    assert model_label("mobilenetv2", "frozen") == "mobilenetv2 (frozen)"
    assert display_name("cnn-manual", "scratch", False) == f"cnn-manual ({UNTRAINED_LABEL})"
    assert display_name("mobilenetv2", "finetuned", True) == "mobilenetv2 (finetuned)"


def test_row_orders() -> None:
    shuffled = ["zeta", None, *reversed(VARIANTS), "alpha"]
    assert sorted(shuffled, key=variant_key) == [*VARIANTS, "alpha", "zeta", None]
    backends = ["tvm", "onnxruntime-int8", "torch", "onnxruntime", "a"]
    ordered = sorted(backends, key=backend_key)
    assert ordered == ["torch", "onnxruntime", "onnxruntime-int8", "a", "tvm"]
    labels = ["m (finetuned)", "m", "m (frozen)", "a (frozen)"]
    assert sorted(labels, key=label_key) == ["a (frozen)", "m", "m (frozen)", "m (finetuned)"]
    runs = [
        ("m", None, "scratch", False),
        ("m", "aug", "scratch", True),
        ("m", "none", "frozen", True),
        ("m", "none", "scratch", True),
    ]
    assert sorted(runs, key=lambda run: run_key(*run)) == [runs[3], runs[1], runs[0], runs[2]]


def test_values() -> None:
    assert number("1.5") == 1.5 and number(2) == 2.0
    assert number(None) is None and number(float("nan")) is None and number("fast") is None
    assert number([1]) is None
    assert mb(2_500_000) == 2_500_000 / BYTES_PER_MB == 2.5 and mb(None) is None
    for missing in (None, pd.NA, float("nan"), math.nan):
        assert is_missing(missing)
    for present in (0, 0.0, "", "x", [1]):
        assert not is_missing(present)
