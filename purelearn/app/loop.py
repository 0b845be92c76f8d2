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
epoch) hold ``{"carry", "epoch", "data_generator", "config", "history", "train_time_s"}``.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

import torch

from .. import checkpoint, compile, data, models, online, schedules, tree
from ..nn import Sequential
from . import registry, report, task
from .config import Config, from_stored
from .progress import Progress

__all__ = ["EVAL_DENSE_ELEMENTS", "RunResult", "Setup", "setup", "init_params", "example_step", "test_set",
           "build_learner",
           "updates_per_epoch", "learning_rate", "run_epoch", "evaluate", "load_run", "fit"]

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


def setup(config: Config) -> Setup:
    """Validate ``config``, load its data, resolve its defaults and build its model (``tau`` a tensor
    on the device)."""
    config.validate()
    split = data.load(config.data, config.T).limit(config.limit)
    config = config.resolved(split)
    device = torch.device(config.device)
    model = registry.build_model(config.model, config.algo, split.train.step_shape, split.num_classes,
                                 tau=torch.tensor(config.tau, device=device), hidden=config.hidden)
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
              predict_weights: torch.Tensor | None = None) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """One pass of ``run(carry, x_seq, y_seq)`` (a learner's ``run``, or ``compile.run(learner)``) over
    ``batch_iter``; returns ``(carry, mean loss, accuracy)`` as 0-d tensors.

    ``weights`` [T] weight the loss, ``predict_weights`` [T] the prediction (default: ``weights``).
    Pure in the tensors it returns (works under ``vmap``); ``on_batch(loss_sum, correct, n)`` sees
    the running sums after each batch (for a progress bar).
    """
    predict_weights = weights if predict_weights is None else predict_weights
    loss_sum: Any = torch.zeros((), dtype=dtype, device=device)
    correct: Any = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    for x_seq, labels in batch_iter:
        x_seq = x_seq.to(device=device, dtype=dtype)
        labels = labels.to(device)
        carry, outs = run(carry, x_seq, task.targets(labels, weights, num_classes))
        b = labels.shape[0]
        loss_sum = loss_sum + outs.loss.mean() * b
        correct = correct + (task.predict(outs.y, predict_weights) == labels).sum()
        n += b
        if on_batch is not None:
            on_batch(loss_sum, correct, n)
    return carry, loss_sum / n, correct.to(dtype) / n


def evaluate(model: Sequential, params: Any, x_seq: torch.Tensor | data.Compact, labels: torch.Tensor,
             weights: torch.Tensor, num_classes: int, batch_size: int = 1024,
             predict_weights: torch.Tensor | None = None, states: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-step loss (weighted by ``weights``) and accuracy (prediction weighted by
    ``predict_weights``, default ``weights``) of ``params`` on encoded ``x_seq`` [T, N, ...] or on a
    compact set (0-d tensors).

    The forward pass of ``model.inference()`` without gradients, from ``model.reset_states(states)``
    (``states`` of a training carry: fresh neuron memories, BatchNorm's running statistics as trained)
    or, without ``states``, from fresh states
    (:func:`purelearn.online.forward`), in batches of ``batch_size`` (of a compact set: at most
    :data:`EVAL_DENSE_ELEMENTS` dense elements per batch).
    """
    predict_weights = weights if predict_weights is None else predict_weights
    net = model.inference()
    forward = online.forward(net, task.loss_fn)
    loss_sum: Any = 0.0
    correct: Any = 0
    n = labels.shape[0]
    if not isinstance(x_seq, torch.Tensor):
        batch_size = min(batch_size, max(1, EVAL_DENSE_ELEMENTS // (x_seq.T * math.prod(x_seq.step_shape))))
    for start in range(0, n, batch_size):
        xb = data.take(x_seq, start, start + batch_size).to(weights.dtype)
        lb = labels[start:start + batch_size]
        start_states = net.init_states(xb[0]) if states is None else net.reset_states(states)
        _, outs = forward.run(forward.init(params, start_states), xb, task.targets(lb, weights, num_classes))
        loss_sum = loss_sum + outs.loss.mean() * lb.shape[0]
        correct = correct + (task.predict(outs.y, predict_weights) == lb).sum()
    return loss_sum / n, correct.to(weights.dtype) / n


def load_run(folder: str) -> tuple[Config, dict[str, Any]]:
    """The config and checkpoint of the run in ``folder`` (``CheckpointError`` if unreadable)."""
    state = checkpoint.load(os.path.join(folder, report.CHECKPOINT))
    try:
        return from_stored(json.loads(state["config"])), state
    except (KeyError, TypeError, ValueError) as err:
        raise checkpoint.CheckpointError(f"checkpoint in {folder} has no valid run config ({err})") from None


def _check_resumed_params(params: Any, model: Sequential, example: torch.Tensor, config: Config,
                          resume: str | None) -> None:
    """A checkpoint's params must fit the model its config builds now (a model that changed since,
    e.g. gained trained time constants, cannot continue the run)."""
    fresh, _ = init_params(model, config.seed, example, config.model)
    try:
        tree.assert_same_structure(fresh, params, f"model {config.model!r}", "the checkpoint's params")
    except ValueError as err:
        raise checkpoint.CheckpointError(
            f"checkpoint in {resume} does not fit model {config.model!r} as purelearn {report.version()} builds it "
            f"({err}); it was written by another version: start a new run") from None


def fit(config: Config, out_dir: str | None = None, *, resume: str | None = None, stream: TextIO | None = None,
        plot: bool = True, epochs: int | None = None) -> RunResult:
    """Train ``config`` (or continue the run in ``resume``); write outputs to ``out_dir`` if given.

    With ``resume``, the run's config comes from its checkpoint (``epochs`` may raise the total
    number of epochs; the schedule then stretches over the new total). After every epoch the
    checkpoint ``out_dir/checkpoint.pt`` is replaced atomically; at the end ``metrics.json`` and
    ``learning_curve.png`` are written. Progress goes to ``stream`` (e.g. ``sys.stderr``; None: silent).
    """
    wall_start = time.perf_counter()
    state = None
    if resume is not None:
        config, state = load_run(resume)
        out_dir = resume if out_dir is None else out_dir
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    config, split, model, weights, predict_weights, device = setup(config)
    if out_dir is not None:
        report.check_out_dir(out_dir)
        if plot:
            report.pyplot()  # fail now, not after training, if matplotlib is missing
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    num_classes, T = split.num_classes, split.train.T
    n_batches = math.ceil(len(split.train) / config.batch_size)
    every = updates_per_epoch(config, model, T, n_batches)
    lr = learning_rate(config, config.lr, every)
    learner = build_learner(config, model, lr, alpha=torch.tensor(config.alpha, device=device),
                            beta=torch.tensor(config.beta, device=device))
    run = compile.run(learner) if config.compile else learner.run
    generator = torch.Generator().manual_seed(config.data_seed)
    x_test, y_test = test_set(split, device)
    example = example_step(split, device)
    if state is None:
        carry = learner.init(*init_params(model, config.seed, example, config.model))
        start_epoch, history, train_time = 0, [], 0.0
    else:
        carry = tree.map(lambda t: t.to(device), state["carry"])
        _check_resumed_params(carry.params, model, example, config, resume)
        generator.set_state(state["data_generator"])
        start_epoch, history, train_time = int(state["epoch"]), list(state["history"]), float(state["train_time_s"])
    num_params = sum(p.numel() for p in tree.leaves(carry.params))
    rss_start = report.current_rss()  # after data, model and plotting are loaded: the growth is training's
    for epoch in range(start_epoch, config.epochs):
        bar = Progress(stream, n_batches, f"epoch {epoch + 1:>{len(str(config.epochs))}}/{config.epochs}")

        def on_batch(loss_sum: torch.Tensor, correct: torch.Tensor, n: int, bar: Progress = bar) -> None:
            bar.update(f"loss {loss_sum.item() / n:.4f} acc {100 * correct.item() / n:.1f}%" if bar.live else "")

        t0 = time.perf_counter()
        carry, train_loss, train_acc = run_epoch(
            run, carry, data.batches(split.train, config.batch_size, generator), weights, num_classes,
            on_batch=on_batch, device=device, predict_weights=predict_weights)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        train_time += elapsed
        test_loss, test_acc = evaluate(model, carry.params, x_test, y_test, weights, num_classes,
                                       predict_weights=predict_weights, states=carry.states)
        row = {"epoch": epoch + 1, "lr": float(lr(torch.tensor(epoch * every))), "train_loss": train_loss.item(),
               "train_accuracy": train_acc.item(), "test_loss": test_loss.item(),
               "test_accuracy": test_acc.item(), "time_s": elapsed}
        history.append(row)
        bar.close(f"loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.1f}% "
                  f"test {100 * row['test_accuracy']:.1f}%")
        if out_dir is not None:
            checkpoint.save(os.path.join(out_dir, report.CHECKPOINT), {
                "carry": carry, "epoch": epoch + 1, "data_generator": generator.get_state(),
                "config": json.dumps(config.to_dict()), "history": history, "train_time_s": train_time})
    metrics = report.metrics(config, split, history, train_time, device, num_params, rss_start)
    metrics["wall_time_s"] = time.perf_counter() - wall_start  # this call: data, training, evaluation, files
    if out_dir is not None:
        report.write_json(os.path.join(out_dir, report.METRICS), metrics)
        if plot and history:
            report.plot_learning_curve(history, os.path.join(out_dir, report.CURVE),
                                       f"{config.algo} on {split.name} ({config.model})")
    return RunResult(config, carry, metrics, model, history)
