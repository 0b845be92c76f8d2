"""The application's error types, and what the command line makes of each.

================== ============================================================= ==================
``ConfigError``     a configuration value that is not allowed (names its field)   one line, exit 2
``RunInUseError``   the run folder is locked by another live process              one line, exit 2
``DivergedError``   training reached a non-finite loss or carry; stopped          one line, exit 3
``StorageError``    an output could not be written (disk full, read-only, ...)    one line, exit 4
================== ============================================================= ==================

A checkpoint that cannot be used is :class:`purelearn.checkpoint.CheckpointError` (one line, exit 2).
Under ``torchrun``: ranks whose params or optimizer state differ,
:class:`purelearn.distributed.RanksDisagree` (one line from rank 0, exit 1); a collective that failed
because another rank stopped, :class:`purelearn.distributed.CollectiveFailed` (one line, exit 1).
"""

from __future__ import annotations

import errno
import os

from ..distributed import RanksDisagree

__all__ = ["ConfigError", "RunInUseError", "DivergedError", "StorageError", "describe_os_error", "exit_code",
           "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_STORAGE"]

#: Exit codes of the command line: a mistake in the arguments, data, a checkpoint or a run folder; a
#: run that diverged; an output that could not be written.
EXIT_USAGE, EXIT_DIVERGED, EXIT_STORAGE = 2, 3, 4


class ConfigError(ValueError):
    """A value of configuration field ``field`` that is not allowed.

    The message names fields in backticks (``"`lr` must be a number > 0, got -1"``), so a front end
    can translate every one of them to its own spelling (the command line: ``--lr``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickled across processes (compare's runs)
        return type(self), (self.field, str(self))


class RunInUseError(ValueError):
    """Another live process holds the run folder's lock (:mod:`purelearn.app.lock`)."""


class DivergedError(FloatingPointError):
    """Training stopped at the first non-finite loss (epoch ``epoch``, batch ``batch``, 1-based) or at a
    carry that became non-finite in an epoch's last update (``batch`` None). The run's last good
    checkpoint, if any, is kept: a non-finite carry is never written.

    The message names fields in backticks, like :class:`ConfigError`'s.
    """

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None) -> None:
        super().__init__(message)
        self.epoch, self.batch = epoch, batch

    def __reduce__(self) -> tuple[type, tuple[str, int | None, int | None]]:
        return type(self), (str(self), self.epoch, self.batch)


#: What the command line says for the errnos of a file system that stops taking writes.
_REASONS = {errno.ENOSPC: "no space left on the device (the disk is full)",
            errno.EROFS: "the file system is read-only",
            errno.EDQUOT: "the disk quota is exceeded",
            errno.EFBIG: "the file is too large for the file system",
            errno.EIO: "an input/output error (a failing disk or a lost network file system)",
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def describe_os_error(err: OSError) -> str:
    """``err`` in words, with its errno's name (``no space left on the device (the disk is full); ENOSPC``)."""
    name = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
    reason = _REASONS.get(err.errno, err.strerror or (os.strerror(err.errno) if err.errno else str(err) or
                                                       type(err).__name__))
    return f"{reason}{f'; {name}' if name else ''}"


class StorageError(OSError):
    """An output of a run (its checkpoint, ``metrics.json``, a plot, a sweep's or comparison's files)
    could not be written: the disk is full, the file system turned read-only, ... The message names the
    file, the reason and what was kept (the previous checkpoint is never damaged: writes are atomic)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type, tuple[str, int | None]]:
        return type(self), (str(self), self.errno)


def exit_code(err: BaseException) -> int:
    """The command line's exit code for ``err`` (the table above): 3 diverged, 4 storage, 1 ranks that
    disagree (:class:`purelearn.distributed.RanksDisagree`), else 2."""
    if isinstance(err, RanksDisagree):
        return 1
    if isinstance(err, DivergedError):
        return EXIT_DIVERGED
    return EXIT_STORAGE if isinstance(err, StorageError) else EXIT_USAGE
