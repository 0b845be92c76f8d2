"""The application's error types, and what the command line makes of each.

================== ============================================================= ==================
``ConfigError``     a configuration value that is not allowed (names its field)   one line, exit 2
``RunInUseError``   the run folder is locked by another live process              one line, exit 2
``DivergedError``   training reached a non-finite loss or carry; stopped          one line, exit 3
================== ============================================================= ==================

A checkpoint that cannot be used is :class:`purelearn.checkpoint.CheckpointError` (one line, exit 2).
"""

from __future__ import annotations

__all__ = ["ConfigError", "RunInUseError", "DivergedError"]


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
