"""Soak run: many online steps, checking that memory does not grow and nothing recompiles.

    python benchmarks/soak.py [--steps 10000] [--compile] [--learner fptt|ottt|sltt|fptt-dual]

FPTT (default) on net B (Linear(64,32)-LIF-Linear(32,10)-LIF, N=16, T=16, Adam) for ``--steps``
online steps (steps / T sequences, fresh random data per sequence). Every 1,000 steps it records
the process's resident memory (``/proc/self/statm``, current RSS, not the max), the number of
live tensors known to the garbage collector and, with ``--compile``, dynamo's frame and recompile
counters. It prints a table and a JSON line, and exits 1 if RSS grew by more than ``--max-growth-mb``
after warm-up (the first 1,000 steps) or if anything recompiled after warm-up. One torch thread.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from purelearn import neurons, nn, online, optim


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--learner", choices=["fptt", "fptt-dual", "ottt", "sltt"], default="fptt")
    ap.add_argument("--compile", action="store_true", help="torch.compile the step (purelearn.compile.step)")
    ap.add_argument("--max-growth-mb", type=float, default=8.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    T, N = 16, 16
    neuron = {"ottt": neurons.OTTTLIF, "sltt": neurons.SLTTLIF}.get(args.learner, neurons.LIF)
    model = nn.Sequential(nn.Linear(64, 32), neuron(), nn.Linear(32, 10), neuron())
    g = torch.Generator().manual_seed(0)
    params, states = model.init(g, torch.rand(N, 64))
    opt = optim.adam(lr=1e-3)
    learner = {"fptt": lambda: online.fptt(model, F.mse_loss, opt, alpha=0.1),
               "fptt-dual": lambda: online.fptt_dual(model, F.mse_loss, opt),
               "ottt": lambda: online.ottt(model, F.mse_loss, opt),
               "sltt": lambda: online.sltt(model, F.mse_loss, opt)}[args.learner]()
    step = learner.step
    if args.compile:
        from purelearn import compile as plc

        step = plc.step(learner)
    from torch._dynamo.utils import counters

    carry = learner.init(params, states)
    rows, t0 = [], time.perf_counter()
    done = 0
    while done < args.steps:
        x = (torch.rand(T, N, 64, generator=g) < 0.3).float()
        y = torch.rand(T, N, 10, generator=g)
        for t in range(T):
            carry, out = step(carry, x[t], y[t], last=t == T - 1)
        carry = learner.end_sequence(carry)
        done += T
        if done % 1000 < T:
            gc.collect()
            rows.append({"steps": done, "rss_mb": round(rss_mb(), 2), "live_tensors": live_tensors(),
                         "frames": int(counters["stats"].get("unique_graphs", 0)),
                         "recompiles": int(sum(counters["recompiles"].values())) if "recompiles" in counters else 0,
                         "seconds": round(time.perf_counter() - t0, 1), "loss": round(float(out.loss), 5)})
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    warm = rows[0]
    growth = rows[-1]["rss_mb"] - warm["rss_mb"]
    new_graphs = rows[-1]["frames"] - warm["frames"]
    summary = {"learner": args.learner, "compile": args.compile, "steps": done, "rss_growth_mb_after_warmup": growth,
               "live_tensors_first_last": [warm["live_tensors"], rows[-1]["live_tensors"]],
               "graphs_after_warmup": new_graphs, "rows": rows}
    print(json.dumps(summary))
    ok = growth <= args.max_growth_mb and new_graphs == 0 and rows[-1]["live_tensors"] <= warm["live_tensors"]
    print("soak:", "OK" if ok else "FAILED", f"(RSS growth {growth:.2f} MB, new graphs {new_graphs})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
