"""A no stays a no: consent history by its own time, and the events that carry consent.

Real files, the real cycle and dispatcher, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.importing import import_app
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.ingest import import_customers, import_events
from legato.store.schema import consents, outbox, suppressions
from legato.trust.inbound import receive

from tests.world import AT, send_round, two_channel_playbook

runner = CliRunner()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


CRM = (
    "id,phone,time_zone,consent_sms_marketing,consent_sms_marketing_at\n"
    "a,+14155550100,UTC,express,2024-01-01T00:00:00Z\n"
    "b,+14155550101,UTC,express,2024-01-01T00:00:00Z\n"
    "c,+14155550102,UTC,express,2024-01-01T00:00:00Z\n"
    "d,+14155550103,UTC,express,2024-01-01T00:00:00Z\n"
    "e,+14155550104,UTC,express,2024-01-01T00:00:00Z\n"
)


def test_stop_then_an_older_reimport_sends_nothing(engine: Engine, tmp_path: Path) -> None:
    pb = two_channel_playbook()
    crm = write(tmp_path, "crm.csv", CRM)
    import_customers(engine, crm, clock=FixedClock(AT))
    assert set(send_round(engine, pb, AT, tmp_path / "r1")["sms"]) == {"a", "b", "c", "d", "e"}

    stop = AT + timedelta(hours=3)
    for customer in "abcd":
        assert receive(engine, pb, customer, "sms", "STOP", stop).action == "opted_out"

    # The usual CRM file again: consent express, dated before the STOP. Nothing is re-granted,
    # and the report says which rows and why.
    again = import_customers(engine, crm, clock=FixedClock(stop + timedelta(hours=1)))
    assert again.rejected == 0
    assert [(n.row, n.column) for n in again.not_regranted] == [(2, "consent_sms_marketing"), (3, "consent_sms_marketing"), (4, "consent_sms_marketing"), (5, "consent_sms_marketing")]
    assert "is dated 2024-01-01 00:00 UTC, not after consent was revoked 2024-03-04 11:00 UTC (an opt-out reply)" in again.not_regranted[0].reason

    # Other grants: undated, implied (even newer), express dated before the STOP, express dated after it.
    later = stop + timedelta(days=1)
    grants = write(
        tmp_path,
        "grants.csv",
        "id,consent_sms_marketing,consent_sms_marketing_at\n"
        "a,express,\n"
        f"b,implied,{later.isoformat()}\n"
        f"c,express,{(stop - timedelta(hours=1)).isoformat()}\n"
        f"d,express,{later.isoformat()}\n",
    )
    report = import_customers(engine, grants, clock=FixedClock(later + timedelta(hours=1)))
    reasons = {n.row: n.reason for n in report.not_regranted}
    assert set(reasons) == {2, 3, 4}
    assert "has no date" in reasons[2] and "implied consent" in reasons[3] and "not after consent was revoked" in reasons[4]

    reached = send_round(engine, pb, AT + timedelta(days=2), tmp_path / "r2")
    assert set(reached["sms"]) == {"d", "e"}  # d said yes again after its STOP; e never said no

    # The CLI names the count and a sample with row numbers.
    result = runner.invoke(import_app, ["customers", str(crm), "-d", url_of(engine)])
    assert result.exit_code == 0, result.output
    assert "consent not re-granted: 3 grants over a revocation" in result.stdout
    assert "crm.csv row 2, column consent_sms_marketing: not re-granted:" in result.stdout
    as_json = json.loads(runner.invoke(import_app, ["customers", str(crm), "-d", url_of(engine), "--json"]).stdout)
    assert as_json["not_regranted"] == 3 and as_json["not_regranted_rows"][0]["row"] == 2


def test_a_consent_dated_in_the_future_is_a_row_error(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "crm.csv", "id,consent_email_marketing,consent_email_marketing_at\na,express,2030-01-01\nb,express,2024-01-01\n")
    report = import_customers(engine, path, clock=FixedClock(AT))
    assert [(e.row, e.column) for e in report.errors] == [(2, "consent_email_marketing_at")]
    assert "in the future" in report.errors[0].reason


EVENTS_CRM = (
    "id,email,phone,time_zone,consent_email_marketing,consent_sms_marketing,consent_at\n"
    + "".join(f"{c},{c}@example.com,+1415555010{i},UTC,express,express,2024-01-01T00:00:00Z\n" for i, c in enumerate("abcdef"))
)


def test_imported_unsubscribes_complaints_and_hard_bounces_take_effect_at_once(engine: Engine, tmp_path: Path) -> None:
    pb = two_channel_playbook()
    import_customers(engine, write(tmp_path, "crm.csv", EVENTS_CRM), clock=FixedClock(AT - timedelta(days=1)))
    sinks = transports(pb, tmp_path / "r1")
    run_cycle(engine, pb, FixedClock(AT), sinks)  # everyone decided: one e-mail and one text each

    events = write(
        tmp_path,
        "esp.csv",
        "id,customer_id,type,occurred_at,channel,bounce_type\n"
        "u1,a,unsubscribe,2024-03-04T08:30:00Z,email,\n"  # after the decision, before the send
        "u2,b,unsubscribe,2023-06-01T00:00:00Z,email,\n"  # older than b's express consent: b said yes since
        "x1,c,complaint,2024-03-04T08:30:00Z,,\n"  # names no channel: a no to every channel
        "h1,d,bounce,2024-03-04T08:30:00Z,email,hard\n"
        "s1,e,bounce,2024-03-04T08:30:00Z,email,soft\n",
    )
    report = import_events(engine, events, clock=FixedClock(AT))
    assert report.rejected == 0 and report.inserted == 5
    assert (report.consents_revoked, report.undeliverable) == (6, 1)  # a: email; c: all five channels

    # The dispatcher asks again at send time: what was decided before the events does not go out.
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), sinks)
    with engine.connect() as c:
        sent = {(r.customer_id, r.channel) for r in c.execute(sa.select(outbox.c.customer_id, outbox.c.channel).where(outbox.c.status == "sent"))}
        failed = {f"{r.customer_id}:{r.channel}": r.error for r in c.execute(sa.select(outbox.c.customer_id, outbox.c.channel, outbox.c.error).where(outbox.c.status != "sent"))}
    assert {k for k in sent if k[1] == "email"} == {("b", "email"), ("e", "email"), ("f", "email")}
    assert {k for k in sent if k[1] == "sms"} == {(x, "sms") for x in "abdef"}
    assert "hard-bounced" in failed["d:email"] and "revoked" in failed["a:email"]

    # The next cycle does not choose them either.
    reached = send_round(engine, pb, AT + timedelta(days=7), tmp_path / "r2")
    assert set(reached["email"]) == {"b", "e", "f"} and set(reached["sms"]) == set("abdef")
    with engine.connect() as c:
        listed = c.execute(sa.select(suppressions.c.kind, suppressions.c.value)).all()
        source = c.execute(sa.select(consents.c.source).where(consents.c.customer_id == "a", consents.c.channel == "email")).scalar_one()
    assert listed == [("undeliverable", "d@example.com")] and source == "event:unsubscribe:u1"

    # Importing the same file again is a duplicate delivery: nothing changes.
    again = import_events(engine, events, clock=FixedClock(AT))
    assert (again.unchanged, again.consents_revoked, again.undeliverable) == (5, 0, 0)


def test_events_that_carry_consent_are_checked(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "crm.csv", EVENTS_CRM), clock=FixedClock(AT))
    events = write(
        tmp_path,
        "esp.csv",
        "id,customer_id,type,occurred_at,channel,bounce_type\n"
        "u1,a,unsubscribe,2024-03-04T08:30:00Z,fax,\n"
        "h1,b,bounce,2024-03-04T08:30:00Z,,\n"
        "h2,c,bounce,2024-03-04T08:30:00Z,email,maybe\n",
    )
    report = import_events(engine, events, clock=FixedClock(AT))
    assert [(e.row, e.column) for e in report.errors] == [(2, "channel"), (3, "channel"), (4, "bounce_type")]
    assert report.inserted == 0 and (report.consents_revoked, report.undeliverable) == (0, 0)


def test_the_migration_puts_stored_numbers_in_one_form_and_leaves_lifetimes_to_the_rule(blank_database_url: str) -> None:
    from alembic import command

    from legato.store.db import alembic_config

    engine = sa.create_engine(blank_database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0014")
    with engine.begin() as c:
        for key, email, phone, country in (("a", " Ann@Example.COM", "+1 (415) 555-0100", None), ("b", None, "06 12 34 56 78", "FR"), ("c", None, "555-0102", None)):
            c.execute(sa.text("INSERT INTO customers (id, email, phone, country, attributes, created_at, updated_at) VALUES (:i, :e, :p, :c, '{}', :at, :at)"),
                      {"i": key, "e": email, "p": phone, "c": country, "at": AT})
        c.execute(sa.text("INSERT INTO consents (customer_id, channel, purpose, status, kind, source, recorded_at, expires_at) "
                          "VALUES ('a', 'sms', 'marketing', 'granted', 'implied', 'import:old.csv', :at, :until)"), {"at": AT, "until": AT + timedelta(days=730)})
        for value in ("+1 415 555 0100", "+14155550100", "+1 (415) 555-0199"):
            c.execute(sa.text("INSERT INTO suppressions (kind, value, reason, added_at) VALUES ('phone', :v, 'dnc', :at)"), {"v": value, "at": AT})
    command.upgrade(config, "head")
    with engine.connect() as c:
        stored = {r.id: (r.email, r.phone) for r in c.execute(sa.text("SELECT id, email, phone FROM customers"))}
        listed = set(c.execute(sa.text("SELECT value FROM suppressions WHERE kind = 'phone'")).scalars())
        consent = c.execute(sa.text("SELECT expires_at, stated_at FROM consents")).one()
    assert stored == {"a": ("ann@example.com", "+14155550100"), "b": (None, "+33612345678"), "c": (None, "555-0102")}  # c: no country, left as it was
    assert listed == {"+14155550100", "+14155550199"}
    assert tuple(consent) == (None, None)
    command.downgrade(config, "0014")
    engine.dispose()
