"""How many review items there are by status, kind, agent, role, reason and priority, kept as
the items change, so a queue of a million items has its totals without counting them.

A count over the queue's index costs time in proportion to the items it matches (about
120 ms for a million open items on SQLite and on PostgreSQL, seconds with a filter the index
does not lead with), which is more than a page of the queue should cost. So every writer of
``review_items`` (``items`` opens, ``actions`` moves, ``due`` expires) also writes here, in
the same transaction, what it changed: ``+n`` for each key items entered, ``-n`` for each key
they left. Rows are deltas, appended and never updated, so two writers never wait for one
another on a shared counter row (a cycle writing a partition of proposals would otherwise
hold it while reviewers approve). A total is the sum of the deltas of the keys a filter
matches; :func:`compact` folds the deltas into one row per key every few hundred rows, so
the sum reads a few rows per key.

The key is what :class:`~legato.trust.review.model.QueueFilter` filters on except the age
(``older_than``) and the variant (``variant``): a total with those is counted from the items
(:func:`legato.trust.review.queue.list_page`). :func:`recount` rebuilds the counts from the
items, for a store whose items were written another way (migration 0022 seeds them so).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import review_counts, review_items

# Which item columns a count is kept by: the same names in review_items and review_counts.
KEY = ("status", "kind", "agent_id", "assigned_role", "reason", "priority")
# Fold the deltas when the newest row's id is a multiple of this: a total reads at most this many
# rows beyond one per key, and a fold reads as many.
COMPACT_EVERY = 500
# PostgreSQL: one fold at a time (an advisory lock's number, "rcnt"); another writer skips its fold.
_FOLD_LOCK = 0x72636E74

Key = tuple[Any, ...]


def key_of(row: Any, **changed: Any) -> Key:
    """An item's key, from a row or mapping with its columns, with ``changed`` values applied."""
    get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
    return tuple(changed[name] if name in changed else get(name) for name in KEY)


def add(connection: Connection, deltas: Mapping[Key, int]) -> None:
    """Record what changed: ``deltas`` maps a key to the items that entered it (negative: left it)."""
    rows = [{**dict(zip(KEY, key)), "n": n} for key, n in deltas.items() if n]
    if not rows:
        return
    ids = connection.execute(sa.insert(review_counts).returning(review_counts.c.id), rows).scalars().all()
    if any(i % COMPACT_EVERY == 0 for i in ids):
        compact(connection)


def moved(connection: Connection, before: Key, after: Key) -> None:
    """One item left ``before`` for ``after`` (nothing is written when the key did not change)."""
    if before != after:
        add(connection, {before: -1, after: 1})


def entered(connection: Connection, keys: Iterable[Key]) -> None:
    """Items were opened (or, with their old and new keys through :func:`moved`, changed)."""
    add(connection, Counter(keys))


def compact(connection: Connection) -> None:
    """Fold every delta into one row per key (keys whose items all left are dropped).

    Safe beside other writers: a delta written meanwhile is not deleted and stays as it is; on
    PostgreSQL a fold another transaction is doing is left to it (an advisory lock), so two
    folds never lock the same rows in two orders.
    """
    if connection.dialect.name == "postgresql":
        if not connection.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_FOLD_LOCK))).scalar_one():
            return
    folded: Counter[Key] = Counter()
    for row in connection.execute(sa.delete(review_counts).returning(*(review_counts.c[name] for name in KEY), review_counts.c.n)):
        folded[tuple(row[:-1])] += int(row[-1])
    rows = [{**dict(zip(KEY, key)), "n": n} for key, n in folded.items() if n]
    if rows:
        connection.execute(sa.insert(review_counts), rows)


def total(connection: Connection, clauses: list[sa.ColumnElement[bool]]) -> int:
    """The items of the keys ``clauses`` match (written on review_counts' columns by ``queue``'s filter)."""
    return int(connection.execute(sa.select(sa.func.coalesce(sa.func.sum(review_counts.c.n), 0)).where(*clauses)).scalar_one())


def by(connection: Connection, columns: tuple[str, ...], *clauses: sa.ColumnElement[bool]) -> dict[Key, int]:
    """Totals grouped by some of the key's columns (keys with no item left out), e.g. open items by reason."""
    grouped = [review_counts.c[name] for name in columns]
    query = sa.select(*grouped, sa.func.sum(review_counts.c.n)).where(*clauses).group_by(*grouped).having(sa.func.sum(review_counts.c.n) != 0)
    return {tuple(row[:-1]): int(row[-1]) for row in connection.execute(query)}


def recount(connection: Connection) -> None:
    """Rebuild every count from the items themselves (one pass over review_items)."""
    connection.execute(sa.delete(review_counts))
    columns = [review_items.c[name] for name in KEY]
    connection.execute(
        sa.insert(review_counts).from_select([*KEY, "n"], sa.select(*columns, sa.func.count()).group_by(*columns))
    )
