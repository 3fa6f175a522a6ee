"""The unsubscribe token is an HMAC under a secret key: unforgeable, verified, rotatable, long-lived."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.tokens import (
    SECRET_ENV,
    SECRET_FILE_ENV,
    KeyRing,
    SecretError,
    key_ring,
    message_token,
    ring_for,
    rotate_secret,
    token_message_id,
    verify_token,
)
from legato.store.schema import consents, outbox

NOW = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _own_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_a_token_verifies_for_its_message_and_customer_only() -> None:
    ring = KeyRing((b"k" * 32,), "test")
    token = message_token(42, "C1", ring)
    assert token_message_id(token) == "42"
    assert verify_token(token, 42, "C1", ring)
    assert not verify_token(token, 42, "C2", ring)  # another customer
    assert not verify_token(token, 43, "C1", ring)  # another message
    assert not verify_token(token, 42, "C1", KeyRing((b"x" * 32,), "other"))  # another key
    # The old unsigned token, computable by anyone from the two ids, is refused.
    old = base64.b32encode(hashlib.sha256(b"42:C1").digest()).decode().lower()[:24]
    assert not verify_token(old, 42, "C1", ring) and token_message_id(old) is None
    # No digits beyond 2-7 and no run a card check could mistake for a number.
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567.")


def test_the_key_file_is_created_beside_a_sqlite_database_owner_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    ring = key_ring(url, now=NOW)
    path = tmp_path / "legato.secret"
    assert ring.source == str(path) and len(ring.current) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_ring(url).keys == ring.keys  # the same key on the next run
    path.chmod(0o644)
    with pytest.raises(SecretError, match="can be read by other users"):
        key_ring(url)


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SECRET_ENV, "new-key-0123456789abcdef, old-key-0123456789abcdef")
    ring = key_ring(f"sqlite:///{tmp_path / 'x.db'}")
    assert ring.keys == (b"new-key-0123456789abcdef", b"old-key-0123456789abcdef")
    assert not (tmp_path / "legato.secret").exists()
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(SecretError, match="at least 16 characters"):
        key_ring(None)


def test_rotation_keeps_links_already_sent_working_for_90_days(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    before = key_ring(url, now=NOW)
    sent = message_token(7, "C7", before)
    rotate_secret(url, now=NOW + timedelta(days=1))
    after = key_ring(url)
    assert after.current != before.current and verify_token(sent, 7, "C7", after)
    assert message_token(7, "C7", after) != sent  # new links use the new key
    # 31 days after the message: CAN-SPAM's 30 days are covered.
    rotate_secret(url, now=NOW + timedelta(days=31))
    assert verify_token(sent, 7, "C7", key_ring(url))
    # A key retired more than 90 days ago is dropped at the next rotation.
    _, kept = rotate_secret(url, now=NOW + timedelta(days=95))
    assert not verify_token(sent, 7, "C7", key_ring(url)) and kept == 3


def test_a_sent_link_unsubscribes_and_a_forged_one_changes_nothing(engine: Engine, database_url: str, tmp_path: Path) -> None:
    from tests.world import AT, load_customers, playbook
    from legato.cycle import run_cycle

    load_customers(engine, n=8)
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
    line = json.loads((tmp_path / "out" / "email.jsonl").read_text().splitlines()[0])
    token = line["body"].split("?t=")[1].split()[0]
    assert line["headers"]["List-Unsubscribe"] == f"<https://test.example/u?t={token}>"
    with engine.connect() as c:
        message = c.execute(sa.select(outbox.c.message_id.label("id"), outbox.c.customer_id).where(outbox.c.message_id == token_message_id(token))).one()
    assert message.customer_id == line["customer_id"] and verify_token(token, message.id, message.customer_id, ring_for(engine))
    runner = CliRunner()
    forged = base64.b32encode(str(message.id).encode()).decode().rstrip("=").lower() + "." + "a" * 26
    refused = runner.invoke(app, ["inbound", "unsubscribe", forged, "-d", database_url])
    assert refused.exit_code == 2 and "not valid" in refused.output
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == message.customer_id)).scalar_one() != "revoked"
    done = runner.invoke(app, ["inbound", "unsubscribe", token, "-d", database_url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"message_id": str(message.id), "customer_id": message.customer_id, "channel": "email", "channels": ["email"], "changed": True}
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == message.customer_id)).scalar_one() == "revoked"
