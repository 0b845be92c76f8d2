"""Learning on generated SHD-layout data where only spike timing tells the classes apart.

Writes randman data (``purelearn.data.write_randman_shd``: 700 units, every unit firing the same
number of times in every sample) as ``shd_train.h5`` / ``shd_test.h5`` into a fresh temporary folder,
then runs ``purelearn train --data shd:DIR --algo A --epochs E`` with the command line's defaults for
each learner that trains the default ``srnn`` model, each in its own process, and prints a table of
test accuracy and seconds per epoch. Two controls:

- **chance**: 1 / classes;
- **time ignored**: a softmax regression on each sample's spike counts per unit summed over the
  frames, fitted on the training set (full batch, Adam, 300 steps). By construction every unit fires
  ``spikes`` times in every sample, so this sits at chance; if it did not, the data would leak.

**Real SHD, estimated**: the real training set has 8,156 samples, 700 units and 20 classes; binned
into the default T = 100 frames, a batch costs the same dense compute whatever the spike density,
so the estimate is the measured seconds per epoch scaled by 8,156 / (training samples here). It is
an estimate from these figures, not a measurement on the real files.

Usage: ``python benchmarks/shd_learning.py [--classes 20] [--samples 60] [--epochs 10]
[--algos fptt,fptt-dual,sltt,sltt-k,bptt] [--out results.json] [--quick]``. One torch thread per
run (the command line's default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from purelearn import data

SHD_TRAIN_SAMPLES = 8156
ALGOS = ("fptt", "fptt-dual", "sltt", "sltt-k", "bptt")


def time_ignored_accuracy(split: data.Split, steps: int = 300, seed: int = 0) -> float:
    """Test accuracy of a softmax regression on spike counts summed over the frames (time ignored)."""
    torch.manual_seed(seed)

    def counts(ds: data.Dataset) -> torch.Tensor:
        return ds.x.dense().sum(0)  # [N, units]

    x_train, x_test = counts(split.train), counts(split.test)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    w = torch.zeros(x_train.shape[1], split.num_classes, requires_grad=True)
    b = torch.zeros(split.num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(x_train @ w + b, split.train.y).backward()
        opt.step()
    with torch.no_grad():
        return float(((x_test @ w + b).argmax(1) == split.test.y).float().mean())


def train(folder: Path, algo: str, epochs: int, out: Path, extra: list[str]) -> dict:
    """One ``purelearn train`` run with its defaults; its metrics.json."""
    cmd = [sys.executable, "-m", "purelearn", "train", "--data", f"shd:{folder}", "--algo", algo,
           "--epochs", str(epochs), "--out", str(out), "--no-plot", "--quiet", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PURELEARN_CACHE_DIR": str(folder / "cache")})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--samples", type=int, default=60, help="samples per class (80 %% train, 20 %% test)")
    p.add_argument("--spikes", type=int, default=2, help="spikes per unit per sample")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, fptt and bptt: a smoke test")
    args = p.parse_args()
    options = dict(classes=args.classes, units=data.UNITS, samples=args.samples, spikes=args.spikes)
    algos, epochs, extra = args.algos.split(","), args.epochs, []
    if args.quick:
        options.update(classes=3, units=40, samples=8)
        algos, epochs, extra = ["fptt", "bptt"], 1, ["--T", "20"]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data.write_randman_shd(folder, **options)
        split = data.load(f"shd:{folder},cache=none", T=20 if args.quick else None)
        rows = {"chance": {"test_accuracy": 1 / options["classes"]},
                "time ignored": {"test_accuracy": time_ignored_accuracy(split)}}
        for algo in algos:
            start = time.perf_counter()
            m = train(folder, algo, epochs, folder / "runs" / algo, extra)
            rows[algo] = {"test_accuracy": m["test_accuracy"], "time_per_epoch_s": m["time_per_epoch_s"],
                          "estimated_real_shd_epoch_s": m["time_per_epoch_s"] * SHD_TRAIN_SAMPLES / len(split.train),
                          "peak_rss_growth_mib": m["peak_rss_growth_mib"], "wall_s": time.perf_counter() - start,
                          "config": m["config"]}
    meta = {"data": {**options, "train": len(split.train), "test": len(split.test), "T": split.train.T,
                     "spikes_per_sample": options["units"] * options["spikes"]},
            "epochs": epochs, "threads": 1, "torch": torch.__version__, "quick": args.quick}
    print(f"generated SHD-layout data: {options['classes']} classes, {len(split.train)} train / {len(split.test)} "
          f"test samples, {options['units']} units x {options['spikes']} spikes, T = {split.train.T}; "
          f"{epochs} epochs, `purelearn train` defaults, 1 thread")
    print("| learner | test accuracy | s/epoch here | real SHD s/epoch (estimate) | peak RSS growth |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        if "time_per_epoch_s" not in r:
            print(f"| {name} | {100 * r['test_accuracy']:.1f} % | | | |")
            continue
        print(f"| {name} | {100 * r['test_accuracy']:.1f} % | {r['time_per_epoch_s']:.1f} | "
              f"~{r['estimated_real_shd_epoch_s']:.0f} | {r['peak_rss_growth_mib']:.0f} MiB |")
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
