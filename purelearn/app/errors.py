"""The application's one error type: a configuration value that is not allowed."""

from __future__ import annotations

__all__ = ["ConfigError"]


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
