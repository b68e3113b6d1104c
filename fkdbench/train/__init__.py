"""Train one architecture on one data variant: ``fkdbench train`` as a library.

:func:`train_run` trains one run in stages that read top to bottom (:mod:`.run`);
:func:`train_matrix` runs a preset's list of runs and turns each failure into a row, and
:func:`run_training` is the ``train`` command as one call (:mod:`.matrix`). The other
modules, in the order a run uses them: :mod:`.dataset` (the splits in memory),
:mod:`.phases` (what each phase trains, and the epoch loop), :mod:`.loop` (one epoch: the
learning rate, the optimiser), :mod:`.losses` (the keypoint losses), :mod:`.state`
(``last.pt``, ``history.csv``, the best ``model.pt``), :mod:`.scoring` (the test scores,
per-face errors included),
:mod:`.convergence` (converged or not, by one stated rule). :class:`TrainConfig` lives in
:mod:`fkdbench.config` and the run-folder files in :mod:`fkdbench.runs`.

Choices that hold for every run, and why:

- Loss: by default the papers' mean squared error on *normalised* coordinates
  (``models.normalise_keypoints``: the image spans about [-1, 1]), over labelled
  coordinates only; ``loss`` picks another, and a heatmap head trains on maps
  (:mod:`.losses`). Every data variant comes with a mask, so one loop serves them all:
  ``none``/``knn``/``aug`` have full masks, ``ffill`` nearly full, ``masked`` the real
  label pattern, and every loss leaves a missing keypoint out.
- Optimiser: AdamW; weight decay only on weight matrices and kernels (not on biases and
  normalisation scales, as in nanoGPT).
- Learning rate: linear warm-up over the first ``WARMUP_FRACTION`` of the planned steps,
  then a cosine decay to ``FINAL_LR_FRACTION`` of the peak, set every batch by a pure
  function of the step (:func:`learning_rate_at`), so resuming needs only the step count.
- Model selection: validation RMSE in pixels after every epoch; the best epoch's weights
  are ``model.pt``; training stops after ``patience`` epochs without improvement
  ("early-stopped") or at ``epochs`` ("completed"). Budgets are epochs, never minutes:
  ``max_minutes`` is only a safety stop (checked after every batch, so a slow
  architecture stops inside an epoch, which then still gets its validation), and a run it
  stops is "time-limited", never converged. :mod:`.convergence` states and applies the
  rule that says whether a run converged (metrics.json's ``convergence``).
- Machine independence: metrics.json holds nothing that depends on the machine (seconds,
  throughput and the environment go to training.json), so the same config and seed give
  the same bytes on an idle or a busy machine (tests/test_train_determinism.py).
- Determinism: one ``torch.Generator`` seeded from ``seed`` shuffles and augments, the
  global torch RNG (dropout, initialisation) is seeded too, and both states travel in
  ``last.pt``, so on the CPU an interrupted and resumed run ends with the same weights
  as an uninterrupted one.
- ae-cnn: first a reconstruction phase (BCE with logits against the [0, 1] image) on
  every training image, labelled or not, through ``build_pretrainer``, which shares the
  encoder; then the keypoint phase. Each phase has its own optimiser and schedule.
- Data stays in memory as uint8 tensors; batches are index selections, converted to
  float per batch. Validation and test are scored on their real labels only.
  ``max_train_rows`` / ``max_val_rows`` shrink a run for smoke tests (the ``quick``
  preset); the test split is always scored whole, so every run's test RMSE compares with
  every other's. metrics.json records the rows actually used.
- Speed on the CPU: weights and activations channels-last (``loop.MEMORY_FORMAT``), and a
  process that keeps the memory it frees (:mod:`.allocator`), so the buffers each batch
  re-makes cost no page faults. Neither changes a number a run computes.
"""

from fkdbench.config import TrainConfig
from fkdbench.train.loop import (
    FINAL_LR_FRACTION,
    LR_SCHEDULE_DESCRIPTION,
    WARMUP_FRACTION,
    learning_rate_at,
)
from fkdbench.train.losses import keypoint_loss, masked_mse
from fkdbench.train.matrix import run_training, train_matrix
from fkdbench.train.result import RunError, RunResult, TrainingDiverged
from fkdbench.train.run import train_run
from fkdbench.train.scoring import EVAL_BATCH_SIZE, predict_pixels
from fkdbench.train.state import HISTORY_COLUMNS

__all__ = [
    "EVAL_BATCH_SIZE",
    "FINAL_LR_FRACTION",
    "HISTORY_COLUMNS",
    "LR_SCHEDULE_DESCRIPTION",
    "WARMUP_FRACTION",
    "RunError",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "learning_rate_at",
    "keypoint_loss",
    "masked_mse",
    "predict_pixels",
    "run_training",
    "train_matrix",
    "train_run",
]
