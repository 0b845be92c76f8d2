"""The on-disk cache of prepared (binned) data, so that a data set is binned once, not every run.

An entry is keyed by the data's files (absolute path, size and modification time of each) and the
options that shaped it; changing a file or an option makes a new entry. It lives in
``CACHE_DIR/PREFIX-HASH.pt`` (HASH: the key's SHA-256), written atomically through
:func:`purelearn.checkpoint.save`. A file in its place that is not a purelearn data cache is never
overwritten: the data are then prepared again (with a warning), and not cached.
The folder is ``$PURELEARN_CACHE_DIR``, else ``$XDG_CACHE_HOME/purelearn``, else
``~/.cache/purelearn`` (:func:`default_dir`); nothing is ever written next to the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

from .. import checkpoint

__all__ = ["FORMAT", "default_dir", "files_key", "entry", "load", "save"]

_PREFIX = "purelearn-data-cache"

FORMAT = f"{_PREFIX}-1"


def default_dir() -> str:
    """``$PURELEARN_CACHE_DIR``, else ``$XDG_CACHE_HOME/purelearn``, else ``~/.cache/purelearn``."""
    if os.environ.get("PURELEARN_CACHE_DIR"):
        return os.environ["PURELEARN_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "purelearn")


def files_key(paths: Sequence[str]) -> list[list[Any]]:
    """``[absolute path, size, mtime_ns]`` of each file: the part of a key that changes with the files."""
    return [[os.path.abspath(p), os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths]


def entry(directory: str, prefix: str, key: dict[str, Any]) -> str:
    """The cache file of ``key`` in ``directory``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return os.path.join(directory, f"{prefix}-{digest}.pt")


def _read(path: str) -> Any:
    try:
        return checkpoint.load(path)
    except checkpoint.CheckpointError:
        return None


def _ours(blob: Any) -> bool:
    return isinstance(blob, dict) and str(blob.get("format", "")).startswith(_PREFIX)


def load(path: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The payload cached at ``path`` for ``key``, or ``None`` (no entry, another version or key, not ours)."""
    blob = _read(path) if os.path.isfile(path) else None
    if not _ours(blob) or blob.get("format") != FORMAT or blob.get("key") != json.dumps(key, sort_keys=True):
        return None
    return blob["payload"]


def save(path: str, key: dict[str, Any], payload: Any) -> bool:
    """Write ``payload`` for ``key`` to ``path`` atomically; ``False`` (and a warning) if it cannot, or if
    ``path`` holds a file that is not a purelearn data cache (it is left as it is)."""
    if os.path.exists(path) and not _ours(_read(path)):
        warnings.warn(f"{path} exists and is not a purelearn data cache; it is left as it is and the data are "
                      "not cached (pass another cache=DIR)", stacklevel=3)
        return False
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        checkpoint.save(path, {"format": FORMAT, "key": json.dumps(key, sort_keys=True), "payload": payload})
    except OSError as err:
        warnings.warn(f"could not write the data cache {path} ({err}); the data will be binned again next time",
                      stacklevel=3)
        return False
    return True
