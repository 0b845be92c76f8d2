"""The handwritten digits of scikit-learn, bundled with it (no network).

``sklearn.datasets.load_digits``: 1,797 images of 8×8 pixels with intensities 0..16, ten classes.
Pixels are scaled to [0, 1] (``intensity / 16``) and kept as images [N, 1, 8, 8]. The split is
fixed: ``torch.randperm(1797, generator=torch.Generator().manual_seed(0))``, its first 1,437 indices
are the training set and the last 360 the test set (:func:`digits_split`). ``"digits"`` is the rate
code (T=16 by default), ``"seq-digits"`` one pixel per step (T=64, the small analogue of sequential
MNIST).
"""

from __future__ import annotations

from typing import Any

import torch

from .dataset import Dataset, Split, seeded_split

__all__ = ["DIGITS_SIZE", "DIGITS_TRAIN", "DIGITS_TEST", "load_digits_images", "digits_split", "load_digits"]

DIGITS_SIZE, DIGITS_TRAIN, DIGITS_TEST = 1797, 1437, 360



def _import_sklearn_digits() -> Any:
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError(
            "the digits data set needs scikit-learn: pip install 'purelearn[data]' (or scikit-learn)"
        ) from None
    return sk_load_digits


def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as images [1797, 1, 8, 8] float32 in [0, 1] and labels [1797] int64."""
    bunch = _import_sklearn_digits()()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return x, y


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed digits split: (train indices [1437], test indices [360]) of a seed-0 permutation."""
    return seeded_split(DIGITS_SIZE, DIGITS_TRAIN)


def load_digits(encoding: str = "rate", T: int | None = None) -> Split:
    """The digits with the fixed split. ``"rate"``: T=16 by default; ``"sequential"``: T=64."""
    if encoding not in ("rate", "sequential"):
        raise ValueError(f"load_digits: encoding must be 'rate' or 'sequential', got {encoding!r}")
    if encoding == "sequential":
        if T not in (None, 64):
            raise ValueError(f"the sequential digits have T=64 (one step per pixel), got T={T}")
        T = 64
    T = 16 if T is None else T
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    x, y = load_digits_images()
    train, test = digits_split()
    name = "digits" if encoding == "rate" else "seq-digits"
    return Split(name, Dataset(x[train], y[train], encoding, T), Dataset(x[test], y[test], encoding, T), 10)
