"""Hyperparameter sweeps: a grid of configurations trained as one ``torch.func.vmap``-ed program.

:func:`sweep_fit` turns learning rates, alphas and taus into batched tensors and seeds into stacked
initial parameters (:func:`purelearn.tree.stack`), and runs :func:`purelearn.sweep.vmap_configs`
over the training loop of :mod:`purelearn.app.loop`. The batches (order and spikes, from
``data_seed``) are shared, so each row equals :func:`~purelearn.app.loop.fit` with that row's values
and the same ``data_seed``. The optimizer is built once per row, its learning-rate schedule over
the row's (batched) ``lr``.

Sharded over ranks (``sweep_fit(..., ranks=...)``, e.g. under ``torchrun``): every rank builds the
same grid (same rows, same order), loads the same data and draws the same batches and test set;
rank ``r`` trains only its contiguous slice of the rows (:meth:`~purelearn.app.ranks.Ranks.bounds`)
as one vmapped program, its memory checked for that slice alone. The ranks then gather their rows'
results (on CPU) in rank order, so every rank holds the one-process rows and stacked parameters;
rank 0 alone holds the folder's lock, prints progress and writes the files. A mistake found before
training on any rank (a config, the data, the folder) is agreed on (:meth:`Ranks.agree`): the first
rank that found it raises it, the others :class:`~purelearn.app.ranks.StoppedByRank` with its message
and exit code. A rank that fails during training leaves the others waiting in the gather until the
process group's timeout (or until ``torchrun`` stops them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

import torch

from .. import data, models, sweep, tree
from . import lock, memory, registry, report
from .config import INT_MAX, Config, check_tau
from .errors import ConfigError, exit_code
from .loop import (
    build_learner,
    evaluate,
    example_step,
    hyperparameter_tensors,
    init_params,
    learning_rate,
    run_epoch,
    setup,
    test_set,
    updates_per_epoch,
)
from .progress import Progress

if TYPE_CHECKING:
    from .ranks import Ranks

__all__ = ["SWEEPABLE", "MAX_CONFIGS", "parse_values", "epoch_plans", "sweep_fit"]

SWEEPABLE = ("lr", "alpha", "tau", "seed")
#: The most configurations one sweep trains unless ``max_configs`` says otherwise: every one holds its
#: parameters, optimizer state and activations at once in the vmapped program.
MAX_CONFIGS = 1024


def parse_values(name: str, text: str, integer: bool = False, max_values: int = MAX_CONFIGS) -> list[float]:
    """``"0.1,0.2"`` → [0.1, 0.2]; ``"start:stop:num"`` → ``num`` evenly spaced values from start to
    stop inclusive; ``"start:stop:num:log"`` → geometrically spaced. ``ConfigError`` on field ``name``
    (also for more than ``max_values`` values, refused before they are made; seeds must lie in
    0..2**63 − 1)."""
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "log"):
                raise ValueError
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1 or (len(parts) == 4 and (start <= 0 or stop <= 0)):
                raise ValueError
            if num > max_values:
                raise ConfigError(name, f"`{name}` {text}: {num} values, more than `max_configs` {max_values} (the "
                                        "most configurations one sweep trains)")
            fractions = [i / max(num - 1, 1) for i in range(num)]
            values = ([start * (stop / start) ** f for f in fractions] if len(parts) == 4
                      else [start + (stop - start) * f for f in fractions])
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
            if not values:
                raise ValueError
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(name, f"`{name}`: expected a comma-separated list (0.1,0.2) or a range start:stop:num "
                                f"(or start:stop:num:log), got {text!r}") from None
    if len(values) > max_values:
        raise ConfigError(name, f"`{name}`: {len(values)} values, more than `max_configs` {max_values} (the most "
                                "configurations one sweep trains)")
    if integer:
        if ":" not in text:  # read exactly, not through a float (a seed may need all 63 bits)
            with contextlib.suppress(ValueError):
                values = [int(v) for v in text.split(",") if v.strip()]
        if any(not math.isfinite(v) or v != int(v) or not 0 <= v <= INT_MAX for v in values):
            raise ConfigError(name, f"`{name}`: expected integers in 0..{INT_MAX} (2**63 - 1), got {text!r}")
        return [int(v) for v in values]
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(name, f"`{name}`: every value must be a number > 0, got {text!r}")
    return values


class _Densified:
    """One epoch of a compact training set: its batches' indices, densified when iterated (no random
    draw, so inside ``vmap`` too), never all at once."""

    def __init__(self, ds: data.Dataset, indices: list[torch.Tensor]) -> None:
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Any:
        return ((self.ds.x[index].dense(), self.ds.y[index]) for index in self.indices)


def epoch_plans(split: data.Split, config: Config) -> list[Any]:
    """Every epoch's batches, drawn exactly as :func:`~purelearn.app.loop.fit` draws them (rate spikes
    kept as bool; compact data densified batch by batch as the epoch is iterated)."""
    generator = torch.Generator().manual_seed(config.data_seed)
    if not isinstance(split.train.x, torch.Tensor):
        return [_Densified(split.train, data.batch_indices(len(split.train), config.batch_size, generator))
                for _ in range(config.epochs)]
    return [[(x_seq.bool() if split.train.encoding == "rate" else x_seq, labels)
             for x_seq, labels in data.batches(split.train, config.batch_size, generator)]
            for _ in range(config.epochs)]


def _check_axes(config: Config, axes: dict[str, list[float]], max_configs: int = MAX_CONFIGS) -> None:
    if not axes:
        raise ValueError("sweep: give at least one of `lr`, `alpha`, `tau`, `seed` with a list of values")
    for name in axes:
        if name not in SWEEPABLE:
            raise ValueError(f"sweep: cannot sweep {name!r}; sweepable: {', '.join(SWEEPABLE)}")
        registry.check_takes(config.algo, name)
    if isinstance(max_configs, bool) or not isinstance(max_configs, int) or max_configs < 1:
        raise ConfigError("max_configs", f"`max_configs` must be an integer >= 1, got {max_configs!r}")
    count = math.prod(len(values) for values in axes.values())
    if count > max_configs:
        sizes = " × ".join(f"{len(values)} `{name}`" for name, values in axes.items())
        raise ConfigError("max_configs", f"sweep: {sizes} values make {count} configurations, more than `max_configs` "
                                         f"{max_configs}; one vmapped program holds every configuration's parameters, "
                                         "optimizer state and activations at once: give fewer values, or raise "
                                         "`max_configs` (the memory estimate still applies)")
    if config.compile:
        raise ConfigError("compile", "sweep: `compile` is not supported (the vmapped program runs eagerly)")


def _check_split(count: int, ranks: Ranks | None) -> None:
    """``count`` configurations must give every rank at least one (``ConfigError`` otherwise)."""
    if ranks is not None and count < ranks.world:
        raise ConfigError("max_configs", f"sweep: {count} configurations cannot be split over {ranks.world} ranks; "
                                         f"give at least {ranks.world} configurations or launch fewer ranks")


@contextlib.contextmanager
def _agreed(ranks: Ranks | None) -> Iterator[None]:
    """The block, then (with ``ranks``) a check point every rank passes: an error raised in the block
    on any rank is raised there and stops the others (:meth:`Ranks.agree`), instead of leaving them
    waiting in a later collective."""
    if ranks is None:
        yield
        return
    try:
        yield
    except Exception as err:
        ranks.agree(err, exit_code(err))
    ranks.agree(None)


def _rank(rows: list[dict[str, Any]]) -> list[int]:
    """Row indices by test accuracy (then test loss); each row gets its ``rank``."""
    ranked = sorted(range(len(rows)), key=lambda i: (-rows[i]["test_accuracy"], rows[i]["test_loss"]))
    for rank, i in enumerate(ranked, start=1):
        rows[i]["rank"] = rank
    return ranked


def sweep_fit(config: Config, axes: dict[str, list[float]], out_dir: str | None = None, *,
              stream: TextIO | None = None, plot: bool = True, overwrite: bool = False,
              max_configs: int = MAX_CONFIGS, ranks: Ranks | None = None) -> dict[str, Any]:
    """Train the grid ``axes`` (names from :data:`SWEEPABLE`) over ``config`` as one vmapped program.

    Returns ``{"rows": [...], "axes": [...], "config": ..., "time_s": ..., "world_size": ...,
    "params": stacked}``; rows carry the axis values, final test/train accuracy and loss, and the
    per-epoch test accuracy. With ``out_dir``: ``sweep.csv``, ``sweep.json`` and ``sweep.png``; the
    folder is locked while the sweep runs, and one that already holds a sweep (``sweep.json``) is
    refused (``ConfigError`` on ``out_dir``, before any training) unless ``overwrite``. Rows whose
    losses became non-finite are kept, their non-finite numbers written as ``null`` in ``sweep.json``.
    A grid of more than ``max_configs`` configurations (an axis swept that the algorithm does not
    take) is refused (``ConfigError``), and so is one whose memory estimate
    (:mod:`purelearn.app.memory`, every configuration's carry and activations) exceeds the machine's,
    before anything is trained.

    ``ranks`` (world K > 1; every rank calls this with the same arguments): rank r trains its slice of
    the rows (the memory estimate is for that slice), the results are gathered, and every rank returns
    the full rows in the one-process order with ``params`` stacked on CPU; ``time_s`` is rank 0's
    training time, ``time_s_per_rank`` every rank's. Only rank 0 locks, checks and writes ``out_dir``
    and prints to ``stream``; ``sweep.json`` records ``world_size`` and ``time_s_per_rank``. Fewer
    configurations than ranks is a ``ConfigError``. An error before training (this one too) is raised
    by the first rank that has it, the others raise :class:`~purelearn.app.ranks.StoppedByRank`.
    """
    ranks = ranks if ranks is not None and ranks.world > 1 else None
    writer = ranks is None or ranks.writer
    writes = out_dir is not None and writer
    with contextlib.ExitStack() as held:
        with _agreed(ranks):
            _check_axes(config, axes, max_configs)
            _check_split(math.prod(len(values) for values in axes.values()), ranks)
            if writes:
                config.validate()  # before the folder is created
                report.check_out_dir(out_dir)
                held.enter_context(lock.hold(out_dir))
                if report.run_files(out_dir, (report.SWEEP,)) and not overwrite:
                    raise ConfigError("out_dir", f"`out_dir` {out_dir} already holds a sweep ({report.SWEEP}); pass "
                                                 "`overwrite` to replace it, or choose another `out_dir`")
        return _sweep_fit(config, axes, out_dir if writes else None, stream if writer else None, plot, max_configs,
                          ranks)


def _plans_term(split: data.Split, config: Config) -> memory.Term:
    """The batches of every epoch that :func:`epoch_plans` draws before training (compact sets: indices only)."""
    ds = split.train
    if not isinstance(ds.x, torch.Tensor):
        return memory.Term("the batch indices of every epoch", config.epochs * len(ds) * 8, ("epochs",))
    per_element = 1 if ds.encoding == "rate" else 4  # rate spikes are kept as bool
    n = config.epochs * len(ds) * ds.T * math.prod(ds.step_shape)
    return memory.Term(f"the encoded batches of all {config.epochs} epochs", n * per_element, ("epochs", "T"))


def _sweep_fit(config: Config, axes: dict[str, list[float]], out_dir: str | None, stream: TextIO | None,
               plot: bool, max_configs: int = MAX_CONFIGS, ranks: Ranks | None = None) -> dict[str, Any]:
    with _agreed(ranks):
        _check_axes(config, axes, max_configs)
        configs = sweep.grid(**axes)
        names = list(axes)
        rows = sweep.rows(configs)
        for row, combo in zip(rows, itertools.product(*axes.values()), strict=True):
            row.update(zip(names, combo, strict=True))  # the values as given, not their float32 roundings
        _check_split(len(rows), ranks)
        start, stop = (0, len(rows)) if ranks is None else ranks.bounds(len(rows))
        base = dataclasses.replace(config, **{n: (int(v[0]) if n == "seed" else v[0]) for n, v in axes.items()})
        if "seed" in axes and config.data_seed is None:
            base.data_seed = config.seed  # the data order must not follow the swept seed
        base, split, model, weights, predict_weights, device = setup(
            base, configs=stop - start, memory_terms=lambda split, config: [_plans_term(split, config)])
        for tau in axes.get("tau", []):
            check_tau(base.model, tau)
        if out_dir is not None:
            report.check_out_dir(out_dir)
            if plot:
                report.pyplot()
        example = example_step(split, device)
        # initial parameters per row: from its seed, and from its tau where tau is a trained parameter's start
        tau_is_param = "tau" in axes and models.learns_tau(model)
        keys = [(int(r["seed"]) if "seed" in r else base.seed, r["tau"] if tau_is_param else None) for r in rows]

        def initial(seed: int, tau: float | None) -> tuple[Any, Any]:
            net = model if tau is None else registry.build_model(base.model, base.algo, split.train.step_shape,
                                                                 split.num_classes, tau=tau, hidden=base.hidden)
            return init_params(net, seed, example, base.model)

        inits = {key: initial(*key) for key in dict.fromkeys([keys[0], *keys[start:stop]])}
        params0, states0 = inits[keys[0]]
        probe = build_learner(base, model, base.lr, **hyperparameter_tensors(base, device))
        measured = memory.measure(model, probe.init(params0, states0), params0, states0, example)
        memory.check(memory.estimate(base, split, model, stop - start, [_plans_term(split, base)], measured), base,
                     device, stop - start)
        batched = {n: configs[n][start:stop].to(device) for n in names if n != "seed"}
        batched["params0"] = tree.map(lambda t: t.to(device), tree.stack([inits[key][0] for key in keys[start:stop]]))
        plans = epoch_plans(split, base)
        x_test, y_test = test_set(split, device)
    n_batches = len(plans[0])
    every = updates_per_epoch(base, model, split.train.T, n_batches)
    bar = Progress(stream, n_batches * base.epochs, f"sweep of {len(rows)} configs" +
                   ("" if ranks is None else f" ({stop - start} on rank {ranks.rank} of {ranks.world})"))

    def program(params0: Any, lr: Any = base.lr, alpha: Any = None, tau: Any = None) -> dict[str, Any]:
        tau = torch.tensor(base.tau, device=device) if tau is None else tau
        net = registry.build_model(base.model, base.algo, split.train.step_shape, split.num_classes, tau=tau,
                                   hidden=base.hidden)
        learner = build_learner(base, net, learning_rate(base, lr, every),
                                **hyperparameter_tensors(base, device, alpha=alpha))
        carry = learner.init(params0, states0)
        curve_acc, curve_loss, train_loss, train_acc = [], [], None, None
        for epoch, plan in enumerate(plans):
            carry, train_loss, train_acc = run_epoch(
                learner.run, carry, plan, weights, split.num_classes, device=device, predict_weights=predict_weights,
                on_batch=lambda *_, e=epoch: bar.update(f"epoch {e + 1}/{base.epochs}"))
            test_loss, test_acc = evaluate(net, carry.params, x_test, y_test, weights, split.num_classes,
                                           predict_weights=predict_weights, states=carry.states)
            curve_acc.append(test_acc)
            curve_loss.append(test_loss)
        return {"params": carry.params, "test_accuracy": torch.stack(curve_acc),
                "test_loss": torch.stack(curve_loss), "train_loss": train_loss, "train_accuracy": train_acc}

    t0 = time.perf_counter()
    out = sweep.vmap_configs(program, batched)
    elapsed = time.perf_counter() - t0
    bar.close(f"done in {elapsed:.1f}s")
    peak, kind = report.peak_memory(device)
    out, times, peaks = _gathered(out, elapsed, peak, ranks)
    for i, row in enumerate(rows):
        if "seed" in row:
            row["seed"] = int(row["seed"])
        row.update({"test_accuracy": out["test_accuracy"][i, -1].item(), "test_loss": out["test_loss"][i, -1].item(),
                    "train_accuracy": out["train_accuracy"][i].item(), "train_loss": out["train_loss"][i].item(),
                    "test_accuracy_per_epoch": out["test_accuracy"][i].tolist()})
    ranked = _rank(rows)
    result = {"config": base.to_dict(), "axes": names, "rows": rows, "time_s": times[0],
              "time_s_per_rank": times, "world_size": 1 if ranks is None else ranks.world, "peak_memory_bytes": peak,
              "peak_memory_kind": kind, "peak_memory_bytes_per_rank": peaks, "params": out["params"]}
    if out_dir is not None:
        with report.writing(os.path.join(out_dir, "sweep.*"), "the sweep's results were not saved"):
            report.write_csv(os.path.join(out_dir, "sweep.csv"),
                             ["rank", *names, "test_accuracy", "test_loss", "train_accuracy", "train_loss"],
                             [rows[i] for i in ranked])
            report.write_json(os.path.join(out_dir, report.SWEEP),
                              {k: v for k, v in result.items() if k != "params"} | {"ranked": ranked})
            if plot:
                report.plot_sweep(rows, [n for n in names if len(axes[n]) > 1] or names,
                                  os.path.join(out_dir, "sweep.png"))
    return result


def _gathered(out: dict[str, Any], elapsed: float, peak: int,
              ranks: Ranks | None) -> tuple[dict[str, Any], list[float], list[int]]:
    """Every rank's slice of the vmapped outputs (leaves [k_r, ...]) joined in rank order on CPU
    (leaves [K, ...]), with every rank's training time and peak memory; as they are without ``ranks``."""
    if ranks is None:
        return out, [elapsed], [peak]
    slices = ranks.gather((tree.map(lambda t: t.detach().cpu(), out), elapsed, peak))
    joined = tree.map(lambda *parts: torch.cat(parts), *(part for part, _, _ in slices))
    return joined, [t for _, t, _ in slices], [p for _, _, p in slices]
