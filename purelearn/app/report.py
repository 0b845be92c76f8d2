"""What a run leaves behind: the metrics dict, JSON and CSV files, tables, plots and memory figures.

JSON files are strict JSON (``allow_nan=False``): a non-finite number (a NaN or infinite loss) is
written as ``null``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import re
import resource
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .. import data
from .config import Config
from .errors import ConfigError, StorageError, describe_os_error

__all__ = ["METRICS", "CHECKPOINT", "CURVE", "COMPARE", "SWEEP", "RUN_FILES", "JSON_FILES", "version",
           "check_out_dir", "run_files", "clear_run", "remove_stale_temporaries", "strict_json", "write_json",
           "writing", "write_csv", "table", "peak_memory", "current_rss", "metrics", "pyplot", "plot_learning_curve",
           "plot_sweep"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CURVE = "learning_curve.png"
COMPARE, SWEEP = "compare.json", "sweep.json"
#: The files of a run in its folder: one of the first two there means the folder holds a run.
RUN_FILES = (CHECKPOINT, METRICS, CURVE)
#: What :func:`write_json` writes (each through ``NAME.tmp``).
JSON_FILES = (METRICS, COMPARE, SWEEP)
_PROBE = re.compile(r"\.write-test-\d+")


def version() -> str:
    """purelearn's version."""
    from .. import __version__

    return __version__


def check_out_dir(out_dir: str) -> None:
    """Create ``out_dir`` if needed and make sure files can be written there (``ConfigError`` on
    ``out_dir`` if not)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as err:
        raise ConfigError("out_dir", f"`out_dir` {out_dir}: cannot write there ({err.strerror or err})") from None


def run_files(folder: str, names: tuple[str, ...] = (CHECKPOINT, METRICS)) -> list[str]:
    """Which of ``names`` (default: a run's checkpoint and metrics) exist in ``folder``: a folder where
    any does holds results that only an explicit overwrite may replace."""
    return [name for name in names if os.path.exists(os.path.join(folder, name))]


def clear_run(folder: str, names: tuple[str, ...] = RUN_FILES) -> None:
    """Remove the run files ``names`` from ``folder`` (an overwrite starts afresh: nothing of the old
    run is left to resume by mistake)."""
    for name in names:
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete what interrupted writers left in ``folder``, and only that: checkpoint temporaries
    (``.tmp-checkpoint.pt-XXXXXXXX``), ``metrics.json.tmp`` (and ``compare.json.tmp``, ``sweep.json.tmp``)
    of :func:`write_json` and the write probes ``.write-test-PID`` of :func:`check_out_dir`. Call it with
    the folder's lock held. Returns the removed paths."""
    from .. import checkpoint

    ours = [os.path.join(folder, entry) for entry in sorted(os.listdir(folder))
            if entry in {name + ".tmp" for name in JSON_FILES} or _PROBE.fullmatch(entry)]
    return checkpoint.remove_stale_temporaries(folder, CHECKPOINT) + checkpoint.remove_files(
        [path for path in ours if os.path.isfile(path)])


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented strict JSON at ``path`` (non-finite numbers as ``null``), replaced atomically
    (a failed write removes its temporary file and leaves ``path`` as it was)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(strict_json(obj), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def writing(path: str, kept: str = "") -> Iterator[None]:
    """Turn an ``OSError`` of the writes in the block (a full disk, a file system turned read-only,
    ...) into one :class:`StorageError` naming ``path``, the reason and ``kept`` (what is still there)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        raise StorageError(f"could not write {path}: {describe_os_error(err)}{'; ' + kept if kept else ''}",
                           err.errno) from err


def write_csv(path: str, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` as CSV with columns ``fields`` (other keys are left out)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the header left-aligned, a rule, cells right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def peak_memory(device: torch.device | str) -> tuple[int, str]:
    """``(bytes, kind)``: ``torch.cuda.max_memory_allocated`` on CUDA, else the process's max RSS
    (``resource.getrusage``; kind ``"cpu_max_rss"``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_max_rss"


def current_rss() -> int | None:
    """The process's resident set now, in bytes (None where ``/proc`` is not there)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def metrics(config: Config, split: data.Split, history: list[dict[str, Any]], train_time: float,
            device: torch.device, num_params: int, rss_start: int | None,
            fingerprint: str | None = None, world_size: int = 1) -> dict[str, Any]:
    """The ``metrics.json`` of a run: versions, config, data (with its ``fingerprint``,
    :func:`purelearn.data.fingerprint`), final and per-epoch numbers, time, memory."""
    peak, kind = peak_memory(device)
    last = history[-1] if history else {}
    m = {
        "purelearn_version": version(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "config": config.to_dict(),
        "data": {"name": split.name, "encoding": split.train.encoding, "T": split.train.T,
                 "train_size": len(split.train), "test_size": len(split.test),
                 "num_classes": split.num_classes, "step_shape": list(split.train.step_shape),
                 **({} if fingerprint is None else {"fingerprint": fingerprint})},
        "num_params": num_params,
        "epochs_completed": len(history),
        **{key: last.get(key) for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss")},
        "train_time_s": train_time,
        "time_per_epoch_s": train_time / len(history) if history else None,
        "peak_memory_bytes": peak,
        "peak_memory_mib": peak / 2**20,
        "peak_memory_kind": kind,
        "history": history,
    }
    if kind == "cpu_max_rss" and rss_start is not None:
        m["rss_at_start_bytes"] = rss_start
        m["peak_rss_growth_mib"] = max(peak - rss_start, 0) / 2**20
    return m


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (``ImportError`` with the install hint if missing)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'purelearn[data]' (or pass --no-plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Loss and accuracy (train and test) per epoch, as a PNG."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric, label, scale in ((axes[0], "loss", "loss (mean per step)", 1),
                                     (axes[1], "accuracy", "accuracy (%)", 100)):
        ax.plot(epochs, [scale * h[f"train_{metric}"] for h in history], "o-", label="train")
        ax.plot(epochs, [scale * h[f"test_{metric}"] for h in history], "s-", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _mean_over(rows: list[dict[str, Any]], metric: str, **where: Any) -> float:
    """The mean of ``100 · metric`` over the rows whose values match ``where``."""
    sel = [100 * r[metric] for r in rows if all(r[k] == v for k, v in where.items())]
    return sum(sel) / len(sel)


def plot_sweep(rows: list[dict[str, Any]], axes: list[str], path: str, metric: str = "test_accuracy") -> None:
    """A heatmap of ``metric`` over two swept axes (mean over the others), or a line plot over one."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if len(axes) >= 2:
        a, b = axes[0], axes[1]
        va, vb = sorted({r[a] for r in rows}), sorted({r[b] for r in rows})
        grid = [[_mean_over(rows, metric, **{a: x, b: y}) for x in va] for y in vb]
        im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(va)), [f"{v:g}" for v in va])
        ax.set_yticks(range(len(vb)), [f"{v:g}" for v in vb])
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        lo, hi = min(map(min, grid)), max(map(max, grid))
        for j, line in enumerate(grid):
            for i, value in enumerate(line):
                bright = hi > lo and (value - lo) / (hi - lo) > 0.6
                ax.text(i, j, f"{value:.1f}", ha="center", va="center", color="k" if bright else "w", fontsize=8)
        fig.colorbar(im, ax=ax, label=f"{metric} (%)" + (" (mean over other axes)" if len(axes) > 2 else ""))
    else:
        a = axes[0]
        xs = sorted({r[a] for r in rows})
        ax.plot(xs, [_mean_over(rows, metric, **{a: x}) for x in xs], "o-")
        ax.set_xlabel(a)
        ax.set_ylabel(f"{metric} (%)")
        if len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
