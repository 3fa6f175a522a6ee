"""Driver-level reads and column inserts agree with what SQLAlchemy reads and writes, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.store.bulk import insert_columns
from legato.store.fetch import fetch_columns
from legato.store.schema import consents, customers

AT = datetime(2024, 3, 4, 8, 0, 12, 345678, tzinfo=timezone.utc)


def _customers(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(
            sa.insert(customers),
            [
                {"id": "a", "email": "a@x.example", "attributes": {}, "created_at": AT, "updated_at": AT},
                {"id": "b", "email": None, "attributes": {"vip": True}, "created_at": AT, "updated_at": AT + timedelta(days=1)},
            ],
        )


def test_fetched_columns_hold_what_sqlalchemy_reads(engine: Engine) -> None:
    _customers(engine)
    query = sa.select(
        customers.c.id,
        customers.c.email,
        customers.c.updated_at,
        sa.case((customers.c.email.is_(None), 1), else_=0).label("missing"),
        sa.cast(sa.literal(1.5), sa.Float).label("half"),
        (customers.c.id == "b").label("is_b"),
        sa.literal(None, type_=customers.c.updated_at.type).label("never"),
    ).order_by(customers.c.id)
    with engine.connect() as c:
        rows = c.execute(query).all()
        columns, n = fetch_columns(c, query)
    assert n == 2
    assert columns["id"].tolist() == ["a", "b"] and columns["email"].tolist() == ["a@x.example", None]
    assert columns["missing"].tolist() == [r.missing for r in rows] == [0, 1]
    assert columns["half"].tolist() == [1.5, 1.5]
    assert [bool(v) for v in columns["is_b"]] == [r.is_b for r in rows] == [False, True]
    # Timestamps: UTC datetime64 with microseconds, NaT for NULL.
    assert columns["updated_at"].dtype == np.dtype("datetime64[us]")
    assert [v.item().replace(tzinfo=timezone.utc) for v in columns["updated_at"]] == [r.updated_at for r in rows]
    assert np.isnat(columns["never"]).all()


def test_an_empty_result_has_every_column(engine: Engine) -> None:
    query = sa.select(customers.c.id, customers.c.updated_at).where(customers.c.id == "nobody")
    with engine.connect() as c:
        columns, n = fetch_columns(c, query)
    assert n == 0 and set(columns) == {"id", "updated_at"} and all(len(v) == 0 for v in columns.values())


def test_inserted_columns_read_back_as_sqlalchemy_writes_them(engine: Engine) -> None:
    _customers(engine)
    expires = np.array([np.datetime64(AT.replace(tzinfo=None), "us"), np.datetime64("NaT")])
    with engine.begin() as c:
        insert_columns(
            c,
            consents,
            {
                "customer_id": ["a", "b"],
                "channel": ["email", "email"],
                "purpose": ["marketing", "marketing"],
                "status": np.array(["granted", "revoked"], dtype=object),
                "kind": ["express", "express"],
                "source": ["test", "test"],
                "recorded_at": np.full(2, np.datetime64(AT.replace(tzinfo=None), "us")),
                "expires_at": expires,
            },
        )
    with engine.connect() as c:
        got = c.execute(sa.select(consents.c.customer_id, consents.c.status, consents.c.recorded_at, consents.c.expires_at).order_by(consents.c.customer_id)).all()
        # The database compares them as timestamps too, not as text.
        later = c.execute(sa.select(sa.func.count()).where(consents.c.recorded_at > AT - timedelta(microseconds=1))).scalar_one()
    assert [tuple(r) for r in got] == [("a", "granted", AT, AT), ("b", "revoked", AT, None)]
    assert later == 2
