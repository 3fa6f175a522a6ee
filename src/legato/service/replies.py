"""What a customer writes back: recorded, acted on (STOP, HELP) and, when it needs a person, queued."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from legato.errors import Invalid, StoreError
from legato.playbook.models import Playbook
from legato.store.receipts import Receipt
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


@dataclass(frozen=True)
class Texted:
    """What a text from a number did: each customer with that number handled (the same
    message, received for each), or for a number no customer has, an opt-out listed."""

    number: str
    handled: list[Handled] = field(default_factory=list)
    listed: bool = False  # an opt-out from a number no customer has: on the do-not-contact list
    reply: str | None = None  # the one answer to send back
    duplicate: bool = False  # the provider sent this text before and it was handled then: nothing done now

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "handled": [h.to_dict() for h in self.handled], "listed": self.listed, "reply": self.reply,
                "duplicate": self.duplicate}


def receive_text(engine: Engine, playbook: Playbook, number: str, text: str, *, now: datetime, channel: str = "sms",
                 receipt: Receipt | None = None) -> Texted:
    """A text (SMS or WhatsApp) from ``number``, through the inbound handling of every customer
    with that number (:func:`legato.trust.inbound.receive`: STOP revokes, HELP answers, the
    rest is recorded or queued for a person). A number no customer has is still obeyed: an
    opt-out puts it on the do-not-contact list (:func:`legato.guard.contact.suppress`), and
    HELP is answered. One reply comes back, for the channel to send.

    ``receipt`` (the provider's id of the text: Twilio's MessageSid) makes it once per customer
    (and once for a number no customer has): the provider delivering it again, even while the
    first delivery is handled, changes nothing and gets no reply (:mod:`legato.store.receipts`).
    A crash between two customers' handling leaves the first done and the second to the retry."""
    import sqlalchemy as sa

    from legato.channels import normalize_phone
    from legato.guard.contact import suppress
    from legato.store import receipts
    from legato.store.schema import customers
    from legato.trust.inbound import classify, help_reply

    phone = normalize_phone(number)
    channel = channel_for(playbook, channel)
    with engine.connect() as connection:
        ids = list(connection.execute(sa.select(customers.c.id).where(customers.c.phone == phone).order_by(customers.c.id)).scalars())
    if not text.strip():
        return Texted(phone)
    if not ids:
        found = classify(text)
        if "opt_out" not in found.intents and "help" not in found.intents:
            return Texted(phone)
        with engine.begin() as connection:
            if receipt is not None and not receipts.take(connection, receipt, "", now):
                return Texted(phone, duplicate=True)
            if "opt_out" in found.intents:
                suppress(connection, "phone", phone, f"replied to a {channel} message: opt-out from a number no customer has", now, by=f"inbound:{channel}")
        if "opt_out" in found.intents:
            return Texted(phone, listed=True, reply=f"{playbook.brand.name}: you will get no more marketing messages. Reply HELP for help.")
        return Texted(phone, reply=help_reply(playbook))
    handled = [handle(engine, playbook, customer_id, channel, text, now, receipt=receipt) for customer_id in ids]
    return Texted(phone, handled, reply=next((h.reply for h in handled if h.reply), None), duplicate=all(h.duplicate for h in handled))
