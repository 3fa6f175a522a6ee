"""`legato worker`: a long-running process that runs each agent's cycle when its schedule says
and sends what is due, continuously, until it is told to stop.

Two loops, each on its own thread, share one :class:`Worker`:

- **Cycles.** Every ``poll`` seconds the worker reads which agents are due
  (:func:`legato.cycle.slots.due`: the latest slot of the agent's ``schedule:`` has not run)
  and whether the newest cycle is unfinished. If either, it takes the cycle's lease (never
  waiting: another holder means another process runs a cycle now), looks again under the
  lease, and runs one cycle for the due agents, recording their slots with it (one cycle for
  every agent due at once; its messages are sent by the dispatch loop, not by the cycle, so
  only that loop's transports are open). An unfinished cycle is resumed first, as `legato run` does. A slot
  runs once however many workers see it due: the lease serialises them and the slot's row
  (unique per agent and slot) is written with the cycle. A cycle that fails is tried again
  after a wait that doubles (from ``poll`` to 15 minutes).
- **Dispatch.** :func:`legato.deliver.dispatch.dispatch_due` again and again (each claim is
  the outbox's lease, so workers never send the same message), waiting ``poll`` seconds when
  nothing was due. Retries, backoff with jitter and the give-up time are the outbox's. After
  each dispatch the alerts due are delivered (:func:`legato.monitor.alert_delivery.deliver_alerts`:
  each claimed before it is sent, so workers never send one twice).

**Stopping** (:meth:`Worker.stop`; the CLI calls it on SIGTERM and SIGINT): no more claims
and no new cycle; the dispatch batch in flight is sent and recorded; a cycle in flight stops
between two partitions (each partition is its own transaction) and stays ``running``, so the
next worker or `legato run` resumes it where it stopped. The cycle's lease is released, and
any outbox claim of this worker still open (a batch whose results could not be recorded) is
released for another dispatcher at once. :meth:`Worker.run` then returns.

**A newer playbook** (``source``: :mod:`legato.service.playbook_source`; the newest upload to
the store, or the ``--playbook`` file, watched) is looked for by the cycles' loop before each
look for a due cycle, so never in the middle of a cycle. A newer one has its transports built
there; if that fails (a channel's secret variable missing, a file channel that cannot be
written), or the file's edit does not validate, a warning names why and which playbook still
runs, once per upload or edit. Once built, the cycles use it at once, and the dispatch loop
is handed it with its transports: its ``stop`` question answers true, so the batch in flight
is sent and recorded with the old transports, which are then closed, and the next claim is
made with the new ones. A cycle with the new playbook starts only after the hand-over was
offered, so no claim made with the old transports can hold its messages. One line,
``now running playbook …``, says which version runs.

**Time.** ``clock`` is the worker's "now" and ``pause(seconds)`` its wait between looks
(by default the stop event's wait, so a stop ends a wait at once): tests inject both and
step through days without sleeping.

**Progress and health.** One JSON log line (``legato.worker``; :class:`legato.api.observe.JsonLines`)
per cycle, per dispatch batch and per change of state; counters in :class:`WorkerFigures`
(sent, retried, dead by channel; cycles) that the CLI shows with ``--progress`` and exposes as
Prometheus metrics with ``--metrics-port`` (:class:`legato.api.observe.WorkerMetrics`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from legato.clock import Clock, SystemClock
from legato.errors import LegatoError
from legato.playbook.models import Playbook
from legato.service.playbook_source import Loaded, PlaybookSource

log = logging.getLogger("legato.worker")

POLL = 1.0  # seconds between looks when nothing is due
CHUNK = 1_000  # messages a claim takes: what a stop waits for at most
MAX_CYCLE_RETRY = 900.0  # seconds: the longest wait before a failed cycle is tried again


@dataclass
class WorkerFigures:
    """What this worker did since it started, for its status line and its metrics."""

    started_at: datetime
    state: str = "starting"  # starting, idle, cycle, stopping, stopped
    messages: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, sent | retry | dead)
    cycles: Counter[str] = field(default_factory=Counter)  # finished, resumed, interrupted, failed
    last_cycle: dict[str, Any] | None = None
    last_dispatch_at: datetime | None = None
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "state": self.state,
                "started_at": self.started_at.isoformat(),
                "messages": {f"{channel}:{result}": n for (channel, result), n in sorted(self.messages.items())},
                "cycles": dict(self.cycles),
                "last_cycle": self.last_cycle,
                "last_dispatch_at": self.last_dispatch_at.isoformat() if self.last_dispatch_at else None,
                "last_error": self.last_error,
            }


Listener = Callable[[str, dict[str, Any]], None]


class Worker:
    """One worker process's loops over one store and one playbook (see the module's text)."""

    def __init__(
        self,
        engine: Engine,
        playbook: Playbook,
        transports: Mapping[str, Any],
        *,
        clock: Clock | None = None,
        pause: Callable[[float], None] | None = None,
        poll: float = POLL,
        chunk: int = CHUNK,
        listeners: list[Listener] | None = None,
        metrics: Any = None,
        source: PlaybookSource | None = None,
        running: Loaded | None = None,
        build: Callable[[Loaded], Mapping[str, Any]] | None = None,
    ) -> None:
        from legato.deliver import outbox

        self.engine = engine
        self.playbook = playbook
        self.transports = dict(transports)
        self.clock = clock or SystemClock()
        self._stopping = threading.Event()
        self.pause = pause or (lambda seconds: self._stopping.wait(seconds) and None)
        self.poll = poll
        self.chunk = chunk
        self.listeners = list(listeners or [])
        self.metrics = metrics  # legato.api.observe.WorkerMetrics, or None
        self.worker_id = outbox.worker_id()  # this process's outbox claims
        self.figures = WorkerFigures(started_at=self.clock.now())
        self._cycle_retry_at: float | None = None
        self._cycle_wait = poll
        self._warned_empty = False
        # The playbook: the cycles' (``playbook``, switched between two cycles) and the dispatch
        # loop's (``transports`` with ``_dispatching``, switched between two batches, from ``_pending``).
        self.source = source
        self.running = running  # what names the playbook in force in the log lines
        self._build = build or _transports_for
        self._dispatching = playbook
        self._pending: tuple[Playbook, dict[str, Any]] | None = None
        self._swap = threading.Lock()
        self._source_error: str | None = None

    # --- stopping ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and starting cycles; what is in flight finishes (see the module's text)."""
        if not self._stopping.is_set():
            self._set_state("stopping")
            self._event("worker stopping", {"worker": self.worker_id})
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- one look each ------------------------------------------------------------------

    def refresh_playbook(self) -> bool:
        """Take a newer playbook from the source, if there is one and it can be built (see the
        module's text); true when it was taken. Called between two cycles."""
        if self.source is None or self.stopping:
            return False
        try:
            loaded = self.source.changed()
        except LegatoError as error:  # an edit that does not validate, a file gone: reported once by the source
            self._event(f"the playbook changed but cannot be used; still running {self._running_name()}",
                        {"reason": error.message, **({"hint": error.hint} if error.hint else {}), "running": self._running_fields()}, logging.WARNING)
            return False
        except Exception as error:  # noqa: BLE001 - the store failed for a moment: the next look asks again
            said = f"{type(error).__name__}: {error}"
            if said != self._source_error:  # once while the store stays down, not at every look
                self._failure("could not look for a newer playbook", error, {})
            self._source_error = said
            return False
        self._source_error = None
        if loaded is None or (self.running is not None and loaded.name == self.running.name):
            return False  # nothing new, or the playbook in force offered again (uploaded again, the file touched)
        try:
            transports = dict(self._build(loaded))
        except Exception as error:  # noqa: BLE001 - whatever fails here, the playbook in force keeps running
            said = {"reason": error.message, **({"hint": error.hint} if error.hint else {})} if isinstance(error, LegatoError) else {
                "reason": f"{type(error).__name__}: {error}"}
            self._event(f"playbook {loaded.name} cannot be built; still running {self._running_name()}",
                        {**said, "playbook": loaded.fields, "running": self._running_fields()}, logging.WARNING)
            return False
        with self._swap:
            unused, self._pending = self._pending, (loaded.playbook, transports)
        if unused is not None:
            _close(unused[1])  # two changes within one batch: the first's transports were never used
        previous = self._running_fields()
        self.playbook, self.running = loaded.playbook, loaded
        self._cycle_wait, self._cycle_retry_at = self.poll, None  # a cycle that failed is tried with the new playbook at once
        self._event(f"now running playbook {loaded.name}", {"playbook": loaded.fields, "previous": previous, **self._schedules()})
        return True

    def cycle_once(self) -> Any:
        """Run the cycle that is due (the due agents' slots, or an unfinished cycle), if any and
        if no other process runs one; returns its report, or None when nothing ran."""
        from legato.cycle import run_cycle, slots
        from legato.cycle.lease import LeaseHeld, hold, holder
        from legato.cycle.run import Interrupted, unfinished_cycle
        from legato.service.cycles import refuse_going_back
        from legato.store.db import is_empty

        if self.stopping:
            return None
        now = self.clock.now()
        if holder(self.engine) is not None:
            return None  # another process runs a cycle: it records its slots, or resumes what is unfinished
        if not slots.due(self.engine, self.playbook, now) and unfinished_cycle(self.engine) is None:
            return None
        if is_empty(self.engine):
            if not self._warned_empty:
                self._event("no customers yet: no cycle runs until customers are imported", {}, logging.WARNING)
                self._warned_empty = True
            return None
        self._warned_empty = False
        try:
            with hold(self.engine) as lease:
                unfinished = unfinished_cycle(self.engine)
                due: dict[str, datetime] = {}
                if unfinished is None:
                    due = slots.due(self.engine, self.playbook, now)  # under the lease: a slot another worker ran shows here
                    if not due:
                        return None
                    refuse_going_back(self.engine, now)
                self._set_state("cycle")
                self._event("cycle starting", {"resume": unfinished.id if unfinished else None, "slots": {a: s.isoformat() for a, s in due.items()}})
                report = run_cycle(self.engine, self.playbook, self.clock, {}, lease=lease, slots=due or None, stop=lambda: self.stopping, dispatch=False)
        except LeaseHeld:
            return None
        except IntegrityError:
            return None  # the slot was recorded meanwhile by a worker that had taken the lease over
        except Interrupted as stopped:
            self._count_cycle("interrupted", None)
            self._event("cycle interrupted: it stays running and is resumed by the next run", {"reason": str(stopped)})
            return None
        finally:
            if not self.stopping:
                self._set_state("idle")
        kind = "resumed" if report.resumed is not None else "finished"
        summary = {
            "cycle_id": report.cycle_id,
            "at": report.at.isoformat(),
            "agents": sorted(report.agents),
            "decided": {a: r.scheduled + r.queued for a, r in report.agents.items()},
        }
        self._count_cycle(kind, summary)
        self._event(f"cycle {kind}", summary)
        return report

    def dispatch_once(self) -> Any:
        """Send what is due now, batch by batch, until nothing is due or the worker stops."""
        from legato.deliver.dispatch import dispatch_due

        self._take_playbook()
        report = dispatch_due(
            self.engine, self._dispatching, self.clock, self.transports, chunk=self.chunk, worker=self.worker_id,
            stop=lambda: self.stopping or self._pending is not None, observe=self._count_dispatch,
        )
        with self.figures.lock:
            self.figures.last_dispatch_at = self.clock.now()
        if self.metrics is not None:
            self.metrics.last_dispatch.set(time.time())
        return report

    def _take_playbook(self) -> None:
        """The dispatch loop, between two batches: the playbook the cycles switched to, with its
        transports; the old transports are closed (their connections' last messages recorded)."""
        with self._swap:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        old = self.transports
        self._dispatching, self.transports = pending[0], pending[1]
        _close(old)

    def alerts_once(self) -> Any:
        """Deliver the alerts and follow-ups due now (each once per destination)."""
        from legato.monitor.alert_delivery import deliver_alerts

        report = deliver_alerts(self.engine, self._dispatching, self.clock.now(), worker=self.worker_id)  # the playbook in force
        if report.sent or report.failed or report.retry:
            self._event("alerts delivered", report.to_dict())
        return report

    # --- the loops --------------------------------------------------------------------

    def run(self) -> WorkerFigures:
        """Both loops until :meth:`stop`; then the leases this worker holds are released."""
        self._event("worker started", {"worker": self.worker_id, "playbook": self._running_fields(), **self._schedules()})
        self._set_state("idle")
        cycles = threading.Thread(target=self._loop, args=(self._cycle_step,), name="legato-worker-cycles", daemon=True)
        cycles.start()
        try:
            self._loop(self._dispatch_step)
        finally:
            self.stop()
            cycles.join()
            self._release()
            with self._swap:
                unused, self._pending = self._pending, None
            if unused is not None:
                _close(unused[1])
            self._set_state("stopped")
            self._event("worker stopped", {"worker": self.worker_id, **self.figures.snapshot()})
        return self.figures

    def _loop(self, step: Callable[[], float]) -> None:
        while not self.stopping:
            wait = step()
            if not self.stopping:
                self.pause(wait)

    def _cycle_step(self) -> float:
        self.refresh_playbook()  # between two cycles, never in one
        if self._cycle_retry_at is not None and time.monotonic() < self._cycle_retry_at:
            return self.poll
        try:
            self.cycle_once()
        except Exception as error:  # noqa: BLE001 - a failed cycle is recorded (by the cycle) and tried again later
            self._cycle_wait = min(MAX_CYCLE_RETRY, self._cycle_wait * 2)
            self._cycle_retry_at = time.monotonic() + self._cycle_wait
            self._count_cycle("failed", None)
            self._failure("cycle failed", error, {"retry_in_s": round(self._cycle_wait, 1)})
            return self.poll
        self._cycle_wait, self._cycle_retry_at = self.poll, None
        return self.poll

    def _dispatch_step(self) -> float:
        try:
            report = self.dispatch_once()
        except Exception as error:  # noqa: BLE001 - the store or a transport failed for a moment: the next look tries again
            self._failure("dispatch failed", error, {})
            return max(self.poll, 5.0)
        del report  # dispatch_due went on until nothing was due, or a newer playbook is waiting
        try:
            self.alerts_once()
        except Exception as error:  # noqa: BLE001 - each delivery keeps its record; the next look tries what is due
            self._failure("alert delivery failed", error, {})
        return 0.0 if self._pending is not None else self.poll

    def _release(self) -> None:
        from legato.deliver import outbox

        try:
            with self.engine.begin() as connection:
                released = outbox.release_claims(connection, self.worker_id, self.clock.now())
        except Exception as error:  # noqa: BLE001 - a store gone at exit: the claims lapse with their lease
            self._failure("could not release this worker's claims (they lapse with their lease)", error, {})
            return
        if released:
            self._event("released claims", {"messages": released})

    # --- figures and log lines ---------------------------------------------------------

    def _running_name(self) -> str:
        return self.running.name if self.running is not None else "the playbook it started with"

    def _running_fields(self) -> dict[str, Any] | None:
        return self.running.fields if self.running is not None else None

    def _schedules(self) -> dict[str, Any]:
        zone = self.playbook.brand.zone
        now = self.clock.now()
        scheduled = {a.id: {"schedule": a.schedule, "next": a.parsed_schedule.next(now, zone).isoformat()}
                     for a in self.playbook.agents if a.active and a.parsed_schedule is not None}
        unscheduled = [a.id for a in self.playbook.agents if a.active and a.parsed_schedule is None]
        give_up = {channel.value: spec.give_up_after for channel, spec in self.playbook.channels.items()}
        return {"scheduled": scheduled, "unscheduled": unscheduled, "time_zone": self.playbook.brand.time_zone, "give_up_after": give_up}

    def next_slots(self) -> dict[str, datetime]:
        zone = self.playbook.brand.zone
        now = self.clock.now()
        return {a.id: a.parsed_schedule.next(now, zone) for a in self.playbook.agents if a.active and a.parsed_schedule is not None}

    def _set_state(self, state: str) -> None:
        with self.figures.lock:
            self.figures.state = state

    def _count_cycle(self, kind: str, summary: dict[str, Any] | None) -> None:
        with self.figures.lock:
            self.figures.cycles[kind] += 1
            if summary is not None:
                self.figures.last_cycle = summary
        if self.metrics is not None:
            self.metrics.cycles.labels(kind).inc()

    def _count_dispatch(self, part: Any) -> None:
        if not part.by_channel:
            return
        with self.figures.lock:
            self.figures.messages.update(part.by_channel)
        if self.metrics is not None:
            self.metrics.count_messages(part.by_channel)
        by_channel: dict[str, dict[str, int]] = {}
        for (channel, result), n in sorted(part.by_channel.items()):
            by_channel.setdefault(channel, {})[result] = n
        self._event("dispatched", {"by_channel": by_channel, **part.totals()})

    def _failure(self, what: str, error: BaseException, fields: dict[str, Any]) -> None:
        reason = error.message if isinstance(error, LegatoError) else f"{type(error).__name__}: {error}"
        with self.figures.lock:
            self.figures.last_error = f"{what}: {reason}"
        if isinstance(error, LegatoError):
            self._event(what, {"reason": reason, **({"hint": error.hint} if error.hint else {}), **fields}, logging.WARNING)
        else:
            log.error(what, exc_info=error, extra={"fields": {"reason": reason, **fields}})
            self._tell(what, {"reason": reason, **fields})

    def _event(self, message: str, fields: dict[str, Any], level: int = logging.INFO) -> None:
        log.log(level, message, extra={"fields": fields})
        self._tell(message, fields)

    def _tell(self, message: str, fields: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(message, fields)
            except Exception:  # noqa: BLE001 - a display's failure must not stop the worker
                log.debug("a listener failed", exc_info=True)


def _transports_for(loaded: Loaded) -> dict[str, Any]:
    from legato.service.cycles import transports_for

    return transports_for(loaded.playbook, loaded.folder)


def _close(transports: Mapping[str, Any]) -> None:
    """Close transports no longer used (an SMTP connection says QUIT); a failure to close is only logged."""
    for channel, transport in transports.items():
        close = getattr(transport, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception:  # noqa: BLE001 - a connection already gone: nothing is left to close
            log.debug("closing the %s transport failed", channel, exc_info=True)
