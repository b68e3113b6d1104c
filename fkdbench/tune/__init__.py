"""``fkdbench tune``: search ``cnn-tuned`` specs with Optuna, for accuracy and CPU speed.

Paper 003 tuned its custom CNN once per data variant with the Keras tuner, on validation
loss alone. Here each trial samples a :class:`~fkdbench.models.cnn.CNNSpec` plus a learning
rate and batch size, and is scored on two objectives:

* **validation RMSE** (pixels) after a short, fixed training budget (``epochs_per_trial``),
  trained by :func:`fkdbench.train.train_run` exactly as ``fkdbench train`` would;
* **ONNX Runtime CPU seconds per 100 images**, timed by the bench code
  (:func:`fkdbench.bench.time_backend`) on the exported ONNX graph. Latency does not depend
  on the weights' values, so it is measured *before* training, on the freshly built model:
  a trial knows its speed from the start, which is what lets multi-objective trials stop
  early (below).

Trials are stopped before or during training in three ways:

* over ``max_params`` (Keras count) or a spec the input size cannot hold: rejected before
  any training, recorded as PRUNED with the reason;
* ``objective="rmse"``: Optuna's median pruner on the per-epoch validation RMSE;
* ``objective="rmse+latency"``: Optuna's pruners are single-objective, so this package
  stops a trial whose validation RMSE at epoch *e* is worse than a finished trial's at the
  same epoch while that trial is also at least as fast: already dominated on both axes.

The study lives in any database Optuna supports (default SQLite under ``runs/tune``); many
workers, on one machine or many, may run the same study at once. Finished trials are in the
database the moment they end, so Ctrl-C or a crash loses at most the trial in progress.

Modules: :mod:`.options` (TuneOptions, TuneResult, the objectives), :mod:`.space` (the
search space), :mod:`.storage` (the database), :mod:`.study` (create or join, counts),
:mod:`.objective` (one trial), :mod:`.worker` (the loop, :func:`tune`), :mod:`.outputs`
and :mod:`.figures` (what a study writes).
"""

from fkdbench.tune.figures import draw_figures
from fkdbench.tune.objective import TrialContext, TrialFailed, dominated_now, measure_latency
from fkdbench.tune.options import (
    ARCH,
    DEFAULT_MAX_PARAMS,
    DEFAULT_OBJECTIVE,
    OBJECTIVES,
    TRIALS_DIR,
    TuneError,
    TuneOptions,
    TuneResult,
    study_folder,
)
from fkdbench.tune.outputs import (
    TRIAL_COLUMNS,
    pareto_trials,
    trial_record,
    trials_frame,
    write_outputs,
)
from fkdbench.tune.space import SearchSpace
from fkdbench.tune.storage import open_storage, shown_url
from fkdbench.tune.worker import MAX_PROPOSALS_PER_TRIAL, tune

__all__ = [
    "ARCH",
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_OBJECTIVE",
    "MAX_PROPOSALS_PER_TRIAL",
    "OBJECTIVES",
    "TRIALS_DIR",
    "TRIAL_COLUMNS",
    "SearchSpace",
    "TrialContext",
    "TrialFailed",
    "TuneError",
    "TuneOptions",
    "TuneResult",
    "dominated_now",
    "draw_figures",
    "measure_latency",
    "open_storage",
    "pareto_trials",
    "shown_url",
    "study_folder",
    "trial_record",
    "trials_frame",
    "tune",
    "write_outputs",
]
