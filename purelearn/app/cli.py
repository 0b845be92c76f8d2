"""The ``purelearn`` command line: ``train``, ``sweep``, ``compare``, ``data``; flags mapped onto one :class:`Config`.

    purelearn train                                  # FPTT, rate-coded digits, 30 epochs
    purelearn data shd:~/data/shd                    # what the data hold, before a long run
    purelearn train --data shd:~/data/shd --algo fptt --epochs 30
    purelearn train --algo bptt --data seq-digits --out runs/bptt-seq
    purelearn train --resume runs/bptt-seq --epochs 40
    purelearn sweep --algo fptt --lr 0.001,0.003,0.01 --alpha 0.05:0.2:3 --epochs 10
    purelearn compare --data digits --out runs/compare

Every flag of a run is a :class:`Config` field (``--batch-size`` is ``batch_size``); the errors of
the configuration name fields, and :func:`flag_message` turns them into flags. Errors in the
arguments, the data, a checkpoint or a run folder (locked by another process, holding a run that
only ``--overwrite`` may replace, a run too large for the machine's memory) are one line on stderr
and exit code 2; a run that diverged (a non-finite loss: the last good checkpoint is kept) is one
line and exit code 3; an output that could not be written (a full disk, a file system turned
read-only: the last good checkpoint is kept) one line and exit code 4; a ``compare`` in which some
algorithm failed exits 1; an interrupt 130. Under ``torchrun --nproc-per-node K -m purelearn train``
(or ``sweep``) the command runs across K ranks (:mod:`purelearn.app.ranks`): rank 0 prints and
writes, an error found before training is printed once by the rank that found it, and a rank
stopped by another's failure says so in one line (exit 1). ``PURELEARN_DEBUG=1`` (or ``true``, ``yes``, ``on``)
shows the traceback instead; ``0``, ``false``, ``no``, ``off`` or empty do not.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import re
import sys
import warnings
from typing import Any, NoReturn

import torch

from .. import checkpoint, data, distributed, models
from . import registry, report, task
from .compare import compare, configs_for
from .config import INT_MAX, Config
from .errors import EXIT_DIVERGED, EXIT_STORAGE, EXIT_USAGE, ConfigError, DivergedError, StorageError, exit_code  # noqa: F401 (exit codes re-exported)
from .loop import fit
from .ranks import DEFAULT_TIMEOUT_S, Ranks, StoppedByRank, from_environment
from .ranks import close as close_ranks
from .sweeps import MAX_CONFIGS, SWEEPABLE, parse_values, sweep_fit

__all__ = ["main", "build_parser", "flag", "flag_message"]

#: The most torch threads ``--threads`` takes (torch refuses more than a C int, and starts them lazily).
MAX_THREADS = 4096
#: Values of ``PURELEARN_DEBUG`` (lower case, stripped) that show tracebacks, and those that do not.
DEBUG_ON, DEBUG_OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
RESUMABLE = {"epochs", "out", "no_plot", "quiet", "resume", "threads", "overwrite", "allow_changed_data",
             "dist_timeout"}
FIELDS = {f.name for f in dataclasses.fields(Config)}
#: Names in messages whose flag is not ``--`` + the name with dashes (``out_dir``), or that are
#: arguments of ``fit`` / ``compare`` rather than config fields.
_FLAGS = {"out_dir": "--out", "resume": "--resume", "overwrite": "--overwrite",
          "allow_changed_data": "--allow-changed-data", "max_configs": "--max-configs"}
DEFAULTS = Config()
#: Errors that every rank raises together (a collective check): only rank 0 prints them.
COLLECTIVE_ERRORS = (DivergedError, distributed.RanksDisagree)


def flag(field: str) -> str:
    """The command-line flag of config field ``field`` (``batch_size`` → ``--batch-size``)."""
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def flag_message(message: str) -> str:
    """``message`` with every field named in backticks spelled as its flag (``` `lr` ``` → ``--lr``)."""
    return re.sub(r"`(\w+)`", lambda m: flag(m[1]) if m[1] in FIELDS or m[1] in _FLAGS else m[0], message)


class UsageError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _bounded(text: str, convert: type, low: float, strict: bool, high: int = INT_MAX) -> Any:
    """``convert(text)`` if it is finite and above ``low`` (``>`` when ``strict``, else ``>=``); an
    integer also at most ``high`` (default 2**63 − 1, torch's int64)."""
    relation = f"{'>' if strict else '>='} {low:g}"
    parsed, finite = ("an integer", "an integer") if convert is int else ("a number", "a finite number")
    try:
        v = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {parsed} {relation}, got {text!r}") from None
    if not (v > low if strict else v >= low) or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected {finite} {relation}, got {text!r}")
    if convert is int and v > high:
        top = f"{high} (2**63 - 1)" if high == INT_MAX else str(high)
        raise argparse.ArgumentTypeError(f"expected an integer in {low:g}..{top}, got {text!r}")
    return v


_positive_int = functools.partial(_bounded, convert=int, low=1, strict=False)
_nonneg_int = functools.partial(_bounded, convert=int, low=0, strict=False)
_threads = functools.partial(_bounded, convert=int, low=1, strict=False, high=MAX_THREADS)
_nonneg_float = functools.partial(_bounded, convert=float, low=0, strict=False)
_positive_float = functools.partial(_bounded, convert=float, low=0, strict=True)


def _per_data(field: str, algo: str = "fptt", kind: str | None = None) -> Any:
    """The default of ``field`` for ``algo`` on (sequential, other) data, or on data of ``kind``."""
    if kind is not None:
        return registry.defaults(algo, kind, 100)[field]
    return registry.defaults(algo, "sequential", 64)[field], registry.defaults(algo, "rate", 16)[field]


_DATA_HELP = ("digits (rate-coded sklearn digits, T=16), seq-digits (one pixel per step, T=64), shd:DIR or ssc:DIR "
              "(the Heidelberg spiking datasets' .h5 files in DIR, binned into --T frames; options after commas: "
              "dt=SECONDS, span=SECONDS, cache=DIR|none), randman[:classes=10,units=100,...] (generated data whose "
              "classes differ only in spike timing), or the path of a torch.save file {'x', 'y', 'encoding'} "
              "(see purelearn.data)")


def _lr_help() -> str:
    return "; ".join(
        f"{'sequential data' if encoding == 'sequential' else 'other data'}: "
        + ", ".join(f"{algo} {registry.defaults(algo, encoding, 16)['lr']:g}" for algo in registry.ALGORITHMS)
        for encoding in ("sequential", "rate"))


def _add_run_options(p: argparse.ArgumentParser, sweep: bool = False, compare: bool = False) -> None:
    """Options shared by train / sweep / compare. Defaults are None here so that explicit ones are known."""
    seq_model, other_model = _per_data("model")
    g = p.add_argument_group("what to train")
    if not compare:
        g.add_argument("--algo", choices=tuple(registry.ALGORITHMS), default=None, metavar="ALGO",
                       help=f"learning algorithm (default: {DEFAULTS.algo}): "
                            + "; ".join(f"{name} = {flag_message(spec.summary)}"
                                        for name, spec in registry.ALGORITHMS.items()))
    g.add_argument("--data", default=None, metavar="DATA", help=_DATA_HELP + f" (default: {DEFAULTS.data})")
    g.add_argument("--model", choices=models.MODELS, default=None, metavar="MODEL",
                   help="mlp (Flatten-Linear-256 LIF-Linear readout), conv (2 conv+LIF layers, readout), "
                        "alif-rnn (recurrent ALIF layer of 128 with trained time constants, readout) or srnn (two "
                        "recurrent ALIF layers of 128, a leaky non-spiking readout); the neuron type follows --algo "
                        f"(default: {seq_model} for sequential data, {_per_data('model', kind='events')} for "
                        f"SHD/SSC/randman, else {other_model})")
    g.add_argument("--T", type=_positive_int, default=None,
                   help="time steps of the rate code (default: 16; the sequential encoding has one step per pixel), "
                        "or frames of SHD/SSC/randman (default: 100)")
    g.add_argument("--hidden", type=_positive_int, default=None,
                   help=f"hidden width (default: {models.HIDDEN['mlp']} for mlp, {models.HIDDEN['conv']} channels "
                        f"for conv, {models.HIDDEN['alif-rnn']} for alif-rnn and srnn)")
    g.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="use only the first N training samples and N/4 test samples (quick runs)")
    seq_w, other_w = _per_data("weighting", "bptt")
    g.add_argument("--weighting", choices=task.WEIGHTINGS, default=None,
                   help="time weights w_t of the per-step loss: uniform, ramp ((t+1)/T), late (1 on the last "
                        f"quarter of the steps) or last (default: sequential data: {_per_data('weighting')[0]} for "
                        f"fptt and fptt-dual, {seq_w} for the others; else {other_w})")
    seq_p, other_p = _per_data("predict")
    g.add_argument("--predict", choices=task.WEIGHTINGS, default=None,
                   help="time weights of the prediction argmax Σ_t w_t z_t, the same choices (default: "
                        f"{seq_p} for sequential data, else {other_p}; the same for every algorithm)")
    h = p.add_argument_group("hyperparameters")
    alpha = _per_data("alpha")[1]
    tau_help = (f"(default: {models.DEFAULT_TAU['mlp']:g} for LIF, {models.DEFAULT_TAU['alif-rnn']:g} for "
                f"alif-rnn and {models.DEFAULT_TAU['srnn']:g} for srnn, where it is the initial value of the "
                "trained tau_m)")
    if sweep:
        h.add_argument("--lr", default=None, metavar="LIST",
                       help="learning rates, e.g. 0.001,0.003,0.01 or a range 0.001:0.01:3[:log] "
                            f"(default: per algorithm: {_lr_help()})")
        h.add_argument("--alpha", default=None, metavar="LIST",
                       help=f"FPTT regularisation strength(s) (default: {alpha:g})")
        h.add_argument("--tau", default=None, metavar="LIST", help=f"membrane time constant(s) {tau_help}")
        h.add_argument("--seed", default=None, metavar="LIST",
                       help="seeds of the initial parameters, e.g. 0,1,2 or 0:4:5 (default: 0)")
    else:
        h.add_argument("--lr", type=_positive_float, default=None,
                       help=f"peak learning rate (default: per algorithm: {_lr_help()})")
        h.add_argument("--alpha", type=_positive_float, default=None,
                       help=f"FPTT / FPTT-dual regularisation strength (default: {alpha:g})")
        h.add_argument("--tau", type=_positive_float, default=None, help=f"membrane time constant {tau_help}")
        h.add_argument("--seed", type=_nonneg_int, default=None,
                       help=f"seed of the initial parameters (and of the data order unless --data-seed) "
                            f"(default: {DEFAULTS.seed})")
    beta = registry.defaults("fptt-dual", "rate", 16)["beta"]
    h.add_argument("--beta", type=_positive_float, default=None,
                   help=f"FPTT-dual running-mean rate (default: {beta:g})")
    (seq_window, other_window), (seq_red, other_red), (seq_sf, other_sf) = (
        _per_data(name) for name in ("window", "reduction", "second_forward"))
    h.add_argument("--window", type=_positive_int, default=None,
                   help=f"{', '.join(registry.takers('window'))}: time steps per update; the loss of a window is "
                        f"back-propagated through its steps (default: {seq_window} for sequential data, the "
                        f"paper's form; else {other_window}, SpikingJelly's per-step form)")
    h.add_argument("--reduction", choices=registry.OPTION_CHOICES["reduction"], default=None,
                   help="fptt: the regulariser as a per-tensor mean (SpikingJelly) or a squared norm (the paper) "
                        f"(default: {seq_red} for sequential data, else {other_red})")
    h.add_argument("--second-forward", choices=registry.OPTION_CHOICES["second_forward"], default=None,
                   help="fptt: the gradient at the updated weights from the state after the window "
                        f"(SpikingJelly) or before it (the paper) (default: {seq_sf} for sequential data, "
                        f"else {other_sf})")
    h.add_argument("--k", type=_positive_int, default=None,
                   help="sltt-k: number of time steps with a backward pass (default: T/4)")
    h.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"number of epochs (with --resume: the new total) (default: {DEFAULTS.epochs})")
    seq_batch, other_batch = _per_data("batch_size")
    h.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"samples per batch (default: {seq_batch} for sequential data, "
                        f"{_per_data('batch_size', kind='events')} for SHD/SSC/randman, else {other_batch})")
    h.add_argument("--optimizer", choices=tuple(registry.OPTIMIZERS), default=None,
                   help=f"adam, sgd (momentum 0.9) or adamw (weight decay 0.01) (default: {DEFAULTS.optimizer})")
    seq_clip, other_clip = _per_data("clip")
    h.add_argument("--clip", type=_nonneg_float, default=None, metavar="NORM",
                   help="clip gradients to this global norm before the optimizer, 0: off (default: "
                        f"{seq_clip:g} for sequential data, else {other_clip:g})")
    h.add_argument("--schedule", choices=tuple(registry.SCHEDULES), default=None,
                   help="learning-rate schedule over the epochs: cosine lr·½(1+cos(π e/E)) at epoch e of E, or "
                        f"constant (default: {DEFAULTS.schedule})")
    h.add_argument("--warmup", type=_nonneg_int, default=None, metavar="EPOCHS",
                   help="epochs of linear learning-rate warm-up, lr·(e+1)/(W+1) at epoch e < W, before the "
                        f"schedule (default: {DEFAULTS.warmup})")
    h.add_argument("--data-seed", type=_nonneg_int, default=None,
                   help="seed of the data order and spike draws (default: --seed; sweeps: 0)")
    r = p.add_argument_group("running")
    r.add_argument("--device", default=None, help=f"torch device, e.g. cpu or cuda:0 (default: {DEFAULTS.device})")
    r.add_argument("--threads", type=_threads, default=None,
                   help=f"torch intra-op CPU threads, at most {MAX_THREADS} (default: 1: the networks here are small, "
                        "and one thread is fastest and does not oversubscribe a shared machine)")
    if not compare:
        r.add_argument("--dist-timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help="under torchrun: how long a collective waits for the other ranks before the job stops "
                            f"(default: {DEFAULT_TIMEOUT_S:g})")
    if not sweep:
        r.add_argument("--compile", action="store_true", default=None,
                       help="compile the learner's steps with torch.compile (slow to start on CPU; same numbers)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``purelearn`` and its four commands."""
    parser = _Parser(prog="purelearn", formatter_class=_Formatter,
                     description="Train spiking networks online (FPTT, FPTT-dual, OTTT, SLTT) or with BPTT.",
                     epilog="Run 'purelearn COMMAND --help' for the options of each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", formatter_class=_Formatter, help="train one network and evaluate it",
                       description=(
                           "Train one network, print one progress line per epoch to stderr, and at the end the\n"
                           "test accuracy, the training time and the peak memory. Writes to --out DIR:\n"
                           "metrics.json, learning_curve.png and checkpoint.pt (replaced atomically after every\n"
                           "epoch). 'purelearn train' alone runs FPTT on the rate-coded digits."),
                       epilog=("examples:\n"
                               "  purelearn train\n"
                               "  purelearn train --algo ottt --epochs 10 --out runs/ottt\n"
                               "  purelearn train --algo bptt --data seq-digits --out runs/seq-bptt\n"
                               "  purelearn train --resume runs/ottt --epochs 20"))
    _add_run_options(t)
    o = t.add_argument_group("output")
    o.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: runs/ALGO-DATA-TIMESTAMP; with --resume: the resumed folder)")
    o.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run whose checkpoint.pt is in DIR from its last finished epoch (its "
                        "config is reused; only --epochs, --out, --threads, --no-plot and --quiet may be given; "
                        "a larger --epochs stretches the cosine schedule over the new total)")
    o.add_argument("--overwrite", action="store_true",
                   help="replace the run that --out already holds (its checkpoint.pt and metrics.json are removed "
                        "first); without it such a folder is refused, with --resume too when --out is another folder")
    o.add_argument("--allow-changed-data", action="store_true",
                   help="with --resume: continue even if the data differ from those the run was trained on (their "
                        "fingerprint, recorded in the checkpoint); without it the resume is refused, since it "
                        "would no longer continue the run exactly")
    o.add_argument("--no-plot", action="store_true", help="do not write learning_curve.png (no matplotlib needed)")
    o.add_argument("--quiet", action="store_true", help="no progress lines")

    s = sub.add_parser("sweep", formatter_class=_Formatter, help="train a hyperparameter grid as one vmapped program",
                       description=(
                           "Train every combination of the listed --lr, --alpha, --tau and --seed values as ONE\n"
                           "torch.func.vmap-ed program (hyperparameters become batched tensors, seeds become\n"
                           "stacked initial parameters). All configurations see the same batches, drawn from\n"
                           "--data-seed (default 0); each row equals 'purelearn train' with its values and that\n"
                           "--data-seed. Prints a table ranked by test accuracy and writes sweep.csv, sweep.json\n"
                           "and sweep.png (a heatmap over two swept axes, a line plot over one) to --out DIR.\n\n"
                           "A LIST is comma-separated values (0.001,0.003,0.01), or a range start:stop:num\n"
                           "(num evenly spaced values, both ends included), or start:stop:num:log (geometric)."),
                       epilog=("examples:\n"
                               "  purelearn sweep --algo fptt --lr 0.001,0.003,0.01 --alpha 0.05,0.1,0.2 --epochs 10\n"
                               "  purelearn sweep --algo bptt --lr 0.001:0.01:4:log --seed 0,1,2"))
    _add_run_options(s, sweep=True)
    so = s.add_argument_group("output")
    so.add_argument("--out", default=None, metavar="DIR",
                    help="output folder (default: runs/sweep-ALGO-DATA-TIMESTAMP)")
    so.add_argument("--overwrite", action="store_true", help="replace the sweep that --out already holds")
    so.add_argument("--max-configs", type=_positive_int, default=MAX_CONFIGS, metavar="N",
                    help="refuse a grid of more than N configurations (one vmapped program holds them all at once; "
                         f"the memory estimate still applies) (default: {MAX_CONFIGS})")
    so.add_argument("--no-plot", action="store_true", help="do not write sweep.png")
    so.add_argument("--quiet", action="store_true", help="no progress line")

    c = sub.add_parser("compare", formatter_class=_Formatter,
                       help="train each algorithm in turn and tabulate accuracy, time and peak memory",
                       description=(
                           "Train once per algorithm, each in a fresh process (so the peak memory is that\n"
                           "algorithm's), with the same options (an option that only some algorithms take\n"
                           "reaches only those), into --out DIR/ALGO. Prints the table and writes compare.csv\n"
                           "and compare.json to --out DIR."),
                       epilog=("examples:\n"
                               "  purelearn compare --data digits --out runs/compare-digits\n"
                               "  purelearn compare --data seq-digits --algos fptt,bptt --out runs/compare-seq"))
    c.add_argument("--algos", default=None, metavar="LIST",
                   help="comma-separated algorithms (default: all of " + ", ".join(registry.ALGORITHMS)
                        + " that can train the model; OTTT is left out for alif-rnn)")
    _add_run_options(c, compare=True)
    co = c.add_argument_group("output")
    co.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/compare-DATA-TIMESTAMP)")
    co.add_argument("--overwrite", action="store_true",
                    help="replace earlier runs in --out DIR/ALGO (without it, a folder DIR/ALGO or DIR that holds "
                         "results is refused before any training)")
    co.add_argument("--no-plot", action="store_true", help="do not write learning curves")
    co.add_argument("--quiet", action="store_true", help="no progress lines")

    d = sub.add_parser("data", formatter_class=_Formatter, help="describe a data set before training on it",
                       description=(
                           "Load (and bin, once: the result is cached) the data that --data DATA would train on and\n"
                           "print what to check before a long run: samples per set, classes, spikes per sample,\n"
                           "the time span and frames, dropped spikes, the resident size and the cache file."),
                       epilog=("examples:\n"
                               "  purelearn data shd:~/data/shd\n"
                               "  purelearn data ssc:~/data/ssc,dt=0.01 --T 250\n"
                               "  purelearn data randman:classes=5,units=50"))
    d.add_argument("spec", metavar="DATA", help=_DATA_HELP)
    d.add_argument("--T", type=_positive_int, default=None,
                   help="time steps of the rate code, or frames of SHD/SSC/randman (default: 16 / 100)")
    return parser


# ----------------------------------------------------------------------------- helpers


def _config_from(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> Config:
    """The config of the flags given (fields not given keep their defaults)."""
    given = {k: v for k, v in vars(args).items() if k in FIELDS and k not in skip and v is not None}
    if given.get("data") is not None:
        given["data"] = data.absolute(given["data"])  # the checkpoint's config must work from any folder
    return Config(**given)


def _check_data(name: str | None) -> None:
    """A plain path must be a file (readers of ``KIND:...`` specs say what is wrong themselves)."""
    if name is None or name in ("digits", "seq-digits") or data.parse(name) is not None:
        return
    if not os.path.exists(name):
        raise UsageError(f"--data must be digits, seq-digits, shd:DIR, ssc:DIR, randman or the path of a tensor "
                         f"file; {name!r} does not exist")
    if os.path.isdir(name):
        raise UsageError(f"--data {name!r} is a folder; give the path of a torch.save file")


def _default_out(kind: str, spec: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{kind}-{data.short_name(spec)}-{stamp}")


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _size(n: float) -> str:
    """``n`` bytes in KiB, MiB or GiB, whichever reads best."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def _progress(args: argparse.Namespace) -> Any:
    return None if args.quiet else sys.stderr


# ----------------------------------------------------------------------------- commands


def _cmd_train(args: argparse.Namespace, ranks: Ranks | None = None) -> int:
    writer = ranks is None or ranks.writer
    if args.resume is not None:
        bad = [k for k, v in vars(args).items() if k not in RESUMABLE and k != "command" and v not in (None, False)]
        if bad:
            flags = ", ".join(flag(k) for k in sorted(bad))
            raise UsageError(f"{flags} cannot be changed when resuming (the run's config is in its checkpoint); "
                             "only --epochs, --out, --threads, --no-plot and --quiet may be given with --resume")
        if not os.path.isdir(args.resume):
            raise UsageError(f"--resume {args.resume}: no such folder")
        result = fit(Config(), args.out, resume=args.resume, stream=_progress(args) if writer else None,
                     plot=not args.no_plot, epochs=args.epochs, overwrite=args.overwrite,
                     allow_changed_data=args.allow_changed_data, ranks=ranks)
        out = args.out or args.resume
    else:
        if args.allow_changed_data:
            raise UsageError("--allow-changed-data only applies with --resume")
        _check_data(args.data)
        config = _config_from(args).validate()
        out = args.out or _default_out(config.algo, config.data)
        if ranks is not None:
            out = ranks.broadcast(out)  # rank 0's timestamp
        result = fit(config, out, stream=_progress(args) if writer else None, plot=not args.no_plot,
                     overwrite=args.overwrite, ranks=ranks)
    if not writer:
        return 0
    m = result.metrics
    growth = f", +{m['peak_rss_growth_mib']:.1f} MiB over the start" if "peak_rss_growth_mib" in m else ""
    print(f"{m['config']['algo']} on {m['data']['name']} ({m['config']['model']}, {m['epochs_completed']} epochs): "
          f"test accuracy {100 * m['test_accuracy']:.2f}% ({m['data']['test_size']} samples), "
          f"train time {m['train_time_s']:.1f}s ({m['time_per_epoch_s']:.2f}s/epoch"
          f"{f' on {ranks.world} ranks' if ranks is not None else ''}), "
          f"peak memory {_mib(m['peak_memory_bytes'])} ({m['peak_memory_kind']}{growth})")
    files = [report.METRICS, report.CHECKPOINT] + ([] if args.no_plot else [report.CURVE])
    print(f"wrote {', '.join(os.path.join(out, f) for f in files)}")
    return 0


def _cmd_sweep(args: argparse.Namespace, ranks: Ranks | None = None) -> int:
    _check_data(args.data)
    axes = {name: parse_values(name, getattr(args, name), integer=name == "seed", max_values=args.max_configs)
            for name in SWEEPABLE if getattr(args, name) is not None}
    if not axes:
        raise UsageError("sweep: give at least one of --lr, --alpha, --tau, --seed with a list of values")
    config = _config_from(args, skip=SWEEPABLE).validate()
    out = args.out or _default_out(f"sweep-{config.algo}", config.data)
    writer = ranks is None or ranks.writer
    if ranks is not None:
        out = ranks.broadcast(out)  # rank 0's timestamp
    result = sweep_fit(config, axes, out, stream=_progress(args) if writer else None, plot=not args.no_plot,
                       overwrite=args.overwrite, max_configs=args.max_configs, ranks=ranks)
    if not writer:
        return 0
    rows = sorted(result["rows"], key=lambda r: r["rank"])
    names = result["axes"]
    print(report.table(["rank", *names, "test acc %", "test loss", "train acc %", "train loss"],
                       [[str(r["rank"]), *(f"{r[n]:g}" for n in names), f"{100 * r['test_accuracy']:.2f}",
                         f"{r['test_loss']:.4f}", f"{100 * r['train_accuracy']:.2f}", f"{r['train_loss']:.4f}"]
                        for r in rows]))
    where = "one vmapped program" if ranks is None else f"one vmapped program per rank on {ranks.world} ranks"
    print(f"{len(rows)} configs in {where}: {result['time_s']:.1f}s, peak memory "
          f"{_mib(result['peak_memory_bytes'])} ({result['peak_memory_kind']})")
    files = ["sweep.csv", "sweep.json"] + ([] if args.no_plot else ["sweep.png"])
    print(f"wrote {', '.join(os.path.join(out, f) for f in files)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    _check_data(args.data)
    base = _config_from(args)
    algos = None
    if args.algos is not None:
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        if not algos or any(a not in registry.ALGORITHMS for a in algos):
            raise UsageError(f"--algos must list algorithms from {', '.join(registry.ALGORITHMS)}, got {args.algos!r}")
    configs = configs_for(base, algos)
    out = args.out or _default_out("compare", base.data)
    rows = compare(configs, out, stream=_progress(args), plot=not args.no_plot, threads=args.threads or 1,
                   overwrite=args.overwrite)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["algo"], "-", "failed: " + flag_message(r["error"]), "", "", "", ""])
            continue
        growth = r.get("peak_rss_growth_mib")
        table.append([r["algo"], r["model"], f"{100 * r['test_accuracy']:.2f}", f"{r['train_time_s']:.1f}",
                      f"{r['time_per_epoch_s']:.2f}", f"{r['peak_memory_mib']:.1f}",
                      "-" if growth is None else f"{growth:.1f}"])
    kind = next((r["peak_memory_kind"] for r in rows if "peak_memory_kind" in r), "")
    print(report.table(["algo", "model", "test acc %", "train s", "s/epoch", f"peak MiB ({kind})", "growth MiB"],
                       table))
    print(f"wrote {os.path.join(out, 'compare.csv')}, {os.path.join(out, 'compare.json')}")
    return 0 if all("error" not in r for r in rows) else 1


def _cmd_data(args: argparse.Namespace) -> int:
    info = data.summary(data.load(data.absolute(args.spec), args.T))
    names = f": {', '.join(info['classes'])}" if info["classes"] else ""
    print(f"{info['name']}: {info['title']}")
    if "files" in info:
        print(f"  files     {', '.join(info['files'])}")
    if "options" in info:
        print(f"  options   {', '.join(f'{k}={v}' for k, v in info['options'].items())}")
    print(f"  classes   {info['num_classes']}{names}")
    frames = f"{info['T']} frames" if "dt" in info else f"{info['T']} steps"
    if "dt" in info:
        frames += (f" of {1000 * info['dt']:.4g} ms, covering {info['span']:.4g} s from 0 ({info['span_rule']}); "
                   f"{info['step_shape'][0]} units")
    print(f"  T         {frames} (encoding {info['encoding']}, steps of shape {info['step_shape']})")
    rows = []
    for name, row in info["sets"].items():
        spikes = row.get("spikes_per_sample")
        per_sample = "-" if spikes is None else f"{spikes[0]:.1f} [{spikes[1]}, {spikes[2]}]"
        rows.append([name, str(row["samples"]), per_sample,
                     str(row.get("empty_samples", "-")), str(row.get("nonfinite", "-")), str(row.get("outside", "-")),
                     _size(row["bytes"])])
    print(report.table(["set", "samples", "spikes/sample mean [min, max]", "empty", "dropped NaN/inf",
                        "outside span", "resident"], rows))
    print(f"  resident  {_size(info['resident_bytes'])} in all (dense float batches are built on the fly)")
    if "cache" in info:
        cache = "none (not cached)" if info["cache"] is None else \
            f"{info['cache']} ({'read back' if info['cache_hit'] else 'written now'})"
        print(f"  cache     {cache}")
    return 0


def debug_tracebacks(value: str | None = None) -> bool | None:
    """Whether ``PURELEARN_DEBUG`` (or ``value``) asks for tracebacks: True for ``1``, ``true``, ``yes``,
    ``on``; False for ``0``, ``false``, ``no``, ``off``, empty or unset (any case, spaces ignored);
    None for anything else."""
    value = os.environ.get("PURELEARN_DEBUG", "") if value is None else value
    value = value.strip().lower()
    return True if value in DEBUG_ON else False if value in DEBUG_OFF else None


def _out_of_memory(err: RuntimeError) -> bool:
    """Whether ``err`` is torch's failure to allocate (CUDA's ``OutOfMemoryError``, the CPU allocator's
    ``can't allocate memory``)."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(err)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``purelearn`` and ``python -m purelearn``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = {"train": _cmd_train, "sweep": _cmd_sweep, "compare": _cmd_compare, "data": _cmd_data}[args.command]
    prog = f"purelearn {args.command}"
    ranks, succeeded = None, False
    debug = debug_tracebacks()
    if debug is None:
        sys.stderr.write(f"{prog}: warning: PURELEARN_DEBUG={os.environ.get('PURELEARN_DEBUG')!r} is neither on "
                         f"({', '.join(DEBUG_ON)}) nor off ({', '.join(repr(v) for v in DEBUG_OFF)}); "
                         "tracebacks stay off\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(getattr(args, "threads", None) or 1)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: sys.stderr.write(f"{prog}: warning: {message}\n")
            if args.command in ("train", "sweep"):
                ranks = from_environment(args.dist_timeout)
                if ranks is not None:
                    prog = f"{prog} (rank {ranks.rank} of {ranks.world})"
                code = command(args, ranks)
                succeeded = code == 0
                return code
            if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):
                raise UsageError(f"{args.command} runs in one process; launch it without torchrun (only train and "
                                 "sweep run across ranks)")
            return command(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted; the last checkpoint (if any) is in the output folder: "
                         "continue with purelearn train --resume DIR\n")
        return 130
    except StoppedByRank as err:  # another rank failed before training and said why
        return err.exit_code
    except (UsageError, ValueError, TypeError, OSError, ImportError, checkpoint.CheckpointError,
            DivergedError, distributed.RanksDisagree) as err:
        if debug:
            raise
        if ranks is not None and not ranks.writer and isinstance(err, COLLECTIVE_ERRORS):
            return exit_code(err)  # every rank raised it together: rank 0 says it
        message = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, (ConfigError, DivergedError, StorageError)):
            message = flag_message(message)
        sys.stderr.write(f"{prog}: error: {message}\n")
        return exit_code(err)
    except (distributed.CollectiveFailed, torch.distributed.DistError) as err:  # another rank stopped
        if debug:
            raise
        sys.stderr.write(f"{prog}: stopped: {' '.join(str(err).split())[:300]}\n")
        return 1
    except RuntimeError as err:  # torch.OutOfMemoryError (CUDA) is one too
        if debug or not _out_of_memory(err):
            raise
        where = "GPU" if isinstance(err, torch.cuda.OutOfMemoryError) else "CPU"
        sys.stderr.write(f"{prog}: error: out of {where} memory, beyond the estimate checked before the run (a "
                         f"lower bound): lower --T, --hidden or --batch-size ({' '.join(str(err).split())[:160]})\n")
        return EXIT_USAGE
    finally:
        torch.set_num_threads(threads)
        if ranks is not None:
            close_ranks(wait=succeeded)
