"""What a trial may choose: the search space of ``cnn-tuned`` specs and their training."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from optuna.trial import Trial

from fkdbench.models.cnn import CNNSpec, ConvBlockSpec


@dataclass(frozen=True)
class SearchSpace:
    """What a trial may choose. Stored with the study: a study is only joined by a worker
    with the same space, so that its trials stay comparable."""

    # Conv blocks (conv -> optional BatchNorm -> ReLU -> optional 2x2 pool), inclusive range.
    conv_blocks: tuple[int, int] = (2, 6)
    filters: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 96, 128)
    kernel_sizes: tuple[int, ...] = (3, 5)
    # "none" keeps the feature map size (no pooling after that block).
    pools: tuple[str, ...] = ("max", "avg", "none")
    # Hidden dense layers between the flattened features and the output, inclusive range.
    dense_layers: tuple[int, int] = (0, 2)
    dense_units: tuple[int, ...] = (64, 128, 256, 512)
    # (low, high, step) of the dropout after each hidden dense layer.
    dropout: tuple[float, float, float] = (0.0, 0.5, 0.05)
    # Peak learning rate, sampled log-uniformly.
    lr: tuple[float, float] = (3e-4, 5e-3)
    batch_sizes: tuple[int, ...] = (32, 64, 128)

    def suggest(self, trial: Trial) -> tuple[CNNSpec, dict[str, Any]]:
        """Sample a spec and its training settings (``lr``, ``batch_size``) for ``trial``.

        Per-block settings are named ``block<i>_...`` and exist only for the blocks the
        trial has: Optuna's samplers handle such conditional parameters.
        """
        blocks = [
            self._block(trial, index)
            for index in range(trial.suggest_int("conv_blocks", *self.conv_blocks))
        ]
        dense = tuple(
            trial.suggest_categorical(f"dense{index}_units", self.dense_units)
            for index in range(trial.suggest_int("dense_layers", *self.dense_layers))
        )
        low, high, step = self.dropout
        dropout = trial.suggest_float("dropout", low, high, step=step) if dense else 0.0
        spec = CNNSpec(conv_blocks=tuple(blocks), dense_units=dense, dropout=dropout)
        training = {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "batch_size": trial.suggest_categorical("batch_size", self.batch_sizes),
        }
        return spec, training

    def _block(self, trial: Trial, index: int) -> ConvBlockSpec:
        pool = trial.suggest_categorical(f"block{index}_pool", self.pools)
        return ConvBlockSpec(
            filters=trial.suggest_categorical(f"block{index}_filters", self.filters),
            kernel_size=trial.suggest_categorical(f"block{index}_kernel_size", self.kernel_sizes),
            batch_norm=trial.suggest_categorical(f"block{index}_batch_norm", (True, False)),
            pool=None if pool == "none" else pool,
        )

    def record(self) -> dict[str, Any]:
        """JSON-ready form, stored in the study."""
        return json.loads(json.dumps(dataclasses.asdict(self)))
