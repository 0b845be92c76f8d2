"""Cold start of compiled FPTT, run in its own process by ``run.py``: the time from the first call to
its first result (compilation included), on net A.

Usage: ``python benchmarks/cold_start.py MODE NET [ENGINE]`` with MODE ``default`` or ``fast-start``
and ENGINE ``dynamo`` (default) or ``trace``: the first call of ``purelearn.compile.step(learner)``;
or ENGINE ``sequence``: the first whole sequence through ``purelearn.compile.run(learner)`` (one
program per sequence), and ``steps``: the same with ``whole_sequence=False`` (the loop of compiled
steps: the middle-step and the last-step graphs are both built within that first sequence).
Inductor's on-disk cache is wherever ``TORCHINDUCTOR_CACHE_DIR`` points (``run.py`` gives a fresh
directory for a cold cache, then the same one again for a warm cache). Prints one JSON line: the
wall time, the CPU time of this process and of its compiler subprocesses, and dynamo's breakdown.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def breakdown(metrics: dict[str, list[float]]) -> dict[str, float]:
    """Dynamo's compile-time metrics, summed, under readable names."""
    keep = {"bytecode_tracing": "dynamo tracing", "create_aot_dispatcher_function": "aot + inductor",
            "GraphLowering.codegen": "inductor codegen", "compile_file": "C++ compiler (sum over kernels)",
            "async_compile.wait": "waiting for C++ builds", "PyCodeCache.load_by_key_path": "load built code"}
    out = {label: round(sum(metrics[k]), 3) for k, label in keep.items() if k in metrics}
    out["C++ kernels built"] = len(metrics.get("compile_file", []))
    return out


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "default"
    net = sys.argv[2] if len(sys.argv) > 2 else "A"
    engine = sys.argv[3] if len(sys.argv) > 3 else "dynamo"
    import torch
    import torch._dynamo.utils
    from nets import build_pair

    from purelearn import compile

    torch.set_num_threads(1)
    pair = build_pair(net, "fptt")
    if engine in ("sequence", "steps"):
        run = compile.run(pair.learner, whole_sequence=engine == "sequence",
                          mode=None if mode == "default" else mode)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        carry, _ = run(pair.carry, pair.x, pair.y)
        first, cpu_first = time.perf_counter() - t0, cpu_seconds() - cpu0
        t1 = time.perf_counter()
        run(carry, pair.x, pair.y)
        print(json.dumps({"mode": mode, "engine": engine, "net": net, "cold_start_s": first,
                          "cold_start_cpu_s": cpu_first, "warm_sequence_s": time.perf_counter() - t1,
                          "breakdown_s": breakdown(torch._dynamo.utils.compilation_time_metrics)}))
        return
    step = compile.step(pair.learner, engine=engine, mode=None if mode == "default" else mode)
    x, y = pair.x, pair.y
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    carry, _ = step(pair.carry, x[0], y[0], last=False)
    first = time.perf_counter() - t0
    cpu_first = cpu_seconds() - cpu0
    times = breakdown(torch._dynamo.utils.compilation_time_metrics)
    t1 = time.perf_counter()
    step(carry, x[1], y[1], last=True)
    last = time.perf_counter() - t1
    t2 = time.perf_counter()
    step(carry, x[1], y[1], last=False)
    warm = time.perf_counter() - t2
    print(json.dumps({"mode": mode, "engine": engine, "net": net, "cold_start_s": first, "cold_start_cpu_s": cpu_first,
                      "last_step_graph_s": last, "warm_step_s": warm, "breakdown_s": times}))


if __name__ == "__main__":
    main()
