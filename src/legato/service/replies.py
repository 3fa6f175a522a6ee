"""What a customer writes back: recorded, acted on (STOP, HELP) and, when it needs a person, queued."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.errors import Invalid
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
