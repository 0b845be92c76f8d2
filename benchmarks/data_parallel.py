"""Data parallelism on this machine: one epoch on K ranks against one process, and what the all-reduce costs.

    python benchmarks/data_parallel.py [--quick] [--json PATH] [--algo fptt] [--world 2] [--repeats 3]

The configuration is compute-bound: a LIF MLP, 700 inputs → 512 LIF → 20 leaky-integrator readout
(``purelearn.neurons.LI``), soft-target cross-entropy at every step, SGD (lr 0.01, momentum 0.9),
a global batch of 256 (per-sample work dominates a step; at 128 the per-parameter work of the
optimizer and FPTT's regulariser is a third of it), T = 50, and an "epoch" of 8 sequences of random
spikes (rate 0.05, fixed seed; random labels: only the arithmetic matters). ``--algo`` picks the
learner (``fptt`` per step by default, alpha 0.1; ``fptt_dual``; ``ottt`` online; ``sltt`` one update
per sequence; ``bptt``); OTTT and SLTT get their own hidden neurons (``OTTTLIF``, ``SLTTLIF``).

Every run is a fresh set of processes, this script called with ``--worker RANK WORLD INIT OUT``:
the 1-process run (all 256 samples, no process group), the K-rank run (gloo on 127.0.0.1, each rank
its contiguous shard, ``distributed.shard``, and ``data_parallel=DataParallel()``) and one process
on 1/K of the batch (below). They alternate, ``--repeats`` times each (the order rotating every
repeat), so all see the same machine and pay the same start-up, which is not timed. Every process:
one torch thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``), one warm-up sequence (10
steps, discarded), then the timed epoch from the same initial params; for the ranks the epoch is
timed between two barriers and the slowest rank counts. Every launch is killed after ``--timeout``
seconds.

Reading the numbers:

- **s/epoch**: the median over the repeats. **speed-up** = t(1 process) / t(K ranks),
  **efficiency** = speed-up / K. On a 2-core machine expect less than 2×: the per-parameter work
  (optimizer, FPTT's regulariser and running average) is not divided by the ranks, only the
  per-sample work is, and the all-reduces are extra.
- **1 process, 1/K of the batch (ceiling)**: a third kind of run, one process on shard 0 alone, no
  communication: one rank's work. Its speed-up over the 1-process run is what K ranks could reach
  with free communication on K idle cores (it falls short of K by the work that does not shrink
  with the batch). Speed-up below it: communication, and the ranks competing for the cores.
- **comm share**: time spent inside ``torch.distributed.all_reduce`` (patched with a timer in each
  rank before the learner is built; ``purelearn.distributed`` looks the name up at every call) over
  the epoch time, per rank, median over ranks and repeats. It includes time waiting for the slower
  rank to arrive, not only moving bytes.
- **payload**: the all-reduces per sequence and the bytes per all-reduce as counted in the ranks,
  beside the figure expected from the parameter count (one flat float32 buffer of the parameters
  plus one element, the shard size, for the count-weighted mean).
- **max |Δparam|**: the K-rank final params against the 1-process final params; the benchmark
  exits non-zero if it exceeds 1e-4 (float32) or if the ranks' copies differ.

On a shared machine the seconds drift; the load average is printed and stored. ``--quick``
(hidden 64, batch 16, T 8, 2 sequences, 1 repeat) finishes in seconds beyond process start-up.
``--json PATH`` writes the configuration, every raw time and the summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALGOS = ("fptt", "fptt_dual", "ottt", "sltt", "bptt")
INPUTS, CLASSES, RATE = 700, 20, 0.05
LR, MOMENTUM, ALPHA = 0.01, 0.9, 0.1
WARM_T = 10
TOLERANCE = 1e-4
FULL = {"hidden": 512, "batch": 256, "T": 50, "sequences": 8}
QUICK = {"hidden": 64, "batch": 16, "T": 8, "sequences": 2}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ worker


def _model(algo: str, hidden: int) -> Any:
    from purelearn import neurons, nn
    neuron = {"ottt": neurons.OTTTLIF, "sltt": neurons.SLTTLIF}.get(algo, neurons.LIF)
    return nn.Sequential(nn.Linear(INPUTS, hidden), neuron(), nn.Linear(hidden, CLASSES), neurons.LI())


def _learner(algo: str, model: Any, dp: Any) -> Any:
    import torch.nn.functional as F

    from purelearn import online, optim
    opt = optim.sgd(lr=LR, momentum=MOMENTUM)
    loss = F.cross_entropy  # soft targets [N, classes]: the mean over the batch
    return {
        "fptt": lambda: online.fptt(model, loss, opt, alpha=ALPHA, data_parallel=dp),
        "fptt_dual": lambda: online.fptt_dual(model, loss, opt, alpha=ALPHA, data_parallel=dp),
        "ottt": lambda: online.ottt(model, loss, opt, online=True, data_parallel=dp),
        "sltt": lambda: online.sltt(model, loss, opt, data_parallel=dp),
        "bptt": lambda: online.bptt(model, loss, opt, data_parallel=dp),
    }[algo]()


def _data(seed: int, sequences: int, T: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``sequences`` global batches of random spikes x [T, batch, 700] and one-hot targets [T, batch, 20]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(sequences):
        x = (torch.rand(T, batch, INPUTS, generator=g) < RATE).float()
        labels = torch.randint(CLASSES, (batch,), generator=g)
        y = torch.nn.functional.one_hot(labels, CLASSES).float().expand(T, -1, -1).contiguous()
        out.append((x, y))
    return out


def worker(rank: int, world: int, init: str, out: str, args: argparse.Namespace) -> None:
    """One process of one run: warm-up, the timed epoch; writes ``OUT.rankR.json`` (rank 0 also the final
    params, ``OUT.params.pt``)."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import torch.distributed as dist

    from purelearn import distributed, tree

    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=args.timeout))
    comm = {"s": 0.0, "calls": 0, "bytes": 0}
    original = dist.all_reduce

    def timed_all_reduce(tensor: torch.Tensor, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(tensor, *a, **k)
        finally:
            comm["s"] += time.perf_counter() - t0
            comm["calls"] += 1
            comm["bytes"] += tensor.numel() * tensor.element_size()

    dist.all_reduce = timed_all_reduce  # purelearn.distributed calls ``dist.all_reduce``, looked up each call

    model = _model(args.algo, args.hidden)
    dp = distributed.DataParallel()
    learner = _learner(args.algo, model, dp)
    params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, INPUTS))
    n_params = sum(p.numel() for p in tree.leaves(params))

    def mine(t: torch.Tensor) -> torch.Tensor:  # this rank's shard, or (--part-of K) shard 0 of K in one process
        if args.part_of > 1:
            start, stop = distributed.shard_bounds(t.shape[1], args.part_of, 0)
            return t.narrow(1, start, stop - start)
        return distributed.shard(t, 1)

    epoch = [(mine(x), mine(y)) for x, y in _data(1, args.sequences, args.T, args.batch)]
    (wx, wy), = _data(2, 1, min(WARM_T, args.T), args.batch)
    wx, wy = mine(wx), mine(wy)

    def barrier() -> None:
        if world > 1:
            dist.barrier()

    t0 = time.perf_counter()
    warm = learner.init(params, model.init_states(wx[0]))
    learner.run(warm, wx, wy)  # first-call allocations, gloo's first collectives; the carry is dropped
    del warm
    warmup_s = time.perf_counter() - t0

    carry = learner.init(params, model.init_states(epoch[0][0][0]))
    barrier()
    comm.update(s=0.0, calls=0, bytes=0)
    t0 = time.perf_counter()
    sequence_s = []
    for x, y in epoch:
        ts = time.perf_counter()
        carry, _ = learner.run(carry, x, y)
        sequence_s.append(time.perf_counter() - ts)
    own_s = time.perf_counter() - t0
    barrier()
    epoch_s = time.perf_counter() - t0
    agree = True
    try:
        dp.check_same((carry.params, carry.opt_state), "params and optimizer state")
    except distributed.RanksDisagree:
        agree = False
    result = {"rank": rank, "world": world, "local_batch": epoch[0][0].shape[1], "epoch_s": epoch_s,
              "own_s": own_s, "sequence_s": sequence_s, "warmup_s": warmup_s, "comm_s": comm["s"],
              "comm_calls": comm["calls"], "comm_bytes": comm["bytes"], "params": n_params,
              "ranks_agree": agree, "threads": torch.get_num_threads()}
    if rank == 0:
        torch.save([p.detach().clone() for p in tree.leaves(carry.params)], out + ".params.pt")
    Path(f"{out}.rank{rank}.json").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world: int, out: str, args: argparse.Namespace, size: dict[str, int], part_of: int = 1
            ) -> list[dict[str, Any]]:
    """One run: ``world`` worker processes (no process group when 1), bounded by ``args.timeout``;
    ``part_of`` K > 1: one process on shard 0 of K (the per-rank work without communication)."""
    init = f"tcp://127.0.0.1:{_free_port()}" if world > 1 else "none"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    opts = ["--algo", args.algo, "--timeout", str(args.timeout), "--part-of", str(part_of)] + \
        [x for k, v in size.items() for x in (f"--{k}", str(v))]
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(r), str(world), init,
                               out, *opts], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in range(world)]
    deadline, errors = time.monotonic() + args.timeout, []
    try:
        for r, p in enumerate(procs):
            try:
                _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"data_parallel: the {world}-process run passed --timeout {args.timeout} s "
                                   f"(rank {r} still running)") from None
            if p.returncode != 0:
                errors.append(f"rank {r} of {world} exited {p.returncode}: {err[-2000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if errors:
        raise RuntimeError("data_parallel: a worker failed\n" + "\n".join(errors))
    return [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(world)]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (seconds beyond start-up)")
    parser.add_argument("--json", help="write the configuration, raw times and summary as JSON")
    parser.add_argument("--algo", choices=ALGOS, default="fptt")
    parser.add_argument("--world", type=int, default=2, help="ranks of the parallel run (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each kind (default 3; --quick: 1)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds before a run's processes are killed")
    for k, v in FULL.items():
        parser.add_argument(f"--{k}", type=int, default=None, help=f"default {v} (--quick: {QUICK[k]})")
    parser.add_argument("--part-of", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=4, metavar=("RANK", "WORLD", "INIT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = QUICK if args.quick else FULL
    size = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    if args.worker:
        rank, world, init, out = args.worker
        for k, v in size.items():
            setattr(args, k, v)
        worker(int(rank), int(world), init, out, args)
        return
    K = args.world
    if K < 2:
        parser.error("--world must be at least 2")
    if size["batch"] < K:
        parser.error(f"--batch {size['batch']} cannot give each of {K} ranks a sample")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    started, load_before = time.perf_counter(), os.getloadavg()
    log(f"data_parallel: {args.algo}, {INPUTS}-{size['hidden']}-{CLASSES}, batch {size['batch']}, T {size['T']}, "
        f"{size['sequences']} sequences, 1 process vs {K} ranks, {repeats} repeat(s)")
    # run kinds: "1" one process, all of the batch; K: K ranks; "part": one process on shard 0 of K, no
    # communication (the per-rank work alone: its speed-up over "1" is the ceiling of the K ranks')
    kinds = [("1", 1, 1), (str(K), K, 1), ("part", 1, K)]
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name, _, _ in kinds}
    params: dict[str, list[list[torch.Tensor]]] = {name: [] for name, _, _ in kinds}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(repeats):
            for name, world, part_of in kinds[r % 3:] + kinds[:r % 3]:  # the order rotates every repeat
                out = os.path.join(folder, f"run{r}-{name}")
                t0 = time.perf_counter()
                ranks = _launch(world, out, args, size, part_of)
                runs[name].append(ranks)
                params[name].append(torch.load(out + ".params.pt"))
                what = f"1 process on 1/{K} of the batch" if part_of > 1 else f"{world} process(es)"
                log(f"  repeat {r + 1}/{repeats}, {what}: epoch {max(x['epoch_s'] for x in ranks):.3f} s "
                    f"(run {time.perf_counter() - t0:.1f} s)")
    load_after = os.getloadavg()

    ref = params["1"][0]
    diff = max(_max_diff(ref, p) for p in params[str(K)])
    diff_one = max(_max_diff(ref, p) for p in params["1"])  # 1-process repeats against each other: 0
    agree = all(x["ranks_agree"] for ranks in runs[str(K)] for x in ranks)

    t1 = [ranks[0]["epoch_s"] for ranks in runs["1"]]
    tk = [max(x["epoch_s"] for x in ranks) for ranks in runs[str(K)]]
    share = [x["comm_s"] / x["epoch_s"] for ranks in runs[str(K)] for x in ranks]
    tp = [ranks[0]["epoch_s"] for ranks in runs["part"]]
    m1, mk, mp = statistics.median(t1), statistics.median(tk), statistics.median(tp)
    speedup, ceiling = m1 / mk, m1 / mp
    warm1 = [ranks[0]["warmup_s"] for ranks in runs["1"]]
    warmk = [x["warmup_s"] for ranks in runs[str(K)] for x in ranks]
    first = runs[str(K)][0][0]
    n_params = first["params"]
    calls_per_seq = first["comm_calls"] / size["sequences"]
    bytes_per_call = first["comm_bytes"] / max(1, first["comm_calls"])
    expected_bytes = (n_params + 1) * 4
    lines = [f"Data parallelism, {args.algo} on a LIF MLP {INPUTS}-{size['hidden']}-{CLASSES} ({n_params:,} "
             f"parameters), global batch {size['batch']}, T {size['T']}, an epoch of {size['sequences']} sequences; "
             f"median of {repeats} run(s) each, interleaved.", "",
             "| run | s/epoch (median) | speed-up | efficiency | comm share |",
             "|---|---:|---:|---:|---:|",
             f"| 1 process | {m1:.3f} | 1.00 | 1.00 | — |",
             f"| {K} ranks | {mk:.3f} | {speedup:.2f} | {speedup / K:.2f} | {100 * statistics.median(share):.1f} % |",
             f"| 1 process, 1/{K} of the batch (ceiling) | {mp:.3f} | {ceiling:.2f} | {ceiling / K:.2f} | — |",
             "",
             f"The last row is one rank's work without communication (one process on shard 0): its speed-up is "
             f"what {K} ranks could reach with free communication on {K} idle cores; it falls short of {K} by the "
             "work that does not shrink with the batch (per-parameter: optimizer, FPTT's regulariser).",
             "",
             f"threads=1 per process; machine: nproc={os.cpu_count()}, {platform.machine()}, "
             f"torch {torch.__version__}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
             f"(a shared machine inflates both columns and the comm share).",
             f"payload: {calls_per_seq:g} all-reduce(s) per sequence, {bytes_per_call:,.0f} bytes each "
             f"(expected from the params: ({n_params:,} + 1) × 4 = {expected_bytes:,}), "
             f"{calls_per_seq * bytes_per_call / 2**20:.2f} MiB per sequence per rank.",
             f"warm-up sequence ({min(WARM_T, size['T'])} steps, not timed), median: 1 process "
             f"{statistics.median(warm1):.2f} s, {K} ranks {statistics.median(warmk):.2f} s (the first call of "
             f"purelearn::all_reduce, a torch custom op, imports torch._dynamo).",
             f"max |Δparam| {K} ranks vs 1 process: {diff:.2e} (tolerance {TOLERANCE:g}); ranks agree bit for bit: "
             f"{agree}."]
    print("\n".join(lines), flush=True)
    result = {
        "meta": {"quick": args.quick, "algo": args.algo, "world": K, "repeats": repeats, **size, "inputs": INPUTS,
                 "classes": CLASSES, "rate": RATE, "lr": LR, "momentum": MOMENTUM, "alpha": ALPHA, "warm_T": WARM_T,
                 "threads": 1, "cpus": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
                 "python": platform.python_version(), "load_before": load_before, "load_after": load_after,
                 "seconds": time.perf_counter() - started},
        "params": n_params, "runs": runs,
        "seconds_per_epoch": {"1": t1, str(K): tk, "part": tp},
        "median_s": {"1": m1, str(K): mk, "part": mp}, "speedup": speedup, "efficiency": speedup / K,
        "ceiling_speedup": ceiling,
        "comm_share": share, "comm_share_median": statistics.median(share),
        "all_reduces_per_sequence": calls_per_seq, "bytes_per_all_reduce": bytes_per_call,
        "expected_bytes_per_all_reduce": expected_bytes,
        "max_abs_diff": diff, "max_abs_diff_one_process_repeats": diff_one, "ranks_agree": agree,
        "tolerance": TOLERANCE, "ok": diff <= TOLERANCE and agree,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if not result["ok"]:
        raise SystemExit(f"data_parallel: FAILED: the {K}-rank params differ from the 1-process params by {diff:.3e} "
                         f"(tolerance {TOLERANCE:g}) or the ranks disagree (ranks agree: {agree})")


if __name__ == "__main__":
    main()
