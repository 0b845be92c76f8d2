"""SHD at scale: memory of one training sequence against T, and data time against compute time per epoch.

    python benchmarks/shd_scale.py memory    [--quick] [--out memory.json]
    python benchmarks/shd_scale.py data-time [--quick] [--out data_time.json]

Both on generated data in the SHD layout (``data.randman``: 700 units, 20 classes, every unit firing
14 times per sample, 9,800 spikes per sample, an assumed figure for the real files, as in
``data_size.py``), binned into T frames, the ``srnn`` model and every default of the ``events`` data
(batch 64, Adam, clipping at 1, FPTT and FPTT-dual in windows of 8, SLTT-K at k = T/4): config,
model, learner and carry are built as ``purelearn train`` builds them (``app.loop.setup``,
``build_learner``). One torch thread, eager (the application's default).

- ``memory``: peak resident memory of ONE training sequence of one batch, at T = 100, 250, 1000, for
  every learner that trains ``srnn`` (FPTT, FPTT-dual, SLTT, SLTT-K; OTTT has no recurrent form) and
  BPTT beside them; one process per point (``memory-point ALGO T``), ``peak()`` of
  ``memory_point.py`` (Linux ``VmHWM`` reset at the start): the learner's plan walked with ``step``,
  outputs dropped, and ``learner.run`` (what an epoch calls; it also stacks the per-step outputs).
  Reported: peak minus start (MiB), the difference and the ratio of the longest T to the shortest.
  The dense input batch [T, 64, 700] is resident before the sequence starts and is not counted;
  memory freed before it (data preparation, a 16-step warm-up sequence that takes the first-call
  allocations out of the measurement) is handed back first (glibc ``malloc_trim``), so the growth
  is the sequence's own working set.
- ``data-time``: one epoch on SHD-sized data, 8,156 training samples, T = 100, batch 64: (a) data,
  the dense batches of one epoch built with ``data.batches`` from the binned compact set (median of
  ``--repeats`` epochs); (b) compute, FPTT (events defaults) on ``srnn`` through ``app.run_epoch``,
  measured on ``--batches`` batches after one warm-up batch and *scaled* to the epoch's batches.
  Generating randman at 700 units and 20 classes is slow (about 40 s on one thread, most of it per
  class), so ``--generate`` samples (default 1,000) are generated, binned and tiled to the 8,156
  (the compact set then has the real size, layout and density).

``--quick``: tiny sizes (seconds per point; what ``tests/test_benchmarks_smoke.py`` runs), ``memory``'s points
two at a time (each in its own processes: their resident memory is their own).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from memory_point import peak  # noqa: E402

from purelearn import data, tree  # noqa: E402
from purelearn.app import Config, loop, registry, task  # noqa: E402

UNITS, CLASSES, SPIKES_PER_UNIT = 700, 20, 14
SHD_TRAIN = 8156
LEARNERS = [a for a in ("fptt", "fptt-dual", "sltt", "sltt-k", "bptt") if registry.trains(a, "srnn")]
MEMORY_T, QUICK_MEMORY_T = (100, 250, 1000), (10, 40)
QUICK_LEARNERS = ("fptt", "bptt")
WARM_T = 16
#: Below this growth (MiB) a ratio means nothing: the kernel's RSS counters are batched per thread.
RESOLUTION_MIB = 1.0


def _generate(samples: int, spikes_per_unit: int, seed: int = 0) -> data.Spikes:
    """Raw randman spikes of at least ``samples`` samples in the SHD layout (700 units, 20 classes)."""
    return data.randman(classes=CLASSES, units=UNITS, samples=math.ceil(samples / CLASSES), spikes=spikes_per_unit,
                        seed=seed)


def _split(raw: data.Spikes, T: int, tile: int | None = None) -> data.Split:
    """``raw`` binned into T frames over its 1 s (as ``data.load_randman``), kept compact; with ``tile`` the
    samples are repeated to ``tile`` samples. Train and test are the same set (only training is measured)."""
    counts, _ = data.bin_spikes(raw, T, 1.0 / T, UNITS)
    labels = raw.labels
    if tile is not None:
        index = torch.arange(tile) % len(counts)
        counts, labels = counts[index], labels[index]
    ds = data.Dataset(counts, labels, data.EVENTS, T)
    return data.Split("shd-layout", ds, ds, CLASSES)


def _options(config: Config) -> str:
    """The learner's own options as the registry resolved them, e.g. ``window 8``."""
    spec = registry.algorithm(config.algo)
    shown = {name: getattr(config, name) for name in spec.options if name in ("window", "k")}
    return ", ".join(f"{name} {value}" for name, value in shown.items())


def _setup(algo: str, split: data.Split, batch: int | None) -> tuple[Any, ...]:
    """``app.loop.setup`` on ``split`` (its steps after loading the data): the resolved config with the events
    defaults, the model, the loss and prediction weights, the device."""
    config = Config(algo=algo, data="randman", T=split.train.T, epochs=1, batch_size=batch).validate()
    config = config.resolved(split)
    device = torch.device(config.device)
    model = registry.build_model(config.model, config.algo, split.train.step_shape, split.num_classes,
                                 tau=torch.tensor(config.tau, device=device), hidden=config.hidden)
    weights = task.time_weights(config.weighting, split.train.T, device=device)
    predict_weights = task.time_weights(config.predict, split.train.T, device=device)
    return config, model, weights, predict_weights, device


def _learner_and_carry(config: Config, split: data.Split, model: Any, device: torch.device,
                       n_batches: int) -> tuple[Any, Any]:
    """The learner (learning-rate schedule, alpha and beta as tensors) and its initial carry, as ``fit`` builds them."""
    every = loop.updates_per_epoch(config, model, config.T, n_batches)
    lr = loop.learning_rate(config, config.lr, every)
    learner = loop.build_learner(config, model, lr, **loop.hyperparameter_tensors(config, device))
    example = loop.example_step(split, device)
    carry = learner.init(*loop.init_params(model, config.seed, example, config.model))
    return learner, carry


# ---------------------------------------------------------------------------------------------- memory


def memory_point(algo: str, T: int, spikes_file: str, batch: int | None, mode: str) -> dict[str, Any]:
    """One point, in this process: peak resident memory of one sequence of ``algo`` at T, on the raw spikes
    in ``spikes_file`` (``torch.save`` of a ``data.Spikes``) binned into T frames; ``mode`` ``"step"``: the
    plan walked with ``step``, outputs dropped; ``"run"``: ``learner.run``. One mode per process: memory
    freed by one sequence stays resident (glibc) and would hide the next one's."""
    torch.set_num_threads(1)
    raw = data.Spikes(*torch.load(spikes_file))
    split = _split(raw, T)
    config, model, weights, _, device = _setup(algo, split, batch)
    learner, carry = _learner_and_carry(config, split, model, device, 1)
    x, labels = next(data.batches(split.train, config.batch_size, torch.Generator().manual_seed(0)))
    y = task.targets(labels, weights, split.num_classes)
    del raw

    # first-call allocations (lazy init, kernels) outside the measurement: a short sequence of its own
    short = min(WARM_T, T)
    warm_config = Config(**{**config.to_dict(), "k": None if config.k is None else max(1, short // 4)})
    warm, warm_carry = _learner_and_carry(warm_config, split, model, device, 1)
    for call in warm.plan(warm_carry, short):
        warm_carry, _ = warm.step(warm_carry, x[call.t], y[call.t], **dict(call.options))
    warm.run(warm.end_sequence(warm_carry), x[:short], y[:short])
    del warm, warm_carry

    state = {"carry": carry}

    def step_loop() -> None:
        c = state["carry"]
        for call in learner.plan(c, T):  # the learner's own calls, outputs dropped
            c, _ = learner.step(c, x[call.t], y[call.t], **dict(call.options))
        state["carry"] = learner.end_sequence(c)

    def run() -> None:
        state["carry"], _ = learner.run(state["carry"], x, y)

    out: dict[str, Any] = {"algo": algo, "T": T, "batch": config.batch_size, "options": _options(config),
                           "model": config.model, "batch_bytes": x.element_size() * x.numel(),
                           "params": sum(p.numel() for p in tree.leaves(carry.params))}
    _trim()  # memory freed so far (raw spikes, binning, warm-up) back to the kernel: the growth is the sequence's
    suffix = "" if mode == "step" else "_run"
    out["peak_bytes" + suffix], out["start_bytes" + suffix] = peak(step_loop if mode == "step" else run)
    return out


def _trim() -> bool:
    """glibc's ``malloc_trim(0)``: freed heap memory back to the kernel, so that a sequence's allocations
    are not served from memory that earlier work freed but the process kept (False where unavailable)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _point_in_process(algo: str, T: int, spikes_file: str, batch: int | None, mode: str) -> dict[str, Any]:
    args = [sys.executable, str(Path(__file__).resolve()), "memory-point", algo, str(T), spikes_file, "--mode", mode]
    if batch is not None:
        args += ["--batch", str(batch)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=HERE.parent, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory-point {algo} T={T} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def _mib(n: int | None) -> float | None:
    return None if n is None else n / 2**20


def memory(args: argparse.Namespace) -> dict[str, Any]:
    Ts = QUICK_MEMORY_T if args.quick else MEMORY_T
    algos = QUICK_LEARNERS if args.quick else LEARNERS
    batch = 8 if args.quick else args.batch
    spikes_per_unit = 1 if args.quick else SPIKES_PER_UNIT
    size = batch or max(registry.defaults(a, data.EVENTS, Ts[-1])["batch_size"] for a in algos)
    t0 = time.perf_counter()
    raw = _generate(size, spikes_per_unit)  # once: randman at 700 units takes about 40 s (20 classes)
    _log(f"  generated {len(raw.lengths)} samples in {time.perf_counter() - t0:.0f} s")
    with tempfile.TemporaryDirectory() as folder:
        spikes_file = os.path.join(folder, "spikes.pt")
        torch.save(tuple(raw), spikes_file)

        def one(algo_T: tuple[str, int]) -> dict[str, Any]:
            algo, T = algo_T
            t0 = time.perf_counter()
            point = {**_point_in_process(algo, T, spikes_file, batch, "step"),
                     **_point_in_process(algo, T, spikes_file, batch, "run")}
            point["growth_mib"] = _mib(None if point["peak_bytes"] is None
                                       else point["peak_bytes"] - point["start_bytes"])
            point["growth_mib_run"] = _mib(None if point["peak_bytes_run"] is None
                                           else point["peak_bytes_run"] - point["start_bytes_run"])
            point["seconds"] = time.perf_counter() - t0
            _log(f"  memory {algo} T={T}: {_fmt(point['growth_mib'])} MiB ({point['seconds']:.0f} s)")
            return point

        # each point measures its own processes' resident memory, so --quick runs two side by side
        with ThreadPoolExecutor(2 if args.quick else 1) as pool:
            points = list(pool.map(one, [(algo, T) for algo in algos for T in Ts]))
    rows = []
    for algo in algos:
        mine = {p["T"]: p for p in points if p["algo"] == algo}
        first, last = mine[Ts[0]]["growth_mib"], mine[Ts[-1]]["growth_mib"]
        options = [mine[T]["options"] for T in Ts]  # SLTT-K's k is T/4
        if len(set(options)) > 1:
            options = [options[0].split(" ")[0] + " " + "/".join(o.split(" ", 1)[1] for o in options)]
        rows.append({"algo": algo, "options": options[0],
                     "growth_mib": {str(T): mine[T]["growth_mib"] for T in Ts},
                     "growth_mib_run": {str(T): mine[T]["growth_mib_run"] for T in Ts},
                     "difference_mib": None if first is None or last is None else last - first,
                     "ratio": None if first is None or last is None or first < RESOLUTION_MIB else last / first})
    p0 = points[0]
    lines = [f"Peak resident memory of one training sequence minus the memory at its start (MiB), "
             f"{p0['model']} ({p0['params']:,} parameters), SHD layout ({UNITS} units, "
             f"{UNITS * spikes_per_unit:,} spikes per sample, generated randman), batch {p0['batch']}, "
             f"events defaults; the learner's plan walked with step, outputs dropped; one process per point.", "",
             "| learner | " + " | ".join(f"T={T}" for T in Ts) +
             f" | T={Ts[-1]} − T={Ts[0]} | T={Ts[-1]} / T={Ts[0]} | learner.run, T={Ts[0]} → {Ts[-1]} |",
             "|---|" + "---:|" * (len(Ts) + 3)]
    for row in rows:
        name = row["algo"] + (f" ({row['options']})" if row["options"] else "")
        cells = [_fmt(row["growth_mib"][str(T)]) for T in Ts]
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(row['difference_mib'])} | {ratio} | "
                     f"{_fmt(row['growth_mib_run'][str(Ts[0])])} → {_fmt(row['growth_mib_run'][str(Ts[-1])])} |")
    batch_mib = {p["T"]: _mib(p["batch_bytes"]) for p in points if p["algo"] == algos[0]}
    starts = [p["start_bytes"] / 2**20 for p in points if p["start_bytes"] is not None]
    lines += ["", "Not counted (resident when the sequence starts" +
              (f", {min(starts):.0f}-{max(starts):.0f} MiB" if starts else "") +
              ": torch, the data, the model and the dense input batch, " +
              ", ".join(f"{batch_mib[T]:.1f} MiB at T={T}" for T in Ts) + "; memory freed before, by the data "
              "preparation and a 16-step warm-up sequence, is first handed back with malloc_trim)" +
              ". learner.run (own process) also stacks the per-step outputs [T, batch, 20]. "
              f"Resolution about {RESOLUTION_MIB:g} MiB (the kernel's resident-set counters); no ratio below it (n/a)."]
    print("\n".join(lines))
    return {"Ts": list(Ts), "learners": list(algos), "units": UNITS, "spikes_per_unit": spikes_per_unit,
            "spikes_per_sample": UNITS * spikes_per_unit, "points": points, "rows": rows}


# ------------------------------------------------------------------------------------------- data time


def data_time(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    if args.quick:
        generate, n_train, T, n_measured, repeats = 40, 200, 20, 1, 1
    else:
        generate, n_train, T, n_measured, repeats = args.generate, SHD_TRAIN, args.T, args.batches, args.repeats
    spikes_per_unit = 1 if args.quick else SPIKES_PER_UNIT
    t0 = time.perf_counter()
    raw = _generate(generate, spikes_per_unit)
    generation = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts, _ = data.bin_spikes(raw, T, 1.0 / T, UNITS)
    binning = time.perf_counter() - t0
    n_generated = len(counts)
    split = _split(raw, T, tile=n_train)
    train = split.train
    spikes_per_sample = int(raw.lengths[0])
    pairs = float(counts.lengths.float().mean())
    del raw, counts
    config, model, weights, predict_weights, device = _setup("fptt", split, None)
    batch = config.batch_size
    n_batches = math.ceil(n_train / batch)

    # (a) data: one epoch of dense batches from the compact set
    data_runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for _ in data.batches(train, batch, torch.Generator().manual_seed(r)):
            pass
        data_runs.append(time.perf_counter() - t0)
    data_s = statistics.median(data_runs)

    # (b) compute: FPTT with the events defaults on srnn, as `fit` runs an epoch (eager)
    learner, carry = _learner_and_carry(config, split, model, device, n_batches)
    chosen = list(data.batches(train, batch, torch.Generator().manual_seed(0)))[:n_measured + 1]
    stamps = [time.perf_counter()]
    loop.run_epoch(learner.run, carry, chosen, weights, split.num_classes, predict_weights=predict_weights,
                   on_batch=lambda *_: stamps.append(time.perf_counter()))
    per_batch = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]  # the first batch is a warm-up
    batch_s = statistics.mean(per_batch)
    compute_s = batch_s * n_batches

    out = {"generated_samples": n_generated, "train_samples": n_train, "tiled": n_train / n_generated, "T": T,
           "units": UNITS, "spikes_per_sample": spikes_per_sample, "spikes_per_unit": spikes_per_unit,
           "nonzero_pairs_per_sample": pairs, "resident_mib": train.x.nbytes / 2**20,
           "generation_s": generation, "binning_s": binning, "binning_s_per_1000": 1000 * binning / n_generated,
           "batch": batch, "batches_per_epoch": n_batches, "data_s_per_epoch": data_s, "data_s_runs": data_runs,
           "compute": {"algo": config.algo, "model": config.model, "options": _options(config),
                       "warmup_batches": 1, "measured_batches": len(per_batch), "s_per_batch": per_batch,
                       "s_per_batch_mean": batch_s, "s_per_epoch_estimated": compute_s},
           "data_over_compute": data_s / compute_s}
    print(f"SHD-sized epoch: {n_train:,} training samples x {UNITS} units, T = {T}, batch {batch} "
          f"({n_batches} batches). Generated data: randman, {spikes_per_unit} spikes per unit = "
          f"{spikes_per_sample:,} spikes per sample (an assumed figure for SHD, as in data_size.py), "
          f"{pairs:,.0f} non-zero (frame, unit) pairs per sample after binning; {n_generated} samples generated "
          f"({generation:.1f} s) and binned ({binning:.2f} s, {out['binning_s_per_1000']:.2f} s per 1,000 "
          f"samples), tiled {out['tiled']:.1f}x to {n_train:,} ({out['resident_mib']:.0f} MiB compact).\n")
    print(f"| per epoch | seconds | how |\n|---|---:|---|\n"
          f"| data: dense batches [{T}, {batch}, {UNITS}] (data.batches) | {data_s:.2f} | "
          f"measured, median of {repeats} epoch(s) |\n"
          f"| compute: {config.algo} ({out['compute']['options']}), {config.model}, eager | {compute_s:.1f} | "
          f"estimated: mean of {len(per_batch)} measured batch(es) ({batch_s:.3f} s) x {n_batches} |\n"
          f"| data / compute | {out['data_over_compute']:.3f} | |")
    return out


# ------------------------------------------------------------------------------------------------ main


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    mem = sub.add_parser("memory", help="peak memory of one sequence against T, one process per point")
    mem.add_argument("--batch", type=int, default=None, help="batch size (default: the events default, 64)")
    point = sub.add_parser("memory-point", help="one point, in this process: prints one JSON line")
    point.add_argument("algo", choices=LEARNERS)
    point.add_argument("T", type=int)
    point.add_argument("spikes", help="raw spikes (torch.save of a data.Spikes tuple), binned into T frames")
    point.add_argument("--batch", type=int, default=None)
    point.add_argument("--mode", choices=("step", "run"), default="step")
    dt = sub.add_parser("data-time", help="data time against compute time per SHD-sized epoch")
    dt.add_argument("--generate", type=int, default=1000, help="samples generated, tiled to 8,156 (default 1,000)")
    dt.add_argument("--T", type=int, default=100)
    dt.add_argument("--batches", type=int, default=5, help="compute batches measured (after one warm-up)")
    dt.add_argument("--repeats", type=int, default=3, help="data epochs timed (median)")
    for p in (mem, dt):
        p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for the smoke test")
        p.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args()
    if args.part == "memory-point":
        print(json.dumps(memory_point(args.algo, args.T, args.spikes, args.batch, args.mode)))
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = memory(args) if args.part == "memory" else data_time(args)
    meta = {"part": args.part, "quick": args.quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "seconds": time.perf_counter() - t0}
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, **result}, indent=1))


if __name__ == "__main__":
    main()
