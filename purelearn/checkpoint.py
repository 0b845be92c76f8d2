"""Checkpoints: whole training carries in a file that ``torch.load(weights_only=True)`` reads back.

A carry is a pytree of named tuples (``FPTTCarry``, ``AdamState``, ``LIFState``, ...), dicts, tuples,
``None`` and tensors. :func:`encode_tree` turns it into plain data: a JSON description of the
structure whose tensor leaves are replaced by indices into a flat list of tensors::

    {"tensor": 3}                                   a tensor (the 4th in the list)
    {"dict": [[key, node], ...]}                    a dict (insertion order kept)
    {"namedtuple": "purelearn.online.fptt.FPTTCarry", "fields": [node, ...]}
    {"tuple": [node, ...]} / {"list": [node, ...]}
    {"value": v}                                    None, a bool, int, float or str

:func:`decode_tree` rebuilds it; named-tuple types are looked up by module and name and must be
``typing.NamedTuple`` classes of a module under ``purelearn`` (or one listed in
``allowed_modules``) — no arbitrary class is ever instantiated from a file.

File layout (``torch.save`` of a dict of plain types)::

    {"format": "purelearn-checkpoint", "version": 1,
     "structure": <JSON of the encoded payload>, "tensors": [tensor, ...]}

:func:`save` writes atomically: to a temporary file in the same folder, ``flush`` + ``fsync``, then
``os.replace`` over the destination (and an ``fsync`` of the folder), so a crash at any point
leaves either the old or the new checkpoint, never a torn one. :func:`load` turns any unreadable
file into one :class:`CheckpointError` line.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from typing import Any

import torch

__all__ = ["FORMAT", "VERSION", "CheckpointError", "encode_tree", "decode_tree", "save", "load"]

FORMAT = "purelearn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, truncated, corrupt or of another format."""


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields") and hasattr(type(x), "_make")


def encode_tree(tree: Any, tensors: list[torch.Tensor]) -> Any:
    """JSON-able description of ``tree``; its tensors (detached, on CPU) are appended to ``tensors``."""
    if isinstance(tree, torch.Tensor):
        tensors.append(tree.detach().cpu().clone())
        return {"tensor": len(tensors) - 1}
    if _is_namedtuple(tree):
        cls = type(tree)
        return {"namedtuple": f"{cls.__module__}.{cls.__qualname__}",
                "fields": [encode_tree(v, tensors) for v in tree]}
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str):
                raise TypeError(f"checkpoint: dict keys must be strings, got {k!r}")
        return {"dict": [[k, encode_tree(v, tensors)] for k, v in tree.items()]}
    if isinstance(tree, tuple):
        return {"tuple": [encode_tree(v, tensors) for v in tree]}
    if isinstance(tree, list):
        return {"list": [encode_tree(v, tensors) for v in tree]}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return {"value": tree}
    raise TypeError(f"checkpoint: cannot store a {type(tree).__name__} (only tensors, dicts, tuples, "
                    "named tuples, lists, None, numbers and strings)")


def _namedtuple_class(name: str, allowed_modules: tuple[str, ...]) -> type:
    module_name, _, qualname = name.rpartition(".")
    if not any(module_name == m or module_name.startswith(m + ".") for m in allowed_modules):
        raise CheckpointError(f"checkpoint names type {name!r}, outside the allowed modules {list(allowed_modules)}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise CheckpointError(f"checkpoint names type {name!r}, which does not exist in this version") from None
    if not (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")):
        raise CheckpointError(f"checkpoint names type {name!r}, which is not a NamedTuple")
    return obj


def decode_tree(node: Any, tensors: list[torch.Tensor],
                allowed_modules: tuple[str, ...] = ("purelearn",)) -> Any:
    """Inverse of :func:`encode_tree`."""
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise CheckpointError(f"checkpoint structure is malformed near {str(node)[:80]!r}")
    if "tensor" in node:
        i = node["tensor"]
        if not isinstance(i, int) or not 0 <= i < len(tensors):
            raise CheckpointError(f"checkpoint refers to tensor {i!r} of {len(tensors)}")
        return tensors[i]
    if "namedtuple" in node:
        cls = _namedtuple_class(node["namedtuple"], allowed_modules)
        fields = [decode_tree(v, tensors, allowed_modules) for v in node["fields"]]
        if len(fields) != len(cls._fields):
            raise CheckpointError(f"checkpoint has {len(fields)} fields for {node['namedtuple']}, "
                                  f"which has {len(cls._fields)}")
        return cls(*fields)
    if "dict" in node:
        return {k: decode_tree(v, tensors, allowed_modules) for k, v in node["dict"]}
    if "tuple" in node:
        return tuple(decode_tree(v, tensors, allowed_modules) for v in node["tuple"])
    if "list" in node:
        return [decode_tree(v, tensors, allowed_modules) for v in node["list"]]
    if "value" in node:
        return node["value"]
    raise CheckpointError(f"checkpoint structure is malformed near {str(node)[:80]!r}")


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` (a pytree, see the module docstring) to ``path`` atomically."""
    path = os.fspath(path)
    tensors: list[torch.Tensor] = []
    blob = {"format": FORMAT, "version": VERSION,
            "structure": json.dumps(encode_tree(payload, tensors)), "tensors": tensors}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def load(path: str | os.PathLike, allowed_modules: tuple[str, ...] = ("purelearn",)) -> Any:
    """Read a checkpoint written by :func:`save`; any problem is a one-line :class:`CheckpointError`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch raises, the file is unreadable
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {reason})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a purelearn checkpoint")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {blob.get('version')!r}; this purelearn reads {VERSION}")
    tensors = blob.get("tensors")
    if not isinstance(tensors, list) or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensor list is malformed")
    try:
        structure = json.loads(blob["structure"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"checkpoint {path} is corrupt: its structure is not valid JSON") from None
    return decode_tree(structure, tensors, allowed_modules)
