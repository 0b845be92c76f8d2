"""One process per run folder: the lock file ``.purelearn.lock``.

    with lock.hold("runs/fptt"):      # RunInUseError if another process holds the folder
        ...                           # train, write checkpoints; released at exit, also on exceptions

:func:`acquire` opens (or creates) ``DIR/.purelearn.lock`` and takes an exclusive, non-blocking
``fcntl.flock`` on it, then writes the owner into it (pid, host, start time) for the message a
second process gets. The kernel drops a flock when its process ends, however it ends (``kill -9``
included), so a lock file that a crash left behind is stale by construction: the next run takes
it over and warns, naming the owner that no longer runs. :meth:`Lock.release` removes the file
while still holding the lock; an acquirer that opened the old file meanwhile sees that the path
no longer names its file and starts over, so two processes never both hold a folder.

Where ``flock`` is not supported (some network filesystems), the owner's pid decides: a lock whose
pid no longer exists on this host is taken over with the same warning; one of a live pid, or of
another host (whose pids cannot be checked), is respected.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import warnings
from collections.abc import Iterator
from typing import Any

from .errors import RunInUseError

__all__ = ["LOCK_FILE", "Lock", "acquire", "hold", "owner_of"]

LOCK_FILE = ".purelearn.lock"


class Lock:
    """A held run-folder lock: the open lock file ``fd`` at ``path``."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock; idempotent."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.fd, self.path):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = -1


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read(fd: int) -> dict[str, Any] | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        if not text.strip():
            return None  # just created (by us, or by a process that has not written its pid yet)
        owner = json.loads(text)
    except (OSError, ValueError):
        return {}  # unreadable: a lock nonetheless
    return owner if isinstance(owner, dict) else {}


def owner_of(folder: str) -> dict[str, Any] | None:
    """What the lock file of ``folder`` says about its owner (None: no lock file)."""
    try:
        fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "owner unknown"
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, since {owner.get('started', '?')}"


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the owner may still run: its pid exists on this host, or it is on another host."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname():
        return True
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this filesystem has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def acquire(folder: str) -> Lock:
    """Lock run folder ``folder`` (which must exist) for this process; :class:`RunInUseError` (one
    line: the folder and its owner) if another process holds it."""
    path = os.path.join(folder, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _try_flock(fd)
            previous = _read(fd)
            if locked is False or (locked is None and previous is not None and _alive(previous)):
                raise RunInUseError(f"run folder {folder} is in use by another purelearn process "
                                    f"({_describe(previous)}); wait for it to end, or use another folder")
            if not _same_file(fd, path):  # its owner removed it while we opened it: start over
                os.close(fd)
                continue
            if previous is not None:
                warnings.warn(f"took over the lock of run folder {folder} from a process that no longer runs "
                              f"({_describe(previous)}; killed or crashed)", stacklevel=2)
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.datetime.now().isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
            return Lock(path, fd)
        except BaseException:
            os.close(fd)
            raise


@contextlib.contextmanager
def hold(folder: str) -> Iterator[Lock]:
    """``with hold(folder):`` the folder is this process's; released at the end, also on exceptions."""
    lock = acquire(folder)
    try:
        yield lock
    finally:
        lock.release()
