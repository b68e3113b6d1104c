"""The two papers' published numbers, as data: the one place the report reads them from.

Everything here is transcribed from the text of the papers in ``seeds/`` (OCR'd PDFs), so
each row carries its citation (file and table). Nothing is derived or filled in: where a
paper gives no number the field is ``None``, and the report says "—".

Paper 003 (Dileep, Bolla, E, "Revisiting facial key point detection - an efficient
approach using deep neural networks"; Kaggle, 15 keypoints):

- **Table 1** (parameters / model size): one row per model; the Keras-tuned CNN is a
  different network per data variant, so it has one row per variant.
- **Table 2** (RMSE of the transfer models by variant): qualitative labels only
  ("Similar", "+", "++", "+++"). The paper does not say what each label is measured
  against; the report reads them as the gain over No imputation for the same model,
  which makes the No-imputation column "Similar" by construction, as printed.
- **Table 3** is cited in the text ("As seen in Table 2 and Table 3") but absent from it.
- **Table 4** (seconds per 100 images, Colab CPU, Equation 1): model x variant. Its
  caption was lost in the OCR; the text names it Table 4.
- **Figures 6-7** (RMSE per model and variant) are bar charts with no printed values, so
  there is no paper RMSE here. Section 4.1 does state two ratios (fine-tuned vs
  non-fine-tuned), kept as :data:`RATIO_CLAIMS`; Section 2 cites prior Kaggle RMSEs, kept
  as :data:`CITED_RESULTS`.

Paper 000 (Sinha et al., "Facial keypoints detection using CNN and autoencoders") prints
no parameter count, size, RMSE or time: only Keras' ``accuracy`` metric (meaningless for
regression, kept in ``other`` for completeness) and one AUC.

Names: ``arch`` is our registry name; ``variant`` is ours (``none`` = No imputation,
``ffill`` = Forward fill, ``knn`` = KNN imputed, ``aug`` = Augmentation; ``masked`` is
ours only); ``weights_mode`` is ours (custom CNNs: ``scratch``; the paper's
"baseline"/non-fine-tuned transfer model: ``frozen``; "fine tuned": ``finetuned``).
``None`` in ``variant`` or ``weights_mode`` means the row applies to every value.
"""

from __future__ import annotations

from dataclasses import dataclass

MAIN_PAPER = "seeds/003_337e0ae8e3cf95a5.txt"
AE_PAPER = "seeds/000_defd4fea01d71d0d.txt"

PAPERS: dict[str, str] = {
    MAIN_PAPER: (
        "P. Dileep, B. K. Bolla, S. E, Revisiting Facial Key Point Detection - "
        "An Efficient Approach Using Deep Neural Networks"
    ),
    AE_PAPER: (
        "A. Sinha, A. Dhar, M. Momin, M. Gurav, S. K. Jain, "
        "Facial Keypoints Detection Using CNN and Autoencoders"
    ),
}

TABLE1 = "Table 1"
TABLE2 = "Table 2"
TABLE4 = "Table 4"
RESULTS_SECTION = "Section 4"

# The paper's column headings, and which of our variants each one is.
VARIANT_FROM_PAPER: dict[str, str] = {
    "No imputation": "none",
    "Forward fill": "ffill",
    "KNN imputed": "knn",
    "Augmentation": "aug",
}
# The paper's transfer-model rows, and which of our weights modes each one is.
WEIGHTS_FROM_PAPER: dict[str, str] = {
    "baseline (non-fine-tuned)": "frozen",
    "fine-tuned": "finetuned",
}
# Table 2's labels, best last; the report maps its computed gains onto these.
TABLE2_LABELS = ("Similar", "+", "++", "+++")


@dataclass(frozen=True)
class PaperRow:
    """One printed row (or one cell of a model x variant table) of a paper."""

    # The seed file it was transcribed from (see PAPERS) and the table it sits in.
    source: str
    table: str
    # The model name as printed.
    model: str
    # Our registry name for the architecture.
    arch: str
    # Our variant name; None: the row applies to every variant.
    variant: str | None
    # Our weights mode; None: the row applies to every weights mode.
    weights_mode: str | None
    # Total parameters as printed (Keras' count_params: BatchNorm statistics included).
    params: int | None = None
    # Model file size in MB as printed (the paper does not say 10^6 or 2^20 bytes).
    size_mb: float | None = None
    # Test RMSE in pixels.
    rmse: float | None = None
    # Inference seconds per 100 images (Equation 1), Colab CPU.
    seconds_per_100: float | None = None
    # Table 2's qualitative label ("Similar", "+", "++", "+++").
    gain_label: str | None = None
    # The keypoint scheme the number was measured on.
    scheme: str = "kaggle15"
    # Other printed numbers that have no counterpart in our metrics, as (name, value).
    other: tuple[tuple[str, float], ...] = ()
    # Transcription notes: ambiguities, OCR damage.
    note: str = ""

    @property
    def citation(self) -> str:
        """``<seed file>, <table>``: where to check the number."""
        return f"{self.source}, {self.table}"


@dataclass(frozen=True)
class RatioClaim:
    """A ratio stated in a paper's text: RMSE of ``worse_mode`` / RMSE of ``better_mode``."""

    source: str
    where: str
    arch: str
    variant: str
    worse_mode: str
    better_mode: str
    low: float
    high: float
    quote: str

    @property
    def citation(self) -> str:
        return f"{self.source}, {self.where}"


@dataclass(frozen=True)
class CitedResult:
    """An RMSE a paper cites from earlier work on the Kaggle 15-keypoint data."""

    source: str
    where: str
    work: str
    reference: str
    rmse: float

    @property
    def citation(self) -> str:
        return f"{self.source}, {self.where}"


def _t1(model: str, arch: str, variant: str | None, params: int, size_mb: float, note: str = ""):
    return PaperRow(MAIN_PAPER, TABLE1, model, arch, variant, None, params, size_mb, note=note)


# Paper 003, Table 1: "Parameter / Model size comparison of all architectures".
TABLE1_ROWS: tuple[PaperRow, ...] = (
    _t1("Baseline CNN model", "cnn-baseline", None, 1_890_366, 7.6),
    _t1("Manually Optimized CNN", "cnn-manual", None, 235_834, 1.0),
    _t1("Keras Optimized CNN- No imputation", "cnn-tuned", "none", 306_750, 1.27),
    _t1("Keras Optimized CNN - Forward fill", "cnn-tuned", "ffill", 246_478, 1.03),
    _t1(
        "Keras Optimized CNN - KNN imputed",
        "cnn-tuned",
        "knn",
        246_062,
        1.58,
        note=(
            "printed as is; 1.58 MB is out of line with its 246,062 parameters "
            "(~0.98 MB as float32; the other rows are ~4 bytes per parameter)"
        ),
    ),
    _t1("Keras Optimized CNN - Augmentation", "cnn-tuned", "aug", 364_318, 1.50),
    _t1(
        "MobilenetV2",
        "mobilenetv2",
        None,
        2_257_984,
        9.66,
        note=(
            "2,257,984 is Keras' MobileNetV2 without its top, i.e. the count leaves out "
            "the GAP + Dense(30) head (38,430 more)"
        ),
    ),
    _t1(
        "NasNetMobile",
        "nasnetmobile",
        None,
        4_301_426,
        18.48,
        note=(
            "includes the head: Keras' NASNetMobile without top (4,269,716) + "
            "Dense(1056 -> 30) (31,710); unlike the MobileNetV2 row"
        ),
    ),
)

_TABLE2_SIMILAR_NOTE = (
    "OCR shows 'Similar' on one row and 'performance' on the next: one merged cell "
    "'Similar performance' spanning the baseline and fine-tuned rows"
)


def _t2(model: str, arch: str, mode: str, labels: tuple[str, str, str, str], merged: tuple):
    """Four Table 2 cells (none, ffill, knn, aug) of one printed row."""
    variants = ("none", "ffill", "knn", "aug")
    return tuple(
        PaperRow(
            MAIN_PAPER,
            TABLE2,
            model,
            arch,
            variant,
            mode,
            gain_label=label,
            note=_TABLE2_SIMILAR_NOTE if variant in merged else "",
        )
        for variant, label in zip(variants, labels, strict=True)
    )


# Paper 003, Table 2: "Comparison of RMSE performance of transfer learning models".
TABLE2_ROWS: tuple[PaperRow, ...] = (
    *_t2(
        "MobileNetV2 baseline model",
        "mobilenetv2",
        "frozen",
        ("Similar", "Similar", "+", "+"),
        ("none", "ffill"),
    ),
    *_t2(
        "MobileNetV2 fine tuned",
        "mobilenetv2",
        "finetuned",
        ("Similar", "Similar", "++", "+++"),
        ("none", "ffill"),
    ),
    *_t2(
        "NasNet baseline model",
        "nasnetmobile",
        "frozen",
        ("Similar", "Similar", "Similar", "+"),
        ("none", "ffill", "knn"),
    ),
    *_t2(
        "NasNet Model fine-tuned",
        "nasnetmobile",
        "finetuned",
        ("Similar", "Similar", "Similar", "+++"),
        ("none", "ffill", "knn"),
    ),
)


def _t4(model: str, arch: str, mode: str, seconds: tuple[float, float, float, float]):
    """Four Table 4 cells (none, ffill, knn, aug) of one printed row."""
    variants = ("none", "ffill", "knn", "aug")
    return tuple(
        PaperRow(MAIN_PAPER, TABLE4, model, arch, variant, mode, seconds_per_100=value)
        for variant, value in zip(variants, seconds, strict=True)
    )


# Paper 003, Table 4 (caption lost in the OCR; Section 4.3 names it): inference seconds on
# 100 images on a Colab CPU. Columns: No impute, Forward Fill, KNN Impute, Aug (sec).
TABLE4_ROWS: tuple[PaperRow, ...] = (
    *_t4("CNN Baseline model", "cnn-baseline", "scratch", (1.99, 1.97, 1.98, 2.01)),
    *_t4("CNN Manual tuned model", "cnn-manual", "scratch", (1.4, 1.33, 1.34, 1.34)),
    *_t4("CNN Keras tuned", "cnn-tuned", "scratch", (2.72, 1.52, 4.19, 3.58)),
    *_t4("MobileNetV2 - Baseline", "mobilenetv2", "frozen", (0.89, 0.86, 1.0, 0.83)),
    *_t4("MobileNetV2 - Fine tuned", "mobilenetv2", "finetuned", (0.84, 0.82, 0.82, 0.88)),
    *_t4("NasNetMobile - Baseline", "nasnetmobile", "frozen", (8.46, 8.4, 8.17, 7.87)),
    *_t4("NasNetMobile - Fine tuned", "nasnetmobile", "finetuned", (7.95, 7.96, 8.01, 7.68)),
)

# Paper 000: no table; Section 4 and Figures 12-13. Only Keras "accuracy" is printed.
AE_ROWS: tuple[PaperRow, ...] = (
    PaperRow(
        AE_PAPER,
        RESULTS_SECTION,
        "CNN with autoencoder, 15 points (Kaggle)",
        "ae-cnn",
        "none",  # "we have removed all the null values": complete rows only
        "scratch",
        other=(("keras_accuracy", 0.9047), ("train_images", 2140.0), ("epochs", 200.0)),
        note=(
            "Keras 'accuracy' on a regression target, not comparable with RMSE. The text "
            "gives 0.9047 for the 15-point model and 0.8183 for the 98-point one, but the "
            "captions of Figures 12 and 13 are swapped against the logs they show (the "
            "200-epoch, 2140-sample log reaches 0.9047); the text is followed here"
        ),
    ),
    PaperRow(
        AE_PAPER,
        RESULTS_SECTION,
        "CNN with autoencoder, 98 points (WFLW)",
        "ae-cnn",
        None,
        "scratch",
        scheme="wflw98",
        other=(("keras_accuracy", 0.8183), ("epochs", 1000.0), ("auc", 0.8822)),
        note=(
            "WFLW resized to 100x100 gray; the AUC (0.8822) is from a ROC the paper does "
            "not define for keypoints and is not attributed to either model explicitly"
        ),
    ),
)

PAPER_ROWS: tuple[PaperRow, ...] = (*TABLE1_ROWS, *TABLE2_ROWS, *TABLE4_ROWS, *AE_ROWS)

# Paper 003, Section 4.1 (about Figure 7).
RATIO_CLAIMS: tuple[RatioClaim, ...] = (
    RatioClaim(
        MAIN_PAPER,
        "Section 4.1",
        "mobilenetv2",
        "aug",
        "frozen",
        "finetuned",
        4.0,
        5.0,
        "fine-tuned MobileNetV2 and NASNetMobile trained on augmented data exhibit a 4-5x "
        "improvement in RMSE scores compared to their non-fine-tuned counterparts",
    ),
    RatioClaim(
        MAIN_PAPER,
        "Section 4.1",
        "nasnetmobile",
        "aug",
        "frozen",
        "finetuned",
        4.0,
        5.0,
        "fine-tuned MobileNetV2 and NASNetMobile trained on augmented data exhibit a 4-5x "
        "improvement in RMSE scores compared to their non-fine-tuned counterparts",
    ),
    RatioClaim(
        MAIN_PAPER,
        "Section 4.1",
        "mobilenetv2",
        "knn",
        "frozen",
        "finetuned",
        2.0,
        2.0,
        "fine-tuned MobileNetV2 demonstrated a 2x improvement in RMSE on KNN imputed data",
    ),
)

# Paper 003, Section 2: RMSEs of earlier work "on a similar Kaggle dataset". The survey
# numbers of the same section (BU-4DFE, AFLW, AFW, LFPW, 300-W) are other data sets and
# landmark counts, so they are left out.
CITED_RESULTS: tuple[CitedResult, ...] = (
    CitedResult(MAIN_PAPER, "Section 2", "Inception structure (Mao)", "[9]", 2.91),
    CitedResult(MAIN_PAPER, "Section 2", "Deep residual CNN (Wu et al.)", "[10]", 2.23),
    CitedResult(MAIN_PAPER, "Section 2", "NaimishNet, LeNet-based (Agarwal et al.)", "[4]", 1.77),
    CitedResult(MAIN_PAPER, "Section 2", "Custom CNN (Shi)", "[11]", 1.97),
    CitedResult(MAIN_PAPER, "Section 2", "14-layer custom CNN (Gao)", "[12]", 1.75),
)


def paper_rows(
    table: str | None = None, arch: str | None = None, source: str | None = None
) -> tuple[PaperRow, ...]:
    """The transcribed rows, optionally only one table / architecture / paper."""
    return tuple(
        row
        for row in PAPER_ROWS
        if (table is None or row.table == table)
        and (arch is None or row.arch == arch)
        and (source is None or row.source == source)
    )


def paper_row(
    arch: str, variant: str | None, weights_mode: str | None, table: str
) -> PaperRow | None:
    """The row of ``table`` that one of our runs sits beside, or None.

    A row whose variant (or weights mode) is None applies to every value; a row naming
    the exact value wins over one that applies to all.
    """
    best: tuple[int, PaperRow] | None = None
    for row in paper_rows(table=table, arch=arch):
        if row.variant not in (None, variant) or row.weights_mode not in (None, weights_mode):
            continue
        score = (row.variant is not None) + (row.weights_mode is not None)
        if best is None or score > best[0]:
            best = (score, row)
    return best[1] if best else None
