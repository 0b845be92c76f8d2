"""Resident size and binning time of SHD- or SSC-sized spike data, generated (no files needed).

    python benchmarks/data_size.py shd      # 8,156 + 2,264 samples
    python benchmarks/data_size.py ssc      # 75,466 + 9,981 + 20,382 samples (about half an hour on one thread)

randman with 700 units firing ``--spikes-per-unit`` times each (default 14: 9,800 spikes per sample, an
assumed figure for the real files), binned into T=100 frames of 10 ms, chunk by chunk as the SHD reader
does; prints the resident bytes of the compact counts beside dense float32 / uint8, the binning time,
and (shd) the time to build one epoch of dense training batches [100, 64, 700]. One torch thread.
"""

from __future__ import annotations

import argparse
import time

import torch

from purelearn import data
from purelearn.data import spikes

SIZES = {"shd": (8156 + 2264, 8156, 20), "ssc": (75466 + 9981 + 20382, 75466, 35)}
CHUNK = 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("size", choices=tuple(SIZES))
    parser.add_argument("--spikes-per-unit", type=int, default=14)
    parser.add_argument("--T", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, n_train, classes = SIZES[args.size]
    per_sample = 700 * args.spikes_per_unit
    parts, binning = [], 0.0
    for i, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        raw = data.randman(classes=classes, units=700, samples=-(-m // classes), spikes=args.spikes_per_unit, seed=i)
        raw = data.Spikes(raw.times[:m * per_sample], raw.units[:m * per_sample], raw.lengths[:m], raw.labels[:m])
        t0 = time.perf_counter()
        parts.append(data.bin_spikes(raw, args.T, 1.0 / args.T, 700)[0])
        binning += time.perf_counter() - t0
    counts = spikes.concat(parts)
    dense = n * args.T * 700
    print(f"{args.size}-sized: {n} samples, {per_sample} spikes and {int(counts.lengths.sum()) / n:.0f} non-zero "
          f"(frame, unit) pairs per sample; resident {counts.nbytes / 2**20:.1f} MiB "
          f"({counts.nbytes / n / 1024:.1f} KiB per sample); dense float32 {4 * dense / 2**30:.1f} GiB, "
          f"uint8 {dense / 2**30:.2f} GiB; binning {binning:.1f} s")
    if args.size == "shd":
        train = data.Dataset(counts[:n_train], torch.zeros(n_train, dtype=torch.int64), data.EVENTS, args.T)
        t0 = time.perf_counter()
        for _ in data.batches(train, 64, torch.Generator().manual_seed(0)):
            pass
        elapsed = time.perf_counter() - t0
        print(f"one epoch of dense batches [{args.T}, 64, 700] from {n_train} samples: {elapsed:.2f} s")


if __name__ == "__main__":
    main()
