"""Errors a user can cause, each carrying the place and the fix.

The CLI prints ``str(error)`` and exits with ``exit_code``; nothing else needs to know how
errors are presented.
"""

from __future__ import annotations


class LegatoError(Exception):
    """An error caused by input the user can correct (file, playbook, URL, command)."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\nhint: {self.hint}" if self.hint else self.message


class StoreError(LegatoError):
    """The database cannot be reached or is not in the expected state."""


class NothingToDoError(LegatoError):
    """A command was asked to work on data that is not there (for example an empty store)."""
