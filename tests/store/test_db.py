"""Connections and migrations: the schema Alembic builds is the schema the code declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from legato.errors import StoreError
from legato.store.db import connect, is_empty
from legato.store.schema import metadata


def test_migrations_match_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_new_store_is_empty(engine: Engine) -> None:
    assert is_empty(engine)


def test_connect_twice_is_idempotent(database_url: str) -> None:
    connect(database_url).dispose()
    engine = connect(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    engine.dispose()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    engine.dispose()


def test_unreachable_postgres_names_the_url_and_the_fix() -> None:
    with pytest.raises(StoreError) as caught:
        connect("postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
    message = str(caught.value)
    assert "postgresql+psycopg://nobody@127.0.0.1:1/nowhere" in message
    assert "LEGATO_DATABASE_URL" in message


def test_malformed_url() -> None:
    with pytest.raises(StoreError, match="is not a database URL"):
        connect("not a url")


def test_unsupported_backend() -> None:
    with pytest.raises(StoreError, match="'mysql' databases are not supported"):
        connect("mysql://root@127.0.0.1/test")


@pytest.mark.parametrize("url", ["postgres://ana:secret@db.example:5432/shop", "postgresql://ana:secret@db.example:5432/shop"])
def test_a_postgres_url_other_tools_print_gets_the_one_legato_takes(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        connect(url)
    assert caught.value.hint is not None and "write it as postgresql+psycopg://ana:***@db.example:5432/shop" in caught.value.hint
    assert "secret" not in str(caught.value) + caught.value.hint


def test_sqlite_in_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        connect(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    assert not (tmp_path / "missing").exists()


def test_upgrading_to_one_review_queue_keeps_waiting_replies(tmp_path: Path) -> None:
    """Migration 0006: a reply that waited in the old inbound queue is an open conversation item."""
    import sqlalchemy as sa
    from alembic import command

    from legato.store.db import alembic_config

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(engine)
    command.upgrade(config, "0005")
    with engine.begin() as c:
        c.execute(text("INSERT INTO customers (id, attributes, created_at, updated_at) VALUES ('c1', '{}', '2024-03-01 00:00:00.000000', '2024-03-01 00:00:00.000000')"))
        for status in ("open", "closed"):
            c.execute(
                text(
                    "INSERT INTO inbound_messages (customer_id, channel, received_at, text, sentiment, intents, action, reason, priority, status, due_at) "
                    "VALUES ('c1', 'sms', '2024-03-01 10:00:00.000000', 'I will sue', -0.8, '[\"legal_threat\"]', 'escalated', 'legal_threat', 95, :status, '2024-03-02 10:00:00.000000')"
                ),
                {"status": status},
            )
    command.upgrade(config, "head")
    with engine.connect() as c:
        items = c.execute(text("SELECT kind, inbound_message_id, decision_id, reason, priority, status FROM review_items")).all()
        evidence = c.execute(text("SELECT evidence FROM review_items")).scalar_one()
    assert [tuple(i) for i in items] == [("conversation", 1, None, "legal_threat", 95, "open")]
    assert json.loads(evidence) == {"excerpt": "I will sue", "sentiment": -0.8}
    command.downgrade(config, "0005")
    with engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM review_items")).scalar_one() == 0
        assert c.execute(text("SELECT status FROM inbound_messages WHERE id = 1")).scalar_one() == "open"
