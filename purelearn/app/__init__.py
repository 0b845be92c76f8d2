"""The application: training runs, sweeps and comparisons as a thin client of the library.

    from purelearn import app
    result = app.fit(app.Config(algo="fptt", data="digits", epochs=30), out_dir="runs/fptt")
    result.metrics["test_accuracy"]

One concept per module, the arrows pointing down to the library (:mod:`purelearn.online`,
:mod:`purelearn.optim`, :mod:`purelearn.schedules`, :mod:`purelearn.models`, :mod:`purelearn.data`):

============ =======================================================================================
``cli``       ``purelearn train | sweep | compare``: flags → one :class:`Config`, field errors → flags
``compare``   one :func:`fit` per algorithm, each in a fresh (spawned) process; a table of the metrics
``sweeps``    :func:`sweep_fit`: a grid of configs as one ``torch.func.vmap``-ed training program
``loop``      :func:`fit` (resume, checkpoints, schedule, divergence), :func:`run_epoch`, :func:`evaluate`
``lock``      one process per run folder (the lock file, stale locks taken over)
``memory``    a run's memory estimated before it allocates, checked against the machine's
``report``    metrics, JSON / CSV, tables, plots, peak memory
``progress``  the tqdm bar (one line per epoch when not on a terminal)
``config``    :class:`Config`, its validation (:class:`ConfigError` names fields) and defaults
``errors``    the error types and the command line's exit code for each
``registry``  THE registry of algorithms (learner factory, neuron, options, per-data defaults),
              models, optimizers and schedules, which all of the above read
``task``      targets, the per-step loss and the prediction of the classification task
============ =======================================================================================
"""

from .compare import compare, configs_for
from .config import Config
from .errors import ConfigError, DivergedError, RunInUseError, StorageError
from .loop import RunResult, evaluate, fit, init_params, run_epoch
from .registry import build_model, make_learner, make_optimizer
from .sweeps import SWEEPABLE, parse_values, sweep_fit
from .task import EVAL_SEED, loss_fn, predict, targets, time_weights

__all__ = ["Config", "ConfigError", "DivergedError", "RunInUseError", "StorageError", "RunResult", "fit", "run_epoch",
           "evaluate", "init_params", "sweep_fit", "parse_values", "SWEEPABLE", "compare", "configs_for", "build_model",
           "make_learner", "make_optimizer", "EVAL_SEED", "loss_fn", "time_weights", "targets", "predict"]
