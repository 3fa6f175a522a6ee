"""Replies stored before masking landed are masked when shown: `legato review list` and
`legato review show` (text and --json), `legato inbound list`."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.store.audit import record
from legato.store.schema import inbound_messages, review_items

from tests.world import AT, load_customers

CARD = "4111 1111 1111 1111"
OLD_REPLY = f"I will sue you, charge it to {CARD} cvv 123 and call me on +1 415 555 0100"


def old_item(engine: Engine) -> int:
    """A conversation exactly as it was stored before replies were masked on the way in."""
    load_customers(engine, n=2)
    with engine.begin() as c:
        message = c.execute(
            sa.insert(inbound_messages).values(
                customer_id="c001", channel="sms", received_at=AT, text=OLD_REPLY, sentiment=-0.7,
                intents={"intents": ["legal_threat"], "evidence": [OLD_REPLY]}, action="escalated", reason="legal_threat",
                priority=95, status="open", due_at=AT,
            ).returning(inbound_messages.c.id)
        ).scalar_one()
        item = c.execute(
            sa.insert(review_items).values(
                kind="conversation", inbound_message_id=message, reason="legal_threat", priority=95, status="open",
                created_at=AT, due_at=AT, evidence={"excerpt": OLD_REPLY, "phrases": [OLD_REPLY, "sue"], "sentiment": -0.7},
            ).returning(review_items.c.id)
        ).scalar_one()
        record(c, AT, "customer:c001", "escalated", "review_item", str(item), {"evidence": [OLD_REPLY]})
    return int(item)


def test_review_list_and_show_mask_old_replies(engine: Engine, database_url: str) -> None:
    item = old_item(engine)
    runner = CliRunner()
    outputs = [
        runner.invoke(app, ["review", "list", "-d", database_url, "--json"]),
        runner.invoke(app, ["review", "list", "-d", database_url]),
        runner.invoke(app, ["review", "show", str(item), "-d", database_url, "--json"]),
        runner.invoke(app, ["review", "show", str(item), "-d", database_url]),
        runner.invoke(app, ["inbound", "list", "-d", database_url, "--json"]),
    ]
    for done in outputs:
        assert done.exit_code == 0, done.output
        assert CARD not in done.output and "4111" not in done.output.replace("••••1111", "") and "cvv 123" not in done.output
        assert "555 0100" not in done.output
    shown = json.loads(outputs[2].stdout)
    assert "[card ••••1111]" in shown["message"]["text"] and "[card ••••1111]" in shown["evidence"]["excerpt"]
    assert all(CARD not in p for p in shown["evidence"]["phrases"]) and "sue" in shown["evidence"]["phrases"]
    assert CARD not in json.dumps(shown["history"], default=str)
    listed = json.loads(outputs[0].stdout)["items"][0]
    assert "[card ••••1111]" in listed["evidence"]["excerpt"] and listed["evidence"]["sentiment"] == -0.7
    # Shown masked, stored as it was: masking on display changes nothing in the store.
    with engine.connect() as c:
        assert c.execute(sa.select(inbound_messages.c.text)).scalar_one() == OLD_REPLY
