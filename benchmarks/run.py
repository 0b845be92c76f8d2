"""purelearn against SpikingJelly 2.0.0 (and JAX), in one process, interleaved.

    python benchmarks/run.py [--quick] [--out results.json] [--repeats R] [--no-compile]

Every method runs on the same weights and data on both sides (``purelearn.nn.from_torch`` copies
SpikingJelly's initial weights). The contenders of one row take turns, one sequence each, R times;
the table shows medians (seconds per training sequence) and ratios against SpikingJelly. One torch
thread (``torch.set_num_threads(1)``), XLA pinned to one thread too. Sections:

- methods: FPTT, FPTT-dual, OTTT-O, OTTT-A, SLTT, SLTT-K, BPTT on nets A (dense), B (small) and C
  (conv); purelearn eager and compiled (``purelearn.compile.run``, inductor). FPTT-dual has no
  SpikingJelly counterpart: it is compared with purelearn's FPTT; SLTT-K with SpikingJelly's SLTT.
- floor: the matrix multiplications alone of one FPTT sequence on net A (forward and backward of
  every layer, twice per step but the last), preallocated outputs.
- jax: the same FPTT on net A in JAX (``jax.jit`` of ``lax.scan``), when jax is installed.
- sweeps: K configs (lr × alpha) of FPTT, one ``torch.func.vmap``-ed program against K runs.
- memory: peak resident memory of one sequence at several T, one process per point (net B).
- cold start: first call of a compiled step to its first result, fresh and warm inductor cache.

``--quick`` (a smoke run, about half a minute): net B only, eager only, one round, the sweep on
T = 4 steps (its speedup is below the full run's), a short memory sweep (two points at a time, each
in its own process), no cold start and no JAX. Timings on a shared machine are noisy:
read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import nets  # noqa: E402
import torch  # noqa: E402

from purelearn import compile, nn, sweep, tree  # noqa: E402

TARGETS_TEXT = {
    "fptt_A_best_vs_sj": ("FPTT net A, best purelearn mode / SpikingJelly", "<=", 0.25),
    "fptt_A_eager_vs_sj": ("FPTT net A, purelearn eager / SpikingJelly", "<=", 1.0),
    "fptt_dual_vs_fptt": ("FPTT-dual / purelearn FPTT (net A, best modes)", "<=", 0.6),
    "ottt_o_A_vs_sj": ("OTTT-O net A, best / SpikingJelly", "<=", 0.35),
    "ottt_o_C_vs_sj": ("OTTT-O net C, best / SpikingJelly", "<=", 0.35),
    "sltt_A_vs_sj": ("SLTT net A, best / SpikingJelly", "<=", 0.35),
    "sltt_C_vs_sj": ("SLTT net C, best / SpikingJelly", "<=", 0.35),
    "fptt_A_compiled_vs_floor": ("FPTT net A compiled / matmul floor", "<=", 1.15),
    "fptt_A_best_vs_jax": ("FPTT net A, best purelearn / JAX", "<=", 1.1),
    "cold_start_s": ("cold start, compiled FPTT net A (s, warm inductor cache, best engine)", "<=", 10.0),
    "cold_start_fresh_cache_s": ("cold start, compiled FPTT net A (s, empty inductor cache)", "<=", 10.0),
    "cold_sequence_fresh_cache_s": ("first sequence through compile.run, FPTT net A (s, empty inductor cache)",
                                    "<=", 10.0),
    "sweep_B_speedup": ("sweep net B K=32: loop / vmapped (best modes)", ">=", 10.0),
    "sweep_A_speedup": ("sweep net A K=8: loop / vmapped (best modes)", ">=", 1.0),
    "memory_online_T1000_vs_T10": ("online learners: peak memory, longest T / T=10 (worst)", "<=", 1.1),
}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Each contender once per round, ``repeats`` rounds; seconds per call."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


# --------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------


def bench_method(net: str, method: str, repeats: int, compiled: bool, with_jax: bool) -> dict[str, Any]:
    pair = nets.build_pair(net, method)
    x, y, learner = pair.x, pair.y, pair.learner
    row: dict[str, Any] = {"net": net, "method": method, "T": x.shape[0], "N": x.shape[1]}
    contenders: dict[str, Callable[[], Any]] = {}
    sj = pair.sj_fn()
    if sj is not None:
        sj()  # warm-up (first-call allocations)
        contenders["sj"] = sj
    carries = {"eager": pair.carry, "compiled": pair.carry}

    def eager() -> None:
        carries["eager"], _ = learner.run(carries["eager"], x, y)

    eager()
    contenders["eager"] = eager
    if compiled:
        run = compile.run(learner)  # one program per sequence (torch's scan) where the plan allows
        t0 = time.perf_counter()
        carries["compiled"], _ = run(carries["compiled"], x, y)
        row["first_sequence_s"] = time.perf_counter() - t0
        row["whole_sequence"] = run.whole_sequence

        def comp() -> None:
            carries["compiled"], _ = run(carries["compiled"], x, y)

        contenders["compiled"] = comp
        if run.whole_sequence and method != "bptt":  # beside it, the loop of compiled steps
            steps = compile.run(learner, whole_sequence=False)
            carries["steps"] = pair.carry
            t0 = time.perf_counter()
            carries["steps"], _ = steps(carries["steps"], x, y)
            row["first_sequence_steps_s"] = time.perf_counter() - t0

            def comp_steps() -> None:
                carries["steps"], _ = steps(carries["steps"], x, y)

            contenders["steps"] = comp_steps
    jax_state = None
    if with_jax:
        import jax_peer

        layers = [pair.carry.params[k] for k in sorted(pair.carry.params, key=int)]
        jax_state = jax_peer.benchmark_setup([(p["weight"], p["bias"]) for p in layers], x, y)
        row["jax_first_call_s"] = jax_state["first_call_s"]
        contenders["jax"] = jax_state["run"]
    times = interleaved(contenders, repeats)
    row["seconds"] = {k: med(v) for k, v in times.items()}
    row["all_seconds"] = times
    # the same sequences from the same weights: how far apart did the two implementations end up?
    if sj is not None and nets.SJ_COUNTERPART[method] == method:
        theirs = {k: v.detach() for k, v in pair.sj.named_parameters()}
        for mode in ("eager", "compiled") if compiled else ("eager",):
            ours = nn.to_state_dict(carries[mode].params)
            row[f"param_diff_{mode}_vs_sj"] = max((ours[k] - theirs[k]).abs().max().item() for k in theirs)
    if jax_state is not None:
        import jax_peer
        import numpy as np

        ours = [a.numpy() for p in (carries["eager"].params[k] for k in sorted(carries["eager"].params, key=int))
                for a in (p["weight"], p["bias"])]
        jp = jax_peer.params_of(jax_state["state"])
        row["param_diff_jax_vs_eager"] = float(max(np.abs(a - b).max() for a, b in zip(ours, jp, strict=True)))
    return row


# --------------------------------------------------------------------------------------------------
# Floor: the matrix multiplications of one FPTT sequence on net A
# --------------------------------------------------------------------------------------------------


def bench_floor(repeats: int, T: int = 50, N: int = 32) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    sizes = [(700, 256), (256, 256), (256, 20)]
    Ws = [torch.rand(o, i, generator=g) for i, o in sizes]
    bs = [torch.rand(o, generator=g) for _, o in sizes]
    acts = [torch.rand(N, i, generator=g) for i, _ in sizes]
    deltas = [torch.rand(N, o, generator=g) for _, o in sizes]
    fwd_out = [torch.empty(N, o) for _, o in sizes]
    gw_out = [torch.empty(o, i) for i, o in sizes]
    gx_out = [torch.empty(N, i) for i, _ in sizes]

    def one_pass() -> None:  # forward and backward of each layer (no input gradient for the first)
        for j in range(3):
            torch.addmm(bs[j], acts[j], Ws[j].t(), out=fwd_out[j])
        for j in reversed(range(3)):
            torch.mm(deltas[j].t(), acts[j], out=gw_out[j])
            if j > 0:
                torch.mm(deltas[j], Ws[j], out=gx_out[j])

    def sequence() -> None:
        for _ in range(2 * T - 1):  # FPTT: two passes per step, one at the last step
            one_pass()

    sequence()
    times = interleaved({"floor": sequence}, repeats)["floor"]
    return {"net": "A", "T": T, "passes": 2 * T - 1, "seconds": med(times), "all_seconds": times}


# --------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------


def bench_sweep(net: str, K: int, repeats: int, compiled: bool, T: int | None = None) -> dict[str, Any]:
    x, y = nets.data(net, T)
    T = x.shape[0]
    module = nets.sj_module(net, "lif")
    model, params, states = nn.from_torch(module, x[0])
    n_lr = {32: 8, 8: 4}.get(K, K)
    lrs = [0.001 * (1 + i) for i in range(n_lr)]
    alphas = [0.05 * (1 + i) for i in range(K // n_lr)]
    configs = sweep.grid(lr=lrs, alpha=alphas)
    rows = sweep.rows(configs)

    def loop_eager() -> None:
        for r in rows:
            learner = nets.pl_learner("fptt", model, lr=r["lr"], alpha=r["alpha"])
            learner.run(learner.init(params, states), x, y)

    def train(lr: torch.Tensor, alpha: torch.Tensor) -> Any:
        learner = nets.pl_learner("fptt", model, lr=lr, alpha=alpha)
        carry, outs = learner.run(learner.init(params, states), x, y)
        return carry.params, outs.loss

    def vmap_eager() -> None:
        sweep.vmap_configs(train, configs)

    contenders: dict[str, Callable[[], Any]] = {"loop_eager": loop_eager, "vmap_eager": vmap_eager}
    out: dict[str, Any] = {"net": net, "K": K, "T": T}
    if compiled:
        def step_fn(carry: Any, lr: torch.Tensor, alpha: torch.Tensor, x_t: torch.Tensor, y_t: torch.Tensor,
                    last: bool = False) -> Any:
            return nets.pl_learner("fptt", model, lr=lr, alpha=alpha).step(carry, x_t, y_t, last=last)

        carry0 = nets.pl_learner("fptt", model).init(params, states)
        one = compile.step(step_fn)
        many = compile.step(torch.func.vmap(step_fn, in_dims=(0, 0, 0, None, None)))
        stacked0 = tree.map(lambda a: a.expand(K, *a.shape).clone(), carry0)

        def loop_compiled() -> None:
            for k in range(K):
                c = carry0
                for t in range(T):
                    c, _ = one(c, configs["lr"][k], configs["alpha"][k], x[t], y[t], last=t == T - 1)

        def vmap_compiled() -> None:
            c = stacked0
            for t in range(T):
                c, _ = many(c, configs["lr"], configs["alpha"], x[t], y[t], last=t == T - 1)

        # the sweep as one learner, one compiled program per sequence (its vmapped step inside the scan)
        swept = sweep.learners(lambda lr, alpha: nets.pl_learner("fptt", model, lr=lr, alpha=alpha), configs)
        program = compile.run(swept)
        swept0 = swept.init(params, states)

        def vmap_program() -> None:
            program(swept0, x, y)

        t0 = time.perf_counter()
        loop_compiled()
        vmap_compiled()
        out["compile_and_first_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        vmap_program()
        out["program_compile_and_first_s"] = time.perf_counter() - t0
        contenders.update(loop_compiled=loop_compiled, vmap_compiled=vmap_compiled, vmap_program=vmap_program)
    loop_eager()
    vmap_eager()
    times = interleaved(contenders, repeats)
    out["seconds"] = {k: med(v) for k, v in times.items()}
    loops = {k: v for k, v in out["seconds"].items() if k.startswith("loop")}
    vmaps = {k: v for k, v in out["seconds"].items() if k.startswith("vmap")}
    out["loop_best"], out["vmap_best"] = min(loops, key=loops.get), min(vmaps, key=vmaps.get)
    out["speedup"] = loops[out["loop_best"]] / vmaps[out["vmap_best"]]
    out["speedup_eager"] = out["seconds"]["loop_eager"] / out["seconds"]["vmap_eager"]
    return out


# --------------------------------------------------------------------------------------------------
# Memory and cold start (subprocesses)
# --------------------------------------------------------------------------------------------------


def subprocess_json(args: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=HERE.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{args} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def bench_memory(methods: list[str], Ts: list[int], workers: int = 1) -> list[dict[str, Any]]:
    """One process per point (method, T), ``workers`` of them at a time (each measures its own
    resident memory, so points may run side by side; the full run keeps one at a time)."""
    points = [(method, T) for method in methods for T in Ts]

    def one(point: tuple[str, int]) -> dict[str, Any]:
        method, T = point
        log(f"  memory {method} T={T}")
        return subprocess_json([str(HERE / "memory_point.py"), method, str(T), "B"])

    if workers <= 1:
        return [one(p) for p in points]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, points))


def bench_cold_start() -> dict[str, Any]:
    out: dict[str, Any] = {}
    cache = tempfile.mkdtemp(prefix="purelearn-inductor-")
    env = {"TORCHINDUCTOR_CACHE_DIR": cache}
    log("  cold start: default mode, empty cache")
    out["default_fresh_cache"] = subprocess_json([str(HERE / "cold_start.py"), "default", "A"], env)
    log("  cold start: default mode, warm cache (a new process)")
    out["default_warm_cache"] = subprocess_json([str(HERE / "cold_start.py"), "default", "A"], env)
    log("  cold start: trace engine (its graph built once first), warm cache")
    subprocess_json([str(HERE / "cold_start.py"), "default", "A", "trace"], env)
    out["trace_engine_warm_cache"] = subprocess_json([str(HERE / "cold_start.py"), "default", "A", "trace"], env)
    log("  cold start: the first whole sequence through compile.run, empty cache")
    env_seq = {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="purelearn-inductor-")}
    out["sequence_fresh_cache"] = subprocess_json([str(HERE / "cold_start.py"), "default", "A", "sequence"], env_seq)
    log("  cold start: the same, warm cache (a new process)")
    out["sequence_warm_cache"] = subprocess_json([str(HERE / "cold_start.py"), "default", "A", "sequence"], env_seq)
    log("  cold start: the first sequence through the loop of compiled steps, empty cache")
    env_steps = {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="purelearn-inductor-")}
    out["steps_fresh_cache"] = subprocess_json([str(HERE / "cold_start.py"), "default", "A", "steps"], env_steps)
    log("  cold start: fast-start mode, empty cache")
    env_fast = {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="purelearn-inductor-")}
    out["fast_start_fresh_cache"] = subprocess_json([str(HERE / "cold_start.py"), "fast-start", "A"], env_fast)
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def add_ratios(rows: list[dict[str, Any]]) -> None:
    fptt = {r["net"]: r for r in rows if r["method"] == "fptt"}
    for r in rows:
        s = r["seconds"]
        pl = {k: v for k, v in s.items() if k in ("eager", "compiled")}
        r["best_mode"] = min(pl, key=pl.get)
        r["best_s"] = pl[r["best_mode"]]
        ref = s.get("sj")
        if ref is None and r["method"] == "fptt_dual" and r["net"] in fptt:
            base = fptt[r["net"]]["seconds"]
            r["reference"] = "purelearn FPTT"
            r["ratio_eager"] = s["eager"] / base["eager"]
            if "compiled" in s and "compiled" in base:
                r["ratio_compiled"] = s["compiled"] / base["compiled"]
            r["ratio_best"] = r["best_s"] / min(v for k, v in base.items() if k in ("eager", "compiled"))
            continue
        r["reference"] = "SpikingJelly " + nets.LABELS[nets.SJ_COUNTERPART[r["method"]]]
        r["ratio_eager"] = s["eager"] / ref
        if "compiled" in s:
            r["ratio_compiled"] = s["compiled"] / ref
        r["ratio_best"] = r["best_s"] / ref


def evaluate_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = {(r["net"], r["method"]): r for r in res["methods"]}
    values: dict[str, float | None] = dict.fromkeys(TARGETS_TEXT)
    if ("A", "fptt") in rows:
        a = rows[("A", "fptt")]
        values["fptt_A_best_vs_sj"] = a["ratio_best"]
        values["fptt_A_eager_vs_sj"] = a["ratio_eager"]
        if "compiled" in a["seconds"] and res.get("floor"):
            values["fptt_A_compiled_vs_floor"] = a["seconds"]["compiled"] / res["floor"]["seconds"]
        if "jax" in a["seconds"]:
            values["fptt_A_best_vs_jax"] = a["best_s"] / a["seconds"]["jax"]
    if ("A", "fptt_dual") in rows:
        values["fptt_dual_vs_fptt"] = rows[("A", "fptt_dual")]["ratio_best"]
    for m, n in (("ottt_o", "A"), ("ottt_o", "C"), ("sltt", "A"), ("sltt", "C")):
        if (n, m) in rows:
            values[f"{m}_{n}_vs_sj"] = rows[(n, m)]["ratio_best"]
    cold = res.get("cold_start") or {}
    warm = [cold[k]["cold_start_s"] for k in ("default_warm_cache", "trace_engine_warm_cache") if k in cold]
    if warm:
        values["cold_start_s"] = min(warm)
    if "default_fresh_cache" in cold:
        values["cold_start_fresh_cache_s"] = cold["default_fresh_cache"]["cold_start_s"]
    if "sequence_fresh_cache" in cold:
        values["cold_sequence_fresh_cache_s"] = cold["sequence_fresh_cache"]["cold_start_s"]
    for s in res.get("sweeps", []):
        values[f"sweep_{s['net']}_speedup"] = s["speedup"]
    mem = res.get("memory", [])
    ratios = []
    for method in {m["method"] for m in mem if m["method"] != "bptt"}:
        pts = {m["T"]: m for m in mem if m["method"] == method}
        if 10 in pts and max(pts) > 10:
            ratios.append(pts[max(pts)]["peak_bytes"] / pts[10]["peak_bytes"])
    if ratios:
        values["memory_online_T1000_vs_T10"] = max(ratios)
    out = []
    for key, (text, op, bound) in TARGETS_TEXT.items():
        v = values[key]
        met = None if v is None else (v <= bound if op == "<=" else v >= bound)
        out.append({"key": key, "target": text, "op": op, "bound": bound, "value": v, "met": met})
    return out


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v * 1e3:8.1f} ms" if v < 10 else f"{v:8.1f} s "


def fmt_r(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def report(res: dict[str, Any]) -> str:
    lines = []
    m = res["meta"]
    lines.append(f"purelearn benchmarks — torch {m['torch']}, {m['threads']} torch thread(s), {m['cpu']}, "
                 f"{m['cores']} cores ({m['note']})")
    lines.append(f"command: {m['command']}   repeats: {m['repeats']} (medians; contenders interleaved)")
    lines.append("")
    lines.append("Seconds per training sequence; ratio = purelearn / reference (lower is better)")
    hdr = (f"{'net':3} {'method':9} {'reference':22} {'reference s':>12} {'eager':>11} {'compiled':>11} "
           f"{'steps':>11} {'eager×':>7} {'comp×':>7} {'best×':>7} {'1st seq':>8} {'|Δparam|':>9}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    fptt = {r["net"]: r for r in res["methods"] if r["method"] == "fptt"}
    for r in res["methods"]:
        s = r["seconds"]
        if r["method"] == "fptt_dual":
            base = fptt.get(r["net"], {}).get("seconds", {})
            ref_s = min((v for k, v in base.items() if k in ("eager", "compiled")), default=None)
        else:
            ref_s = s.get("sj")
        diff = r.get("param_diff_compiled_vs_sj", r.get("param_diff_eager_vs_sj"))
        cold = r.get("first_sequence_s")
        lines.append(f"{r['net']:3} {nets.LABELS[r['method']]:9} {r['reference']:22} {fmt_s(ref_s):>12} "
                     f"{fmt_s(s.get('eager')):>11} {fmt_s(s.get('compiled')):>11} {fmt_s(s.get('steps')):>11} "
                     f"{fmt_r(r.get('ratio_eager')):>7} "
                     f"{fmt_r(r.get('ratio_compiled')):>7} {fmt_r(r.get('ratio_best')):>7} "
                     f"{(f'{cold:.1f} s' if cold else '—'):>8} {('—' if diff is None else f'{diff:.1e}'):>9}")
    a = fptt.get("A")
    if res.get("floor") or (a and "jax" in a["seconds"]):
        lines.append("")
        lines.append("FPTT net A against the floor and the peer")
        if res.get("floor"):
            f = res["floor"]
            lines.append(f"  matmul floor ({f['passes']} fwd+bwd passes):  {fmt_s(f['seconds'])}")
            if a and "compiled" in a["seconds"]:
                lines.append(f"  purelearn compiled / floor:        {a['seconds']['compiled'] / f['seconds']:.2f}×")
            if a:
                lines.append(f"  purelearn eager / floor:           {a['seconds']['eager'] / f['seconds']:.2f}×")
        if a and "jax" in a["seconds"]:
            lines.append(f"  JAX (jit of lax.scan):             {fmt_s(a['seconds']['jax'])}   first call (trace + "
                         f"compile + 1 sequence) {a['jax_first_call_s']:.2f} s, |Δparam| vs purelearn eager "
                         f"{a.get('param_diff_jax_vs_eager', float('nan')):.1e}")
            lines.append(f"  purelearn best / JAX:              {a['best_s'] / a['seconds']['jax']:.2f}×")
    elif res.get("jax_skipped"):
        lines.append(f"JAX peer: skipped ({res['jax_skipped']})")
    if res.get("sweeps"):
        lines.append("")
        lines.append("Sweeps (FPTT, lr × alpha, one sequence per config, seconds for all K)")
        for s in res["sweeps"]:
            parts = "  ".join(f"{k} {fmt_s(v).strip()}" for k, v in s["seconds"].items())
            lines.append(f"  net {s['net']} K={s['K']} T={s['T']}: {parts}")
            lines.append(f"      best loop ({s['loop_best']}) / best vmapped ({s['vmap_best']}) = {s['speedup']:.1f}×;"
                         f" eager loop / eager vmap = {s['speedup_eager']:.1f}×")
    if res.get("memory"):
        lines.append("")
        lines.append("Peak resident memory of one sequence, net B (own process per point; MiB; Δ = above the "
                     "resident memory at the sequence start)")
        Ts = sorted({p["T"] for p in res["memory"]})
        lines.append("  " + f"{'method':10}" + "".join(f"{'T=' + str(T):>22}" for T in Ts))
        for method in dict.fromkeys(p["method"] for p in res["memory"]):
            pts = {p["T"]: p for p in res["memory"] if p["method"] == method}
            cells = []
            for T in Ts:
                p = pts.get(T)
                if p is None or p.get("peak_bytes") is None:
                    cells.append(f"{'—':>22}")
                    continue
                d = (p["peak_bytes"] - p["start_bytes"]) / 2**20
                cells.append(f"{p['peak_bytes'] / 2**20:>12.1f} (Δ{d:6.2f})")
            lines.append("  " + f"{nets.LABELS[method]:10}" + "".join(cells))
        lines.append("  (online learners: the step loop, outputs dropped; their run() also stacks the [T, ...] "
                     "outputs. BPTT: run)")
    if res.get("cold_start"):
        lines.append("")
        lines.append("Cold start, compiled FPTT on net A (first call → first result; own process each): a step, "
                     "or (sequence_*, steps_*) a whole first sequence through compile.run")
        for k, c in res["cold_start"].items():
            b = ", ".join(f"{kk} {vv}" for kk, vv in c["breakdown_s"].items())
            after = (f"warm sequence {c['warm_sequence_s'] * 1e3:.1f} ms" if "warm_sequence_s" in c else
                     f"last-step graph +{c['last_step_graph_s']:.1f} s; warm step {c['warm_step_s'] * 1e3:.1f} ms")
            lines.append(f"  {k:24} {c['cold_start_s']:7.1f} s wall, {c['cold_start_cpu_s']:7.1f} s cpu; {after}")
            lines.append(f"  {'':24} {b}")
    if res.get("allocator_tuned"):
        t = res["allocator_tuned"]
        lines.append("")
        lines.append("The same on net A with purelearn.compile.keep_freed_memory() (glibc keeps freed blocks; every "
                     "contender, own process)")
        for r in t["methods"]:
            s = r["seconds"]
            parts = "  ".join(f"{k} {fmt_s(v).strip()}" for k, v in s.items())
            lines.append(f"  {nets.LABELS[r['method']]:9} {parts}   eager× {fmt_r(r.get('ratio_eager'))}  "
                         f"comp× {fmt_r(r.get('ratio_compiled'))}  best× {fmt_r(r.get('ratio_best'))}")
        if t.get("floor"):
            floor_s, first = t["floor"]["seconds"], t["methods"][0]["seconds"]
            extra = f"; compiled FPTT / floor {first['compiled'] / floor_s:.2f}×" if "compiled" in first else ""
            lines.append(f"  matmul floor {fmt_s(floor_s).strip()}{extra}")
    lines.append("")
    lines.append("Targets")
    for t in res["targets"]:
        v = t["value"]
        mark = "n/a " if t["met"] is None else ("MET " if t["met"] else "MISS")
        lines.append(f"  [{mark}] {t['target']:58} {t['op']} {t['bound']:<5} value: "
                     f"{'—' if v is None else f'{v:.3g}'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: net B, eager only, one round")
    ap.add_argument("--out", default="results.json", help="where to write the JSON results")
    ap.add_argument("--repeats", type=int, default=None, help="rounds per row (default 7, quick 1)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled mode")
    ap.add_argument("--nets", default=None, help="comma-separated subset of A,B,C")
    ap.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(nets.METHODS))
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: "
                    "floor,jax,sweeps,memory,cold,allocator")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="call purelearn.compile.keep_freed_memory() first (affects every contender)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    if args.keep_freed_memory:
        compile.keep_freed_memory()
    quick = args.quick
    repeats = args.repeats or (1 if quick else 7)
    net_list = args.nets.split(",") if args.nets else (["B"] if quick else ["A", "B", "C"])
    methods = args.methods.split(",") if args.methods else nets.METHODS
    skip = set(filter(None, args.skip.split(",")))
    compiled = not (args.no_compile or quick)
    t_start = time.perf_counter()
    res: dict[str, Any] = {"meta": {
        "command": "python " + " ".join([str(Path(sys.argv[0]).as_posix()), *(argv or sys.argv[1:])]),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
        "quick": quick, "repeats": repeats, "compiled": compiled, "keep_freed_memory": args.keep_freed_memory,
        "note": "shared machine, other jobs running: timings are noisy; ratios within a row are interleaved",
        "unit": "seconds per training sequence (median)",
        "nets": {k: vars(v) for k, v in nets.NETS.items()},
    }}
    import jax_peer

    want_jax = (not quick) and "jax" not in skip and "A" in net_list and "fptt" in methods
    if want_jax and not jax_peer.available():
        res["jax_skipped"] = "jax is not installed"
        want_jax = False
    elif not want_jax:
        res["jax_skipped"] = "quick mode" if quick else "not requested"
    res["methods"] = []
    for net in net_list:
        for method in methods:
            log(f"methods: net {net} {method}")
            comp = compiled and not (method == "bptt" and net != "B")  # BPTT compiles its unrolled sequence
            res["methods"].append(bench_method(net, method, repeats, comp, want_jax and net == "A" and
                                               method == "fptt"))
    add_ratios(res["methods"])
    res["floor"] = None if "floor" in skip else bench_floor(repeats, T=nets.NETS["A"].T)
    res["sweeps"] = []
    if "sweeps" not in skip:
        log("sweeps: net B K=32")
        res["sweeps"].append(bench_sweep("B", 32, repeats, compiled, T=4 if quick else None))
        if not quick:
            log("sweeps: net A K=8")
            res["sweeps"].append(bench_sweep("A", 8, max(3, repeats // 2), compiled))
    res["memory"] = []
    if "memory" not in skip:
        log("memory")
        mem_methods = ["fptt", "bptt"] if quick else ["fptt", "fptt_dual", "ottt_o", "sltt", "sltt_k", "bptt"]
        res["memory"] = bench_memory(mem_methods, [10, 100] if quick else [10, 100, 1000], workers=2 if quick else 1)
    res["cold_start"] = {}
    if compiled and "cold" not in skip:
        log("cold start")
        res["cold_start"] = bench_cold_start()
    if not quick and not args.keep_freed_memory and "allocator" not in skip and "A" in net_list:
        log("allocator: FPTT and FPTT-dual on net A with keep_freed_memory() (own process)")
        out = Path(tempfile.mkdtemp()) / "allocator.json"
        cmd = [str(HERE / "run.py"), "--nets", "A", "--methods", "fptt,fptt_dual", "--keep-freed-memory",
               "--skip", "sweeps,memory,cold,allocator", "--repeats", str(max(3, repeats // 2)), "--out", str(out)]
        cmd += ["--no-compile"] if not compiled else []
        subprocess.run([sys.executable, *cmd], check=True, capture_output=True, text=True, cwd=HERE.parent)
        tuned = json.loads(out.read_text())
        res["allocator_tuned"] = {"methods": tuned["methods"], "floor": tuned["floor"]}
    res["targets"] = evaluate_targets(res)
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    for r in res["methods"]:
        r.pop("all_seconds", None) if quick else None
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    print(report(res))
    print(f"\nwrote {args.out} in {res['meta']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
