"""The GPU check: the test suite on cuda and the benchmark on cuda, in one bounded command.

    python benchmarks/gpu_check.py [--out DIR] [--budget S] [--phases env,tests_device,bench,tests_general]
    python benchmarks/gpu_check.py --dry-run --out DIR     # the same plumbing on the cpu, tiny, < 1 min

Made for a CUDA machine without internet (see ``gpu_check.sh`` for the one command and the wheels
that travel with it). Four phases, in this order, each with its own wall-clock budget and its own
subprocess (a phase that runs over is killed, and what it had done is kept); ``$OUT/gpu_check.json``
is rewritten after every phase, so a run stopped from outside still leaves the phases before:

- ``env``: python, torch, CUDA, the device, jax (probed in a subprocess), and whether the packages
  carried as wheels (optree, spikingjelly, loguru) import.
- ``tests_device``: the tests that take the ``device`` fixture of ``tests/conftest.py`` (found by
  reading tests/), with ``-k <device>``: the only part of the suite that can run on cuda.
- ``bench``: per method (FPTT, SLTT, OTTT-O by default, each in its own worker process) on net A of
  ``benchmarks/nets.py`` (same weights and data on both sides, built by ``nets.build_pair`` and moved
  to the device): SpikingJelly, purelearn eager, eager inside one CUDA graph, compiled
  (``purelearn.compile.run`` as it is; its per-step path if the default fails, the error kept),
  compiled with ``mode="reduce-overhead"`` (inductor's CUDA graphs: one per sequence for a
  whole-sequence program, one per kind of step otherwise) and compiled inside one CUDA graph
  (``torch.cuda.graph`` around the whole sequence, static carry buffers). Medians of R interleaved
  rounds (synchronised), ratios against SpikingJelly, and max |Δparam| against SpikingJelly after the
  same sequences (TF32 off). A contender that fails is reported and the others go on.
- ``tests_general``: the suite (``pytest tests purelearn``, with pytest-xdist where installed) in what
  time is left; this script's own test is left out (the cpu runs it).

Outputs in ``--out`` (default ``$OUT``, else ``gpu_check_out``): ``gpu_check.json`` (all results),
``gpu_check.md`` (the table for the README, also printed at the end) and one log per phase.

``--dry-run`` runs every phase for real on the cpu, small: FPTT on net B with T=4, one round, the compiled
contenders with dynamo's ``eager`` backend (the graph capture; reduce-overhead: the same compiled run, no mode) and the
CUDA-graph contenders' static-buffer plumbing uncaptured, two device tests and two general tests. The JSON has the same
schema with ``"dry_run": true``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMA = 1
PHASES = ("env", "tests_device", "bench", "tests_general")
#: purelearn contenders of a bench row (SpikingJelly is "sj"), in table order
CONTENDERS = ("eager", "eager_graph", "compiled", "reduce_overhead", "compiled_graph")
LABELS = {"sj": "SpikingJelly", "eager": "eager", "eager_graph": "eager, one CUDA graph",
          "compiled": "compiled", "reduce_overhead": "compiled, reduce-overhead",
          "compiled_graph": "compiled, one CUDA graph"}
#: packages that are not on the GPU machine and travel as wheels, and the ones the run relies on there
PACKAGES = ("optree", "spikingjelly", "loguru", "numpy", "h5py", "pytest", "pytest_timeout", "xdist",
            "hypothesis", "sklearn", "matplotlib", "jax")
DISTRIBUTIONS = {"pytest_timeout": "pytest-timeout", "xdist": "pytest-xdist", "sklearn": "scikit-learn"}
#: --dry-run: the tests each test phase runs (a couple, fast)
DRY_DEVICE_TEST = "tests/test_nn.py::test_init_params_take_x_dtype_and_device"
DRY_GENERAL_TESTS = ("tests/test_tree.py::test_map_applies_fn_to_every_leaf_and_keeps_structure",
                     "tests/test_tree.py::test_sub_undoes_add")
STATUS_WORDS = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")


def log(*a: Any) -> None:
    print("[gpu_check]", *a, file=sys.stderr, flush=True)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def sub_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the phases' subprocesses: the repo root importable (the package is not
    installed on the GPU machine), unbuffered output, jax not grabbing the GPU's memory."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        paths.append(str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.update(extra or {})
    return env


def run_bounded(cmd: list[str], log_path: Path, budget_s: float, env: dict[str, str] | None = None,
                append: bool = False) -> dict[str, Any]:
    """Run ``cmd`` in the repo root with its output in ``log_path``; kill its process group after
    ``budget_s`` seconds. Returns returncode (None when killed), timed_out and seconds."""
    t0 = time.monotonic()
    with open(log_path, "a" if append else "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env or sub_env(),
                                start_new_session=True)
        timed_out = False
        try:
            rc: int | None = proc.wait(timeout=max(1.0, budget_s))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this call started (pytest-xdist workers too)
            except ProcessLookupError:
                pass
            proc.wait()
            rc = None
    return {"command": cmd, "returncode": rc, "timed_out": timed_out,
            "seconds": round(time.monotonic() - t0, 2), "log": log_path.name}


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------
# env
# --------------------------------------------------------------------------------------------------

#: one subprocess (one interpreter start): imports that are the real check (a wheel for the wrong
#: python installs but does not import), then jax and the devices it sees
PROBE = """
import importlib, json, sys
out = {"imports": {}}
for mod in sys.argv[1:]:
    try:
        importlib.import_module(mod)
        out["imports"][mod] = "ok"
    except Exception as err:
        out["imports"][mod] = repr(err)[:300]
try:
    import jax
    out["jax"] = {"version": jax.__version__, "backend": jax.default_backend(),
                  "devices": [str(d) for d in jax.devices()]}
except Exception as err:
    out["jax"] = {"error": repr(err)[:300]}
print(json.dumps(out))
"""
PROBE_IMPORTS = ("optree", "spikingjelly.activation_based.neuron", "loguru", "purelearn.compile")


def package_info(name: str) -> dict[str, Any]:
    info: dict[str, Any] = {"found": has_module(name)}
    try:
        info["version"] = importlib.metadata.version(DISTRIBUTIONS.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        info["version"] = None
    if info["found"]:
        spec = importlib.util.find_spec(name)
        info["path"] = str(Path(spec.origin).parent) if spec and spec.origin else None
    return info


def phase_env(args: argparse.Namespace, budget_s: float) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                           "platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                           "pythonpath": os.environ.get("PYTHONPATH", "")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                   device_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   cudnn=torch.backends.cudnn.version())
    if shutil.which("nvidia-smi"):
        try:
            query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
            smi = subprocess.run(query, capture_output=True, text=True, timeout=20)
            out["nvidia_smi"] = smi.stdout.strip()
        except (subprocess.SubprocessError, OSError) as err:
            out["nvidia_smi"] = repr(err)
    out["packages"] = {name: package_info(name) for name in PACKAGES}
    out["wheels"] = sorted(p.name for p in (REPO / ".whl").glob("*.whl"))
    try:
        res = subprocess.run([sys.executable, "-c", PROBE, *PROBE_IMPORTS], cwd=REPO, env=sub_env(),
                             capture_output=True, text=True, timeout=max(5.0, budget_s - 10))
        lines = res.stdout.strip().splitlines()
        probe = json.loads(lines[-1]) if lines else {"error": res.stderr.strip()[-500:]}
    except subprocess.TimeoutExpired:
        probe = {"error": "probe timed out"}
    imports = probe.get("imports", {mod: probe.get("error", "?") for mod in PROBE_IMPORTS})
    out["imports"] = imports
    out["jax"] = probe.get("jax", {"error": probe.get("error", "?")})
    out["status"] = "ok" if all(v == "ok" for v in imports.values()) else "failed"
    return out


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------

DEVICE_TEST = re.compile(r"^def (test_\w+)\(([^)]*)\)", re.MULTILINE)


def device_tests() -> list[str]:
    """``file::function`` of every test in tests/ that takes the ``device`` fixture."""
    found = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        text = path.read_text()
        for m in DEVICE_TEST.finditer(text):
            params = [p.split(":")[0].split("=")[0].strip() for p in m.group(2).split(",")]
            if "device" in params:
                found.append(f"tests/{path.name}::{m.group(1)}")
    return found


def parse_pytest_log(text: str) -> dict[str, Any]:
    """Counts and failing ids from a ``pytest -v`` log (with or without pytest-xdist), also when the
    run was killed before its summary: the per-test lines are counted, the final line preferred."""
    counts = {w.lower(): 0 for w in STATUS_WORDS}
    failures: list[str] = []
    words = "|".join(STATUS_WORDS)
    plain = re.compile(rf"^(\S+::\S+) ({words})\b")                     # tests/x.py::t PASSED [ 5%]
    xdist = re.compile(rf"^\[gw\d+\] \[\s*\d+%\] ({words}) (\S+::\S+)")  # [gw0] [ 5%] PASSED tests/x.py::t
    for line in text.splitlines():
        if "short test summary info" in line:
            break
        m = plain.match(line)
        node, word = (m.group(1), m.group(2)) if m else (None, None)
        if m is None:
            m = xdist.match(line)
            if m:
                node, word = m.group(2), m.group(1)
        if word is None:
            continue
        counts[word.lower()] += 1
        if word in ("FAILED", "ERROR") and len(failures) < 50:
            failures.append(node)
    out: dict[str, Any] = {"counts": counts, "failures": failures, "summary": None}
    finals = [ln for ln in text.splitlines() if re.match(r"^=+ .*\b(passed|failed|skipped|error|no tests ran)\b.* =+$",
                                                         ln.strip())]
    if finals:
        summary = finals[-1].strip("= ").strip()
        out["summary"] = summary
        final = {"passed": 0, "failed": 0, "skipped": 0, "error": 0, "xfail": 0, "xpass": 0}
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", summary):
            key = {"errors": "error", "xfailed": "xfail", "xpassed": "xpass"}.get(word, word)
            final[key] = int(n)
        out["counts"] = final
    return out


def pytest_command(selection: list[str], args: argparse.Namespace, per_test_timeout: int, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--color=no", f"--maxfail={args.maxfail}"]
    if has_module("pytest_timeout"):
        cmd.append(f"--timeout={per_test_timeout}")
    if workers > 1 and has_module("xdist"):
        cmd += ["-n", str(workers)]
    return cmd + selection


def phase_tests(kind: str, args: argparse.Namespace, budget_s: float, out_dir: Path) -> dict[str, Any]:
    if kind == "tests_device":
        found = device_tests()
        if args.dry_run:
            found_dry = [t for t in found if t == DRY_DEVICE_TEST]
            selection = found_dry or found[:1]
        else:
            selection = found
        selection = [*selection, "-k", args.device]
        # one process: cuda tests are short, and collection in several workers costs more than it saves
        cmd = pytest_command(selection, args, per_test_timeout=120, workers=1)
        extra: dict[str, Any] = {"device_tests_found": found}
    else:
        # (not this script's own test: it runs the dry run, which the cpu checks anyway)
        selection = list(DRY_GENERAL_TESTS) if args.dry_run else [*args.general_paths,
                                                                  "--ignore=tests/test_gpu_check.py"]
        cmd = pytest_command(selection, args, per_test_timeout=180, workers=0 if args.dry_run else args.workers)
        extra = {}
    res = run_bounded(cmd, out_dir / f"{kind}.log", budget_s)
    parsed = parse_pytest_log((out_dir / f"{kind}.log").read_text(errors="replace"))
    counts = parsed["counts"]
    if res["timed_out"]:
        status = "timeout"
    elif res["returncode"] == 0 and counts["passed"] > 0:
        status = "ok"
    elif counts["failed"] or counts["error"]:
        status = "failed"
    else:
        status = "error"
    return {"status": status, "device": args.device, **res, **parsed, **extra}


# --------------------------------------------------------------------------------------------------
# bench (runs in its own process: python gpu_check.py --bench-worker ...)
# --------------------------------------------------------------------------------------------------


def bench_worker(args: argparse.Namespace) -> int:
    """One bench row (``--methods`` names one method), written to ``--out``/bench_row.json."""
    import torch

    device = torch.device(args.device)
    if device.type == "cuda":  # float32 matmuls in full precision on both sides: numbers are compared too
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(1)
    (method,) = args.methods
    write_json(Path(args.out) / "bench_row.json", bench_row(args, method, device))
    return 0


def bench_row(args: argparse.Namespace, method: str, device: Any) -> dict[str, Any]:
    """SpikingJelly and the purelearn contenders (:data:`CONTENDERS`) on one method."""
    import optree
    import torch

    sys.path.insert(0, str(HERE))
    import nets

    from purelearn import compile, nn
    from purelearn.online import driver

    cuda = device.type == "cuda"
    t_row = time.monotonic()
    log(f"bench: {method} on net {args.net} ({device})")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def left() -> float:
        return args.deadline - time.time()

    def move(t: Any) -> Any:
        return t.to(device) if isinstance(t, torch.Tensor) else t

    def fresh(tree_: Any) -> Any:
        return optree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, tree_)

    pair = nets.build_pair(args.net, method, args.T)
    # everything on the device: SpikingJelly's module in place (its optimizer keeps the same Parameter
    # objects), FPTT's running averages, the data and purelearn's carry
    pair.sj.to(device)
    if pair.w_ra is not None:
        pair.w_ra[:] = [w.to(device) for w in pair.w_ra]
    pair.x, pair.y = pair.x.to(device), pair.y.to(device)
    x, y, learner = pair.x, pair.y, pair.learner
    carry0 = optree.tree_map(move, pair.carry)
    row: dict[str, Any] = {"net": args.net, "method": method, "T": int(x.shape[0]), "N": int(x.shape[1]),
                           "device": str(device), "repeats": args.repeats, "backend": args.backend}
    contenders: dict[str, Callable[[], Any]] = {}
    first: dict[str, float] = {}
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    carries: dict[str, Any] = {}  # each purelearn contender's carry, advanced by its calls

    def add(name: str, setup: Callable[[], Callable[[], None]]) -> bool:
        """``setup()`` builds ``name`` and runs its first sequence (compilation, capture); it returns
        the call to time. The first sequence is timed; an error is kept and the others go on."""
        try:
            sync()
            t0 = time.perf_counter()
            fn = setup()
            sync()
            first[name] = round(time.perf_counter() - t0, 4)
            contenders[name] = fn
            return True
        except Exception as err:  # noqa: BLE001 - a contender that fails is reported, the rest go on
            errors[name] = f"{type(err).__name__}: {err}"[:600]
            log(f"bench: {method} {name} failed: {errors[name]}")
            traceback.print_exc()
            return False
        finally:  # what is known so far, in case the worker is killed (the budget) before the timing
            write_json(Path(args.out) / "bench_row.json", {**row, "incomplete": True, "first_sequence_s": first,
                                                           "errors": errors, "skipped": skipped})

    def sequence_fn(name: str, run_fn: Callable[..., Any]) -> Callable[[], Callable[[], None]]:
        """``name``: ``run_fn`` (``learner.run``'s signature) advancing ``carries[name]``."""
        def setup() -> Callable[[], None]:
            def call() -> None:
                carries[name], _ = run_fn(carries[name], x, y)

            carries[name] = carry0
            call()
            return call

        return setup

    def graph_fn(name: str, run_fn: Callable[..., Any]) -> Callable[[], Callable[[], None]]:
        """``name``: ``run_fn`` over one whole sequence inside one CUDA graph whose input carry is a set
        of static buffers that the graph overwrites with its output carry. The first sequence runs
        uncaptured (it counts like every contender's first); then two warm-ups on a side stream (not
        advancing the carry) and the capture. On the cpu (dry run) the same body runs uncaptured."""
        def setup() -> Callable[[], None]:
            carry1, _ = run_fn(carry0, x, y)
            static = carries[name] = fresh(carry1)
            static_leaves = optree.tree_leaves(static)

            def body() -> None:
                new_leaves = optree.tree_leaves(run_fn(static, x, y)[0])
                if len(new_leaves) != len(static_leaves):
                    raise RuntimeError("the carry changed structure over a sequence")
                for s, n in zip(static_leaves, new_leaves, strict=True):
                    s.copy_(n)

            if not cuda:
                return body
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    run_fn(static, x, y)  # pure: the static carry is not advanced
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                body()
            return graph.replay

        return setup

    def sj_setup() -> Callable[[], None]:
        sj = pair.sj_fn()
        sj()
        return sj

    add("sj", sj_setup)
    add("eager", sequence_fn("eager", learner.run))

    # compiled (inductor on cuda; the dry run uses --backend eager): compile.run as it is; if that
    # fails and compile.run has a per-step path (whole_sequence=False), that one, the error kept
    run = None
    if left() > args.min_compile_s:
        attempts: list[dict[str, Any]] = [{}]
        if "whole_sequence" in inspect.signature(compile.run).parameters:
            attempts.append({"whole_sequence": False})
        failures = []
        for extra in attempts:
            try:
                candidate = compile.run(learner, backend=args.backend, **extra)
            except Exception as err:  # noqa: BLE001
                failures.append(f"{extra or 'default'}: {type(err).__name__}: {err}"[:600])
                continue
            if add("compiled", sequence_fn("compiled", candidate)):
                run = candidate
                row["compiled_kind"] = run_kind(run, extra)
                break
            failures.append(f"{extra or 'default'}: {errors.pop('compiled')}")
        if run is None:
            errors["compiled"] = " | ".join(failures)
        elif failures:  # the fallback worked: keep why the default did not
            row["compiled_default_error"] = failures[0]
    else:
        skipped["compiled"] = f"budget ({left():.0f} s left)"

    # compiled with inductor's CUDA graphs (cudagraph trees; the dry run: the same plumbing, no mode).
    # A whole-sequence program is one CUDA graph per sequence; a per-step run, one per kind of step.
    # Before each call a new cudagraph-trees step begins and after it the outputs are cloned: the next
    # replay may then reuse the memory of the last outputs.
    # (on cuda a second compilation: it starts only if there is time for about as long as the first took)
    if left() > max(args.min_compile_s, 1.5 * first.get("compiled", 0.0) if cuda else 0.0):
        def ro_setup() -> Callable[[], None]:
            mode = {"mode": "reduce-overhead"} if cuda else {}
            if cuda or run is None:
                extra = {"whole_sequence": False} if row.get("compiled_kind") == "per_step" and \
                    "whole_sequence" in inspect.signature(compile.run).parameters else {}
                ro_run = compile.run(learner, backend=args.backend, **mode, **extra)
                kind = run_kind(ro_run, extra)
            else:  # on the cpu there is no mode to add: the compiled run itself, through the same plumbing
                ro_run, kind = run, row["compiled_kind"]
            row["reduce_overhead_compile"] = {"backend": args.backend, **mode, "kind": kind}
            if kind == "whole_sequence":
                def ro_sequence(carry: Any, xs: Any, ys: Any) -> Any:
                    torch.compiler.cudagraph_mark_step_begin()
                    return fresh(ro_run(carry, xs, ys))
            else:
                cstep = getattr(ro_run, "compiled_step", None) or compile.step(learner, backend=args.backend, **mode)

                def ro_step(carry: Any, xt: Any, yt: Any, **static: Any) -> Any:
                    torch.compiler.cudagraph_mark_step_begin()
                    return fresh(cstep(carry, xt, yt, **static))

                def ro_sequence(carry: Any, xs: Any, ys: Any) -> Any:
                    return driver.run(learner, carry, xs, ys, step=ro_step)

            return sequence_fn("reduce_overhead", ro_sequence)()

        add("reduce_overhead", ro_setup)
    else:
        skipped["reduce_overhead"] = f"budget ({left():.0f} s left)"

    # the eager and the compiled sequence, each inside one CUDA graph (last: a capture that fails
    # must not take the other contenders with it)
    add("eager_graph", graph_fn("eager_graph", learner.run))
    if run is not None:
        add("compiled_graph", graph_fn("compiled_graph", run))
    else:
        skipped["compiled_graph"] = "no compiled run"

    # R interleaved rounds, each call synchronised; a contender that fails here is dropped, reported
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, fn in list(contenders.items()):
            try:
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
            except Exception as err:  # noqa: BLE001
                errors[name] = f"while timed: {type(err).__name__}: {err}"[:600]
                traceback.print_exc()
                del contenders[name], times[name]
                continue
            times[name].append(time.perf_counter() - t0)
    row["seconds"] = {k: statistics.median(v) for k, v in times.items() if v}
    row["all_seconds"] = times
    row["first_sequence_s"] = first
    if "sj" in row["seconds"]:
        row["ratio_vs_sj"] = {k: v / row["seconds"]["sj"] for k, v in row["seconds"].items() if k != "sj"}
    # the same sequences from the same weights: how far apart did each contender end up?
    if "sj" in contenders:
        theirs = {k: v.detach() for k, v in pair.sj.named_parameters()}
        diffs = {}
        for name in CONTENDERS:
            if name in contenders:
                try:
                    ours = nn.to_state_dict(carries[name].params)
                    diffs[name] = max((ours[k] - theirs[k]).abs().max().item() for k in theirs)
                except Exception as err:  # noqa: BLE001
                    errors[name + "_param_diff"] = f"{type(err).__name__}: {err}"[:600]
        row["param_diff_vs_sj"] = diffs
    if cuda:
        from torch._dynamo.utils import counters

        row["inductor_counters"] = {k: dict(v) if hasattr(v, "items") else v
                                    for k, v in counters["inductor"].items() if "cudagraph" in k}
        row["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    row["errors"] = errors
    row["skipped"] = skipped
    row["row_seconds"] = round(time.monotonic() - t_row, 2)
    log(f"bench: {method} done in {row['row_seconds']} s: " +
        ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in row["seconds"].items()))
    return row


def run_kind(run: Any, extra: dict[str, Any]) -> str:
    """Whether a ``compile.run`` result compiles whole sequences (one program) or steps."""
    whole = getattr(run, "whole_sequence", None)
    if whole is None:  # a compile.run without the whole-sequence path
        return "per_step"
    return "whole_sequence" if whole and extra.get("whole_sequence", True) else "per_step"


def phase_bench(args: argparse.Namespace, budget_s: float, out_dir: Path) -> dict[str, Any]:
    """One worker process per method, most important first, each with what is left of the budget: a
    row that crashes or runs over loses itself only."""
    row_path = out_dir / "bench_row.json"
    end = time.monotonic() + budget_s
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    (out_dir / "bench.log").write_text("")
    for method in args.methods:
        left = end - time.monotonic()
        if left < args.min_row_s:
            rows.append({"net": args.net, "method": method, "skipped": f"budget ({left:.0f} s left)"})
            continue
        row_path.unlink(missing_ok=True)
        # the worker starts no compilation it cannot finish (see --min-compile-s) and stops 5 s early
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bench-worker", "--out", str(out_dir),
               "--device", args.device, "--net", args.net, "--methods", method, "--repeats", str(args.repeats),
               "--backend", args.backend, "--deadline", str(time.time() + left - 5),
               "--min-compile-s", str(args.min_compile_s)]
        if args.T is not None:
            cmd += ["--T", str(args.T)]
        res = run_bounded(cmd, out_dir / "bench.log", left, append=True)
        runs.append({"method": method, **res})
        row = json.loads(row_path.read_text()) if row_path.exists() else {"net": args.net, "method": method}
        row_path.unlink(missing_ok=True)
        if res["returncode"] != 0 or row.get("incomplete"):
            why = "timed out" if res["timed_out"] else f"exit status {res['returncode']}"
            started = ", ".join(f"{k} {v:.1f} s" for k, v in row.get("first_sequence_s", {}).items())
            row["failed"] = f"worker {why}" + (f" after {started}" if started else "") + ", see bench.log"
        rows.append(row)
    done = [r for r in rows if "seconds" in r]
    if not done:
        status = "timeout" if any(r["timed_out"] for r in runs) else "error"
    elif len(done) < len(rows) or any(r.get("errors") or r.get("skipped") for r in done):
        status = "partial"
    else:
        status = "ok"
    return {"status": status, "config": {"net": args.net, "T": args.T, "methods": args.methods,
                                         "repeats": args.repeats, "backend": args.backend},
            "seconds": round(budget_s - (end - time.monotonic()), 2), "log": "bench.log", "runs": runs, "rows": rows}


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def fmt_ms(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    ms = s * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def markdown(result: dict[str, Any]) -> str:
    env = result["phases"].get("env", {})
    bench = result["phases"].get("bench", {})
    dev = env.get("device_name") or result["device"]
    lines = [f"GPU check ({'dry run, ' if result['dry_run'] else ''}{dev}; torch {env.get('torch', '?')}, "
             f"CUDA {env.get('torch_cuda') or '–'}; {result['started']})", ""]
    rows = [r for r in bench.get("rows", []) if "seconds" in r]
    if rows:
        r0 = rows[0]
        lines.append(f"ms per training sequence (net {r0['net']}, T={r0['T']}, N={r0['N']}; median of "
                     f"{r0['repeats']} interleaved rounds; ratio against SpikingJelly in parentheses):")
        lines.append("")
        head = ["method", LABELS["sj"], *(LABELS[c] for c in CONTENDERS), "best / SJ", "max abs Δparam vs SJ"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + " --- |" * len(head))
        for r in rows:
            secs, ratios = r["seconds"], r.get("ratio_vs_sj", {})
            cells = [r["method"], fmt_ms(secs.get("sj"))]
            for c in CONTENDERS:
                if c in secs:
                    cells.append(f"{fmt_ms(secs[c])} ({ratios[c]:.2f}×)" if c in ratios else fmt_ms(secs[c]))
                else:
                    cells.append("failed" if c in r.get("errors", {}) else "skipped")
            cells.append(f"{min(ratios.values()):.2f}×" if ratios else "–")
            diffs = r.get("param_diff_vs_sj", {})
            cells.append(f"{max(diffs.values()):.1e}" if diffs else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for r in bench.get("rows", []):
        if r.get("failed"):
            lines.append(f"- bench {r['method']}: failed ({r['failed']})")
        elif "seconds" not in r:
            lines.append(f"- bench {r['method']}: skipped ({r.get('skipped')})")
        if "seconds" not in r:
            continue
        ro = r.get("reduce_overhead_compile", {})
        lines.append(f"- bench {r['method']}: compiled = {r.get('compiled_kind', '–')} ({r['backend']}), "
                     f"reduce-overhead = {ro.get('kind', '–')}; first sequence (compilation, capture) "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in r.get("first_sequence_s", {}).items()))
        if r.get("compiled_default_error"):
            lines.append(f"- bench {r['method']}: compile.run's default failed, its per-step path was used: "
                         f"{(r['compiled_default_error'].splitlines() or [''])[0][:200]}")
        for c, msg in (r.get("errors") or {}).items():
            lines.append(f"- bench {r['method']} {c}: {(msg.splitlines() or [''])[0][:200]}")
    for kind in ("tests_device", "tests_general"):
        t = result["phases"].get(kind)
        if t and "counts" in t:
            c = t["counts"]
            lines.append(f"- {kind} on {t.get('device', '?')}: {t['status']}, {c['passed']} passed, {c['failed']} "
                         f"failed, {c['error']} errors, {c['skipped']} skipped in {t['seconds']} s")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out", help="folder for the JSON, table, logs")
    ap.add_argument("--dry-run", action="store_true", help="the same plumbing on the cpu, tiny (< 1 min)")
    ap.add_argument("--device", default=None, help="torch device (default cuda; cpu for --dry-run)")
    ap.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    ap.add_argument("--budget", type=float, default=None, help="seconds for everything (default 450; dry 150)")
    ap.add_argument("--env-budget", type=float, default=60)
    ap.add_argument("--tests-device-budget", type=float, default=None, help="default 100; dry 40")
    ap.add_argument("--bench-budget", type=float, default=None, help="default 240; dry 90")
    ap.add_argument("--net", default=None, help="bench net (default A; dry B)")
    ap.add_argument("--T", type=int, default=None, help="bench sequence length (default the net's; dry 4)")
    ap.add_argument("--methods", default=None, help="bench methods, most important first (default "
                    "fptt,sltt,ottt_o; dry fptt)")
    ap.add_argument("--repeats", type=int, default=None, help="bench rounds (default 7; dry 1)")
    ap.add_argument("--backend", default=None, help="torch.compile backend (default inductor; dry eager)")
    ap.add_argument("--min-row-s", type=float, default=None, help="no bench row starts with less left (default 45)")
    ap.add_argument("--min-compile-s", type=float, default=None,
                    help="no compiled contender starts with less left (default 30)")
    ap.add_argument("--workers", type=int, default=8, help="pytest-xdist workers for tests_general")
    ap.add_argument("--maxfail", type=int, default=25)
    ap.add_argument("--general-paths", default="tests,purelearn", help="what tests_general runs")
    ap.add_argument("--bench-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.device = args.device or ("cpu" if dry else "cuda")
    args.budget = args.budget if args.budget is not None else (150 if dry else 450)
    args.tests_device_budget = args.tests_device_budget or (40 if dry else 100)
    args.bench_budget = args.bench_budget or (90 if dry else 240)
    args.net = args.net or ("B" if dry else "A")
    args.T = args.T if args.T is not None else (4 if dry else None)
    args.repeats = args.repeats or (1 if dry else 7)
    args.backend = args.backend or ("eager" if dry else "inductor")
    args.min_row_s = args.min_row_s if args.min_row_s is not None else (5 if dry else 45)
    args.min_compile_s = args.min_compile_s if args.min_compile_s is not None else (3 if dry else 30)
    args.methods = [m for m in (args.methods or ("fptt" if dry else "fptt,sltt,ottt_o")).split(",") if m]
    args.general_paths = [p for p in args.general_paths.split(",") if p]
    args.phases = [p for p in args.phases.split(",") if p]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases {sorted(unknown)}; pick from {','.join(PHASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.bench_worker:
        args.deadline = args.deadline or time.time() + 600
        return bench_worker(args)
    t_start = time.monotonic()
    deadline = t_start + args.budget
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            log("no CUDA device here: use --dry-run (or --device cpu)")
            return 2
    result: dict[str, Any] = {"schema": SCHEMA, "dry_run": args.dry_run, "device": args.device, "started": now_iso(),
                              "budget_s": args.budget, "argv": sys.argv[1:], "phases": {}}
    json_path = out_dir / "gpu_check.json"

    def save() -> None:
        result["seconds"] = round(time.monotonic() - t_start, 2)
        result["markdown"] = markdown(result)
        write_json(json_path, result)
        (out_dir / "gpu_check.md").write_text(result["markdown"])

    budgets = {"env": args.env_budget, "tests_device": args.tests_device_budget, "bench": args.bench_budget,
               "tests_general": math.inf}
    save()
    for phase in PHASES:
        if phase not in args.phases:
            continue
        left = deadline - time.monotonic() - 5
        budget = min(budgets[phase], left)
        if budget < 10:
            result["phases"][phase] = {"status": "skipped", "reason": f"budget ({left:.0f} s left)"}
            save()
            continue
        log(f"{phase}: budget {budget:.0f} s")
        t0 = time.monotonic()
        try:
            if phase == "env":
                res = phase_env(args, budget)
            elif phase == "bench":
                res = phase_bench(args, budget, out_dir)
            else:
                res = phase_tests(phase, args, budget, out_dir)
        except Exception as err:  # noqa: BLE001 - one phase failing must not lose the others
            traceback.print_exc()
            res = {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}
        res["budget_s"] = round(budget, 1)
        res.setdefault("seconds", round(time.monotonic() - t0, 2))
        result["phases"][phase] = res
        log(f"{phase}: {res['status']} in {res['seconds']} s")
        save()
    save()
    print(result["markdown"])
    return 0 if all(p.get("status") in ("ok", "skipped") for p in result["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
