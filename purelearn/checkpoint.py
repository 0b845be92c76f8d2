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

    {"format": "purelearn-checkpoint", "version": 2,
     "structure": <JSON of the encoded payload>, "tensors": [tensor, ...],
     "sha256": <hex SHA-256 of the structure and of every tensor's dtype, shape, flag and bytes>}

**Integrity.** :func:`load` recomputes the SHA-256 (:func:`digest`) and refuses a file whose
contents do not match it, so a flipped byte anywhere (in a tensor, the structure, the zip
records) is either refused with a :class:`CheckpointError` naming the file or, where the byte did
not matter (padding, a record's id), loads values identical to those saved: never other values.
Version-1 files, written before checkpoints carried a hash, still load, unverified, with a warning
once per file and process; the next :func:`save` of a resumed run writes version 2. A hand-made
file with missing keys, values of the wrong type or absurd nesting is a :class:`CheckpointError`
too, never a ``TypeError`` or ``RecursionError``.

:func:`save` writes atomically: to a temporary file ``.tmp-NAME-XXXXXXXX`` in the same folder,
``flush`` + ``fsync``, then ``os.replace`` over the destination (and an ``fsync`` of the folder),
so a crash at any point leaves either the old or the new checkpoint, never a torn one; a kill
leaves the temporary file behind, which :func:`remove_stale_temporaries` deletes (only files of
that pattern). :func:`load` turns any unreadable file into one :class:`CheckpointError` line.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import os
import re
import tempfile
import warnings
from typing import Any

import torch

__all__ = ["FORMAT", "VERSION", "READABLE", "MAX_DEPTH", "CheckpointError", "encode_tree", "decode_tree", "digest",
           "hash_bytes", "save", "load", "load_error_reason", "temporaries", "remove_files",
           "remove_stale_temporaries"]

FORMAT = "purelearn-checkpoint"
VERSION = 2
#: Versions :func:`load` reads: 1 (no hash, loaded unverified) and 2.
READABLE = (1, 2)
#: The deepest nesting of containers a checkpoint may have (a carry has fewer than 10 levels).
MAX_DEPTH = 64
_TEMPORARY = re.compile(r"\.tmp-(?P<name>.+)-[a-z0-9_]{8}")  # tempfile.mkstemp's 8 random characters
_warned_unverified: set[str] = set()


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, truncated, corrupt (its hash does not match), hand-made
    with missing keys or absurd nesting, of another format, or not fitting the run that reads it."""


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields") and hasattr(type(x), "_make")


def encode_tree(tree: Any, tensors: list[torch.Tensor]) -> Any:
    """JSON-able description of ``tree``; its tensors (detached, on CPU) are appended to ``tensors``."""
    if isinstance(tree, torch.Tensor):
        if tree.layout != torch.strided:
            raise TypeError(f"checkpoint: cannot store a {tree.layout} tensor (only dense ones)")
        tensors.append(tree.detach().cpu().resolve_conj().resolve_neg().clone())
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


def _namedtuple_class(name: Any, allowed_modules: tuple[str, ...]) -> type:
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint names a type by {name!r}, not by a string")
    module_name, _, qualname = name.rpartition(".")
    if not any(module_name == m or module_name.startswith(m + ".") for m in allowed_modules):
        raise CheckpointError(f"checkpoint names type {name!r}, outside the allowed modules {list(allowed_modules)}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        raise CheckpointError(f"checkpoint names type {name!r}, which does not exist in this version") from None
    if not (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")):
        raise CheckpointError(f"checkpoint names type {name!r}, which is not a NamedTuple")
    return obj


def _malformed(node: Any) -> CheckpointError:
    return CheckpointError(f"checkpoint structure is malformed near {str(node)[:80]!r}")


def _children(node: dict[str, Any], key: str) -> list[Any]:
    children = node.get(key)
    if not isinstance(children, list):
        raise _malformed(node)
    return children


def decode_tree(node: Any, tensors: list[torch.Tensor],
                allowed_modules: tuple[str, ...] = ("purelearn",), depth: int = 0) -> Any:
    """Inverse of :func:`encode_tree`; anything else (a missing key, a value of the wrong type, nesting
    deeper than :data:`MAX_DEPTH`) is a :class:`CheckpointError`."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"checkpoint structure is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(node, dict) or not 1 <= len(node) <= 2:
        raise _malformed(node)
    depth += 1
    if "tensor" in node:
        i = node["tensor"]
        if len(node) != 1 or isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(tensors):
            raise CheckpointError(f"checkpoint refers to tensor {i!r} of {len(tensors)}")
        return tensors[i]
    if "namedtuple" in node:
        cls = _namedtuple_class(node["namedtuple"], allowed_modules)
        fields = [decode_tree(v, tensors, allowed_modules, depth) for v in _children(node, "fields")]
        if len(fields) != len(cls._fields):
            raise CheckpointError(f"checkpoint has {len(fields)} fields for {node['namedtuple']}, "
                                  f"which has {len(cls._fields)}")
        return cls(*fields)
    if len(node) != 1:
        raise _malformed(node)
    if "dict" in node:
        items = _children(node, "dict")
        if not all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) for item in items):
            raise _malformed(node)
        return {k: decode_tree(v, tensors, allowed_modules, depth) for k, v in items}
    if "tuple" in node:
        return tuple(decode_tree(v, tensors, allowed_modules, depth) for v in _children(node, "tuple"))
    if "list" in node:
        return [decode_tree(v, tensors, allowed_modules, depth) for v in _children(node, "list")]
    if "value" in node:
        value = node["value"]
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise _malformed(node)
        return value
    raise _malformed(node)


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed a dense CPU tensor's dtype, shape, ``requires_grad`` flag and row-major bytes to ``h``."""
    if t.layout != torch.strided or t.device.type != "cpu":
        raise CheckpointError(f"checkpoint: cannot hash a {t.layout} tensor on {t.device}")
    h.update(f"{t.dtype}|{tuple(t.shape)}|{t.requires_grad}\0".encode())
    hash_bytes(h, t)


def hash_bytes(h: Any, t: torch.Tensor) -> None:
    """Feed a tensor's row-major bytes to hash ``h`` (``hashlib``), read in place, without a copy
    unless ``t`` is not contiguous or not on the cpu."""
    t = t.detach().cpu().contiguous()  # alive in this frame while its bytes are read in place
    n = t.element_size() * t.numel()
    if n:
        h.update((ctypes.c_ubyte * n).from_address(t.data_ptr()))


def digest(structure: str, tensors: list[torch.Tensor]) -> str:
    """The hex SHA-256 of a checkpoint's contents: its ``structure`` string, then per tensor its dtype,
    shape, ``requires_grad`` flag and bytes."""
    h = hashlib.sha256(FORMAT.encode() + b"\0" + structure.encode("utf-8", "surrogatepass") + b"\0")
    for t in tensors:
        _hash_tensor(h, t)
    return h.hexdigest()


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
    """Write ``payload`` (a pytree, see the module docstring) to ``path`` atomically, with its SHA-256."""
    path = os.fspath(path)
    tensors: list[torch.Tensor] = []
    structure = json.dumps(encode_tree(payload, tensors))
    blob = {"format": FORMAT, "version": VERSION, "structure": structure, "tensors": tensors,
            "sha256": digest(structure, tensors)}
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


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:(.*?)(?:Check the documentation|Please use|$)")


def load_error_reason(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one line: ``ExcType: reason``.

    torch's own message for a file holding other objects than tensors tells the reader to retry with
    ``weights_only=False``, which would run whatever code the file holds: that advice is dropped, and
    the object that was refused is named instead."""
    text = " ".join(str(err).split())
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        found = _UNSUPPORTED_GLOBAL.search(text)
        if found:
            return (f"{type(err).__name__}: it holds objects that need {found[1]}, but only tensors, dicts, lists, "
                    "tuples, numbers and strings are read from files, since other objects can run code when loaded; "
                    "convert them (a numpy array with torch.from_numpy)")
        detail = _UNPICKLER_DETAIL.search(text)
        return (f"{type(err).__name__}: torch's safe reader, which reads only tensors, dicts, lists, tuples, numbers "
                f"and strings, refused it ({detail[1].strip()[:100] if detail else 'not a torch.save file'})")
    reason = text[:160] if text else type(err).__name__
    return f"{type(err).__name__}: {reason}"


def load(path: str | os.PathLike, allowed_modules: tuple[str, ...] = ("purelearn",)) -> Any:
    """Read a checkpoint written by :func:`save`, verifying its SHA-256; any problem is a one-line
    :class:`CheckpointError` naming the file.

    Checkpoints of version 1 (written before the hash existed) load unverified, with a warning once
    per file and process.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's warnings about a damaged file's pickle: the error says it
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch raises, the file is unreadable
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({load_error_reason(err)})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a purelearn checkpoint")
    version = blob.get("version")
    if isinstance(version, bool) or version not in READABLE:
        raise CheckpointError(f"checkpoint {path} has version {version!r}; this purelearn reads "
                              f"{', '.join(map(str, READABLE))}")
    tensors, structure = blob.get("tensors"), blob.get("structure")
    if not isinstance(tensors, list) or not all(
            isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type == "cpu" for t in tensors):
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensor list is malformed")
    if not isinstance(structure, str):
        raise CheckpointError(f"checkpoint {path} is corrupt: its structure is missing or not a string")
    stored = blob.get("sha256")
    if stored is not None or version >= 2:
        if not isinstance(stored, str) or stored != digest(structure, tensors):
            raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match the SHA-256 stored in "
                                  "it (the file changed after it was written)")
    elif path not in _warned_unverified:
        _warned_unverified.add(path)
        warnings.warn(f"checkpoint {path} was written before checkpoints carried a SHA-256 (version 1): it is "
                      "loaded unverified; saving it again (a resumed run does) adds the hash", stacklevel=2)
    try:
        return decode_tree(json.loads(structure), tensors, allowed_modules)
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: {err}") from None
    except RecursionError:
        raise CheckpointError(f"checkpoint {path} is corrupt: its structure is nested too deeply") from None
    except ValueError:
        raise CheckpointError(f"checkpoint {path} is corrupt: its structure is not valid JSON") from None


def temporaries(folder: str | os.PathLike, name: str | None = None) -> list[str]:
    """The temporary files that :func:`save` writes in ``folder`` (of checkpoint ``name``, or of any),
    left behind when a process was killed mid-save."""
    folder = os.fspath(folder)
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    found = []
    for entry in sorted(entries):
        m = _TEMPORARY.fullmatch(entry)
        if m and (name is None or m["name"] == name) and os.path.isfile(os.path.join(folder, entry)):
            found.append(os.path.join(folder, entry))
    return found


def remove_files(paths: list[str]) -> list[str]:
    """Delete ``paths``; returns those that existed (a file gone meanwhile is skipped)."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[str]:
    """Delete :func:`temporaries` of ``folder``; returns their paths. Call it only while no other
    process writes there (the run folder's lock held): a live save's temporary file looks the same."""
    return remove_files(temporaries(folder, name))
