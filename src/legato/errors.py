"""Errors a user can cause, each carrying the place and the fix.

The CLI prints ``str(error)`` and exits with ``exit_code``; nothing else needs to know how
errors are presented. Four kinds tell a caller (the CLI today, the HTTP API next) what went
wrong without reading the message, each with its own exit code:

=============  =====  ===========================================================  ====
kind           exit   meaning                                                      HTTP
=============  =====  ===========================================================  ====
``Invalid``    2      the input is wrong (a file, a playbook, an option, a value)  422
``NotFound``   3      what was named does not exist (a review item, an agent)      404
``Conflict``   4      the state changed or does not allow it (content hash         409
                      changed, already approved, not the newest cycle)
``Forbidden``  5      not this person (self-approval when the playbook forbids)    403
=============  =====  ===========================================================  ====

A plain :class:`LegatoError` counts as ``Invalid``; :class:`StoreError` (the database cannot
be reached or used) exits 6, with two kinds a caller may try again after a while:
:class:`StoreBusy` (locked by another process or transaction) and :class:`StoreUnreachable`
(the server does not answer). Exit 1 stays "partly done" (some rows rejected, a message blocked).

What the database driver or the file system raises is turned into these where it happens
(``legato.store.db.store_error``: the engine's error hook and ``connect``), and once more by the
CLI's one error handler (``legato.cli.output.user_error``) for what reaches it untranslated, so
no command needs its own ``try``.
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


class Invalid(LegatoError):
    """The input is wrong: a value out of range, an unknown option, a malformed file."""

    exit_code = 2


class NotFound(LegatoError):
    """What the caller named does not exist."""

    exit_code = 3


class Conflict(LegatoError):
    """The thing exists but its state refuses the change (changed meanwhile, already done)."""

    exit_code = 4


class Forbidden(LegatoError):
    """The change is allowed, but not to this person."""

    exit_code = 5


class StoreError(LegatoError):
    """The database cannot be reached or is not in the expected state."""

    exit_code = 6
    transient = False  # True: the same command may succeed if tried again later


class StoreBusy(StoreError):
    """Another process or transaction holds the lock this one needs (SQLite's "database is locked")."""

    transient = True


class StoreUnreachable(StoreError):
    """The database server does not answer (refused, timed out, connection lost)."""

    transient = True


class NothingToDoError(Conflict):
    """A command was asked to work on data that is not there (for example an empty store)."""


ERROR_KINDS: tuple[type[LegatoError], ...] = (Invalid, NotFound, Conflict, Forbidden)


def kind_of(error: LegatoError) -> str:
    """The kind an API reports: ``invalid``, ``not_found``, ``conflict``, ``forbidden`` or ``store``."""
    if isinstance(error, StoreError):
        return "store"
    for kind, name in ((NotFound, "not_found"), (Conflict, "conflict"), (Forbidden, "forbidden")):
        if isinstance(error, kind):
            return name
    return "invalid"
