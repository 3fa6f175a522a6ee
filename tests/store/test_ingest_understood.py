"""Imports say what they did not understand, and understand more of what marketers have.

A marketer's customer file had `timezone`, `email_consent` and `mobile` columns and the
purchases had `amount`: all were silently stored as attributes and properties, leaving
customers with no zone, consent or phone and purchases worth $0. The raw CDNOW file has
dates like 19970101 and is whitespace-separated. Refunds had nowhere to go. Every test runs
on SQLite and PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.datasets import CDNOW, open_binary, shipped_file
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.ingest import ImportFileError, import_customers, import_events
from legato.store.schema import consents, customers, decisions, events, traits

from tests.world import AT, load_customers
from tests.world import learning_playbook as playbook

runner = CliRunner()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# --- columns named like a known field ------------------------------------------------


def test_customer_columns_named_like_fields_warn_with_the_map_that_fixes_them(engine: Engine, tmp_path: Path) -> None:
    source = write(
        tmp_path,
        "crm.csv",
        "id,email,timezone,email_consent,mobile,loyalty_tier\nc1,ann@example.com,Europe/Paris,yes,+33612345678,gold\n",
    )
    report = import_customers(engine, source)
    assert report.inserted == 1 and report.rejected == 0
    assert report.warnings == [
        "crm.csv: column timezone looks like time_zone but was kept as a customer attribute; --map timezone=time_zone imports it as time_zone",
        "crm.csv: column email_consent looks like consent_email_marketing but was kept as a customer attribute; "
        "--map email_consent=consent_email_marketing imports it as consent_email_marketing",
        "crm.csv: column mobile looks like phone but was kept as a customer attribute; --map mobile=phone imports it as phone",
    ]
    # The command says it too, and the --map it names does what it says.
    result = runner.invoke(
        app,
        ["import", "customers", str(source), "--database", url(engine), "--map", "timezone=time_zone",
         "--map", "email_consent=consent_email_marketing", "--map", "mobile=phone", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []
    with engine.connect() as c:
        row = c.execute(sa.select(customers.c.time_zone, customers.c.phone)).one()
        consent = c.execute(sa.select(consents.c.channel, consents.c.purpose, consents.c.status)).all()
    assert (row.time_zone, row.phone) == ("Europe/Paris", "+33612345678")
    assert [tuple(r) for r in consent] == [("email", "marketing", "granted")]


def test_a_declared_attribute_is_meant_and_not_warned_about(engine: Engine, tmp_path: Path) -> None:
    source = write(tmp_path, "crm.csv", "id,zone\nc1,north\n")
    assert import_customers(engine, source, attribute_types={"zone": "string"}).warnings == []
    assert import_customers(engine, source).warnings[0].startswith("crm.csv: column zone looks like time_zone")


def test_event_columns_named_like_fields_warn_and_a_missing_column_names_its_map(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", "id\nc1\n"))
    source = write(tmp_path, "orders.csv", "id,customer_id,type,occurred_at,amount\no1,c1,purchase,2024-03-01T10:00:00Z,19.90\n")
    report = import_events(engine, source)
    assert report.warnings == [
        "orders.csv: column amount looks like revenue but was kept as an event property; --map amount=revenue imports it as revenue"
    ]
    result = runner.invoke(app, ["import", "events", str(source), "--database", url(engine)])
    assert "--map amount=revenue" in result.output.replace("\n", " ")
    # A required column missing: the hint's --map names the column that looks like it.
    lacking = write(tmp_path, "o2.csv", "order_id,customer_id,type,timestamp\no2,c1,purchase,2024-03-01T10:00:00Z\n")
    with pytest.raises(ImportFileError) as caught:
        import_events(engine, lacking)
    assert "--map order_id=id" in str(caught.value.hint)


# --- ISO 8601 basic dates --------------------------------------------------------------


def test_basic_iso_8601_dates_are_read(engine: Engine, tmp_path: Path) -> None:
    import_customers(
        engine,
        write(tmp_path, "c.csv", "id,consent_email_marketing,consent_at,joined\nc1,express,20240301,19970101T0930Z\n"),
        attribute_types={"joined": "timestamp"},
    )
    source = write(
        tmp_path,
        "e.csv",
        "id,customer_id,type,occurred_at,revenue\n"
        "e1,c1,purchase,19970101,11.77\n"
        "e2,c1,visit,19970102T093000Z,\n"
        "e3,c1,visit,19970103T0930+0100,\n"
        "e4,c1,visit,19971301,\n",
    )
    report = import_events(engine, source)
    assert report.inserted == 3 and [(e.row, e.column) for e in report.errors] == [(5, "occurred_at")]
    assert "'19971301' is not a date" in report.errors[0].reason
    with engine.connect() as c:
        stamps = dict(c.execute(sa.select(events.c.id, events.c.occurred_at)).all())
        consent_at = c.execute(sa.select(consents.c.stated_at)).scalar_one()  # the file's date (recorded_at is the import's)
        attributes = c.execute(sa.select(customers.c.attributes)).scalar_one()
    utc = timezone.utc
    assert {k: v.replace(tzinfo=utc) if v.tzinfo is None else v for k, v in stamps.items()} == {
        "e1": datetime(1997, 1, 1, tzinfo=utc),
        "e2": datetime(1997, 1, 2, 9, 30, tzinfo=utc),
        "e3": datetime(1997, 1, 3, 8, 30, tzinfo=utc),
    }
    assert consent_at.replace(tzinfo=utc) == datetime(2024, 3, 1, tzinfo=utc)
    joined = (attributes if isinstance(attributes, dict) else json.loads(attributes))["joined"]
    assert joined == "1997-01-01T09:30:00Z"


# --- refunds ----------------------------------------------------------------------------


def test_a_refund_counts_against_spend_and_negative_revenue_elsewhere_names_it(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", "id\nc1\nc2\n"))
    source = write(
        tmp_path,
        "e.csv",
        "id,customer_id,type,occurred_at,revenue\n"
        "p1,c1,purchase,2024-03-01T10:00:00Z,50\n"
        "r1,c1,refund,2024-03-02T10:00:00Z,20\n"  # written as the amount returned
        "r2,c1,refund,2024-03-03T10:00:00Z,-5\n"  # or as negative revenue: the same
        "p2,c2,purchase,2024-03-01T10:00:00Z,-30\n",
    )
    report = import_events(engine, source)
    assert report.inserted == 3
    (error,) = report.errors
    assert (error.row, error.column) == (5, "revenue") and "type refund" in error.reason
    with engine.connect() as c:
        stored = dict(c.execute(sa.select(events.c.id, events.c.revenue)).all())
        row = c.execute(sa.select(traits.c.purchase_count, traits.c.lifetime_spend).where(traits.c.customer_id == "c1")).one()
    assert stored == {"p1": 50.0, "r1": -20.0, "r2": -5.0}
    assert (row.purchase_count, row.lifetime_spend) == (1, 25.0)


def test_a_refund_inside_the_window_takes_its_amount_back_from_the_decision(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=20)
    pb = playbook()
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(hours=2))  # 10:00, inside the send window
    dispatch_due(engine, pb, clock, sinks)
    with engine.connect() as c:
        buyer = c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "sent").limit(1)).scalar_one()
    source = write(
        tmp_path,
        "e.csv",
        "id,customer_id,type,occurred_at,revenue\n"
        f"p1,{buyer},purchase,{(AT + timedelta(hours=11)).isoformat()},50\n"
        f"r1,{buyer},refund,{(AT + timedelta(hours=12)).isoformat()},15\n",
    )
    import_events(engine, source)
    clock.set(AT + timedelta(days=1, hours=1))
    run_cycle(engine, pb, clock, sinks)
    with engine.connect() as c:
        row = c.execute(
            sa.select(decisions.c.purchased, decisions.c.revenue).where(decisions.c.customer_id == buyer, decisions.c.settled_at.is_not(None))
        ).one()
    assert row.purchased is True and row.revenue == 35.0


# --- a chosen delimiter ---------------------------------------------------------------


def cdnow_lines(count: int) -> bytes:
    """The first ``count`` lines of the raw CDNOW file, exactly as shipped (spaces, CRLF)."""
    with open_binary(shipped_file(CDNOW)) as handle:
        return b"".join(handle.readline() for _ in range(count))


def test_the_raw_whitespace_separated_cdnow_file_is_read(engine: Engine, tmp_path: Path) -> None:
    raw = cdnow_lines(40)
    assert raw.startswith(b" customer_id  date number_of_cds  dollar_value\r\n")
    path = tmp_path / "CDNOW_master.txt"
    path.write_bytes(raw)
    # Without a delimiter a .txt file is refused with the option that reads it.
    with pytest.raises(ImportFileError) as caught:
        import_customers(engine, path)
    assert "--delimiter whitespace" in str(caught.value.hint)
    # One customer per id: the purchases' customers, attributes from the columns.
    report = import_customers(engine, path, delimiter="whitespace", mapping={"customer_id": "id"})
    ids = [line.split()[0].decode() for line in raw.splitlines()[1:]]
    assert report.rows_read == 39 and report.inserted == len(set(ids))
    assert {e.reason for e in report.errors} == {e.reason for e in report.errors if "duplicate id" in e.reason}
    with engine.connect() as c:
        first = c.execute(sa.select(customers.c.attributes).where(customers.c.id == "00001")).scalar_one()
    attributes = first if isinstance(first, dict) else json.loads(first)
    assert attributes == {"date": 19970101, "number_of_cds": 1, "dollar_value": 11.77}


def test_a_chosen_single_character_delimiter_and_tsv(engine: Engine, tmp_path: Path) -> None:
    semi = write(tmp_path, "crm.csv", "id;email;country\nc1;ann@example.com;FR\n")
    assert import_customers(engine, semi, delimiter=";").inserted == 1
    tsv = write(tmp_path, "crm.tsv", "id\temail\tcountry\nc2\tbob@example.com\tDE\n")
    assert import_customers(engine, tsv).inserted == 1
    with engine.connect() as c:
        assert dict(c.execute(sa.select(customers.c.id, customers.c.country)).all()) == {"c1": "FR", "c2": "DE"}
    result = runner.invoke(app, ["import", "customers", str(semi), "--delimiter", "ab", "--database", url(engine)])
    assert result.exit_code == 2 and "'ab' is not a delimiter" in result.output and "Traceback" not in result.output


def test_the_raw_cdnow_file_imports_as_purchases_and_again_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    # The file has neither an event id nor a type: --type gives every row one, and ids come
    # from each row's content, so importing it again finds every event already stored.
    raw = cdnow_lines(300)
    path = tmp_path / "CDNOW_master.txt"
    path.write_bytes(raw)
    rows = [line.split() for line in raw.decode().splitlines()[1:]]
    people = sorted({row[0] for row in rows})
    import_customers(engine, write(tmp_path, "c.csv", "id\n" + "\n".join(people) + "\n"))
    options = {"delimiter": "whitespace", "event_type": "purchase", "ids_from_content": True,
               "mapping": {"date": "occurred_at", "dollar_value": "revenue"}}
    first = import_events(engine, path, **options)
    assert (first.inserted, first.rejected, first.warnings) == (299, 0, [])
    again = import_events(engine, path, **options)
    assert (again.inserted, again.unchanged) == (0, 299)
    spend = sum(float(row[3]) for row in rows if row[0] == "00002")
    with engine.connect() as c:
        row = c.execute(sa.select(traits.c.purchase_count, traits.c.lifetime_spend, traits.c.first_purchase_at).where(traits.c.customer_id == "00002")).one()
    assert row.purchase_count == sum(1 for r in rows if r[0] == "00002") and row.lifetime_spend == pytest.approx(spend)
    assert row.first_purchase_at.replace(tzinfo=timezone.utc) == datetime(1997, 1, 12, tzinfo=timezone.utc)
    # The same from the command line, with what a file that has an id or type column gets.
    result = runner.invoke(app, ["import", "events", str(path), "--delimiter", "whitespace", "--type", "purchase", "--ids-from-content",
                                 "--map", "date=occurred_at", "--map", "dollar_value=revenue", "--database", url(engine), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["unchanged"] == 299
    typed = write(tmp_path, "e.csv", "id,customer_id,type,occurred_at\ne1,00001,visit,19970101\n")
    for flag in ("--type", "--ids-from-content"):
        args = ["import", "events", str(typed), "--database", url(engine)] + ([flag, "purchase"] if flag == "--type" else [flag])
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output and flag in result.output


def test_identical_rows_without_ids_stay_two_events(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", "id\nc1\n"))
    source = write(tmp_path, "e.csv", "customer_id,type,occurred_at,revenue\nc1,purchase,19970101,12\nc1,purchase,19970101,12\n")
    assert import_events(engine, source, ids_from_content=True).inserted == 2
    assert import_events(engine, source, ids_from_content=True).unchanged == 2
