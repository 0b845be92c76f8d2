r"""The training loop: :func:`fit` a config (or resume a run), one epoch, evaluation.

    result = app.fit(app.Config(algo="fptt", data="digits", epochs=30), out_dir="runs/fptt")
    result.metrics["test_accuracy"]

**Schedule.** The optimizer is built once per run, its learning rate a schedule of the optimizer's
update count (:mod:`purelearn.schedules`): with ``every`` = the updates of one epoch (batches ×
``learner.updates_per_sequence(T)``), ``cosine`` is ``lr · ½(1 + cos(π e / E))`` at epoch e of E,
``constant`` keeps ``lr``, and ``warmup`` W epochs rise first, ``lr · (e + 1) / (W + 1)``. The
learners update during the sequence (FPTT, FPTT-dual, OTTT_O: every step), and the cosine removes
most of the noise such updates leave in the final weights. The count lives in the optimizer state,
so a checkpoint carries the schedule's position; the config rebuilds the function.

**Checkpoints** (:mod:`purelearn.checkpoint`, ``checkpoint.pt``, replaced atomically after each
epoch, with a SHA-256 of its contents) hold ``{"carry", "epoch", "data_generator", "config",
"history", "train_time_s", "data_fingerprint"}``.

**The run folder** is this process's while :func:`fit` runs (:mod:`purelearn.app.lock`: a second
process is refused with :class:`RunInUseError`; a lock left by a killed process is taken over with
a warning), and the checkpoint is read only once the lock is held. Temporary files of interrupted
writes are removed at the start. A folder holding another run (``checkpoint.pt`` or
``metrics.json``) is refused unless ``overwrite`` (which clears it first); resuming in place is no
overwrite.

**Divergence.** Training stops at the first non-finite loss (checked one batch behind, so the
device is never waited on mid-batch) or at an epoch whose final carry is not finite, with a
:class:`DivergedError` naming the epoch and batch; the checkpoint is written only from a finite
carry, so the last good one is kept, and ``metrics.json`` (strict JSON) records the stop under
``"diverged"``.

**Memory** (:mod:`purelearn.app.memory`) is estimated before anything large is allocated: in
:func:`setup` from the shapes the model's layers declare, the batch and the test set; once the
parameters exist, with the learner's carry and the activations one sample saves per step (times the
batch and the steps BPTT or an FPTT window holds). A run that exceeds the machine's memory is
refused with a :class:`~purelearn.app.memory.TooLarge` naming the option (``T``, ``hidden``, ...).

**Storage.** A write of the checkpoint, ``metrics.json`` or the plot that fails with an ``OSError``
(a full disk, a read-only file system) is a :class:`~purelearn.app.errors.StorageError` naming the
file, the reason and the last good checkpoint, which the atomic write keeps.

**Resuming** checks the checkpoint against the run: its keys and types, its carry against the
learner of its config's algorithm (type, structure, parameter shapes), ``epochs`` not below the
epochs done, and the data's :func:`purelearn.data.fingerprint` against the one recorded (changed
data is refused unless ``allow_changed_data``; then a warning). Checkpoints written before
fingerprints existed resume unchecked.

**Data order.** The training set is shuffled at every epoch and the rate code drawn from one
``torch.Generator`` seeded with ``data_seed`` (default: ``seed``; it also seeds SLTT-K's draw of
the backward steps, and ``seed`` the initial parameters); its state is checkpointed after
each epoch, with the whole carry, so ``fit(..., resume=dir)`` continues exactly. The test set is
encoded once from a generator seeded with :data:`purelearn.app.task.EVAL_SEED`, the same for every run;
compact test sets (binned events) stay compact and are densified batch by batch at evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

import optree
import torch

from .. import checkpoint, compile, data, distributed, models, online, schedules, tree
from ..nn import BatchNormState, Sequential
from . import lock, memory, registry, report, task
from .config import Config, from_stored
from .errors import ConfigError, DivergedError, exit_code
from .progress import Progress
from .ranks import Ranks

__all__ = ["EVAL_DENSE_ELEMENTS", "RunResult", "Setup", "setup", "init_params", "example_step", "test_set",
           "build_learner", "TENSOR_HYPERPARAMETERS", "hyperparameter_tensors",
           "updates_per_epoch", "learning_rate", "run_epoch", "evaluate", "RUN_KEYS", "load_run", "fit"]

#: The largest dense batch (elements of [T, B, ...]) that :func:`evaluate` builds from a compact set
#: (2**26: 256 MiB of float32; SHD at T=100 is then evaluated in batches of 958).
EVAL_DENSE_ELEMENTS = 2**26


@dataclass
class RunResult:
    """What :func:`fit` returns: the resolved config, the final carry, the metrics dict, the model."""

    config: Config
    carry: Any
    metrics: dict[str, Any]
    model: Sequential
    history: list[dict[str, Any]] = field(default_factory=list)


class Setup(NamedTuple):
    """A validated, resolved config with its data, model, time weights and device."""

    config: Config
    split: data.Split
    model: Sequential
    weights: torch.Tensor  # of the loss, [T]
    predict_weights: torch.Tensor  # of the prediction, [T]
    device: torch.device


def setup(config: Config, *, configs: int = 1,
          memory_terms: Callable[[data.Split, Config], Sequence[memory.Term]] | None = None) -> Setup:
    """Validate ``config``, load its data, resolve its defaults, check that the run fits the device's
    memory (:mod:`purelearn.app.memory`: ``configs`` trained at once, ``memory_terms(split, config)``
    further terms; a ``ConfigError`` naming the option otherwise) and build its model (``tau`` a tensor
    on the device)."""
    config.validate()
    split = data.load(config.data, config.T).limit(config.limit)
    config = config.resolved(split)
    device = torch.device(config.device)
    model = registry.build_model(config.model, config.algo, split.train.step_shape, split.num_classes,
                                 tau=torch.tensor(config.tau, device=device), hidden=config.hidden)
    extra = () if memory_terms is None else memory_terms(split, config)
    memory.check(memory.estimate(config, split, model, configs, extra), config, device, configs)  # nothing large yet
    weights = task.time_weights(config.weighting, split.train.T, device=device)
    return Setup(config, split, model, weights, task.time_weights(config.predict, split.train.T, device=device),
                 device)


def init_params(model: Sequential, seed: int, example: torch.Tensor, name: str = "mlp") -> tuple[Any, Any]:
    """``models.init`` of architecture ``name`` from ``torch.Generator().manual_seed(seed)`` (CPU draws,
    then ``example``'s device)."""
    return models.init(name, model, torch.Generator().manual_seed(seed), example)


def example_step(split: data.Split, device: torch.device) -> torch.Tensor:
    """One encoded step of one training sample, [1, ...]: what models are initialised from."""
    return data.encode(split.train.x[:1], split.train.encoding, split.train.T,
                       torch.Generator().manual_seed(0))[0].to(device)


def test_set(split: data.Split, device: torch.device) -> tuple[torch.Tensor | data.Compact, torch.Tensor]:
    """The encoded test set ``(x_seq [T, N, ...], labels [N])`` (spikes drawn from ``EVAL_SEED``); a
    compact test set is returned as it is (on ``device``), for :func:`evaluate` to densify batch by batch."""
    if not isinstance(split.test.x, torch.Tensor):
        return split.test.x.to(device), split.test.y.to(device)
    x = data.encode(split.test.x, split.test.encoding, split.test.T, torch.Generator().manual_seed(task.EVAL_SEED))
    return x.to(device), split.test.y.to(device)


def build_learner(config: Config, model: Sequential, lr: Any, **values: Any) -> Any:
    """The learner of a resolved ``config`` with learning rate ``lr`` (a number, tensor or schedule);
    ``values`` replace config fields (``alpha``, ``beta`` as tensors)."""
    optimizer = registry.make_optimizer(config.optimizer, lr, config.clip)
    return registry.learner_for(config, model, optimizer, **values)


#: The learners' float hyperparameters that a run passes as tensors (so that a sweep can batch them).
TENSOR_HYPERPARAMETERS = ("alpha", "beta")


def hyperparameter_tensors(config: Config, device: torch.device | str, **values: Any) -> dict[str, Any]:
    """The :data:`TENSOR_HYPERPARAMETERS` that the algorithm of resolved ``config`` takes, as 0-d tensors
    on ``device``; ``values`` that are not None replace them (a sweep's batched tensors)."""
    return {name: values[name] if values.get(name) is not None else torch.tensor(getattr(config, name), device=device)
            for name in TENSOR_HYPERPARAMETERS if registry.takes(config.algo, name)}


def updates_per_epoch(config: Config, model: Sequential, T: int, n_batches: int) -> int:
    """Optimizer updates in one epoch of ``n_batches`` sequences of T steps."""
    return n_batches * build_learner(config, model, config.lr).updates_per_sequence(T)


def learning_rate(config: Config, lr: Any, every: int) -> schedules.Schedule:
    """``lr`` (a number or a batched tensor) over ``config``'s epochs of ``every`` updates each."""
    return registry.make_schedule(config.schedule, lr, config.epochs, warmup=config.warmup, every=every)


def run_epoch(run: Callable[..., Any], carry: Any, batch_iter: Iterable[tuple[torch.Tensor, torch.Tensor]],
              weights: torch.Tensor, num_classes: int, *,
              on_batch: Callable[[torch.Tensor, torch.Tensor, int], None] | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
              predict_weights: torch.Tensor | None = None,
              check_finite: bool = False,
              data_parallel: distributed.DataParallel | None = None) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """One pass of ``run(carry, x_seq, y_seq)`` (a learner's ``run``, or ``compile.run(learner)``) over
    ``batch_iter``; returns ``(carry, mean loss, accuracy)`` as 0-d tensors.

    ``weights`` [T] weight the loss, ``predict_weights`` [T] the prediction (default: ``weights``).
    Pure in the tensors it returns (works under ``vmap``); ``on_batch(loss_sum, correct, n)`` sees
    the running sums after each batch (for a progress bar). With ``check_finite`` (not under
    ``vmap``), a non-finite loss raises :class:`DivergedError` naming its batch (1-based); each batch's
    loss is checked after the next batch is launched, so the device is not waited on.

    With ``data_parallel`` (``batch_iter`` yields this rank's shards), the returned loss and accuracy
    are over all ranks' samples, and a non-finite loss on any rank stops every rank at that batch.
    """
    predict_weights = weights if predict_weights is None else predict_weights
    loss_sum: Any = torch.zeros((), dtype=dtype, device=device)
    correct: Any = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    pending: tuple[int, torch.Tensor] | None = None  # (batch, its loss) not yet checked
    for batch, (x_seq, labels) in enumerate(batch_iter, start=1):
        x_seq = x_seq.to(device=device, dtype=dtype)
        labels = labels.to(device)
        carry, outs = run(carry, x_seq, task.targets(labels, weights, num_classes))
        if check_finite:
            if pending is not None:
                _check_loss(*pending, data_parallel)
            pending = (batch, outs.loss)
        b = labels.shape[0]
        loss_sum = loss_sum + outs.loss.mean() * b
        correct = correct + (task.predict(outs.y, predict_weights) == labels).sum()
        n += b
        if on_batch is not None:
            on_batch(loss_sum, correct, n)
    if pending is not None:
        _check_loss(*pending, data_parallel)
    if data_parallel is not None:
        loss_sum, correct, n = _summed_over_ranks(data_parallel, loss_sum, correct, n)
    return carry, loss_sum / n, correct.to(dtype) / n


def _summed_over_ranks(data_parallel: distributed.DataParallel, loss_sum: torch.Tensor, correct: torch.Tensor,
                       n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """An epoch's sums over every rank's samples (one all-reduce, in float64: counts stay exact)."""
    totals = data_parallel.sum(torch.stack([loss_sum.double(), correct.double(),
                                            torch.tensor(float(n), dtype=torch.float64, device=loss_sum.device)]))
    return totals[0].to(loss_sum.dtype), totals[1].round().to(correct.dtype), int(totals[2].item())


def _check_loss(batch: int, loss: torch.Tensor, data_parallel: distributed.DataParallel | None = None) -> None:
    finite = torch.isfinite(loss).all()
    if data_parallel is not None:  # every rank stops at the same batch, or none does
        finite = data_parallel.sum((~finite).to(torch.float32).reshape(1))[0] == 0
    if not bool(finite):
        raise DivergedError(f"non-finite loss ({float(loss.detach().float().mean()):g}) at batch {batch}",
                            batch=batch)


def _finite(carry: Any) -> bool:
    """Whether every floating-point tensor of ``carry`` is finite (one host sync)."""
    checks = [torch.isfinite(t).all() for t in tree.leaves(carry)
              if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())]
    return bool(torch.stack(checks).all()) if checks else True


def evaluate(model: Sequential, params: Any, x_seq: torch.Tensor | data.Compact, labels: torch.Tensor,
             weights: torch.Tensor, num_classes: int, batch_size: int = 1024,
             predict_weights: torch.Tensor | None = None, states: Any = None,
             data_parallel: distributed.DataParallel | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-step loss (weighted by ``weights``) and accuracy (prediction weighted by
    ``predict_weights``, default ``weights``) of ``params`` on encoded ``x_seq`` [T, N, ...] or on a
    compact set (0-d tensors).

    The forward pass of ``model.inference()`` without gradients, from ``model.reset_states(states)``
    (``states`` of a training carry: fresh neuron memories, BatchNorm's running statistics as trained)
    or, without ``states``, from fresh states
    (:func:`purelearn.online.forward`), in batches of ``batch_size`` (of a compact set: at most
    :data:`EVAL_DENSE_ELEMENTS` dense elements per batch). With ``data_parallel``, each rank evaluates
    its contiguous part of the set and the sums are all-reduced: the numbers of the whole set.
    """
    predict_weights = weights if predict_weights is None else predict_weights
    net = model.inference()
    forward = online.forward(net, task.loss_fn)
    loss_sum: Any = 0.0
    correct: Any = 0
    n = labels.shape[0]
    first, end = (0, n) if data_parallel is None else distributed.shard_bounds(
        n, distributed.world_size(data_parallel.group), distributed.rank(data_parallel.group))
    if not isinstance(x_seq, torch.Tensor):
        batch_size = min(batch_size, max(1, EVAL_DENSE_ELEMENTS // (x_seq.T * math.prod(x_seq.step_shape))))
    for start in range(first, end, batch_size):
        stop = min(start + batch_size, end)
        xb = data.take(x_seq, start, stop).to(weights.dtype)
        lb = labels[start:stop]
        start_states = net.init_states(xb[0]) if states is None else net.reset_states(states)
        _, outs = forward.run(forward.init(params, start_states), xb, task.targets(lb, weights, num_classes))
        loss_sum = loss_sum + outs.loss.mean() * lb.shape[0]
        correct = correct + (task.predict(outs.y, predict_weights) == lb).sum()
    if data_parallel is not None:
        loss_sum, correct, n = _summed_over_ranks(data_parallel, torch.as_tensor(loss_sum, dtype=weights.dtype,
                                                                                 device=weights.device),
                                                  torch.as_tensor(correct, device=weights.device), end - first)
    return loss_sum / n, correct.to(weights.dtype) / n


#: The keys of a run's checkpoint (``data_fingerprint`` since purelearn recorded it).
RUN_KEYS = ("carry", "epoch", "data_generator", "config", "history", "train_time_s")
_HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _check_run_state(state: Any, path: str) -> None:
    """``CheckpointError`` (one line, naming ``path``) unless ``state`` has a run's keys and types."""
    def bad(message: str) -> checkpoint.CheckpointError:
        return checkpoint.CheckpointError(f"checkpoint {path} is not a run's checkpoint: {message}")

    if not isinstance(state, dict):
        raise bad(f"it holds a {type(state).__name__}, not a dict of {', '.join(RUN_KEYS)}")
    missing = [key for key in RUN_KEYS if key not in state]
    if missing:
        raise bad(f"key(s) {missing} missing (a run's checkpoint has {', '.join(RUN_KEYS)})")
    epoch, history, seconds = state["epoch"], state["history"], state["train_time_s"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad(f"'epoch' must be an integer >= 0, got {epoch!r}")
    if not isinstance(history, list) or len(history) != epoch:
        raise bad(f"'history' must be a list of one row per epoch done ({epoch}), got "
                  f"{len(history) if isinstance(history, list) else type(history).__name__}")
    for row in history:
        if not isinstance(row, dict) or any(key not in row for key in _HISTORY_KEYS):
            raise bad(f"every 'history' row must be a dict with {', '.join(_HISTORY_KEYS)}, got {str(row)[:80]!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise bad(f"'train_time_s' must be a finite number, got {seconds!r}")
    generator = state["data_generator"]
    if not (isinstance(generator, torch.Tensor) and generator.dtype == torch.uint8 and generator.dim() == 1):
        raise bad("'data_generator' must be a torch.Generator state (a 1-d uint8 tensor)")
    if not isinstance(state.get("data_fingerprint", ""), str):
        raise bad(f"'data_fingerprint' must be a string, got {state['data_fingerprint']!r}")
    if not isinstance(state["config"], str):
        raise bad(f"'config' must be the run's config as a JSON string, got {type(state['config']).__name__}")


def load_run(folder: str) -> tuple[Config, dict[str, Any]]:
    """The config and checkpoint of the run in ``folder`` (``CheckpointError`` naming the file if it
    is unreadable, corrupt, or lacks a run's keys or their types)."""
    path = os.path.join(folder, report.CHECKPOINT)
    state = checkpoint.load(path)
    _check_run_state(state, path)
    try:
        stored = json.loads(state["config"])
        if not isinstance(stored, dict):
            raise TypeError(f"a {type(stored).__name__}, not a dict")
        return from_stored(stored), state
    except (KeyError, TypeError, ValueError) as err:
        raise checkpoint.CheckpointError(f"checkpoint {path} has no valid run config ({err})") from None


def _check_resumed_carry(carry: Any, learner: Any, model: Sequential, example: torch.Tensor, config: Config,
                         resume: str) -> None:
    """A checkpoint's carry must be what the learner of its config's algorithm carries, and its params
    must fit the model its config builds now (a model that changed since, e.g. gained trained time
    constants, cannot continue the run)."""
    path = os.path.join(resume, report.CHECKPOINT)
    params, states = init_params(model, config.seed, example, config.model)
    fresh = learner.init(params, states)
    if type(carry) is not type(fresh):
        raise checkpoint.CheckpointError(
            f"checkpoint {path} holds a {type(carry).__name__}, but its config's algorithm {config.algo} carries a "
            f"{type(fresh).__name__}: the carry is not of this run")
    try:
        tree.assert_same_structure(fresh.params, carry.params, f"model {config.model!r}", "the checkpoint's params")
    except ValueError as err:
        raise checkpoint.CheckpointError(
            f"checkpoint in {resume} does not fit model {config.model!r} as purelearn {report.version()} builds it "
            f"({err}); it was written by another version: start a new run") from None
    try:
        tree.assert_same_structure(fresh, carry, f"{config.algo}'s carry", "the checkpoint's carry", shapes=False)
    except ValueError as err:
        raise checkpoint.CheckpointError(f"checkpoint {path} does not fit {config.algo}'s carry ({err})") from None
    for leaf in tree.leaves(carry):
        if not isinstance(leaf, torch.Tensor):
            raise checkpoint.CheckpointError(f"checkpoint {path}: the carry holds a {type(leaf).__name__} leaf, "
                                             "not a tensor")


def _check_data(state: dict[str, Any], fingerprint: str, resume: str, allow_changed_data: bool) -> None:
    """Refuse (or, with ``allow_changed_data``, warn about) data that differ from the run's."""
    recorded = state.get("data_fingerprint")
    if recorded is None or recorded == fingerprint:
        return
    what = (f"the data of the run in {resume} changed since its checkpoint (fingerprint {recorded[:19]}… then, "
            f"{fingerprint[:19]}… now)")
    if not allow_changed_data:
        raise ConfigError("data", f"{what}: resuming would not continue the run exactly; restore the data, or pass "
                                  "`allow_changed_data` to continue on the new data")
    warnings.warn(f"{what}; continuing on the new data (`allow_changed_data`)", stacklevel=3)


def _open_run_folder(out_dir: str, resume: str | None, overwrite: bool) -> lock.Lock:
    """Create and lock ``out_dir``, remove what interrupted writers left there, and refuse to replace a
    run in it unless ``overwrite`` (then clear it) or it is the run being resumed."""
    report.check_out_dir(out_dir)
    held = lock.acquire(out_dir)
    try:
        removed = report.remove_stale_temporaries(out_dir)
        if removed:
            warnings.warn(f"removed {len(removed)} temporary file(s) that an interrupted run left in {out_dir}",
                          stacklevel=3)
        in_place = resume is not None and os.path.realpath(resume) == os.path.realpath(out_dir)
        existing = report.run_files(out_dir)
        if existing and not in_place:
            if not overwrite:
                hint = f"continue it with `resume` {out_dir}, " if report.CHECKPOINT in existing else ""
                raise ConfigError("out_dir", f"`out_dir` {out_dir} already holds a run ({', '.join(existing)}); "
                                             f"{hint}pass `overwrite` to replace it, or choose another `out_dir`")
            report.clear_run(out_dir)
    except BaseException:
        held.release()
        raise
    return held


def fit(config: Config, out_dir: str | None = None, *, resume: str | None = None, stream: TextIO | None = None,
        plot: bool = True, epochs: int | None = None, overwrite: bool = False,
        allow_changed_data: bool = False, ranks: Ranks | None = None) -> RunResult:
    """Train ``config`` (or continue the run in ``resume``); write outputs to ``out_dir`` if given.

    With ``resume``, the run's config comes from its checkpoint (``epochs`` may raise the total
    number of epochs, never below those done; the schedule then stretches over the new total), and
    ``out_dir`` defaults to ``resume``. After every epoch the checkpoint ``out_dir/checkpoint.pt`` is
    replaced atomically; at the end ``metrics.json`` and ``learning_curve.png`` are written. Progress
    goes to ``stream`` (e.g. ``sys.stderr``; None: silent).

    ``out_dir`` is locked for the call; one that holds another run is refused (``ConfigError`` on
    ``out_dir``) unless ``overwrite``. A non-finite loss stops the run with :class:`DivergedError`
    (the last good checkpoint kept). Resumed data that changed since the checkpoint are refused
    unless ``allow_changed_data``. See the module docstring.

    With ``ranks`` (:mod:`purelearn.app.ranks`, under ``torchrun``): data parallelism — each rank
    trains on its shard of every batch and the learner averages its gradients over the ranks, so the
    run is the one-process run up to float rounding; rank 0 alone locks and writes ``out_dir`` (the
    other ranks return the same result without writing). An error found before training on any
    rank stops every rank (:meth:`Ranks.agree`).
    """
    wall_start = time.perf_counter()
    held, error = None, None
    try:
        if resume is None:
            config.validate()  # before any folder is created or locked
        else:
            out_dir = resume if out_dir is None else out_dir
        if out_dir is not None and (ranks is None or ranks.writer):
            held = _open_run_folder(out_dir, resume, overwrite)
    except Exception as err:
        if ranks is None:
            raise
        error = err
    try:
        if ranks is not None:
            ranks.agree(error, exit_code(error) if error is not None else 0)
            if not ranks.writer:  # rank 0 writes; the others read `resume` only
                out_dir, stream, plot = None, None, False
        return _fit(config, out_dir, resume, stream, plot, epochs, allow_changed_data, wall_start, ranks)
    finally:
        if held is not None:
            held.release()


def _check_shards(ranks: Ranks, n_train: int, batch_size: int, n_test: int) -> None:
    """Every rank must get at least one sample of every batch and of the test set."""
    last = n_train % batch_size
    if batch_size < ranks.world or 0 < last < ranks.world:
        size = batch_size if batch_size < ranks.world else last
        raise ConfigError("batch_size", f"`batch_size` {batch_size} over {n_train} training samples gives a batch of "
                                        f"{size} sample(s), fewer than the {ranks.world} ranks (each takes a part of "
                                        "every batch): choose a `batch_size` that leaves every batch at least "
                                        f"{ranks.world} samples, or launch fewer ranks")
    if n_test < ranks.world:
        raise ConfigError("data", f"the test set has {n_test} sample(s), fewer than the {ranks.world} ranks that "
                                  "evaluate parts of it; launch fewer ranks")


def _even_out(ranks: Ranks | None, carry: Any, owner: str) -> Any:
    """After an epoch under data parallelism: BatchNorm's running statistics (per rank: each saw its
    shard) become their mean over the ranks, and the params and optimizer state, identical by
    construction, are checked to be (:class:`~purelearn.distributed.RanksDisagree` otherwise)."""
    if ranks is None:
        return carry
    dp = ranks.data_parallel
    statistics = lambda s: isinstance(s, BatchNormState)  # noqa: E731
    states = optree.tree_map(lambda s: dp.mean(s) if statistics(s) else s, carry.states, is_leaf=statistics,
                             none_is_leaf=True)
    dp.check_same((carry.params, carry.opt_state), f"{owner}'s params and optimizer state")
    return carry._replace(states=states)


def _fit(config: Config, out_dir: str | None, resume: str | None, stream: TextIO | None, plot: bool,
         epochs: int | None, allow_changed_data: bool, wall_start: float, ranks: Ranks | None = None) -> RunResult:
    """:func:`fit` once its folder is held."""
    try:
        prepared = _prepare(config, out_dir, resume, plot, epochs, allow_changed_data, ranks)
    except Exception as err:
        if ranks is None:
            raise
        ranks.agree(err, exit_code(err))
    else:
        if ranks is not None:
            ranks.agree(None)
    return _train(prepared, out_dir, stream, plot, wall_start, ranks)


def _prepare(config: Config, out_dir: str | None, resume: str | None, plot: bool, epochs: int | None,
             allow_changed_data: bool, ranks: Ranks | None) -> _Prepared:
    """Everything :func:`fit` checks and builds before the first epoch."""
    state = None
    if resume is not None:
        config, state = load_run(resume)
        if epochs is not None and epochs < state["epoch"]:
            raise ConfigError("epochs", f"`epochs` {epochs} is below the {state['epoch']} epochs the run in {resume} "
                                        f"has done; give `epochs` >= {state['epoch']}, or leave it out")
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    if ranks is not None:  # "cuda": this rank's GPU
        config = dataclasses.replace(config, device=ranks.device(config.device))
    if state is not None and state["epoch"] > config.epochs:
        raise checkpoint.CheckpointError(f"checkpoint in {resume} has done {state['epoch']} epochs but its config "
                                         f"says epochs={config.epochs}: it does not describe one run")
    config, split, model, weights, predict_weights, device = setup(config)
    if ranks is not None:
        _check_shards(ranks, len(split.train), config.batch_size, len(split.test))
    fingerprint = data.fingerprint(split)
    if state is not None:
        _check_data(state, fingerprint, resume, allow_changed_data)
    if out_dir is not None and plot:
        report.pyplot()  # fail now, not after training, if matplotlib is missing
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    T = split.train.T
    n_batches = math.ceil(len(split.train) / config.batch_size)
    every = updates_per_epoch(config, model, T, n_batches)
    lr = learning_rate(config, config.lr, every)
    learner = build_learner(config, model, lr, **hyperparameter_tensors(config, device),
                            data_parallel=None if ranks is None else ranks.data_parallel)
    run = compile.run(learner) if config.compile else learner.run
    generator = torch.Generator().manual_seed(config.data_seed)
    example = example_step(split, device)
    params0, states0 = init_params(model, config.seed, example, config.model)
    fresh = learner.init(params0, states0)
    measured = memory.measure(model, fresh, params0, states0, example)
    memory.check(memory.estimate(config, split, model, measured=measured), config, device)  # before the test set
    x_test, y_test = test_set(split, device)
    saved_epoch = None  # the epoch of the checkpoint in out_dir
    if state is None:
        carry = fresh
        start_epoch, history, train_time = 0, [], 0.0
    else:
        _check_resumed_carry(state["carry"], learner, model, example, config, resume)
        carry = tree.map(lambda t: t.to(device), state["carry"])
        try:
            generator.set_state(state["data_generator"])
        except (RuntimeError, TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"checkpoint in {resume}: 'data_generator' is not a generator state "
                                             f"({' '.join(str(err).split())[:120]})") from None
        start_epoch, history, train_time = int(state["epoch"]), list(state["history"]), float(state["train_time_s"])
        if out_dir is not None and os.path.realpath(out_dir) == os.path.realpath(resume):
            saved_epoch = start_epoch
    num_params = sum(p.numel() for p in tree.leaves(carry.params))
    rss_start = report.current_rss()  # after data, model and plotting are loaded: the growth is training's
    return _Prepared(config, split, model, weights, predict_weights, device, fingerprint, n_batches, every, lr,
                     learner, run, generator, x_test, y_test, saved_epoch, carry, start_epoch, history, train_time,
                     num_params, rss_start)


class _Prepared(NamedTuple):
    config: Config
    split: data.Split
    model: Sequential
    weights: torch.Tensor
    predict_weights: torch.Tensor
    device: torch.device
    fingerprint: str
    n_batches: int
    every: int
    lr: Any
    learner: Any
    run: Callable[..., Any]
    generator: torch.Generator
    x_test: Any
    y_test: torch.Tensor
    saved_epoch: int | None
    carry: Any
    start_epoch: int
    history: list[dict[str, Any]]
    train_time: float
    num_params: int
    rss_start: int | None


def _train(prepared: _Prepared, out_dir: str | None, stream: TextIO | None, plot: bool, wall_start: float,
           ranks: Ranks | None) -> RunResult:
    """:func:`fit`'s epochs, checkpoints and metrics."""
    (config, split, model, weights, predict_weights, device, fingerprint, n_batches, every, lr, learner, run,
     generator, x_test, y_test, saved_epoch, carry, start_epoch, history, train_time, num_params,
     rss_start) = prepared
    num_classes = split.num_classes
    data_parallel = None if ranks is None else ranks.data_parallel

    def what_is_kept() -> str:
        """What a failed write leaves of the run (writes are atomic: the previous files are intact)."""
        if saved_epoch is None:
            return "no checkpoint of this run was written"
        return (f"the last good checkpoint (epoch {saved_epoch}) is kept in {out_dir}: free space (or make the "
                f"folder writable) and continue with `resume` {out_dir}")

    def finish(diverged: dict[str, Any] | None = None) -> dict[str, Any]:
        metrics = report.metrics(config, split, history, train_time, device, num_params, rss_start, fingerprint,
                                 world_size=1 if ranks is None else ranks.world)
        if diverged is not None:
            metrics["diverged"] = diverged
        metrics["wall_time_s"] = time.perf_counter() - wall_start  # this call: data, training, evaluation, files
        if out_dir is not None:
            path = os.path.join(out_dir, report.METRICS)
            with report.writing(path, what_is_kept()):
                report.write_json(path, metrics)
            if plot and history:
                path = os.path.join(out_dir, report.CURVE)
                with report.writing(path, what_is_kept()):
                    report.plot_learning_curve(history, path, f"{config.algo} on {split.name} ({config.model})")
        return metrics

    def diverge(epoch: int, batch: int | None, what: str) -> DivergedError:
        if out_dir is None:
            kept = ""
        elif saved_epoch is None:
            kept = "; no checkpoint was written"
        else:
            kept = f"; the last good checkpoint (epoch {saved_epoch}) is kept in {out_dir}"
        message = f"training diverged: {what}{kept}; try a lower `lr` or gradient clipping (`clip`)"
        finish({"epoch": epoch, "batch": batch, "message": message})
        return DivergedError(message, epoch, batch)

    for epoch in range(start_epoch, config.epochs):
        bar = Progress(stream, n_batches, f"epoch {epoch + 1:>{len(str(config.epochs))}}/{config.epochs}")

        def on_batch(loss_sum: torch.Tensor, correct: torch.Tensor, n: int, bar: Progress = bar) -> None:
            bar.update(f"loss {loss_sum.item() / n:.4f} acc {100 * correct.item() / n:.1f}%" if bar.live else "")

        t0 = time.perf_counter()
        batches = data.batches(split.train, config.batch_size, generator)
        if ranks is not None:  # every rank draws the global batch (same order, same spikes) and takes its part
            batches = ((ranks.shard(x_seq, 1), ranks.shard(labels, 0)) for x_seq, labels in batches)
        try:
            carry, train_loss, train_acc = run_epoch(
                run, carry, batches, weights, num_classes, on_batch=on_batch, device=device,
                predict_weights=predict_weights, check_finite=True, data_parallel=data_parallel)
        except DivergedError as err:
            bar.close("diverged")
            raise diverge(epoch + 1, err.batch, f"{err} of {n_batches} in epoch {epoch + 1}") from None
        carry = _even_out(ranks, carry, config.algo)
        if not _finite(carry):
            bar.close("diverged")
            raise diverge(epoch + 1, None, "the parameters or optimizer state became non-finite in the last update "
                                           f"(batch {n_batches} of {n_batches}) of epoch {epoch + 1}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        train_time += elapsed
        test_loss, test_acc = evaluate(model, carry.params, x_test, y_test, weights, num_classes,
                                       predict_weights=predict_weights, states=carry.states,
                                       data_parallel=data_parallel)
        row = {"epoch": epoch + 1, "lr": float(lr(torch.tensor(epoch * every))), "train_loss": train_loss.item(),
               "train_accuracy": train_acc.item(), "test_loss": test_loss.item(),
               "test_accuracy": test_acc.item(), "time_s": elapsed}
        history.append(row)
        bar.close(f"loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.1f}% "
                  f"test {100 * row['test_accuracy']:.1f}%")
        if out_dir is not None:
            path = os.path.join(out_dir, report.CHECKPOINT)
            with report.writing(path, f"epoch {epoch + 1} was not saved; {what_is_kept()}"):
                checkpoint.save(path, {
                    "carry": carry, "epoch": epoch + 1, "data_generator": generator.get_state(),
                    "config": json.dumps(config.to_dict()), "history": history, "train_time_s": train_time,
                    "data_fingerprint": fingerprint})
            saved_epoch = epoch + 1
    metrics = finish()
    return RunResult(config, carry, metrics, model, history)
