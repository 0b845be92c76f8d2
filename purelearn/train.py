r"""The training loop, evaluation and metrics as library functions (the command line calls these).

    result = train.fit(train.Config(algo="fptt", data="digits", epochs=30), out_dir="runs/fptt")
    result.metrics["test_accuracy"]

**Loss and prediction.** Every model (:mod:`purelearn.models`) ends with a non-spiking linear
readout whose output ``z_t`` [N, C] is a logit vector at every step. The per-step loss handed to
the learners is the cross-entropy of the readout against a *weighted one-hot* target::

    target_t = w_t · onehot(label)            (y_seq [T, N, C])
    l_t      = cross_entropy(z_t, target_t) = w_t · CE(z_t, label)      (mean over the batch)
    predict  = argmax_c Σ_t w_t · z_t[c]

The time weights ``w_t`` (``Config.weighting``) are 1 at every step (``"uniform"``, the default
for rate-coded and user-encoded data: every step sees the whole image), 1 on the last quarter of
the steps and 0 before (``"late"``), ``(t+1)/T`` (``"ramp"``) or only the last step (``"last"``).
The prediction has weights of its own (``Config.predict``, the same four choices): ``late`` for
sequential data (classify from the readout once most of the digit has been seen), ``uniform``
otherwise — the same for every algorithm, so accuracies compare. The reported loss is the mean of
``l_t`` over steps and samples.

On the sequential digits the best loss weighting depends on the algorithm. BPTT trains best on
``late`` (its gradient reaches the early steps through time; ``ramp`` asks for a class long before
the digit has been seen). FPTT's gradient stops at a window's start, so with ``late`` nothing
trains the early windows to keep what they saw; ``ramp`` gives every window a loss and trains
each to carry the evidence forward — the sequential default for FPTT and FPTT-dual, ``late`` for
the others.

**Schedule.** The learning rate follows a cosine from ``lr`` at the first epoch towards 0:
``lr_e = lr · ½(1 + cos(π e / E))`` (``schedule="constant"`` keeps ``lr``). The learners update
during the sequence (FPTT, FPTT-dual, OTTT: every step), and the cosine removes most of the noise
such per-step updates leave in the final weights.

**Defaults** that depend on the data (:data:`DEFAULTS`): on the rate-coded digits (and user data
that is not sequential) lr 3e-3 for the per-step learners (FPTT, FPTT-dual, OTTT_O) and 1e-2 for
the per-sequence ones (OTTT_A, SLTT, SLTT-K, BPTT), alpha 0.1, batch 64, no clipping, and FPTT in
SpikingJelly's form (an update per step, per-tensor mean regulariser, second forward from the state
after the step); on sequential data lr 3e-3 (OTTT_O 1e-3), batch 32, gradients clipped to norm 1, and FPTT /
FPTT-dual in the paper's form (Kag & Saligrama): an update per window of 8 steps, the squared-norm
regulariser with alpha 0.1, the second forward from the state before the window.

**Checkpoints** (:mod:`purelearn.checkpoint`, ``checkpoint.pt``, replaced atomically after each
epoch) hold ``{"carry", "epoch", "data_generator", "config", "history", "train_time_s"}``.

**Data order.** The training set is shuffled at every epoch and the rate code drawn from one
``torch.Generator`` seeded with ``data_seed`` (default: ``seed``; it also seeds SLTT-K's draw of
the backward steps, and ``seed`` the initial parameters); its state is checkpointed after
each epoch, with the whole carry, so ``fit(..., resume=dir)`` continues exactly. The test set is
encoded once from a generator seeded with :data:`EVAL_SEED`, the same for every run.

**Sweeps.** :func:`sweep_fit` trains a grid of configurations as one ``torch.func.vmap``-ed program
(:func:`purelearn.sweep.vmap_configs`): learning rates, alphas and taus become batched tensors, seeds
become stacked initial parameters (:func:`purelearn.tree.stack`); the batches (order and spikes,
from ``data_seed``) are shared, so each row equals :func:`fit` with that row's values and the
same ``data_seed``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

import torch
import torch.nn.functional as F

from . import checkpoint, data, models, online, optim, sweep, tree
from .nn import Sequential

__all__ = [
    "Config",
    "RunResult",
    "EVAL_SEED",
    "DEFAULT_LR",
    "SWEEPABLE",
    "loss_fn",
    "time_weights",
    "targets",
    "predict",
    "make_optimizer",
    "make_learner",
    "config_learner",
    "compile_learner",
    "init_params",
    "lr_factor",
    "run_epoch",
    "evaluate",
    "peak_memory",
    "fit",
    "sweep_fit",
    "compare",
    "parse_values",
    "Progress",
    "plot_learning_curve",
    "plot_sweep",
]

EVAL_SEED = 1234
#: Defaults that depend on the data's encoding (Adam, cosine schedule; measured on the digits).
#: ``lr`` per algorithm: on rate codes the per-step learners (FPTT, FPTT-dual, OTTT_O) update T times
#: per batch, the per-sequence ones (OTTT_A, SLTT, SLTT-K, BPTT) once. ``clip``: global gradient-norm
#: clipping (0 = off); the sequential digits need it for BPTT through 64 steps, and train better with
#: smaller batches (more updates). ``weighting``: the loss weights per algorithm (see the module
#: docstring). ``fptt``: FPTT / FPTT-dual's form — SpikingJelly's per-step one on rate codes, the
#: paper's windowed one on sequences (``window`` steps per update, ``reduction``, ``second_forward``).
DEFAULTS: dict[str, dict[str, Any]] = {
    "sequential": {"lr": {"fptt": 3e-3, "fptt-dual": 3e-3, "ottt": 1e-3, "ottt-a": 3e-3, "sltt": 3e-3,
                          "sltt-k": 3e-3, "bptt": 3e-3},
                   "alpha": 0.1, "clip": 1.0, "batch_size": 32, "predict": "late",
                   "weighting": {"fptt": "ramp", "fptt-dual": "ramp", "other": "late"},
                   "fptt": {"window": 8, "reduction": "sum", "second_forward": "pre"}},
    "other": {"lr": {"fptt": 3e-3, "fptt-dual": 3e-3, "ottt": 3e-3, "ottt-a": 1e-2, "sltt": 1e-2,
                     "sltt-k": 1e-2, "bptt": 1e-2},
              "alpha": 0.1, "clip": 0.0, "batch_size": 64, "predict": "uniform",
              "weighting": {"other": "uniform"},
              "fptt": {"window": 1, "reduction": "mean", "second_forward": "post"}},
}
FPTT_ALGOS = ("fptt", "fptt-dual")
#: Options that only some algorithms take (``Config`` refuses them for the others).
ONLY_FOR = {"k": ("sltt-k",), "window": FPTT_ALGOS, "reduction": ("fptt",), "second_forward": ("fptt",)}
DEFAULT_LR = DEFAULTS["other"]["lr"]
SWEEPABLE = ("lr", "alpha", "tau", "seed")
OPTIMIZERS = ("adam", "sgd", "adamw")
WEIGHTINGS = ("uniform", "ramp", "late", "last")
REDUCTIONS = ("mean", "sum")
SECOND_FORWARDS = ("post", "pre")
SCHEDULES = ("cosine", "constant")
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CURVE = "learning_curve.png"


# ----------------------------------------------------------------------------- configuration


@dataclass
class Config:
    """Everything that defines a training run (stored in checkpoints and metrics.json).

    ``None`` means "the default for this algorithm/data" and is resolved by :meth:`resolved`.
    """

    algo: str = "fptt"
    data: str = "digits"
    model: str | None = None
    epochs: int = 30
    batch_size: int | None = None
    lr: float | None = None
    alpha: float | None = None
    beta: float = 0.5
    optimizer: str = "adam"
    clip: float | None = None
    schedule: str = "cosine"
    weighting: str | None = None
    predict: str | None = None
    window: int | None = None
    reduction: str | None = None
    second_forward: str | None = None
    seed: int = 0
    data_seed: int | None = None
    device: str = "cpu"
    compile: bool = False
    T: int | None = None
    k: int | None = None
    tau: float | None = None
    hidden: int | None = None
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config has unknown field(s) {unknown}")
        return cls(**d)

    def validate(self) -> Config:
        """Check every value; raise ``ValueError`` naming the option, what is allowed and what was given."""
        def positive_int(name: str, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}")

        def positive(name: str, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"--{name} must be a number > 0, got {v!r}")

        if self.algo not in models.ALGOS:
            raise ValueError(f"--algo must be one of {', '.join(models.ALGOS)}, got {self.algo!r}")
        if self.model is not None and self.model not in models.MODELS:
            raise ValueError(f"--model must be one of {', '.join(models.MODELS)}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name, choices in (("weighting", WEIGHTINGS), ("predict", WEIGHTINGS), ("reduction", REDUCTIONS),
                              ("second_forward", SECOND_FORWARDS)):
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}")
        for name, algos in ONLY_FOR.items():
            if getattr(self, name) is not None and self.algo not in algos:
                raise ValueError(f"--{name.replace('_', '-')} only applies to --algo {' or '.join(algos)}, "
                                 f"got --algo {self.algo}")
        positive_int("epochs")
        for name in ("batch_size", "T", "k", "hidden", "limit", "window"):
            positive_int(name, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.data_seed is not None and (isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int)
                                           or self.data_seed < 0):
            raise ValueError(f"--data-seed must be an integer >= 0, got {self.data_seed!r}")
        positive("lr", allow_none=True)
        if self.clip is not None and (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                                      or not math.isfinite(self.clip) or self.clip < 0):
            raise ValueError(f"--clip must be a number >= 0 (0: no clipping), got {self.clip!r}")
        positive("alpha", allow_none=True)
        positive("beta")
        positive("tau", allow_none=True)
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ValueError(f"--device must be a torch device such as cpu or cuda:0, got {self.device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: CUDA is not available on this machine")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {self.device}: MPS is not available on this machine")
        return self

    def resolved(self, split: data.Split) -> Config:
        """A copy with every ``None`` default filled in for ``split``."""
        c = copy.copy(self)
        ds = split.train
        c.model = c.model or models.default_model(ds.encoding, ds.step_shape)
        defaults = DEFAULTS["sequential" if ds.encoding == "sequential" else "other"]
        c.lr = defaults["lr"][c.algo] if c.lr is None else c.lr
        c.alpha = defaults["alpha"] if c.alpha is None else c.alpha
        c.clip = defaults["clip"] if c.clip is None else c.clip
        c.batch_size = defaults["batch_size"] if c.batch_size is None else c.batch_size
        c.weighting = c.weighting or defaults["weighting"].get(c.algo, defaults["weighting"]["other"])
        c.predict = c.predict or defaults["predict"]
        if c.algo in FPTT_ALGOS:
            form = defaults["fptt"]
            c.window = form["window"] if c.window is None else c.window
            if c.algo == "fptt":
                c.reduction = c.reduction or form["reduction"]
                c.second_forward = c.second_forward or form["second_forward"]
        c.data_seed = c.seed if c.data_seed is None else c.data_seed
        c.T = ds.T
        c.tau = models.DEFAULT_TAU[c.model] if c.tau is None else c.tau
        if c.algo == "sltt-k":
            c.k = max(1, ds.T // 4) if c.k is None else c.k
            if c.k > ds.T:
                raise ValueError(f"--k must be at most T={ds.T}, got {c.k}")
        if c.model != "alif-rnn" and c.tau <= 1:
            raise ValueError(f"--tau must be > 1 for LIF neurons, got {c.tau!r}")
        return c


# ----------------------------------------------------------------------------- loss, targets, prediction


def loss_fn(y_t: torch.Tensor, target_t: torch.Tensor) -> torch.Tensor:
    """Per-step loss: cross-entropy of the readout ``y_t`` [N, C] against soft targets [N, C]."""
    return F.cross_entropy(y_t, target_t)


def time_weights(weighting: str, T: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``w_t`` [T]: ones (uniform), ``(t+1)/T`` (ramp), ones on the last quarter (late) or
    ``[0, …, 0, 1]`` (last)."""
    if weighting == "uniform":
        return torch.ones(T, dtype=dtype, device=device)
    if weighting == "ramp":
        return torch.arange(1, T + 1, dtype=dtype, device=device) / T
    if weighting == "late":
        return (torch.arange(T, device=device) >= T - max(T // 4, 1)).to(dtype)
    if weighting == "last":
        w = torch.zeros(T, dtype=dtype, device=device)
        w[-1] = 1.0
        return w
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def targets(labels: torch.Tensor, weights: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``y_seq`` [T, N, C] = ``w_t · onehot(labels)``."""
    onehot = F.one_hot(labels, num_classes).to(weights.dtype)
    return weights[:, None, None] * onehot


def predict(y_seq: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class predictions [N] from readouts [T, N, C]: ``argmax Σ_t w_t y_t``."""
    return torch.einsum("t,tnc->nc", weights.to(y_seq.dtype), y_seq).argmax(-1)


# ----------------------------------------------------------------------------- learners


def make_optimizer(name: str, lr: float | torch.Tensor, clip: float | None = None) -> optim.GradientTransformation:
    """``adam``, ``sgd`` (momentum 0.9) or ``adamw`` (weight decay 0.01) with learning rate ``lr``;
    with ``clip`` (> 0), gradients are first clipped to that global norm (``clip_by_global_norm``)."""
    if name == "adam":
        opt = optim.adam(lr)
    elif name == "sgd":
        opt = optim.sgd(lr, momentum=0.9)
    elif name == "adamw":
        opt = optim.adamw(lr, weight_decay=1e-2)
    else:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return opt if not clip else optim.chain(optim.clip_by_global_norm(clip), opt)


def make_learner(algo: str, model: Sequential, optimizer: optim.GradientTransformation, *,
                 alpha: float | torch.Tensor = 0.1, beta: float | torch.Tensor = 0.5, k: int | None = None,
                 seed: int = 0, window: int | None = None, reduction: str | None = None,
                 second_forward: str | None = None) -> Any:
    """The learner for ``algo`` (``ottt`` is OTTT_O, ``ottt-a`` OTTT_A; ``sltt`` accumulates over the
    sequence; ``sltt-k`` runs backward at ``k`` random steps). ``window``, ``reduction`` and
    ``second_forward`` are FPTT's options (None: the learner's defaults, SpikingJelly's form)."""
    fptt_form = {name: value for name, value in (("window", window), ("reduction", reduction),
                                                 ("second_forward", second_forward)) if value is not None}
    if algo == "fptt":
        return online.fptt(model, loss_fn, optimizer, alpha=alpha, **fptt_form)
    if algo == "fptt-dual":
        return online.fptt_dual(model, loss_fn, optimizer, alpha=alpha, beta=beta, window=window or 1)
    if algo in ("ottt", "ottt-a"):
        return online.ottt(model, loss_fn, optimizer, online=algo == "ottt")
    if algo == "sltt":
        return online.sltt(model, loss_fn, optimizer)
    if algo == "sltt-k":
        return online.sltt(model, loss_fn, optimizer, k=k, seed=seed)
    if algo == "bptt":
        return online.bptt(model, loss_fn, optimizer)
    raise ValueError(f"algo must be one of {', '.join(models.ALGOS)}, got {algo!r}")


def config_learner(config: Config, model: Sequential, optimizer: optim.GradientTransformation, *,
                   alpha: float | torch.Tensor, beta: float | torch.Tensor) -> Any:
    """:func:`make_learner` with the options of a resolved ``config`` (alpha and beta as given: tensors
    the training loop or a sweep owns)."""
    return make_learner(config.algo, model, optimizer, alpha=alpha, beta=beta, k=config.k, seed=config.data_seed,
                        window=config.window, reduction=config.reduction, second_forward=config.second_forward)


def compile_learner(learner: Any) -> Any:
    """A copy of ``learner`` whose ``step`` (``run`` for BPTT, which has no step) is ``torch.compile``-d."""
    from . import compile as _compile

    compiled = copy.copy(learner)
    if isinstance(learner, online.BPTT):
        object.__setattr__(compiled, "run", torch.compile(learner.run, dynamic=False))
    else:  # purelearn.compile: fresh states materialised, one graph per static mode, no recompiles
        object.__setattr__(compiled, "step", _compile.step(learner))
    return compiled


def init_params(model: Sequential, seed: int, example: torch.Tensor, name: str = "mlp") -> tuple[Any, Any]:
    """``models.init`` of architecture ``name`` from ``torch.Generator().manual_seed(seed)`` (CPU draws,
    then ``example``'s device)."""
    return models.init(name, model, torch.Generator().manual_seed(seed), example)


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The multiplier of ``lr`` at 0-based ``epoch`` of ``epochs``: cosine ½(1 + cos(π e / E)) or 1."""
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


# ----------------------------------------------------------------------------- epochs and evaluation


def run_epoch(learner: Any, carry: Any, batch_iter: Iterable[tuple[torch.Tensor, torch.Tensor]],
              weights: torch.Tensor, num_classes: int, *,
              on_batch: Callable[[torch.Tensor, torch.Tensor, int], None] | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
              predict_weights: torch.Tensor | None = None) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """One pass over ``batch_iter``; returns ``(carry, mean loss, accuracy)`` as 0-d tensors.

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
        carry, outs = learner.run(carry, x_seq, targets(labels, weights, num_classes))
        b = labels.shape[0]
        loss_sum = loss_sum + outs.loss.mean() * b
        correct = correct + (predict(outs.y, predict_weights) == labels).sum()
        n += b
        if on_batch is not None:
            on_batch(loss_sum, correct, n)
    return carry, loss_sum / n, correct.to(dtype) / n


def evaluate(model: Sequential, params: Any, x_seq: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
             num_classes: int, batch_size: int = 1024, predict_weights: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-step loss (weighted by ``weights``) and accuracy (prediction weighted by
    ``predict_weights``, default ``weights``) of ``params`` on encoded ``x_seq`` [T, N, ...] (0-d tensors).

    Runs ``model.inference()`` forward from fresh states without gradients.
    """
    predict_weights = weights if predict_weights is None else predict_weights
    model = model.inference()
    loss_sum: Any = 0.0
    correct: Any = 0
    n = labels.shape[0]
    with torch.no_grad():
        for start in range(0, n, batch_size):
            xb = x_seq[:, start:start + batch_size].to(weights.dtype)
            lb = labels[start:start + batch_size]
            tb = targets(lb, weights, num_classes)
            states = model.init_states(xb[0])
            ys, losses = [], []
            for t in range(xb.shape[0]):
                y_t, states = model.apply(params, states, xb[t])
                ys.append(y_t)
                losses.append(loss_fn(y_t, tb[t]))
            loss_sum = loss_sum + torch.stack(losses).mean() * lb.shape[0]
            correct = correct + (predict(torch.stack(ys), predict_weights) == lb).sum()
    return loss_sum / n, correct.to(weights.dtype) / n


def peak_memory(device: torch.device | str) -> tuple[int, str]:
    """``(bytes, kind)``: ``torch.cuda.max_memory_allocated`` on CUDA, else the process's max RSS
    (``resource.getrusage``; kind ``"cpu_max_rss"``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_max_rss"


def _version() -> str:
    from . import __version__

    return __version__


def _current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------- progress bar


class Progress:
    """A one-line text progress bar per epoch. On a terminal it redraws in place (``\\r``); in a
    log (not a TTY) it writes only the finished line, once per epoch."""

    def __init__(self, stream: TextIO | None, total: int, prefix: str, width: int = 24) -> None:
        self.stream, self.total, self.prefix, self.width = stream, total, prefix, width
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def _line(self, done: int, info: str) -> str:
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        return f"{self.prefix} [{bar}] {done}/{self.total} {info} {elapsed:.1f}s"

    def update(self, done: int, info: str) -> None:
        now = time.perf_counter()
        if self.tty and (now - self.last_draw > 0.1 or done == self.total):
            self.stream.write("\r" + self._line(done, info))
            self.stream.flush()
            self.last_draw = now

    def close(self, done: int, info: str) -> None:
        if self.stream is None:
            return
        self.stream.write(("\r" if self.tty else "") + self._line(done, info) + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'purelearn[data]' (or pass --no-plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Loss and accuracy (train and test) per epoch, as a PNG."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (mean per step)")
    ax1.legend()
    ax2.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    ax2.plot(epochs, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], axes: list[str], path: str, metric: str = "test_accuracy") -> None:
    """A heatmap of ``metric`` over two swept axes (mean over the others), or a line plot over one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if len(axes) >= 2:
        a, b = axes[0], axes[1]
        va = sorted({r[a] for r in rows})
        vb = sorted({r[b] for r in rows})
        grid = [[0.0] * len(va) for _ in vb]
        for j, y in enumerate(vb):
            for i, x in enumerate(va):
                sel = [100 * r[metric] for r in rows if r[a] == x and r[b] == y]
                grid[j][i] = sum(sel) / len(sel)
        im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(va)), [f"{v:g}" for v in va])
        ax.set_yticks(range(len(vb)), [f"{v:g}" for v in vb])
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        lo, hi = min(map(min, grid)), max(map(max, grid))
        for j in range(len(vb)):
            for i in range(len(va)):
                bright = hi > lo and (grid[j][i] - lo) / (hi - lo) > 0.6
                ax.text(i, j, f"{grid[j][i]:.1f}", ha="center", va="center", color="k" if bright else "w",
                        fontsize=8)
        fig.colorbar(im, ax=ax, label=f"{metric} (%)" + (" (mean over other axes)" if len(axes) > 2 else ""))
    else:
        a = axes[0]
        xs = sorted({r[a] for r in rows})
        ys = [sum(100 * r[metric] for r in rows if r[a] == x) / sum(1 for r in rows if r[a] == x) for x in xs]
        ax.plot(xs, ys, "o-")
        ax.set_xlabel(a)
        ax.set_ylabel(f"{metric} (%)")
        if len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    """What :func:`fit` returns: the resolved config, the final carry and the metrics dict."""

    config: Config
    carry: Any
    metrics: dict[str, Any]
    model: Sequential
    history: list[dict[str, Any]] = field(default_factory=list)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def check_out_dir(out_dir: str) -> None:
    """Create ``out_dir`` if needed and make sure files can be written there (``ValueError`` if not)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"--out {out_dir}: cannot write there ({err.strerror or err})") from None


class _Setup(NamedTuple):
    config: Config
    split: data.Split
    model: Sequential
    weights: torch.Tensor  # of the loss, [T]
    predict_weights: torch.Tensor  # of the prediction, [T]
    device: torch.device


def _setup(config: Config) -> _Setup:
    config.validate()
    split = data.load(config.data, config.T).limit(config.limit)
    config = config.resolved(split)
    device = torch.device(config.device)
    model = models.build(config.model, config.algo, split.train.step_shape, split.num_classes,
                         tau=torch.tensor(config.tau, device=device), hidden=config.hidden)
    weights = time_weights(config.weighting, split.train.T, device=device)
    return _Setup(config, split, model, weights, time_weights(config.predict, split.train.T, device=device), device)


def _test_set(split: data.Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = data.encode(split.test.x, split.test.encoding, split.test.T, torch.Generator().manual_seed(EVAL_SEED))
    return x.to(device), split.test.y.to(device)


def _metrics(config: Config, split: data.Split, history: list[dict[str, Any]], train_time: float,
             device: torch.device, num_params: int, rss_start: int | None) -> dict[str, Any]:
    peak, kind = peak_memory(device)
    last = history[-1] if history else {}
    m = {
        "purelearn_version": _version(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "config": config.to_dict(),
        "data": {"name": split.name, "encoding": split.train.encoding, "T": split.train.T,
                 "train_size": len(split.train), "test_size": len(split.test),
                 "num_classes": split.num_classes, "step_shape": list(split.train.step_shape)},
        "num_params": num_params,
        "epochs_completed": len(history),
        "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "train_loss": last.get("train_loss"),
        "train_time_s": train_time,
        "time_per_epoch_s": train_time / len(history) if history else None,
        "peak_memory_bytes": peak,
        "peak_memory_mib": peak / 2**20,
        "peak_memory_kind": kind,
        "history": history,
    }
    if kind == "cpu_max_rss" and rss_start is not None:
        m["rss_at_start_bytes"] = rss_start
        m["peak_rss_growth_mib"] = max(peak - rss_start, 0) / 2**20
    return m


def fit(config: Config, out_dir: str | None = None, *, resume: str | None = None, stream: TextIO | None = None,
        plot: bool = True, epochs: int | None = None) -> RunResult:
    """Train ``config`` (or continue the run in ``resume``); write outputs to ``out_dir`` if given.

    With ``resume``, the run's config comes from its checkpoint (``epochs`` may raise the total
    number of epochs). After every epoch the checkpoint ``out_dir/checkpoint.pt`` is replaced
    atomically; at the end ``metrics.json`` and ``learning_curve.png`` are written. Progress lines
    go to ``stream`` (e.g. ``sys.stderr``; None: silent).
    """
    wall_start = time.perf_counter()
    state = None
    if resume is not None:
        state = checkpoint.load(os.path.join(resume, CHECKPOINT))
        try:
            config = _stored_config(json.loads(state["config"]))
        except (KeyError, TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"checkpoint in {resume} has no valid run config ({err})") from None
        out_dir = resume if out_dir is None else out_dir
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    config, split, model, weights, predict_weights, device = _setup(config)
    if out_dir is not None:
        check_out_dir(out_dir)
    if plot and out_dir is not None:
        _pyplot()  # fail now, not after training, if matplotlib is missing
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    num_classes = split.num_classes
    lr0 = torch.tensor(config.lr, device=device)
    lr = lr0.clone()  # the loop sets lr = lr0 · factor at every epoch; the learner reads this tensor
    alpha = torch.tensor(config.alpha, device=device)
    beta = torch.tensor(config.beta, device=device)
    learner = config_learner(config, model, make_optimizer(config.optimizer, lr, config.clip), alpha=alpha, beta=beta)
    runner = compile_learner(learner) if config.compile else learner
    generator = torch.Generator().manual_seed(config.data_seed)
    x_test, y_test = _test_set(split, device)
    example = _example_step(split, device)
    if state is None:
        params, states = init_params(model, config.seed, example, config.model)
        carry = learner.init(params, states)
        start_epoch, history, train_time = 0, [], 0.0
    else:
        carry = _carry_to(state["carry"], device)
        _check_resumed_params(carry.params, model, example, config, resume)
        generator.set_state(state["data_generator"])
        start_epoch, history, train_time = int(state["epoch"]), list(state["history"]), float(state["train_time_s"])
    num_params = sum(p.numel() for p in tree.leaves(carry.params))
    n_batches = math.ceil(len(split.train) / config.batch_size)
    rss_start = _current_rss()  # after data, model and plotting are loaded: the growth is training's
    for epoch in range(start_epoch, config.epochs):
        factor = lr_factor(config.schedule, epoch, config.epochs)
        with torch.no_grad():
            lr.copy_(lr0 * factor)
        bar = Progress(stream, n_batches, f"epoch {epoch + 1:>{len(str(config.epochs))}}/{config.epochs}")
        done = [0]

        def on_batch(loss_sum: torch.Tensor, correct: torch.Tensor, n: int, bar: Progress = bar,
                     done: list[int] = done) -> None:
            done[0] += 1
            if bar.tty:
                bar.update(done[0], f"loss {loss_sum.item() / n:.4f} acc {100 * correct.item() / n:.1f}%")

        t0 = time.perf_counter()
        carry, train_loss, train_acc = run_epoch(
            runner, carry, data.batches(split.train, config.batch_size, generator), weights, num_classes,
            on_batch=on_batch, device=device, predict_weights=predict_weights)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        train_time += elapsed
        test_loss, test_acc = evaluate(model, carry.params, x_test, y_test, weights, num_classes,
                                       predict_weights=predict_weights)
        row = {"epoch": epoch + 1, "lr": config.lr * factor, "train_loss": train_loss.item(),
               "train_accuracy": train_acc.item(), "test_loss": test_loss.item(),
               "test_accuracy": test_acc.item(), "time_s": elapsed}
        history.append(row)
        bar.close(n_batches, f"loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.1f}% "
                             f"test {100 * row['test_accuracy']:.1f}%")
        if out_dir is not None:
            checkpoint.save(os.path.join(out_dir, CHECKPOINT), {
                "carry": carry, "epoch": epoch + 1, "data_generator": generator.get_state(),
                "config": json.dumps(config.to_dict()), "history": history, "train_time_s": train_time})
    metrics = _metrics(config, split, history, train_time, device, num_params, rss_start)
    metrics["wall_time_s"] = time.perf_counter() - wall_start  # this call: data, training, evaluation, files
    if out_dir is not None:
        _write_json(os.path.join(out_dir, METRICS), metrics)
        if plot and history:
            plot_learning_curve(history, os.path.join(out_dir, CURVE),
                                f"{config.algo} on {split.name} ({config.model})")
    return RunResult(config, carry, metrics, model, history)


def _stored_config(stored: dict[str, Any]) -> Config:
    """The run config of a checkpoint. One written before the options below existed ran FPTT and
    FPTT-dual per step in SpikingJelly's form and predicted with its loss weights: resume it so."""
    stored = dict(stored)
    stored.setdefault("predict", stored.get("weighting"))
    if stored.get("algo") in FPTT_ALGOS:
        stored.setdefault("window", 1)
    if stored.get("algo") == "fptt":
        stored.setdefault("reduction", "mean")
        stored.setdefault("second_forward", "post")
    return Config.from_dict(stored)


def _example_step(split: data.Split, device: torch.device) -> torch.Tensor:
    """One encoded step of one training sample, [1, ...]: what models are initialised from."""
    return data.encode(split.train.x[:1], split.train.encoding, split.train.T,
                       torch.Generator().manual_seed(0))[0].to(device)


def _check_resumed_params(params: Any, model: Sequential, example: torch.Tensor, config: Config,
                          resume: str | None) -> None:
    """A checkpoint's params must fit the model its config builds now (a model that changed since,
    e.g. gained trained time constants, cannot continue the run)."""
    fresh, _ = init_params(model, config.seed, example, config.model)
    try:
        tree.assert_same_structure(fresh, params, f"model {config.model!r}", "the checkpoint's params")
    except ValueError as err:
        raise checkpoint.CheckpointError(
            f"checkpoint in {resume} does not fit model {config.model!r} as purelearn {_version()} builds it "
            f"({err}); it was written by another version: start a new run") from None


def _carry_to(carry: Any, device: torch.device) -> Any:
    return tree.map(lambda t: t.to(device), carry)


# ----------------------------------------------------------------------------- sweeps


def parse_values(name: str, text: str, integer: bool = False) -> list[float]:
    """``"0.1,0.2"`` → [0.1, 0.2]; ``"start:stop:num"`` → ``num`` evenly spaced values from start to
    stop inclusive; ``"start:stop:num:log"`` → geometrically spaced. ``ValueError`` naming ``--name``."""
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "log"):
                raise ValueError
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1:
                raise ValueError
            if len(parts) == 4:
                if start <= 0 or stop <= 0:
                    raise ValueError
                values = [start * (stop / start) ** (i / max(num - 1, 1)) for i in range(num)]
            else:
                values = [start + (stop - start) * i / max(num - 1, 1) for i in range(num)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
            if not values:
                raise ValueError
    except ValueError:
        raise ValueError(f"--{name}: expected a comma-separated list (0.1,0.2) or a range start:stop:num "
                         f"(or start:stop:num:log), got {text!r}") from None
    if integer:
        if any(v != int(v) or v < 0 for v in values):
            raise ValueError(f"--{name}: expected integers >= 0, got {text!r}")
        return [int(v) for v in values]
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"--{name}: every value must be a number > 0, got {text!r}")
    return values


def _epoch_plans(split: data.Split, config: Config) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every epoch's batches, drawn exactly as :func:`fit` draws them (rate spikes kept as bool)."""
    generator = torch.Generator().manual_seed(config.data_seed)
    plans = []
    for _ in range(config.epochs):
        epoch = []
        for x_seq, labels in data.batches(split.train, config.batch_size, generator):
            epoch.append((x_seq.bool() if split.train.encoding == "rate" else x_seq, labels))
        plans.append(epoch)
    return plans


def sweep_fit(config: Config, axes: dict[str, list[float]], out_dir: str | None = None, *,
              stream: TextIO | None = None, plot: bool = True) -> dict[str, Any]:
    """Train the grid ``axes`` (names from :data:`SWEEPABLE`) over ``config`` as one vmapped program.

    Returns ``{"rows": [...], "axes": [...], "config": ..., "time_s": ..., "params": stacked}``;
    rows carry the axis values, final test/train accuracy and loss, and the per-epoch test accuracy.
    With ``out_dir``: ``sweep.csv``, ``sweep.json`` and ``sweep.png``.
    """
    if not axes:
        raise ValueError("sweep: give at least one of --lr, --alpha, --tau, --seed with a list of values")
    for name in axes:
        if name not in SWEEPABLE:
            raise ValueError(f"sweep: cannot sweep {name!r}; sweepable: {', '.join(SWEEPABLE)}")
    if config.compile:
        raise ValueError("sweep: --compile is not supported (the vmapped program runs eagerly)")
    base = dataclasses.replace(config, **{n: (int(v[0]) if n == "seed" else v[0]) for n, v in axes.items()})
    if "seed" in axes and config.data_seed is None:
        base.data_seed = config.seed  # the data order must not follow the swept seed
    base, split, model, weights, predict_weights, device = _setup(base)
    if "tau" in axes and base.model != "alif-rnn" and min(axes["tau"]) <= 1:
        raise ValueError(f"--tau must be > 1 for LIF neurons, got {min(axes['tau'])}")
    if out_dir is not None:
        check_out_dir(out_dir)
        if plot:
            _pyplot()
    configs = sweep.grid(**axes)
    names = list(axes)
    rows = sweep.rows(configs)
    for row, combo in zip(rows, itertools.product(*axes.values()), strict=True):
        row.update(zip(names, combo, strict=True))  # the values as given, not their float32 roundings
    k = len(rows)
    example = _example_step(split, device)
    # initial parameters per row: from its seed, and from its tau where tau is a trained parameter's start
    tau_is_param = "tau" in axes and models.learns_tau(model)
    keys = [(int(r["seed"]) if "seed" in r else base.seed, r["tau"] if tau_is_param else None) for r in rows]

    def initial(seed: int, tau: float | None) -> tuple[Any, Any]:
        net = model if tau is None else models.build(base.model, base.algo, split.train.step_shape,
                                                     split.num_classes, tau=tau, hidden=base.hidden)
        return init_params(net, seed, example, base.model)

    inits = {key: initial(*key) for key in dict.fromkeys(keys)}
    params0 = tree.stack([inits[key][0] for key in keys])
    states0 = inits[keys[0]][1]
    batched = {n: configs[n].to(device) for n in names if n != "seed"}
    batched["params0"] = tree.map(lambda t: t.to(device), params0)
    plans = _epoch_plans(split, base)
    x_test, y_test = _test_set(split, device)
    n_batches = sum(len(p) for p in plans)
    bar = Progress(stream, n_batches, f"sweep of {k} configs")
    done = [0]

    def on_batch(loss_sum: Any, correct: Any, n: int) -> None:
        done[0] += 1
        bar.update(done[0], f"epoch {1 + (done[0] - 1) * base.epochs // max(n_batches, 1)}/{base.epochs}")

    def program(params0: Any, lr: Any = None, alpha: Any = None, tau: Any = None) -> dict[str, Any]:
        lr = torch.tensor(base.lr, device=device) if lr is None else lr
        alpha = torch.tensor(base.alpha, device=device) if alpha is None else alpha
        tau = torch.tensor(base.tau, device=device) if tau is None else tau
        beta = torch.tensor(base.beta, device=device)
        net = models.build(base.model, base.algo, split.train.step_shape, split.num_classes, tau=tau,
                           hidden=base.hidden)
        learner = config_learner(base, net, make_optimizer(base.optimizer, lr, base.clip), alpha=alpha, beta=beta)
        carry = learner.init(params0, states0)
        curve_acc, curve_loss, train_loss, train_acc = [], [], None, None
        for epoch, plan in enumerate(plans):
            epoch_lr = lr * lr_factor(base.schedule, epoch, base.epochs)
            learner = config_learner(base, net, make_optimizer(base.optimizer, epoch_lr, base.clip), alpha=alpha,
                                     beta=beta)
            carry, train_loss, train_acc = run_epoch(learner, carry, plan, weights, split.num_classes,
                                                     on_batch=on_batch, device=device, predict_weights=predict_weights)
            test_loss, test_acc = evaluate(net, carry.params, x_test, y_test, weights, split.num_classes,
                                           predict_weights=predict_weights)
            curve_acc.append(test_acc)
            curve_loss.append(test_loss)
        return {"params": carry.params, "test_accuracy": torch.stack(curve_acc),
                "test_loss": torch.stack(curve_loss), "train_loss": train_loss, "train_accuracy": train_acc}

    t0 = time.perf_counter()
    out = sweep.vmap_configs(program, batched)
    elapsed = time.perf_counter() - t0
    bar.close(n_batches, f"done in {elapsed:.1f}s")
    for i, row in enumerate(rows):
        if "seed" in row:
            row["seed"] = int(row["seed"])
        row["test_accuracy"] = out["test_accuracy"][i, -1].item()
        row["test_loss"] = out["test_loss"][i, -1].item()
        row["train_accuracy"] = out["train_accuracy"][i].item()
        row["train_loss"] = out["train_loss"][i].item()
        row["test_accuracy_per_epoch"] = out["test_accuracy"][i].tolist()
    ranked = sorted(range(k), key=lambda i: (-rows[i]["test_accuracy"], rows[i]["test_loss"]))
    for rank, i in enumerate(ranked, start=1):
        rows[i]["rank"] = rank
    peak, kind = peak_memory(device)
    result = {"config": base.to_dict(), "axes": names, "rows": rows, "time_s": elapsed,
              "peak_memory_bytes": peak, "peak_memory_kind": kind, "params": out["params"]}
    if out_dir is not None:
        fields = ["rank", *names, "test_accuracy", "test_loss", "train_accuracy", "train_loss"]
        with open(os.path.join(out_dir, "sweep.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for i in ranked:
                w.writerow(rows[i])
        _write_json(os.path.join(out_dir, "sweep.json"),
                    {k_: v for k_, v in result.items() if k_ != "params"} | {"ranked": ranked})
        if plot:
            plot_sweep(rows, [n for n in names if len(axes[n]) > 1] or names, os.path.join(out_dir, "sweep.png"))
    return result


# ----------------------------------------------------------------------------- compare


def compare(algos: Sequence[str], train_args: list[str] | Callable[[str], list[str]], out_dir: str, *,
            stream: TextIO | None = None, python: str = sys.executable) -> list[dict[str, Any]]:
    """Run ``purelearn train --algo A <train_args> --out out_dir/A`` for each algorithm, each in a
    fresh process (so peak memory is per algorithm), and collect their metrics into a table.
    ``train_args`` may be a function of the algorithm (options that only some algorithms take)."""
    check_out_dir(out_dir)
    rows = []
    args_for = train_args if callable(train_args) else (lambda algo: train_args)
    for algo in algos:
        run_dir = os.path.join(out_dir, algo)
        cmd = [python, "-m", "purelearn", "train", "--algo", algo, *args_for(algo), "--out", run_dir, "--overwrite"]
        if stream is not None:
            stream.write(f"== {algo}: {' '.join(cmd[1:])}\n")
            stream.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # forward the child's progress and error lines
            if stream is not None:
                stream.write(line)
                stream.flush()
        proc.wait()
        if proc.returncode != 0:
            rows.append({"algo": algo, "error": f"exit code {proc.returncode}"})
            continue
        with open(os.path.join(run_dir, METRICS)) as f:
            m = json.load(f)
        rows.append({"algo": algo, "model": m["config"]["model"], "test_accuracy": m["test_accuracy"],
                     "train_time_s": m["train_time_s"], "time_per_epoch_s": m["time_per_epoch_s"],
                     "peak_memory_mib": m["peak_memory_mib"], "peak_memory_kind": m["peak_memory_kind"],
                     "peak_rss_growth_mib": m.get("peak_rss_growth_mib"), "epochs": m["epochs_completed"],
                     "lr": m["config"]["lr"], "T": m["data"]["T"]})
    with open(os.path.join(out_dir, "compare.csv"), "w", newline="") as f:
        fields = ["algo", "model", "test_accuracy", "train_time_s", "time_per_epoch_s", "peak_memory_mib",
                  "peak_rss_growth_mib", "peak_memory_kind", "epochs", "lr", "T", "error"]
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    _write_json(os.path.join(out_dir, "compare.json"),
                {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "train_args": {algo: args_for(algo) for algo in algos}, "rows": rows})
    return rows
