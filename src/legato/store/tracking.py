"""The one writer of Segment's identities and of the messageIds of the calls applied.

- ``identity_links``: an id that stands for a customer under another id. An alias call links
  its ``previousId`` to its ``userId`` (a later alias of the same id moves it); a call carrying
  both a ``userId`` and an ``anonymousId`` links the anonymous id if it is not linked yet (the
  first login on a device keeps it). Links point at the end of a chain: linking ``b`` to ``c``
  moves every id linked to ``b`` to ``c`` too, so :func:`resolve` is one lookup.
- ``seen_messages``: the messageIds of identify, group and alias calls applied.
  :func:`claim` records them in the caller's transaction and says which were new, so two
  requests carrying the same call at once apply it once (PostgreSQL makes the second insert
  wait for the first transaction; SQLite has one writer at a time); a claimed call that the
  importer then refuses is given back with :func:`release`, so sending it again, fixed, works.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from legato.store.schema import identity_links, seen_messages

ALIAS = "alias"  # an alias call
CALL = "call"  # a call that carried both ids
_CHUNK = 500  # ids in one IN list or VALUES list


def _dialect(connection: Connection):  # type: ignore[no-untyped-def]
    return sqlite if connection.dialect.name == "sqlite" else postgresql


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def resolve(connection: Connection, ids: Iterable[str]) -> dict[str, str]:
    """The customer each linked id stands for (ids with no link are left out)."""
    wanted = sorted(set(ids))
    found: dict[str, str] = {}
    for chunk in _chunks(wanted):
        query = sa.select(identity_links.c.alias, identity_links.c.customer_id).where(identity_links.c.alias.in_(chunk))
        found.update({alias: customer for alias, customer in connection.execute(query)})
    return found


def link(connection: Connection, alias: str, customer_id: str, source: str, now: datetime) -> bool:
    """Link ``alias`` to the customer ``customer_id`` stands for; returns whether anything changed.

    ``source`` :data:`ALIAS` moves an existing link, :data:`CALL` keeps it.
    """
    target = resolve(connection, [customer_id]).get(customer_id, customer_id)
    if alias == target:
        return False
    insert = _dialect(connection).insert(identity_links).values(alias=alias, customer_id=target, linked_at=now, source=source)
    if source == ALIAS:
        statement = insert.on_conflict_do_update(
            index_elements=["alias"], set_={"customer_id": target, "linked_at": now, "source": source},
            where=identity_links.c.customer_id != target,
        )
    else:
        statement = insert.on_conflict_do_nothing(index_elements=["alias"])
    changed = bool(connection.execute(statement).rowcount)
    if changed:
        # What stood for the alias stands for its customer now: chains stay one step long.
        connection.execute(
            sa.update(identity_links).where(identity_links.c.customer_id == alias).values(customer_id=target, linked_at=now)
        )
    return changed


def claim(connection: Connection, messages: Sequence[tuple[str, str]], now: datetime) -> set[str]:
    """Record (messageId, type) pairs not seen before; returns the messageIds this call recorded."""
    claimed: set[str] = set()
    messages = sorted(messages)  # one order for every request: two that claim the same ids never wait on each other in a cycle
    for start in range(0, len(messages), _CHUNK):
        chunk = messages[start : start + _CHUNK]
        statement = (
            _dialect(connection).insert(seen_messages)
            .values([{"message_id": m, "type": t, "received_at": now} for m, t in chunk])
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(seen_messages.c.message_id)
        )
        claimed.update(connection.execute(statement).scalars())
    return claimed


def release(connection: Connection, message_ids: Iterable[str]) -> None:
    """Forget messageIds claimed in this transaction for calls that were then refused."""
    chosen = sorted(set(message_ids))
    for chunk in _chunks(chosen):
        connection.execute(sa.delete(seen_messages).where(seen_messages.c.message_id.in_(chunk)))
