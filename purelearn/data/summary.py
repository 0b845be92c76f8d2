"""What a researcher checks before a long run: :func:`summary` of a loaded :class:`~purelearn.data.Split`."""

from __future__ import annotations

from typing import Any

import torch

from .dataset import Dataset, Split

__all__ = ["summary"]


def _describe(ds: Dataset, dropped: dict[str, int] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"samples": len(ds), "bytes": ds.nbytes}
    if not isinstance(ds.x, torch.Tensor):  # compact events: spikes per sample, after binning
        spikes = ds.x.spikes_per_sample().double()
        row["spikes_per_sample"] = (spikes.mean().item(), int(spikes.min()), int(spikes.max())) if len(ds) else None
        row["empty_samples"] = int((spikes == 0).sum())
    if dropped is not None:
        row.update(dropped)
    return row


def summary(split: Split) -> dict[str, Any]:
    """Per set (train, valid, test): samples, resident bytes, binned spikes per sample (mean, min,
    max), empty samples and dropped spikes; and the classes, T, the binning and the cache."""
    dropped = split.info.get("dropped", {})
    sets = {name: _describe(ds, dropped.get(name)) for name, ds in
            (("train", split.train), ("valid", split.valid), ("test", split.test)) if ds is not None}
    return {"name": split.name, "title": split.info.get("title", split.name), "num_classes": split.num_classes,
            "classes": list(split.classes), "T": split.train.T, "encoding": split.train.encoding,
            "step_shape": list(split.train.step_shape), "sets": sets,
            "resident_bytes": sum(row["bytes"] for row in sets.values()),
            **{k: split.info[k] for k in ("dt", "span", "span_rule", "cache", "cache_hit", "files", "options")
               if k in split.info}}
