"""What a customer writes back: recorded, acted on (STOP, HELP) and, when it needs a person, queued."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.errors import Invalid, StoreError
from legato.playbook.models import Playbook
from legato.trust.inbound import Handled, receive as handle


def channel_for(playbook: Playbook, asked: str | None) -> str:
    """The channel a reply came in on: the one named, else SMS when the playbook has it, else its first."""
    channels = [c.value for c in playbook.channels]
    if asked is not None and asked not in channels:
        raise Invalid(f"the playbook has no channel '{asked}'", hint=f"its channels: {', '.join(channels)}")
    return asked or ("sms" if "sms" in channels else channels[0])


def receive(engine: Engine, playbook: Playbook, customer_id: str, text: str, *, now: datetime, channel: str | None = None) -> Handled:
    return handle(engine, playbook, customer_id, channel_for(playbook, channel), text, now)


def receive_in(database: str | None, playbook: Playbook, customer_id: str, text: str, *, now: datetime, channel: str | None = None) -> Handled:
    """Open the store at ``database`` and receive one message.

    A store that is locked or cannot be reached even when opened still gets its chance: an
    opt-out then waits, retries and in the end is kept in the pending file
    (:mod:`legato.trust.pending_optouts`); any other message fails with the store's error.
    """
    from legato.store.db import connect, unopened

    try:
        engine = connect(database)
    except StoreError as error:
        if not error.transient:
            raise
        engine = unopened(database)
    return receive(engine, playbook, customer_id, text, now=now, channel=channel)
