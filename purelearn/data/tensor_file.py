"""User data files: a ``torch.save`` of a dict.

    torch.save({"x": x, "y": y, "encoding": "rate"}, "mydata.pt")

- ``x``: a floating tensor, either [N, T, ...] already encoded (``encoding="none"``, the default;
  at least 3 dimensions, [N, T, features...]) or [N, ...] images to encode with ``"rate"``
  (values must lie in [0, 1]; they are spike probabilities) or ``"sequential"``.
- ``y``: int64 class labels [N], values in 0..C−1 (C = ``y.max() + 1`` classes, at most
  :data:`MAX_CLASSES`).
- optional ``x_test``, ``y_test``: a test set of the same layout. Without them the file's samples
  are split by the seeded permutation ``torch.randperm(N, generator=torch.Generator().manual_seed(0))``:
  the first ``round(0.8·N)`` for training, the rest for testing.

A wrong layout raises ``ValueError`` naming the key, what was expected and what was found; so does
a tensor that is not dense and on the CPU with values (a sparse or quantized one, one saved from the
``meta`` device, which holds no values). The file is read with ``torch.load(weights_only=True)``:
plain tensors, strings and numbers only; a file holding other objects (numpy arrays, classes) is
refused naming the object, never with the advice to load it unsafely.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from ..checkpoint import load_error_reason
from .dataset import Dataset, Split, seeded_split
from .encodings import ENCODINGS

__all__ = ["USER_TRAIN_FRACTION", "MAX_CLASSES", "load_tensor_file"]

USER_TRAIN_FRACTION = 0.8
#: The most classes a data file may have (labels 0..2**24 − 1): a label beyond it is a mistake (a
#: float bit pattern, an id instead of an index), not a class of a readout layer.
MAX_CLASSES = 2**24


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _check_dense(path: str, key: str, value: Any) -> None:
    """``ValueError`` unless a tensor ``value`` is dense (strided) and holds values on the CPU."""
    if not isinstance(value, torch.Tensor):
        return
    if value.layout != torch.strided:
        layout = str(value.layout).removeprefix("torch.")
        raise ValueError(f"{path}: key {key!r} must be a dense tensor, got a {layout} tensor of shape "
                         f"{list(value.shape)}; save it with .to_dense()")
    if value.device.type == "meta":
        raise ValueError(f"{path}: key {key!r} was saved from the meta device: it has a shape "
                         f"({list(value.shape)}) but no values; save the tensor itself")
    if value.device.type != "cpu" or value.is_quantized:
        kind = "a quantized" if value.is_quantized else "a"
        raise ValueError(f"{path}: key {key!r} must be a plain CPU tensor, got {kind} tensor on {value.device}")


def _check_pair(path: str, x: Any, y: Any, encoding: str, xkey: str, ykey: str) -> None:
    _check_dense(path, xkey, x)
    _check_dense(path, ykey, y)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{path}: key {xkey!r} must be a floating-point tensor, got {_describe(x)}")
    if encoding == "none" and x.dim() < 3:
        raise ValueError(f"{path}: key {xkey!r} with encoding 'none' must be [N, T, features...] "
                         f"(at least 3 dimensions), got shape {list(x.shape)}")
    if encoding != "none" and x.dim() < 2:
        raise ValueError(f"{path}: key {xkey!r} with encoding {encoding!r} must be [N, features...] "
                         f"(at least 2 dimensions), got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{path}: key {xkey!r} must hold at least one sample, got shape {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{path}: key {xkey!r} must be finite, got NaN or infinite values")
    if encoding == "rate" and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{path}: key {xkey!r} with encoding 'rate' must hold spike probabilities in "
                         f"[0, 1], got values in [{x.min().item():g}, {x.max().item():g}]")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise ValueError(f"{path}: key {ykey!r} must be an int64 tensor of labels [N], got {_describe(y)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{path}: key {ykey!r} must have one label per sample of {xkey!r} "
                         f"(N={x.shape[0]}), got {y.shape[0]} labels")
    if y.min() < 0:
        raise ValueError(f"{path}: key {ykey!r} must hold class labels >= 0, got {y.min().item()}")
    if y.max() >= MAX_CLASSES:
        raise ValueError(f"{path}: key {ykey!r} must hold class labels 0..{MAX_CLASSES - 1} (at most {MAX_CLASSES} "
                         f"classes, 2**24), got {y.max().item()} at sample {int(y.argmax())}")


def load_tensor_file(path: str | os.PathLike, T: int | None = None) -> Split:
    """Load a user data file (layout in the module docstring); ``T`` for the rate encoding (16)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign pickle: the error says it
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one clear message
        reason = load_error_reason(err)
        raise ValueError(f"{path}: not a readable torch.save file of plain tensors ({reason})") from None
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: expected a dict with keys 'x', 'y' and optionally 'encoding', "
                         f"'x_test', 'y_test'; got {_describe(blob)}")
    allowed = {"x", "y", "encoding", "x_test", "y_test"}
    extra = sorted(set(map(str, blob)) - allowed)
    if extra:
        raise ValueError(f"{path}: unknown key(s) {extra}; expected keys {sorted(allowed)}")
    for key in ("x", "y"):
        if key not in blob:
            raise ValueError(f"{path}: key {key!r} is missing; expected keys 'x' [N, ...] and 'y' [N]")
    encoding = blob.get("encoding", "none")
    if encoding not in ENCODINGS:
        raise ValueError(f"{path}: key 'encoding' must be one of {list(ENCODINGS)}, got {encoding!r}")
    if ("x_test" in blob) != ("y_test" in blob):
        raise ValueError(f"{path}: keys 'x_test' and 'y_test' go together; got only "
                         f"{'x_test' if 'x_test' in blob else 'y_test'!r}")
    x, y = blob["x"], blob["y"]
    _check_pair(path, x, y, encoding, "x", "y")
    if encoding == "sequential" and T is not None and T != x[0].numel():
        raise ValueError(f"{path}: the sequential encoding has one step per feature, T={x[0].numel()}; "
                         f"got T={T}")
    if encoding == "rate":
        T = 16 if T is None else T
    elif encoding == "sequential":
        T = x[0].numel()
    else:
        if T is not None and T != x.shape[1]:
            raise ValueError(f"{path}: key 'x' is already encoded with T={x.shape[1]}; got T={T}")
        T = x.shape[1]
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    x = x.float()
    if "x_test" in blob:
        xt, yt = blob["x_test"], blob["y_test"]
        _check_pair(path, xt, yt, encoding, "x_test", "y_test")
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"{path}: key 'x_test' must have the per-sample shape of 'x', "
                             f"{list(x.shape[1:])}, got {list(xt.shape[1:])}")
        train, test = Dataset(x, y, encoding, T), Dataset(xt.float(), yt, encoding, T)
        labels = torch.cat([y, yt])
    else:
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"{path}: key 'x' needs at least 2 samples to split into train and test, got {n}")
        n_train = min(max(round(USER_TRAIN_FRACTION * n), 1), n - 1)
        tr, te = seeded_split(n, n_train)
        full = Dataset(x, y, encoding, T)
        train, test = full.subset(tr), full.subset(te)
        labels = y
    name = os.path.basename(path)
    return Split(name, train, test, int(labels.max().item()) + 1)
