"""The ``purelearn`` command line: ``train``, ``sweep`` and ``compare``.

    purelearn train                                  # FPTT, rate-coded digits, 30 epochs
    purelearn train --algo bptt --data seq-digits --out runs/bptt-seq
    purelearn train --resume runs/bptt-seq --epochs 40
    purelearn sweep --algo fptt --lr 0.001,0.003,0.01 --alpha 0.05:0.2:3 --epochs 10
    purelearn compare --data digits --out runs/compare

Errors in the arguments or the data are one line on stderr and exit code 2. ``PURELEARN_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import Any, NoReturn

import torch

from . import checkpoint, models, train

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
RESUMABLE = {"epochs", "out", "no_plot", "quiet", "resume", "threads"}


class UsageError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _bounded(text: str, convert: type, low: float, strict: bool) -> Any:
    """``convert(text)`` if it is finite and above ``low`` (``>`` when ``strict``, else ``>=``)."""
    relation = f"{'>' if strict else '>='} {low:g}"
    parsed, finite = ("an integer", "an integer") if convert is int else ("a number", "a finite number")
    try:
        v = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {parsed} {relation}, got {text!r}") from None
    if not (v > low if strict else v >= low) or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected {finite} {relation}, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    return _bounded(text, int, 1, strict=False)


def _nonneg_int(text: str) -> int:
    return _bounded(text, int, 0, strict=False)


def _nonneg_float(text: str) -> float:
    return _bounded(text, float, 0, strict=False)


def _positive_float(text: str) -> float:
    return _bounded(text, float, 0, strict=True)


DEFAULTS = train.Config()
LR_HELP = "; ".join(
    f"{'sequential data' if enc == 'sequential' else 'other data'}: "
    + ", ".join(f"{a} {lr:g}" for a, lr in d["lr"].items()) for enc, d in train.DEFAULTS.items())


def _add_run_options(p: argparse.ArgumentParser, sweep: bool = False, compare: bool = False) -> None:
    """Options shared by train / sweep / compare. Defaults are None here so that explicit ones are known."""
    g = p.add_argument_group("what to train")
    if not compare:
        g.add_argument("--algo", choices=models.ALGOS, default=None, metavar="ALGO",
                       help=f"learning algorithm: {', '.join(models.ALGOS)} (default: {DEFAULTS.algo}). "
                            "ottt = OTTT_O (update per step), ottt-a = OTTT_A (per sequence); sltt accumulates "
                            "over the sequence; sltt-k back-propagates at --k random steps only")
    g.add_argument("--data", default=None, metavar="DATA",
                   help="digits (rate-coded sklearn digits, T=16), seq-digits (one pixel per step, T=64) or "
                        "the path of a torch.save file {'x', 'y', 'encoding'} (see purelearn.data) "
                        f"(default: {DEFAULTS.data})")
    g.add_argument("--model", choices=models.MODELS, default=None, metavar="MODEL",
                   help="mlp (Flatten-Linear-256 LIF-Linear readout), conv (2 conv+LIF layers, readout) or "
                        "alif-rnn (recurrent ALIF layer of 128 with trained time constants, readout); the neuron "
                        "type follows --algo "
                        "(default: alif-rnn for sequential data, else mlp)")
    g.add_argument("--T", type=_positive_int, default=None,
                   help="time steps of the rate code (default: 16; the sequential encoding has one step per pixel)")
    g.add_argument("--hidden", type=_positive_int, default=None,
                   help="hidden width (default: 256 for mlp, 16 channels for conv, 128 for alif-rnn)")
    g.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="use only the first N training samples and N/4 test samples (quick runs)")
    g.add_argument("--weighting", choices=train.WEIGHTINGS, default=None,
                   help="time weights w_t of the per-step loss: uniform, ramp ((t+1)/T), late (1 on the last "
                        "quarter of the steps) or last (default: sequential data: ramp for fptt and fptt-dual, "
                        "late for the others; else uniform)")
    g.add_argument("--predict", choices=train.WEIGHTINGS, default=None,
                   help="time weights of the prediction argmax Σ_t w_t z_t, the same choices (default: late for "
                        "sequential data, else uniform; the same for every algorithm)")
    h = p.add_argument_group("hyperparameters")
    if sweep:
        h.add_argument("--lr", default=None, metavar="LIST",
                       help="learning rates, e.g. 0.001,0.003,0.01 or a range 0.001:0.01:3[:log] "
                            f"(default: per algorithm: {LR_HELP})")
        h.add_argument("--alpha", default=None, metavar="LIST",
                       help=f"FPTT regularisation strength(s) (default: {train.DEFAULTS['other']['alpha']:g})")
        h.add_argument("--tau", default=None, metavar="LIST",
                       help="membrane time constant(s) (default: 2 for LIF, "
                            f"{models.DEFAULT_TAU['alif-rnn']:g} for alif-rnn, where it is the initial value of "
                            "the trained tau_m)")
        h.add_argument("--seed", default=None, metavar="LIST",
                       help="seeds of the initial parameters, e.g. 0,1,2 or 0:4:5 (default: 0)")
    else:
        h.add_argument("--lr", type=_positive_float, default=None,
                       help=f"peak learning rate (default: per algorithm: {LR_HELP})")
        h.add_argument("--alpha", type=_positive_float, default=None,
                       help=f"FPTT / FPTT-dual regularisation strength (default: {train.DEFAULTS['other']['alpha']:g})")
        h.add_argument("--tau", type=_positive_float, default=None,
                       help="membrane time constant (default: 2 for LIF neurons, "
                            f"{models.DEFAULT_TAU['alif-rnn']:g} for alif-rnn, where it is the initial value of "
                            "the trained tau_m)")
        h.add_argument("--seed", type=_nonneg_int, default=None,
                       help=f"seed of the initial parameters (and of the data order unless --data-seed) "
                            f"(default: {DEFAULTS.seed})")
    h.add_argument("--beta", type=_positive_float, default=None,
                   help=f"FPTT-dual running-mean rate (default: {DEFAULTS.beta:g})")
    seq_form, other_form = train.DEFAULTS["sequential"]["fptt"], train.DEFAULTS["other"]["fptt"]
    h.add_argument("--window", type=_positive_int, default=None,
                   help="fptt, fptt-dual: time steps per update; the loss of a window is back-propagated "
                        f"through its steps (default: {seq_form['window']} for sequential data, the paper's "
                        f"form; else {other_form['window']}, SpikingJelly's per-step form)")
    h.add_argument("--reduction", choices=train.REDUCTIONS, default=None,
                   help="fptt: the regulariser as a per-tensor mean (SpikingJelly) or a squared norm (the paper) "
                        f"(default: {seq_form['reduction']} for sequential data, else {other_form['reduction']})")
    h.add_argument("--second-forward", choices=train.SECOND_FORWARDS, default=None,
                   help="fptt: the gradient at the updated weights from the state after the window "
                        f"(SpikingJelly) or before it (the paper) (default: {seq_form['second_forward']} for "
                        f"sequential data, else {other_form['second_forward']})")
    h.add_argument("--k", type=_positive_int, default=None,
                   help="sltt-k: number of time steps with a backward pass (default: T/4)")
    h.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"number of epochs (with --resume: the new total) (default: {DEFAULTS.epochs})")
    h.add_argument("--batch-size", type=_positive_int, default=None,
                   help="samples per batch (default: 32 for sequential data, else 64)")
    h.add_argument("--optimizer", choices=train.OPTIMIZERS, default=None,
                   help=f"adam, sgd (momentum 0.9) or adamw (weight decay 0.01) (default: {DEFAULTS.optimizer})")
    h.add_argument("--clip", type=_nonneg_float, default=None, metavar="NORM",
                   help="clip gradients to this global norm before the optimizer, 0: off (default: 1 for "
                        "sequential data, else 0)")
    h.add_argument("--schedule", choices=train.SCHEDULES, default=None,
                   help=f"learning-rate schedule over the epochs (default: {DEFAULTS.schedule})")
    h.add_argument("--data-seed", type=_nonneg_int, default=None,
                   help="seed of the data order and spike draws (default: --seed; sweeps: 0)")
    r = p.add_argument_group("running")
    r.add_argument("--device", default=None, help=f"torch device, e.g. cpu or cuda:0 (default: {DEFAULTS.device})")
    r.add_argument("--threads", type=_positive_int, default=None,
                   help="torch intra-op CPU threads (default: 1: the networks here are small, and one thread is "
                        "fastest and does not oversubscribe a shared machine)")
    if not sweep:
        r.add_argument("--compile", action="store_true", default=None,
                       help="wrap the learner's step in torch.compile (slow to start on CPU; same numbers)")


def build_parser() -> argparse.ArgumentParser:
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
    o.add_argument("--overwrite", action="store_true", help="start afresh even if --out already holds a checkpoint")
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
    so.add_argument("--no-plot", action="store_true", help="do not write sweep.png")
    so.add_argument("--quiet", action="store_true", help="no progress line")

    c = sub.add_parser("compare", formatter_class=_Formatter,
                       help="train each algorithm in turn and tabulate accuracy, time and peak memory",
                       description=(
                           "Run 'purelearn train' once per algorithm, each in a fresh process (so the peak memory\n"
                           "is that algorithm's), with the same options, into --out DIR/ALGO. Prints the table and\n"
                           "writes compare.csv and compare.json to --out DIR."),
                       epilog=("examples:\n"
                               "  purelearn compare --data digits --out runs/compare-digits\n"
                               "  purelearn compare --data seq-digits --algos fptt,bptt --out runs/compare-seq"))
    c.add_argument("--algos", default=None, metavar="LIST",
                   help="comma-separated algorithms (default: all of " + ", ".join(models.ALGOS)
                        + "; OTTT is left out for alif-rnn)")
    _add_run_options(c, compare=True)
    co = c.add_argument_group("output")
    co.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/compare-DATA-TIMESTAMP)")
    co.add_argument("--no-plot", action="store_true", help="do not write learning curves")
    return parser


# ----------------------------------------------------------------------------- helpers


CONFIG_KEYS = {f for f in train.Config.__dataclass_fields__}


def _config_from(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> train.Config:
    given = {k: v for k, v in vars(args).items() if k in CONFIG_KEYS and k not in skip and v is not None}
    return train.Config(**given)


def _check_data(name: str | None) -> None:
    if name is None or name in ("digits", "seq-digits"):
        return
    if not os.path.exists(name):
        raise UsageError(f"--data must be digits, seq-digits or the path of a tensor file; {name!r} does not exist")
    if os.path.isdir(name):
        raise UsageError(f"--data {name!r} is a folder; give the path of a torch.save file")


def _default_out(kind: str, config: train.Config) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    data_name = os.path.splitext(os.path.basename(config.data))[0]
    return os.path.join("runs", f"{kind}{config.algo}-{data_name}-{stamp}")


def _format_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- commands


def _cmd_train(args: argparse.Namespace) -> int:
    stream = None if args.quiet else sys.stderr
    if args.resume is not None:
        bad = [k for k, v in vars(args).items()
               if k not in RESUMABLE and k != "command" and v not in (None, False)]
        if bad:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(bad))
            raise UsageError(f"{flags} cannot be changed when resuming (the run's config is in its checkpoint); "
                             "only --epochs, --out, --threads, --no-plot and --quiet may be given with --resume")
        if not os.path.isdir(args.resume):
            raise UsageError(f"--resume {args.resume}: no such folder")
        result = train.fit(train.Config(), args.out, resume=args.resume, stream=stream, plot=not args.no_plot,
                           epochs=args.epochs)
        out = args.out or args.resume
    else:
        _check_data(args.data)
        if args.data not in (None, "digits", "seq-digits"):
            args.data = os.path.abspath(args.data)  # the checkpoint's config must work from any folder
        config = _config_from(args)
        config.validate()
        out = args.out or _default_out("", config)
        if os.path.exists(os.path.join(out, train.CHECKPOINT)) and not args.overwrite:
            raise UsageError(f"--out {out} already holds a run; continue it with --resume {out}, "
                             "or pass --overwrite / another --out")
        result = train.fit(config, out, stream=stream, plot=not args.no_plot)
    m = result.metrics
    mem = _format_bytes(m["peak_memory_bytes"])
    growth = f", +{m['peak_rss_growth_mib']:.1f} MiB over the start" if "peak_rss_growth_mib" in m else ""
    print(f"{m['config']['algo']} on {m['data']['name']} ({m['config']['model']}, {m['epochs_completed']} epochs): "
          f"test accuracy {100 * m['test_accuracy']:.2f}% ({m['data']['test_size']} samples), "
          f"train time {m['train_time_s']:.1f}s ({m['time_per_epoch_s']:.2f}s/epoch), "
          f"peak memory {mem} ({m['peak_memory_kind']}{growth})")
    files = [train.METRICS, train.CHECKPOINT] + ([] if args.no_plot else [train.CURVE])
    print(f"wrote {', '.join(os.path.join(out, f) for f in files)}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    _check_data(args.data)
    axes: dict[str, list[float]] = {}
    for name in train.SWEEPABLE:
        text = getattr(args, name)
        if text is not None:
            axes[name] = train.parse_values(name, text, integer=name == "seed")
    if not axes:
        raise UsageError("sweep: give at least one of --lr, --alpha, --tau, --seed with a list of values")
    config = _config_from(args, skip=train.SWEEPABLE)
    config.validate()
    out = args.out or _default_out("sweep-", config)
    result = train.sweep_fit(config, axes, out, stream=None if args.quiet else sys.stderr, plot=not args.no_plot)
    rows = sorted(result["rows"], key=lambda r: r["rank"])
    names = result["axes"]
    table = _table(["rank", *names, "test acc %", "test loss", "train acc %", "train loss"],
                   [[str(r["rank"]), *(f"{r[n]:g}" for n in names), f"{100 * r['test_accuracy']:.2f}",
                     f"{r['test_loss']:.4f}", f"{100 * r['train_accuracy']:.2f}", f"{r['train_loss']:.4f}"]
                    for r in rows])
    print(table)
    print(f"{len(rows)} configs in one vmapped program: {result['time_s']:.1f}s, peak memory "
          f"{_format_bytes(result['peak_memory_bytes'])} ({result['peak_memory_kind']})")
    files = ["sweep.csv", "sweep.json"] + ([] if args.no_plot else ["sweep.png"])
    print(f"wrote {', '.join(os.path.join(out, f) for f in files)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    _check_data(args.data)
    config = _config_from(args)
    config.validate()
    if args.algos is None:
        model = config.model
        if model is None:
            model = "alif-rnn" if config.data == "seq-digits" else "mlp"
        algos = [a for a in models.ALGOS if not (model == "alif-rnn" and a.startswith("ottt"))]
    else:
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        bad = [a for a in algos if a not in models.ALGOS]
        if bad or not algos:
            raise UsageError(f"--algos must list algorithms from {', '.join(models.ALGOS)}, got {args.algos!r}")
    def passthrough(algo: str) -> list[str]:
        """The options given, for ``algo``: an option of some algorithms only (--window, --k, ...) only
        reaches those (:data:`purelearn.train.ONLY_FOR`)."""
        out = []
        for key, value in vars(args).items():
            if key in ("command", "algos", "out", "no_plot") or value is None or value is False:
                continue
            if algo not in train.ONLY_FOR.get(key, (algo,)):
                continue
            flag = "--" + key.replace("_", "-")
            out += [flag] if value is True else [flag, str(value)]
        return out + (["--no-plot"] if args.no_plot else [])

    out = args.out or os.path.join("runs", "compare-" + os.path.splitext(os.path.basename(config.data))[0] + "-"
                                   + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    rows = train.compare(algos, passthrough, out, stream=sys.stderr)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["algo"], "-", "failed: " + r["error"], "", "", "", ""])
            continue
        growth = r.get("peak_rss_growth_mib")
        table.append([r["algo"], r["model"], f"{100 * r['test_accuracy']:.2f}", f"{r['train_time_s']:.1f}",
                      f"{r['time_per_epoch_s']:.2f}", f"{r['peak_memory_mib']:.1f}",
                      "-" if growth is None else f"{growth:.1f}"])
    kind = next((r["peak_memory_kind"] for r in rows if "peak_memory_kind" in r), "")
    print(_table(["algo", "model", "test acc %", "train s", "s/epoch", f"peak MiB ({kind})", "growth MiB"], table))
    print(f"wrote {os.path.join(out, 'compare.csv')}, {os.path.join(out, 'compare.json')}")
    return 0 if all("error" not in r for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``purelearn`` and ``python -m purelearn``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = {"train": _cmd_train, "sweep": _cmd_sweep, "compare": _cmd_compare}[args.command]
    prog = f"purelearn {args.command}"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or 1)
    try:
        return command(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted; the last checkpoint (if any) is in the output folder: "
                         "continue with purelearn train --resume DIR\n")
        return 130
    except (UsageError, ValueError, TypeError, FileNotFoundError, PermissionError, ImportError,
            checkpoint.CheckpointError) as err:
        if os.environ.get("PURELEARN_DEBUG"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        sys.stderr.write(f"{prog}: error: {message}\n")
        return EXIT_USAGE
    except torch.cuda.OutOfMemoryError as err:  # pragma: no cover - needs a GPU
        sys.stderr.write(f"{prog}: error: out of GPU memory ({' '.join(str(err).split())[:200]})\n")
        return EXIT_USAGE
    finally:
        torch.set_num_threads(threads)
