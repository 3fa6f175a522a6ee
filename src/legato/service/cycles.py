"""Running a cycle: the decisions of every active agent at one instant, then what is due is sent.

``legato run`` runs one in the foreground (:func:`run`); the HTTP API starts one in the
background (:func:`start`) and answers with its id while it runs. Both take the cycle's lease
first (one cycle at a time on a store, whoever runs it) and build their transports the same
way (:func:`transports_for`). :func:`history` and :func:`status` read what the store recorded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import Clock
from legato.cycle.history import Cycle
from legato.errors import Conflict, LegatoError
from legato.playbook.models import Playbook
from legato.store.schema import cycles


def last_cycle_at(engine: Engine) -> datetime | None:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.max(cycles.c.at))).scalar()


def refuse_going_back(engine: Engine, now: datetime) -> None:
    """A cycle before the last one would decide as if later sends, caps and outcomes had not happened."""
    last = last_cycle_at(engine)
    if last is not None and now < last:
        raise Conflict(
            f"the last cycle ran at {last:%Y-%m-%d %H:%M} UTC, after {now:%Y-%m-%d %H:%M} UTC",
            hint="run at or after the last cycle (--at), or use another database for what-if runs (legato simulate)",
        )


def run(
    engine: Engine,
    playbook: Playbook,
    clock: Clock,
    transports: Mapping[str, Any],
    *,
    progress: Callable[[str, int], None] | None = None,
    wait: float = 0.0,
) -> Any:
    """One cycle at ``clock.now()`` under the cycle's lease; returns its report.

    Another cycle running on the store makes it wait up to ``wait`` seconds, then refuse
    (:class:`legato.cycle.lease.LeaseHeld`, a ``Conflict`` naming the holder). A cycle that did
    not finish is resumed first, and that is all the run does (``report.resumed``). A new
    cycle is refused when it would go back in time.
    """
    from legato.cycle import run_cycle
    from legato.cycle.lease import hold
    from legato.cycle.run import unfinished_cycle

    with hold(engine, wait=wait) as lease:
        if unfinished_cycle(engine) is None:
            refuse_going_back(engine, clock.now())
        return run_cycle(engine, playbook, clock, dict(transports), progress=progress, lease=lease)


def transports_for(playbook: Playbook, folder: Path) -> dict[str, Any]:
    """One transport per channel of the playbook, file paths relative to ``folder`` (the
    playbook file's folder for ``legato run``; the server's for ``legato serve``). A file that
    cannot be written fails here, before anything is decided."""
    from legato.deliver.dispatch import transports

    return dict(transports(playbook, folder))


@dataclass(frozen=True)
class Started:
    """A cycle running in the background: its id (None if it had not recorded itself in time) and
    whether it is an unfinished cycle being finished rather than a new one."""

    cycle_id: int | None
    resumed: bool


log = logging.getLogger("legato.cycle")

# How long :func:`start` waits for the cycle to record itself (pending opt-outs, expired reviews
# and rolled trait windows come first) before it answers without the id.
RECORDED_WITHIN = 60.0


def start(engine: Engine, playbook: Playbook, clock: Clock, transports: Mapping[str, Any]) -> Started:
    """Take the cycle's lease now and run the cycle in a background thread that holds it to the end.

    Refused at once, nothing started, when another cycle holds the lease
    (:class:`~legato.cycle.lease.LeaseHeld`, naming the holder), when the store has no customers,
    or when a new cycle would go back in time. Returns once the cycle is recorded (its id) or
    has failed before that (its error is raised here). A failure after that is recorded by the
    cycle itself, its row failed and its reason in the audit log (:func:`status` shows both).
    """
    from legato.cycle import run_cycle
    from legato.cycle.lease import LeaseHeld, acquire
    from legato.cycle.lease import holder as lease_holder
    from legato.cycle.run import unfinished_cycle
    from legato.errors import NothingToDoError
    from legato.store.db import is_empty

    if is_empty(engine):
        raise NothingToDoError(
            "the database has no customers, so there is nobody to decide for",
            hint="import customers first (POST /v1/customers, or legato import customers FILE)",
        )
    try:
        lease = acquire(engine)
    except LeaseHeld as held:
        running = lease_holder(engine)
        where = f" (cycle {running.cycle_id}: GET /v1/cycles/{running.cycle_id})" if running and running.cycle_id is not None else ""
        raise LeaseHeld(held.message, hint=f"wait for the cycle that runs to finish{where}, then start again") from None
    recorded = threading.Event()
    found: dict[str, Any] = {}

    def noted(cycle_id: int) -> None:
        found["cycle_id"] = cycle_id
        recorded.set()

    lease.on_cycle = noted
    try:
        unfinished = unfinished_cycle(engine)
        if unfinished is None:
            refuse_going_back(engine, clock.now())
    except BaseException:
        lease.release()
        raise

    def work() -> None:
        try:
            run_cycle(engine, playbook, clock, dict(transports), lease=lease)
        except BaseException as error:  # noqa: BLE001 - the thread's caller has answered already: the reason is recorded
            found["error"] = error
            _log_failure(found.get("cycle_id"), error)
        finally:
            lease.release()
            recorded.set()

    threading.Thread(target=work, name="legato-cycle", daemon=True).start()
    recorded.wait(RECORDED_WITHIN)
    if "cycle_id" not in found and "error" in found:
        raise found["error"]
    return Started(found.get("cycle_id"), unfinished is not None)


def _log_failure(cycle_id: int | None, error: BaseException) -> None:
    """A background cycle's failure, for the operator: its reason is in the cycle's record
    (written with its failed status); a bug's traceback only here."""
    if isinstance(error, LegatoError):
        log.warning("cycle %s failed: %s", cycle_id, error.message)
    else:
        log.error("cycle %s failed", cycle_id, exc_info=(type(error), error, None))


def history(engine: Engine, *, limit: int = 20, before: int | None = None) -> list[Cycle]:
    """Cycles newest first."""
    from legato.cycle.history import cycles_page

    with engine.connect() as connection:
        return cycles_page(connection, limit=limit, before=before)


def status(engine: Engine, cycle_id: int) -> Cycle:
    """One cycle: when, how it ended or how far it got per agent, and why it failed."""
    from legato.cycle.history import cycle

    with engine.connect() as connection:
        return cycle(connection, cycle_id)
