"""Computed traits per customer, kept current incrementally.

A cycle must not rescan every event ever imported, so the ``traits`` table is maintained
in two cheap steps instead of being recomputed:

* :func:`merge_events` folds only *newly inserted* events into the table (counts and sums
  are added, first/last are min/max), in one ``INSERT ... ON CONFLICT DO UPDATE``.
* The 30/90-day windows are relative to one instant, ``windows_as_of``, kept in
  ``settings``. :func:`roll_windows` moves that instant forward and recomputes only the
  customers that have a purchase crossing a window edge in the interval travelled.

:func:`recompute_all` rebuilds everything from ``events``; it exists to repair a store
and for tests to prove that the incremental path gives the same answer.

All statements are plain SQL that runs unchanged on SQLite and PostgreSQL: ``MIN``/``MAX``
across old and new values are written with ``CASE`` because SQLite's two-argument
``min``/``max`` and PostgreSQL's ``LEAST``/``GREATEST`` are not portable. Timestamps are
bound as :class:`UTCDateTime` so SQLite compares them in its stored text format.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.sql.elements import TextClause

from legato.clock import as_utc
from legato.store.types import UTCDateTime

PURCHASE = "purchase"
# Money returned: its revenue is stored negative (legato.store.ingest.events) and counts in
# lifetime_spend and revenue_<N>d, never in purchase counts or purchase times.
REFUND = "refund"
AS_OF_KEY = "traits.windows_as_of"
WINDOWS = (30, 90)  # days; each has purchases_<N>d and revenue_<N>d columns

_ZEROS = "0, 0.0, 0, 0.0"  # purchases_30d, revenue_30d, purchases_90d, revenue_90d
_COLUMNS = (
    "customer_id, first_purchase_at, last_purchase_at, last_event_at, purchase_count, "
    "lifetime_spend, purchases_30d, revenue_30d, purchases_90d, revenue_90d"
)


def _sql(statement: str, *instants: str) -> TextClause:
    """A text statement whose named timestamp parameters are bound as UTCDateTime."""
    clause = text(statement)
    if instants:
        clause = clause.bindparams(*(bindparam(name, type_=UTCDateTime()) for name in instants))
    return clause


def windows_as_of(connection: Connection) -> datetime | None:
    """The instant the windowed traits currently describe, or None before the first roll."""
    value = connection.execute(
        text("SELECT value FROM settings WHERE key = :key"), {"key": AS_OF_KEY}
    ).scalar_one_or_none()
    return as_utc(datetime.fromisoformat(value)) if value else None


def _set_windows_as_of(connection: Connection, now: datetime) -> None:
    connection.execute(
        text(
            "INSERT INTO settings (key, value) VALUES (:key, :value) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ),
        {"key": AS_OF_KEY, "value": as_utc(now).astimezone(timezone.utc).isoformat()},
    )


def add_empty_rows(connection: Connection, customer_ids: str) -> None:
    """Give customers a traits row of zeros if they have none.

    ``customer_ids`` is a SELECT whose single column is named ``customer_id``. The audience
    module joins customers to traits, so a customer without purchases still needs a row
    (zeros and NULL dates) rather than none.
    """
    connection.execute(
        text(
            f"INSERT INTO traits ({_COLUMNS}) "
            f"SELECT ids.customer_id, NULL, NULL, NULL, 0, 0.0, {_ZEROS} "
            f"FROM ({customer_ids}) AS ids WHERE true "
            "ON CONFLICT (customer_id) DO NOTHING"
        )
    )


def merge_events(connection: Connection, source: str) -> None:
    """Fold newly inserted events into traits.

    ``source`` is a table name (or a parenthesised SELECT) with the columns ``customer_id``,
    ``type``, ``occurred_at`` and ``revenue`` holding only events that were just inserted:
    adding events twice would count them twice. Window counts take a new purchase only if
    it lies in ``(as_of - N days, as_of]``; later ones enter when :func:`roll_windows`
    passes them. Before the first roll there is no as_of and the windows are left alone
    (the first roll computes them all).
    """
    as_of = windows_as_of(connection)
    params: dict[str, object] = {"purchase": PURCHASE, "refund": REFUND}
    if as_of is None:
        windowed = _ZEROS
        instants: tuple[str, ...] = ()
    else:
        parts = []
        for days in WINDOWS:
            params[f"start_{days}"] = as_of - timedelta(days=days)
            inside = f"n.occurred_at > :start_{days} AND n.occurred_at <= :as_of"
            parts.append(f"SUM(CASE WHEN n.type = :purchase AND {inside} THEN 1 ELSE 0 END)")
            parts.append(
                f"SUM(CASE WHEN n.type IN (:purchase, :refund) AND {inside} THEN COALESCE(n.revenue, 0.0) ELSE 0.0 END)"
            )
        windowed = ", ".join(parts)
        params["as_of"] = as_of
        instants = ("as_of", *(f"start_{days}" for days in WINDOWS))

    def earliest(column: str) -> str:
        return (
            f"CASE WHEN traits.{column} IS NULL OR excluded.{column} < traits.{column} "
            f"THEN excluded.{column} ELSE traits.{column} END"
        )

    def latest(column: str) -> str:
        return (
            f"CASE WHEN traits.{column} IS NULL OR excluded.{column} > traits.{column} "
            f"THEN excluded.{column} ELSE traits.{column} END"
        )

    added = ", ".join(
        f"{column} = traits.{column} + excluded.{column}"
        for column in (
            "purchase_count",
            "lifetime_spend",
            "purchases_30d",
            "revenue_30d",
            "purchases_90d",
            "revenue_90d",
        )
    )
    statement = f"""
        INSERT INTO traits ({_COLUMNS})
        SELECT n.customer_id,
               MIN(CASE WHEN n.type = :purchase THEN n.occurred_at END),
               MAX(CASE WHEN n.type = :purchase THEN n.occurred_at END),
               MAX(n.occurred_at),
               SUM(CASE WHEN n.type = :purchase THEN 1 ELSE 0 END),
               SUM(CASE WHEN n.type IN (:purchase, :refund) THEN COALESCE(n.revenue, 0.0) ELSE 0.0 END),
               {windowed}
        FROM {source} AS n
        WHERE true
        GROUP BY n.customer_id
        ON CONFLICT (customer_id) DO UPDATE SET
            first_purchase_at = {earliest("first_purchase_at")},
            last_purchase_at = {latest("last_purchase_at")},
            last_event_at = {latest("last_event_at")},
            {added}
    """
    connection.execute(_sql(statement, *instants), params)


def roll_windows(connection: Connection, now: datetime) -> None:
    """Move the 30/90-day windows to end at ``now``, touching only customers that change.

    A purchase changes a customer's window counts only if it leaves a window, i.e. it
    occurred in ``(old_as_of - N, now - N]``, or enters both windows, i.e. it occurred in
    ``(old_as_of, now]``. Those customers are recomputed from their own events (through
    the ``(type, occurred_at)`` and ``(customer_id, occurred_at)`` indexes); everyone else
    keeps their numbers. Going backwards in time, or rolling for the first time, has no
    such shortcut, so every window is recomputed.
    """
    now = as_utc(now)
    old = windows_as_of(connection)
    if old is None or now < old:
        _recompute_windows(connection, now, affected=None)
    elif now > old:
        params: dict[str, object] = {"purchase": PURCHASE, "refund": REFUND, "old": old, "now": now}
        edges = ["(e.occurred_at > :old AND e.occurred_at <= :now)"]
        for days in WINDOWS:
            params[f"old_start_{days}"] = old - timedelta(days=days)
            params[f"new_start_{days}"] = now - timedelta(days=days)
            edges.append(
                f"(e.occurred_at > :old_start_{days} AND e.occurred_at <= :new_start_{days})"
            )
        affected = (
            "SELECT DISTINCT e.customer_id FROM events AS e "
            f"WHERE e.type IN (:purchase, :refund) AND ({' OR '.join(edges)})"
        )
        _recompute_windows(connection, now, affected=(affected, params))
    _set_windows_as_of(connection, now)


def _recompute_windows(
    connection: Connection,
    now: datetime,
    affected: tuple[str, dict[str, object]] | None,
) -> None:
    """Recompute window columns for the customers selected by ``affected`` (None: all)."""
    params: dict[str, object] = {"purchase": PURCHASE, "refund": REFUND, "now": now}
    instants = ["now"]
    for days in WINDOWS:
        params[f"start_{days}"] = now - timedelta(days=days)
        instants.append(f"start_{days}")
    widest = max(WINDOWS)
    sums = []
    for days in WINDOWS:
        inside = f"e.occurred_at > :start_{days}"
        sums.append(f"SUM(CASE WHEN e.type = :purchase AND {inside} THEN 1 ELSE 0 END) AS purchases_{days}d")
        sums.append(
            f"SUM(CASE WHEN {inside} THEN COALESCE(e.revenue, 0.0) ELSE 0.0 END) AS revenue_{days}d"
        )
    assignments = ", ".join(
        f"{kind}_{days}d = COALESCE(w.{kind}_{days}d, {zero})"
        for days in WINDOWS
        for kind, zero in (("purchases", "0"), ("revenue", "0.0"))
    )
    in_window = (
        f"e.type IN (:purchase, :refund) AND e.occurred_at > :start_{widest} AND e.occurred_at <= :now"
    )
    if affected is None:
        # Everyone: clear the windows, then fill in those with purchases in the widest one.
        zeroed = ", ".join(
            f"{kind}_{days}d = {zero}"
            for days in WINDOWS
            for kind, zero in (("purchases", "0"), ("revenue", "0.0"))
        )
        nonzero = " OR ".join(
            f"{kind}_{days}d <> 0" for days in WINDOWS for kind in ("purchases", "revenue")
        )
        connection.execute(text(f"UPDATE traits SET {zeroed} WHERE {nonzero}"))
        windows = (
            f"SELECT e.customer_id, {', '.join(sums)} FROM events AS e "
            f"WHERE {in_window} GROUP BY e.customer_id"
        )
    else:
        # Only the affected customers; the LEFT JOIN gives zeros to those whose last
        # purchase just left the window.
        selection, extra = affected
        params.update(extra)
        instants += [
            name for name, value in extra.items() if isinstance(value, datetime) and name not in instants
        ]
        windows = (
            f"SELECT a.customer_id, {', '.join(sums)} FROM ({selection}) AS a "
            f"LEFT JOIN events AS e ON e.customer_id = a.customer_id AND {in_window} "
            "GROUP BY a.customer_id"
        )
    connection.execute(
        _sql(
            f"UPDATE traits SET {assignments} FROM ({windows}) AS w "
            "WHERE traits.customer_id = w.customer_id",
            *instants,
        ),
        params,
    )


def recompute_all(connection: Connection, now: datetime) -> None:
    """Rebuild every trait from ``events`` and set the windows to end at ``now``.

    For repair and for checking the incremental path; a cycle never needs it.
    """
    now = as_utc(now)
    add_empty_rows(
        connection,
        "SELECT c.id AS customer_id FROM customers AS c "
        "WHERE NOT EXISTS (SELECT 1 FROM traits AS t WHERE t.customer_id = c.id)",
    )
    connection.execute(
        text(
            "UPDATE traits SET first_purchase_at = NULL, last_purchase_at = NULL, "
            "last_event_at = NULL, purchase_count = 0, lifetime_spend = 0.0 "
            "WHERE last_event_at IS NOT NULL OR purchase_count <> 0 OR lifetime_spend <> 0"
        )
    )
    connection.execute(
        text(
            """
            UPDATE traits SET
                first_purchase_at = a.first_purchase_at,
                last_purchase_at = a.last_purchase_at,
                last_event_at = a.last_event_at,
                purchase_count = a.purchase_count,
                lifetime_spend = a.lifetime_spend
            FROM (
                SELECT e.customer_id,
                       MIN(CASE WHEN e.type = :purchase THEN e.occurred_at END) AS first_purchase_at,
                       MAX(CASE WHEN e.type = :purchase THEN e.occurred_at END) AS last_purchase_at,
                       MAX(e.occurred_at) AS last_event_at,
                       SUM(CASE WHEN e.type = :purchase THEN 1 ELSE 0 END) AS purchase_count,
                       SUM(CASE WHEN e.type IN (:purchase, :refund) THEN COALESCE(e.revenue, 0.0) ELSE 0.0 END)
                           AS lifetime_spend
                FROM events AS e
                GROUP BY e.customer_id
            ) AS a
            WHERE traits.customer_id = a.customer_id
            """
        ),
        {"purchase": PURCHASE, "refund": REFUND},
    )
    _recompute_windows(connection, now, affected=None)
    _set_windows_as_of(connection, now)
