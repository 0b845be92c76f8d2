"""One memory measurement, run in its own process by ``run.py``: one training sequence of length T.

Prints one JSON line with

- ``peak_bytes``: the peak resident memory during the sequence and ``start_bytes`` the resident
  memory when it started (parameters, optimizer state, the data and the libraries are resident
  before): Linux ``VmHWM`` after resetting it to ``VmRSS`` through ``/proc/self/clear_refs``.
  This is the loop of ``step`` over the learner's plan with outputs dropped (what training itself
  needs; BPTT's plan is one call over the whole sequence); ``peak_bytes_run`` is ``learner.run``,
  whose outputs (per-step losses and network outputs) are stacked [T, ...] by design;
- ``maxrss_bytes``: the process's peak resident set (``ru_maxrss``, import footprint included).

Usage: ``python benchmarks/memory_point.py METHOD T [NET]``.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak(fn) -> tuple[int, int] | tuple[None, None]:
    """``(peak resident bytes while fn runs, resident bytes when it started)``; Linux only: ``VmHWM``
    is reset to the current ``VmRSS`` through ``/proc/self/clear_refs``."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status("VmRSS")
    except OSError:
        return None, None
    fn()
    return _status("VmHWM"), before


def main() -> None:
    from nets import build_pair  # SpikingJelly: only for this script's own points (shd_scale.py imports peak)

    method, T = sys.argv[1], int(sys.argv[2])
    net = sys.argv[3] if len(sys.argv) > 3 else "B"
    torch.set_num_threads(1)
    pair = build_pair(net, method, T)
    learner, x, y = pair.learner, pair.x, pair.y
    state = {"carry": pair.carry}
    warm = build_pair(net, method, 10)  # first-call allocations (lazy init) outside the measurement
    warm.learner.run(warm.carry, warm.x, warm.y)

    def run() -> None:
        state["carry"], _ = learner.run(state["carry"], x, y)

    def step_loop() -> None:
        carry = state["carry"]
        for call in learner.plan(carry, T):  # the learner's own calls, outputs dropped
            carry, _ = learner.step(carry, x[call.t], y[call.t], **dict(call.options))
        state["carry"] = learner.end_sequence(carry)

    out = {"method": method, "T": T, "net": net}
    out["peak_bytes"], out["start_bytes"] = peak(step_loop)
    out["peak_bytes_run"], out["start_bytes_run"] = peak(run)
    out["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
