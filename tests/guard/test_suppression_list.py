"""The do-not-contact list by hand: add, list and remove, each change audited with who and why."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.store.schema import audit_log, suppressions

runner = CliRunner()


def cli(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_add_list_and_remove_are_audited_and_speak_one_form_of_a_number(engine: Engine, database_url: str) -> None:
    added = cli("suppress", "add", "--phone", "+1 (415) 555-0100", "--reason", "asked by phone", "--by", "ana", "-d", database_url)
    assert added.exit_code == 0, added.output
    cli("suppress", "add", "--email", " Jo@Example.COM ", "--reason", "legal hold", "--by", "ana", "-d", database_url)
    listed = json.loads(cli("suppress", "list", "-d", database_url, "--json").stdout)
    assert listed["total"] == 2 and {(e["kind"], e["value"]) for e in listed["entries"]} == {("phone", "+14155550100"), ("email", "jo@example.com")}
    only_phones = json.loads(cli("suppress", "list", "--kind", "phone", "-d", database_url, "--json").stdout)
    assert only_phones["total"] == 1

    no_reason = cli("suppress", "remove", "--phone", "+14155550100", "--by", "bob", "--reason", " ", "-d", database_url)
    assert no_reason.exit_code == 2 and "needs who and why" in no_reason.output
    # Written another way, it is the same entry.
    removed = cli("suppress", "remove", "--phone", "415-555-0100", "--country", "US", "--by", "bob", "--reason", "added by mistake", "-d", database_url)
    assert removed.exit_code == 0, removed.output
    said = " ".join(removed.output.split())
    assert "removed phone +14155550100" in said and "asked by phone" in said
    again = cli("suppress", "remove", "--phone", "+14155550100", "--by", "bob", "--reason", "twice", "-d", database_url)
    assert again.exit_code == 3 and "not on the suppression list" in again.output and "Traceback" not in again.output
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(suppressions)).scalar_one() == 1
        rows = c.execute(sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.entity_id, audit_log.c.detail).order_by(audit_log.c.id)).all()
    assert [(r.actor, r.action, r.entity_id) for r in rows] == [
        ("ana", "suppression_added", "phone:+14155550100"),
        ("ana", "suppression_added", "email:jo@example.com"),
        ("bob", "suppression_removed", "phone:+14155550100"),
    ]
    assert rows[-1].detail["reason"] == "added by mistake" and rows[-1].detail["listed_reason"] == "asked by phone"
