"""Compare algorithms: one :func:`~purelearn.app.loop.fit` per algorithm, each in a fresh process.

    configs = compare.configs_for(Config(data="seq-digits", epochs=30))   # every algorithm that trains the model
    rows = compare.compare(configs, "runs/compare-seq")                   # compare.csv, compare.json

Each run is spawned (``multiprocessing`` context ``"spawn"``), so the peak memory in its metrics is
that algorithm's alone; its folder is ``out_dir/ALGO``. A run that fails is a row with its error.
``out_dir`` is locked while the comparison runs (and each ``out_dir/ALGO`` by its run); earlier
results in ``out_dir`` or any ``out_dir/ALGO`` are refused before any training unless ``overwrite``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import multiprocessing
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .. import data
from . import lock, memory, registry, report
from .config import Config
from .errors import ConfigError

__all__ = ["FIELDS", "default_algorithms", "configs_for", "compare"]

#: The columns of ``compare.csv``.
FIELDS = ["algo", "model", "test_accuracy", "train_time_s", "time_per_epoch_s", "peak_memory_mib",
          "peak_rss_growth_mib", "peak_memory_kind", "epochs", "lr", "T", "error"]


def default_algorithms(config: Config) -> list[str]:
    """Every algorithm that can train ``config``'s model (by default the one for its data's encoding)."""
    model = config.model
    if model is None:
        model = registry.default_model(data.load(config.data, config.T).train.encoding)
    return registry.algorithms_for(model)


def configs_for(base: Config, algos: Sequence[str] | None = None) -> list[Config]:
    """``base`` once per algorithm (default: :func:`default_algorithms`); an option that only some
    algorithms take (``alpha``, ``beta``, ``window``, ``k``, ...: :data:`registry.OPTIONS`) is kept for
    those and cleared for the others."""
    algos = default_algorithms(base) if algos is None else list(algos)
    for algo in algos:
        registry.algorithm(algo)
    return [dataclasses.replace(base, algo=algo, **{name: None for name in _options_refused_by(algo)})
            for algo in algos]


def _options_refused_by(algo: str) -> set[str]:
    return {name for name in registry.OPTIONS if not registry.takes(algo, name)}


def _fit_in_child(config: dict[str, Any], out_dir: str, progress: bool, plot: bool, threads: int,
                  overwrite: bool = False) -> dict[str, Any]:
    """Run in the spawned process: ``fit`` with ``threads`` torch threads, its metrics (progress on the
    child's stderr)."""
    import torch

    from .loop import fit

    torch.set_num_threads(threads)
    return fit(Config.from_dict(config), out_dir, stream=sys.stderr if progress else None, plot=plot,
               overwrite=overwrite).metrics


def _row(algo: str, m: dict[str, Any]) -> dict[str, Any]:
    return {"algo": algo, "model": m["config"]["model"], "test_accuracy": m["test_accuracy"],
            "train_time_s": m["train_time_s"], "time_per_epoch_s": m["time_per_epoch_s"],
            "peak_memory_mib": m["peak_memory_mib"], "peak_memory_kind": m["peak_memory_kind"],
            "peak_rss_growth_mib": m.get("peak_rss_growth_mib"), "epochs": m["epochs_completed"],
            "lr": m["config"]["lr"], "T": m["data"]["T"]}


def _refuse_earlier_results(configs: Sequence[Config], out_dir: str) -> None:
    """``ConfigError`` on ``out_dir`` naming the first folder that holds results: ``out_dir`` itself
    (``compare.json``) or a run folder ``out_dir/ALGO`` (``checkpoint.pt``, ``metrics.json``)."""
    folders = [(out_dir, (report.COMPARE,))] + [(os.path.join(out_dir, c.algo), (report.CHECKPOINT, report.METRICS))
                                                for c in configs]
    for folder, names in folders:
        found = report.run_files(folder, names)
        if found:
            raise ConfigError("out_dir", f"`out_dir` {out_dir}: {folder} already holds results ({', '.join(found)}); "
                                         "pass `overwrite` to replace them, or choose another `out_dir`")


def compare(configs: Sequence[Config], out_dir: str, *, stream: TextIO | None = None, plot: bool = True,
            threads: int = 1, overwrite: bool = False) -> list[dict[str, Any]]:
    """Fit each config in a fresh process into ``out_dir/ALGO`` and tabulate the metrics.

    Returns one row per config: accuracy, time, peak memory, ... or ``{"algo", "error"}`` for a run
    that failed. Each process runs ``threads`` torch threads. ``stream`` gets a header line per run,
    and the runs' progress goes to stderr.
    Writes ``compare.csv`` and ``compare.json`` (with every config) to ``out_dir``. Earlier results in
    ``out_dir`` or an ``out_dir/ALGO`` are refused (``ConfigError`` on ``out_dir``, before any
    training) unless ``overwrite``, and so is a config that is invalid or too large for the memory
    (:mod:`purelearn.app.memory`); ``out_dir`` is locked while the runs go on.
    """
    from .loop import setup  # the parent stays light: only the runs train

    for config in configs:
        config.validate()
        try:
            setup(config)  # its memory estimated: a run too large is refused before any run starts
        except memory.TooLarge:
            raise
        except Exception:  # noqa: BLE001 - any other problem of a run is that run's row
            pass
    report.check_out_dir(out_dir)
    with lock.hold(out_dir):
        if not overwrite:
            _refuse_earlier_results(configs, out_dir)
        return _compare(configs, out_dir, stream, plot, threads, overwrite)


def _compare(configs: Sequence[Config], out_dir: str, stream: TextIO | None, plot: bool, threads: int,
             overwrite: bool) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    rows = []
    for config in configs:
        run_dir = os.path.join(out_dir, config.algo)
        if stream is not None:
            stream.write(f"== {config.algo}: {run_dir}\n")
            stream.flush()
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            future = pool.submit(_fit_in_child, config.to_dict(), run_dir, stream is not None, plot, threads, overwrite)
            try:
                rows.append(_row(config.algo, future.result()))
            except Exception as err:  # noqa: BLE001 - any failure of one run is that row's error
                message = " ".join(str(err).split()) or type(err).__name__
                rows.append({"algo": config.algo, "error": message})
                if stream is not None:
                    stream.write(f"== {config.algo} failed: {message}\n")
    with report.writing(os.path.join(out_dir, "compare.*"), f"each run's own results are in {out_dir}/ALGO"):
        report.write_csv(os.path.join(out_dir, "compare.csv"), FIELDS, rows)
        report.write_json(os.path.join(out_dir, report.COMPARE),
                          {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                           "configs": {config.algo: config.to_dict() for config in configs}, "rows": rows})
    return rows
