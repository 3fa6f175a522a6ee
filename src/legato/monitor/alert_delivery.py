"""Delivering the monitors' alerts: each alert, and its follow-up when it clears, once to each
destination of the playbook's ``alerts:`` (a Slack-compatible webhook, e-mail through the SMTP
channel) and to the log, recorded per destination in ``alert_deliveries`` (this module is its
one writer).

One step, :func:`deliver_alerts`, run after each cycle, in `legato worker`'s dispatch loop and
by `legato alerts deliver` (cron):

1. **Plan.** For each alert whose opening (or clearing) is not settled yet
   (:func:`legato.monitor.alerts.undelivered`), one row per destination that takes its kind
   (``kinds``), inserted once (the unique key ``(alert, phase, destination)``): a rerun or a second
   deliverer adds nothing. An e-mail destination is one row per address.
2. **Claim.** A row is taken by a conditional UPDATE (pending and due, or sending with its claim's
   lease over, or held by a process of this host that died) committed *before* anything is
   sent, so two deliverers never send the same row at once.
3. **Send, then record** ``sent`` in its own transaction. A destination that accepted an alert
   is never sent it again: the row is ``sent``. A deliverer killed between the send and the
   record leaves the row ``sending``: once its claim lapses the alert is sent again (an alert
   is never dropped), with the same ``Idempotency-Key`` header (webhook) or ``Message-ID``
   (e-mail), so a receiver that deduplicates shows it once. That window is the only way a
   destination sees an alert twice; Slack itself does not deduplicate.
4. **Retry.** A passing failure (a timeout, a 5xx, a 429, a missing URL variable, an SMTP
   server away) waits 1, 2, 4 … minutes (at most an hour, at least what ``Retry-After``
   asked), until the alert is ``give_up_after`` old: then the row is ``failed``. A refusal for
   good (a 4xx from the webhook, a 5xx from SMTP) is ``failed`` at once. Each failure is
   logged (``legato.alerts``; an error when it is given up) and shown by `legato alerts list`.

A follow-up goes to a destination only after the opening's row there is settled, so it never
arrives first. When every row of a phase is settled the alert is stamped
(:func:`legato.monitor.alerts.mark_delivered`), and the plan step no longer reads it.

Secrets: the webhook URL is read from the variable the playbook names at the moment of
sending; errors name the variable or the URL's host, never the URL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.deliver.outbox import holder_is_dead, worker_id
from legato.deliver.secrets import MissingSecret, secret
from legato.deliver.webhook import host, retry_after
from legato.monitor.alerts import Alert, list_alerts, mark_delivered, undelivered
from legato.playbook.alerts import EmailDestination, SlackDestination
from legato.playbook.models import Playbook
from legato.store.schema import alert_deliveries, alerts
from legato.store.status import AlertDeliveryStatus as Status
from legato.store.status import AlertPhase, AlertStatus

log = logging.getLogger("legato.alerts")

LOG = "log"  # the destination every alert has
LEASE = timedelta(minutes=3)  # a claim's life: longer than the slowest send (SMTP steps time out at 30 s)
FIRST_WAIT = 60.0  # seconds before the first retry; doubling, at most MAX_WAIT
MAX_WAIT = 3600.0
SLACK_HEADER = 150  # Slack's limits: a header's plain text, a section's mrkdwn
SLACK_SECTION = 3000


@dataclass(frozen=True)
class Attempt:
    """What one send came to: accepted, or why not and whether trying again could help."""

    error: str | None = None
    permanent: bool = False
    wait: float | None = None  # seconds the receiver asked for (Retry-After)

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass
class AlertsDelivered:
    """One run's tally by destination: sent, retry (waiting for another try), failed (given up)."""

    sent: dict[str, int] = field(default_factory=dict)
    retry: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def count(self, which: dict[str, int], destination: str) -> None:
        which[destination] = which.get(destination, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed}


@dataclass(frozen=True)
class Delivery:
    """One row of ``alert_deliveries``, as `legato alerts list` shows it."""

    alert_id: int
    phase: AlertPhase
    destination: str
    status: Status
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase.value, "destination": self.destination, "status": self.status.value, "attempts": self.attempts,
                "due_at": self.due_at.isoformat(), "sent_at": self.sent_at.isoformat() if self.sent_at else None, "last_error": self.last_error}


# --- what is sent -----------------------------------------------------------------------


def _escape(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> would ping everyone): escaped, as its docs ask.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def headline(alert: Alert, phase: AlertPhase) -> str:
    who = f"agent {alert.agent_id}" if alert.agent_id else alert.incident
    if phase == AlertPhase.CLEARED:
        return f"Resolved: {alert.kind.value.replace('_', '-')} incident of {who} cleared"
    return f"Legato alert: {alert.kind.value.replace('_', '-')} on {who}"


def body_lines(alert: Alert, phase: AlertPhase) -> list[str]:
    """The facts of an alert (or its follow-up) in plain words, for e-mail and the log."""
    lines = [f"incident {alert.incident} (alert #{alert.id}), opened {alert.opened_at:%Y-%m-%d %H:%M} UTC"]
    if phase == AlertPhase.CLEARED:
        by = f" by {alert.cleared_by}" if alert.cleared_by else ""
        when = f" at {alert.cleared_at:%Y-%m-%d %H:%M} UTC" if alert.cleared_at else ""
        lines.insert(0, f"Cleared{by}{when}. It answers this alert: {alert.summary}")
    else:
        lines.insert(0, alert.summary)
        if alert.repeats:
            lines.append(f"seen again {alert.repeats} time(s) since, not alerted again")
        if alert.agent_id and alert.kind.value == "stop_loss":
            lines.append(f"to resume: legato agents resume {alert.agent_id} --by NAME --reason TEXT")
    return lines


def slack_payload(alert: Alert, phase: AlertPhase) -> dict[str, Any]:
    """Slack's incoming-webhook JSON: ``text`` (the notification and fallback) and ``blocks``
    (a header, the summary as a section, the incident as context), within Slack's limits."""
    title = headline(alert, phase)
    lines = body_lines(alert, phase)
    return {
        "text": _escape(f"{title}: {lines[0]}")[:SLACK_SECTION],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:SLACK_HEADER]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(lines[0])[:SLACK_SECTION]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(line)[:SLACK_SECTION]} for line in lines[1:]]},
        ],
    }


def idempotency_key(alert: Alert, phase: AlertPhase) -> str:
    """The same on every attempt of one alert's phase: a receiver that keeps them takes it once."""
    return f"legato-alert-{alert.id}-{phase.value}"


# --- senders ------------------------------------------------------------------------------


class Senders:
    """The destinations' transports for one run, opened when first needed."""

    def __init__(self, playbook: Playbook, environ: Mapping[str, str] | None) -> None:
        self.playbook = playbook
        self.environ = environ
        self._http: httpx.HTTPTransport | None = None
        self._smtp: dict[str, Any] = {}

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        for transport in self._smtp.values():
            transport.close()

    def send(self, destination: str, alert: Alert, phase: AlertPhase) -> Attempt:
        if destination == LOG:
            logger = log.error if phase == AlertPhase.OPENED else log.warning
            logger("%s: %s", headline(alert, phase), " | ".join(body_lines(alert, phase)),
                   extra={"fields": {"alert": alert.id, "incident": alert.incident, "phase": phase.value, "agent": alert.agent_id}})
            return Attempt()
        name, _, address = destination.partition(":")
        spec = next((d for d in self.playbook.alerts.destinations if d.key == name), None)
        if spec is None:
            return Attempt(f"the playbook has no alert destination '{name}' any more", permanent=True)
        if isinstance(spec, SlackDestination):
            return self._slack(spec, alert, phase)
        assert isinstance(spec, EmailDestination)
        return self._email(spec, address, alert, phase)

    def _slack(self, spec: SlackDestination, alert: Alert, phase: AlertPhase) -> Attempt:
        index = self.playbook.alerts.destinations.index(spec)
        try:
            url = secret(f"alerts.destinations[{index}].url", env=spec.url_env, environ=self.environ) or ""
        except MissingSecret as missing:
            return Attempt(f"{missing.message}; {missing.hint}")
        where = f"the {spec.key} webhook at {host(url)}"
        if self._http is None:
            # httpx's transport itself, not httpx.Client: the client logs each request's URL
            # (here the secret) at INFO.
            self._http = httpx.HTTPTransport(retries=0)
        try:
            target = httpx.URL(url)
            request = httpx.Request(
                "POST", target, content=json.dumps(slack_payload(alert, phase), ensure_ascii=False).encode("utf-8"),
                headers={"host": target.netloc.decode("ascii"), "content-type": "application/json",
                         "idempotency-key": idempotency_key(alert, phase), "user-agent": "legato-alerts"},
                extensions={"timeout": httpx.Timeout(spec.timeout).as_dict()},
            )
            answer = self._http.handle_request(request)
            try:
                answer.read()
            finally:
                answer.close()
        except httpx.TimeoutException:
            return Attempt(f"{where} did not answer in {spec.timeout:g} s")
        except (httpx.TransportError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Attempt(f"{where} could not be reached: {type(exc).__name__}")
        status = answer.status_code
        if 200 <= status < 300:
            return Attempt()
        if status in (408, 429) or status >= 500:
            return Attempt(f"{where} answered {status}", wait=retry_after(answer.headers.get("retry-after")))
        # Slack answers 400 invalid_payload, 403, 404 no_service, 410 channel_is_archived: trying again cannot help.
        return Attempt(f"{where} answered {status} {answer.text[:200]!r}; check the URL in {spec.url_env}", permanent=True)

    def _email(self, spec: EmailDestination, address: str, alert: Alert, phase: AlertPhase) -> Attempt:
        from legato.deliver.smtp import smtp_transport
        from legato.errors import LegatoError

        channel = self.playbook.channels.get(spec.channel)  # type: ignore[call-overload]
        if channel is None or channel.kind != "smtp":
            return Attempt(f"alert e-mail needs channels.{spec.channel} of kind smtp", permanent=True)
        try:
            transport = self._smtp.get(spec.channel)
            if transport is None:
                legal = self.playbook.brand.legal
                transport = self._smtp[spec.channel] = smtp_transport(spec.channel, channel, sender_name=legal.sender_name, support_contact=legal.support_contact)
        except LegatoError as error:
            return Attempt(f"{error.message}; {error.hint}" if error.hint else error.message)
        message = {
            "message_id": idempotency_key(alert, phase), "to": address, "subject": headline(alert, phase),
            "body": "\n\n".join(body_lines(alert, phase)) + "\n", "sent_at": None,
            "headers": {"X-Legato-Alert": f"{alert.id}-{phase.value}", "Auto-Submitted": "auto-generated"},
        }
        outcome = transport.lanes()[0].send_one(message)
        if outcome.delivered:
            return Attempt()
        return Attempt(str(outcome.error), permanent=outcome.permanent, wait=outcome.retry_after)


# --- the step -----------------------------------------------------------------------------


def deliver_alerts(
    engine: Engine, playbook: Playbook, now: datetime, *, worker: str | None = None, environ: Mapping[str, str] | None = None
) -> AlertsDelivered:
    """Plan, claim, send and record every delivery due at ``now`` (see the module's text)."""
    worker = worker or worker_id()
    report = AlertsDelivered()
    with engine.begin() as connection:
        plan(connection, playbook, now)
    senders = Senders(playbook, environ)
    tried: set[int] = set()
    try:
        while (claimed := _claim_next(engine, worker, now, tried)) is not None:
            row, alert = claimed
            tried.add(row.id)
            phase = AlertPhase(row.phase)
            attempt = senders.send(row.destination, alert, phase)
            with engine.begin() as connection:
                result = _record(connection, row, alert, phase, attempt, worker, now, playbook.alerts.give_up)
            if result is not None:
                report.count({Status.SENT: report.sent, Status.PENDING: report.retry, Status.FAILED: report.failed}[result], row.destination)
    finally:
        senders.close()
    with engine.begin() as connection:
        _stamp_settled(connection, now)
    return report


def plan(connection: Connection, playbook: Playbook, now: datetime) -> int:
    """The delivery rows of every alert not settled yet (each inserted once); how many are new."""
    new = 0
    for alert in undelivered(connection):
        phases = [AlertPhase.OPENED] if alert.status == AlertStatus.OPEN else [AlertPhase.OPENED, AlertPhase.CLEARED]
        for phase in phases:
            for destination in destinations(playbook, alert.kind.value):
                new += _insert_once(connection, alert.id, phase, destination, now)
    return new


def destinations(playbook: Playbook, kind: str) -> list[str]:
    """Where an alert of ``kind`` goes: the log, then each configured destination that takes it."""
    found = [LOG]
    for spec in playbook.alerts.destinations:
        if spec.takes(kind):
            found.extend(f"{spec.key}:{address}" for address in spec.to) if isinstance(spec, EmailDestination) else found.append(spec.key)
    return found


def _insert_once(connection: Connection, alert_id: int, phase: AlertPhase, destination: str, now: datetime) -> int:
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(alert_deliveries).values(
        alert_id=alert_id, phase=phase, destination=destination, status=Status.PENDING, attempts=0, due_at=now, created_at=now
    ).on_conflict_do_nothing(index_elements=["alert_id", "phase", "destination"])
    return int(connection.execute(statement).rowcount or 0)


def _claimable(now: datetime) -> Any:
    opened = alert_deliveries.alias("opened")
    opening_settled = sa.exists().where(
        opened.c.alert_id == alert_deliveries.c.alert_id, opened.c.destination == alert_deliveries.c.destination,
        opened.c.phase == AlertPhase.OPENED, opened.c.status.in_([Status.SENT, Status.FAILED]),
    )
    due = sa.or_(
        sa.and_(alert_deliveries.c.status == Status.PENDING, alert_deliveries.c.due_at <= now),
        sa.and_(alert_deliveries.c.status == Status.SENDING, alert_deliveries.c.claimed_until <= now),
    )
    return sa.and_(due, sa.or_(alert_deliveries.c.phase == AlertPhase.OPENED, opening_settled))


def _claim_next(engine: Engine, worker: str, now: datetime, tried: set[int]) -> tuple[Any, Alert] | None:
    """Take the next due row (oldest alert first, openings before follow-ups), committed before it is sent."""
    while True:
        with engine.begin() as connection:
            query = sa.select(alert_deliveries).where(_claimable(now) | _dead_holder_rows(connection))
            if tried:
                query = query.where(alert_deliveries.c.id.not_in(tried))
            row = connection.execute(query.order_by(alert_deliveries.c.alert_id, alert_deliveries.c.phase.desc(), alert_deliveries.c.id).limit(1)).first()
            if row is None:
                return None
            # Conditional: a row another deliverer claimed meanwhile is left to it.
            taken = connection.execute(
                sa.update(alert_deliveries)
                .where(alert_deliveries.c.id == row.id, alert_deliveries.c.status == row.status, alert_deliveries.c.attempts == row.attempts)
                .values(status=Status.SENDING, claimed_by=worker, claimed_until=now + LEASE, attempts=alert_deliveries.c.attempts + 1)
            ).rowcount
            if taken != 1:
                continue
            if row.status == Status.SENDING:
                log.warning("alert %s to %s: its last send was interrupted (the deliverer stopped before recording it); sending again",
                            row.alert_id, row.destination, extra={"fields": {"alert": row.alert_id, "destination": row.destination}})
            alert = next(a for a in list_alerts(connection, alert_ids=[row.alert_id]))
            return connection.execute(sa.select(alert_deliveries).where(alert_deliveries.c.id == row.id)).one(), alert


def _dead_holder_rows(connection: Connection) -> Any:
    """Rows claimed by a process of this host that no longer runs: in doubt now, not at the lease's end."""
    held = connection.execute(sa.select(alert_deliveries.c.id, alert_deliveries.c.claimed_by).where(alert_deliveries.c.status == Status.SENDING)).all()
    dead = [r.id for r in held if r.claimed_by and holder_is_dead(r.claimed_by)]
    return alert_deliveries.c.id.in_(dead) if dead else sa.false()


def _record(
    connection: Connection, row: Any, alert: Alert, phase: AlertPhase, attempt: Attempt, worker: str, now: datetime, give_up: timedelta
) -> Status | None:
    """The attempt's result, if this deliverer still holds the claim (else None: another took it over)."""
    mine = sa.and_(alert_deliveries.c.id == row.id, alert_deliveries.c.status == Status.SENDING, alert_deliveries.c.claimed_by == worker)
    fields = {"alert": alert.id, "incident": alert.incident, "phase": phase.value, "destination": row.destination, "attempts": row.attempts}
    if attempt.accepted:
        status, values = Status.SENT, {"sent_at": now, "last_error": None}
    else:
        started = (alert.cleared_at or now) if phase == AlertPhase.CLEARED else alert.opened_at
        wait = max(min(FIRST_WAIT * 2 ** (row.attempts - 1), MAX_WAIT), attempt.wait or 0.0)
        last = started + give_up
        if attempt.permanent or now >= last:
            status, values = Status.FAILED, {"last_error": attempt.error}
            why = "refused for good" if attempt.permanent else f"still failing {give_up} after the alert"
            log.error("alert %s to %s not delivered (%s, %d attempts): %s", alert.id, row.destination, why, row.attempts, attempt.error,
                      extra={"fields": {**fields, "error": attempt.error}})
        else:
            due = min(now + timedelta(seconds=wait), last)
            status, values = Status.PENDING, {"last_error": attempt.error, "due_at": due}
            log.warning("alert %s to %s failed (attempt %d), next try at %s: %s", alert.id, row.destination, row.attempts,
                        f"{due:%Y-%m-%d %H:%M:%S} UTC", attempt.error, extra={"fields": {**fields, "error": attempt.error, "next_at": due.isoformat()}})
    written = connection.execute(sa.update(alert_deliveries).where(mine).values(status=status, claimed_by=None, claimed_until=None, **values)).rowcount
    return status if written == 1 else None


def _stamp_settled(connection: Connection, now: datetime) -> None:
    """Stamp each alert phase whose every row is sent or failed (the plan step then skips it)."""
    for alert in undelivered(connection):
        phases = [AlertPhase.OPENED] if alert.status == AlertStatus.OPEN else [AlertPhase.OPENED, AlertPhase.CLEARED]
        for phase in phases:
            rows = connection.execute(
                sa.select(alert_deliveries.c.status).where(alert_deliveries.c.alert_id == alert.id, alert_deliveries.c.phase == phase)
            ).scalars().all()
            if rows and all(s in (Status.SENT, Status.FAILED) for s in rows):
                mark_delivered(connection, alert.id, phase == AlertPhase.CLEARED, now)


def deliveries(connection: Connection, alert_ids: list[int] | None = None) -> dict[int, list[Delivery]]:
    """Each alert's delivery rows (openings first), for `legato alerts list` and GET /v1/alerts."""
    query = sa.select(alert_deliveries).order_by(alert_deliveries.c.alert_id, alert_deliveries.c.phase.desc(), alert_deliveries.c.id)
    if alert_ids is not None:
        query = query.where(alert_deliveries.c.alert_id.in_(alert_ids))
    found: dict[int, list[Delivery]] = {}
    for r in connection.execute(query):
        found.setdefault(r.alert_id, []).append(
            Delivery(r.alert_id, AlertPhase(r.phase), r.destination, Status(r.status), r.attempts, r.due_at, r.sent_at, r.last_error)
        )
    return found



def delivery_counts(connection: Connection) -> dict[tuple[str, str, str], int]:
    """Deliveries by (alert kind, phase, status), every triple present (0 when none): sent and
    failed are the alerts delivered and given up on per destination (``/metrics``)."""
    from legato.store.status import AlertKind

    found = {(str(k), str(p), str(s)): 0 for k in AlertKind for p in AlertPhase for s in Status}
    rows = connection.execute(
        sa.select(alerts.c.kind, alert_deliveries.c.phase, alert_deliveries.c.status, sa.func.count())
        .select_from(alert_deliveries.join(alerts, alerts.c.id == alert_deliveries.c.alert_id))
        .group_by(alerts.c.kind, alert_deliveries.c.phase, alert_deliveries.c.status)
    )
    for kind, phase, status, n in rows:
        found[(str(kind), str(phase), str(status))] = int(n)
    return found
