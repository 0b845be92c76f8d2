"""One rank of the two-process sharded sweep checks in ``test_sweep_ranks.py`` (not collected).

    python tests/_sweep_worker.py RANK WORLD INIT_METHOD OUT_DIR

Every rank runs, with the same arguments: the sweep of :data:`AXES` into ``OUT_DIR/sweep``; a grid of
one configuration (fewer than the ranks); the sweep again into the same folder without ``overwrite``.
Each rank writes ``OUT_DIR/rank{RANK}.json`` (rows, what it printed, which files it wrote, the folder
locks it held, each refusal's type, message and seconds) and ``OUT_DIR/params{RANK}.pt``.
"""

from __future__ import annotations

import datetime
import io
import json
import sys
import time
import traceback

import torch
import torch.distributed as dist
from _launch import finish

from purelearn import app
from purelearn.app import lock, report
from purelearn.app.ranks import Ranks

CONFIG = dict(algo="fptt", epochs=2, limit=64, T=4, hidden=16, batch_size=32)
AXES = {"lr": [0.01, 0.03, 0.1], "alpha": [0.1]}  # 3 × 1: shards of 2 and 1


def recording(calls: list[str]) -> None:
    """Record this rank's ``report.write_csv`` / ``report.write_json`` calls and ``lock.hold`` folders."""
    for module, name in ((report, "write_csv"), (report, "write_json"), (lock, "hold")):
        original = getattr(module, name)

        def wrapped(path: str, *args: object, _original: object = original, _name: str = name) -> object:
            calls.append(f"{_name} {path}")
            return _original(path, *args)

        setattr(module, name, wrapped)


def refusal(fn: object) -> dict[str, object]:
    """``fn()``'s error: its type, message and how long it took to come."""
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - every error is the result here
        return {"type": type(err).__name__, "message": str(err), "seconds": time.perf_counter() - t0,
                "exit_code": getattr(err, "exit_code", None)}
    return {"type": None, "message": None, "seconds": time.perf_counter() - t0, "exit_code": None}


def main() -> int:
    rank, world, init_method, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    ranks = Ranks(rank=rank, world=world)
    config = app.Config(**CONFIG)
    calls: list[str] = []
    recording(calls)
    results: dict[str, object] = {}
    try:
        stream = io.StringIO()
        result = app.sweep_fit(config, AXES, f"{out}/sweep", stream=stream, plot=False, ranks=ranks)
        torch.save(result["params"], f"{out}/params{rank}.pt")
        results |= {"rows": result["rows"], "world_size": result["world_size"], "time_s": result["time_s"],
                    "time_s_per_rank": result["time_s_per_rank"], "printed": stream.getvalue(),
                    "calls": list(calls),
                    "params_device": str(next(iter(result["params"].values()))["weight"].device)}
        results["too_few"] = refusal(lambda: app.sweep_fit(config, {"lr": [0.01]}, ranks=ranks))
        results["existing"] = refusal(lambda: app.sweep_fit(config, AXES, f"{out}/sweep", plot=False, ranks=ranks))
    except Exception:
        results["error"] = traceback.format_exc()
        print(results["error"], file=sys.stderr)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(results, f)
    return 1 if "error" in results else 0


if __name__ == "__main__":
    finish(main())
