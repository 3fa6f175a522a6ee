"""What ``legato serve`` is started with; every option has a default a fresh install can use."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from legato.clock import Clock, SystemClock


class UnknownCustomers(StrEnum):
    """What an event for a customer the store does not know does."""

    CREATE = "create"  # the customer is created with only an id (Segment's way: track before identify)
    REJECT = "reject"  # the event is refused with its reason, as ``legato import events`` does


@dataclass
class ApiSettings:
    database_url: str | None = None  # None: $LEGATO_DATABASE_URL, else sqlite:///legato.db
    playbook: Path | None = None  # the playbook cycles, checks and reviews use until one is uploaded
    clock: Clock = field(default_factory=SystemClock)
    rate_limit: float = 100.0  # requests a second per key, sustained
    burst: int = 200  # requests a key may send at once before the limit applies
    # The links a message carries (/v1/unsubscribe, /v1/open, /v1/click) take no key: they are
    # limited per client address instead (0: no limit). A one-click unsubscribe with a valid
    # token is never refused by it (legato.api.routes.links).
    link_rate_limit: float = 20.0  # requests a second per client address, sustained
    link_burst: int = 100  # requests an address may send at once before the limit applies
    body_limit: int = 1_048_576  # bytes of a request body (Segment's own routes have Segment's limits)
    unknown_customers: UnknownCustomers = UnknownCustomers.CREATE
    workers: int = 1  # server processes on one port (legato serve --workers)
