"""Run a worker script as several processes joined over loopback (gloo on 127.0.0.1), bounded in time.

``launch(script, *args)`` runs ``python script RANK WORLD INIT_METHOD *args`` once per rank; a worker
joins with ``dist.init_process_group("gloo", init_method=INIT_METHOD, rank=RANK, world_size=WORLD,
timeout=...)``. Not collected by pytest (the leading underscore).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
TIMEOUT_S = 240


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, *args: str, world: int = 2, timeout: float = TIMEOUT_S) -> list[subprocess.CompletedProcess]:
    """Run ``script RANK WORLD INIT_METHOD *args`` as ``world`` processes on loopback, bounded in time
    (all are killed once ``timeout`` seconds have passed); one result per rank."""
    init = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(world), init, *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    done, deadline = [], time.monotonic() + timeout
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return done


def finish(code: int) -> None:
    """End a worker: wait for every rank (a barrier), leave the process group, and exit with ``code``
    without the interpreter's teardown, where gloo's threads can meet a closed peer and abort the
    process ("terminate called without an active exception", seen once in CI)."""
    import torch.distributed as dist

    try:
        dist.barrier()
        dist.destroy_process_group()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
