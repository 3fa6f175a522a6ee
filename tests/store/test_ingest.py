"""Importing customers and events from real CSV, JSONL and Parquet files, on both backends."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from legato.cli.importing import import_app
from legato.clock import FixedClock
from legato.store import schema
from legato.store.ingest import ImportFileError, ImportReport, import_customers, import_events

T1 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
T2 = datetime(2024, 3, 2, 12, 0, tzinfo=timezone.utc)
T3 = datetime(2024, 3, 3, 12, 0, tzinfo=timezone.utc)


def write(folder: Path, name: str, content: str) -> Path:
    path = folder / name
    path.write_text(content, encoding="utf-8")
    return path


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def table_rows(engine: Engine, table: Any, order: Any = None) -> list[dict[str, Any]]:
    query = select(table)
    if order is not None:
        query = query.order_by(order)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def by_id(engine: Engine, table: Any, key: str = "id") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in table_rows(engine, table)}


def triples(report: ImportReport) -> list[tuple[int, str | None, str]]:
    return [(e.row, e.column, e.reason) for e in report.errors]


def counts(report: ImportReport) -> tuple[int, int, int, int, int]:
    return report.rows_read, report.inserted, report.updated, report.unchanged, report.rejected


CUSTOMERS = """\
id,email,time_zone,country,region,consent_email_marketing,consent_sms_marketing,tier,score,zip
C1,ann@example.com,Europe/Paris,fr,IDF,yes,implied,gold,120.5,02139
C2,bob@example.com,America/New_York,US,NY,no,,silver,80,10001
C3,,,,,,,,,
"""


# --- customers -------------------------------------------------------------------------


def test_customers_csv_are_stored_with_consents_attributes_and_empty_traits(
    engine: Engine, tmp_path: Path
) -> None:
    report = import_customers(engine, write(tmp_path, "customers.csv", CUSTOMERS), clock=FixedClock(T1))

    assert counts(report) == (3, 3, 0, 0, 0)
    stored = by_id(engine, schema.customers)
    assert stored["C1"]["email"] == "ann@example.com"
    assert stored["C1"]["country"] == "FR"  # upper-cased
    assert stored["C1"]["time_zone"] == "Europe/Paris"
    # score parses as numbers throughout; zip has a leading zero so it stays text
    assert stored["C1"]["attributes"] == {"tier": "gold", "score": 120.5, "zip": "02139"}
    assert stored["C2"]["attributes"] == {"tier": "silver", "score": 80, "zip": "10001"}
    assert stored["C3"]["attributes"] == {}
    assert stored["C3"]["email"] is None
    assert stored["C1"]["created_at"] == stored["C1"]["updated_at"] == T1

    consents = {(c["customer_id"], c["channel"], c["purpose"]): c for c in table_rows(engine, schema.consents)}
    assert set(consents) == {("C1", "email", "marketing"), ("C1", "sms", "marketing"), ("C2", "email", "marketing")}
    assert (consents["C1", "email", "marketing"]["status"], consents["C1", "email", "marketing"]["kind"]) == ("granted", "express")
    assert consents["C1", "email", "marketing"]["expires_at"] is None
    implied = consents["C1", "sms", "marketing"]
    assert (implied["status"], implied["kind"]) == ("granted", "implied")
    assert implied["recorded_at"] == T1
    assert implied["expires_at"] is None  # its lifetime is the consent rule's (guard.consent), not the import's
    assert consents["C2", "email", "marketing"]["status"] == "revoked"
    assert {c["source"] for c in consents.values()} == {"import:customers.csv"}

    traits = by_id(engine, schema.traits, "customer_id")
    assert set(traits) == {"C1", "C2", "C3"}
    assert traits["C3"]["purchase_count"] == 0 and traits["C3"]["last_purchase_at"] is None


def test_reimporting_the_same_file_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", CUSTOMERS)
    import_customers(engine, path, clock=FixedClock(T1))
    before = by_id(engine, schema.customers)
    consents_before = table_rows(engine, schema.consents, schema.consents.c.channel)

    again = import_customers(engine, path, clock=FixedClock(T2))

    assert counts(again) == (3, 0, 0, 3, 0)
    assert by_id(engine, schema.customers) == before  # updated_at untouched
    assert table_rows(engine, schema.consents, schema.consents.c.channel) == consents_before


def test_only_changed_customers_are_updated(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "customers.csv", CUSTOMERS), clock=FixedClock(T1))
    changed = write(
        tmp_path,
        "changes.csv",
        "id,email,tier,vip,consent_email_marketing\n"
        "C1,ann@example.com,gold,,yes\n"  # same as stored (vip empty = no value)
        "C2,bob@new.example.com,,,\n"  # new email; empty tier keeps the stored one
        "C3,,,true,\n"  # new attribute, merged into the others
        "C4,dan@example.com,,,\n",  # new customer
    )

    report = import_customers(engine, changed, clock=FixedClock(T2))

    assert counts(report) == (4, 1, 2, 1, 0)
    stored = by_id(engine, schema.customers)
    assert stored["C1"]["updated_at"] == T1
    assert stored["C2"]["email"] == "bob@new.example.com"
    assert stored["C2"]["attributes"] == {"tier": "silver", "score": 80, "zip": "10001"}
    assert stored["C2"]["updated_at"] == T2 and stored["C2"]["created_at"] == T1
    assert stored["C3"]["attributes"] == {"vip": "true"}  # undeclared: kept as text
    assert stored["C4"]["created_at"] == T2
    assert count(engine, schema.traits) == 4


def test_a_consent_change_alone_updates_the_customer(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "customers.csv", CUSTOMERS), clock=FixedClock(T1))
    revoked = write(tmp_path, "optout.csv", "id,consent_email_marketing\nC1,revoked\nC2,no\n")

    report = import_customers(engine, revoked, clock=FixedClock(T2))

    assert counts(report) == (2, 0, 1, 1, 0)
    consent = {
        (c["customer_id"], c["channel"]): c for c in table_rows(engine, schema.consents)
    }
    assert consent["C1", "email"]["status"] == "revoked"
    assert consent["C1", "email"]["recorded_at"] == T2
    assert consent["C1", "email"]["source"] == "import:optout.csv"
    assert consent["C2", "email"]["recorded_at"] == T1  # unchanged statement keeps its time
    assert consent["C1", "sms"]["kind"] == "implied"  # not in the file: untouched
    assert by_id(engine, schema.customers)["C1"]["updated_at"] == T2


def test_explicit_consent_at_sets_the_time(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "id,consent_email_marketing,consent_push_transactional,consent_at\n"
        "C1,implied,express,2023-06-01T10:00:00+02:00\n"
        "C2,true,,\n",
    )
    import_customers(engine, path, clock=FixedClock(T1))
    again = import_customers(engine, path, clock=FixedClock(T2))

    assert counts(again) == (2, 0, 0, 2, 0)
    consent = {(c["customer_id"], c["channel"]): c for c in table_rows(engine, schema.consents)}
    assert consent["C1", "email"]["stated_at"] == datetime(2023, 6, 1, 8, tzinfo=timezone.utc)  # the file's time
    assert consent["C1", "email"]["recorded_at"] == T1  # the import's
    assert consent["C1", "email"]["expires_at"] is None
    assert consent["C1", "push"]["kind"] == "express"
    assert consent["C2", "email"]["stated_at"] is None and consent["C2", "email"]["recorded_at"] == T1  # undated


BAD_CUSTOMERS = """\
id,email,time_zone,country,region,consent_email_marketing,consent_sms_marketing,history,vip
C1,ann@example.com,Europe/Paris,fr,IDF,yes,implied,120.5,yes
C2,bob@example.com,Mars/Base,US,,no,,80,no
,carl@example.com,,,,,,,
C3,not-an-email,,,,,,,
C4,,,USA,,,,,
C5,,,,,maybe,,,
C1,again@example.com,,,,,,,
C6,,,,,,,abc,
C7,,,,,,,,perhaps
C8,,America/New_York,ca,,,,7,0
"""


def test_customer_row_errors_name_row_column_and_value(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", BAD_CUSTOMERS)

    report = import_customers(
        engine, path, attribute_types={"history": "number", "vip": "boolean"}, clock=FixedClock(T1)
    )

    assert counts(report) == (10, 2, 0, 0, 8)
    assert triples(report) == [
        (3, "time_zone", "'Mars/Base' is not a time zone (use an IANA name, e.g. Europe/Paris)"),
        (4, "id", "missing id (every customer needs one)"),
        (5, "email", "'not-an-email' is not an email address"),
        (6, "country", "'USA' is not a 2-letter country code (ISO 3166-1, e.g. US)"),
        (
            7,
            "consent_email_marketing",
            "'maybe' is not a consent value (use express, implied, revoked, yes or no, or leave it empty)",
        ),
        (8, "id", "duplicate id, first seen at row 2"),
        (9, "history", "'abc' is not a number"),
        (10, "vip", "'perhaps' is not a boolean (use true/false, yes/no or 1/0)"),
    ]
    assert report.messages()[6] == "customers.csv row 9, column history: 'abc' is not a number"
    assert report.errors[6].value == "abc"
    stored = by_id(engine, schema.customers)
    assert set(stored) == {"C1", "C8"}
    assert stored["C1"]["attributes"] == {"history": 120.5, "vip": True}
    assert stored["C1"]["email"] == "ann@example.com"  # the duplicate row did not win
    assert stored["C8"]["attributes"] == {"history": 7, "vip": False}
    assert count(engine, schema.consents) == 2  # only C1's; C2's row was rejected whole


def test_declared_timestamp_and_string_attributes(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "id,signed_up,code,flag\nC1,2024-01-05T10:00:00+01:00,00123,1\nC2,2024-01-06,42,no\nC3,soon,7,\n",
    )
    types = {"signed_up": "timestamp", "code": "string", "flag": "boolean"}

    report = import_customers(engine, path, attribute_types=types, clock=FixedClock(T1))

    assert triples(report) == [
        (4, "signed_up", "'soon' is not a date (use ISO-8601, e.g. 2024-03-01T09:00:00Z)")
    ]
    stored = by_id(engine, schema.customers)
    assert stored["C1"]["attributes"] == {"signed_up": "2024-01-05T09:00:00Z", "code": "00123", "flag": True}
    assert stored["C2"]["attributes"] == {"signed_up": "2024-01-06T00:00:00Z", "code": "42", "flag": False}


def test_column_mapping_renames_before_checking(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "crm.csv", "cust_no,mail,Country\n17,x@example.com,de\n")

    report = import_customers(
        engine, path, mapping={"cust_no": "id", "mail": "email", "Country": "country"}, clock=FixedClock(T1)
    )

    assert counts(report) == (1, 1, 0, 0, 0)
    stored = by_id(engine, schema.customers)
    assert stored["17"]["email"] == "x@example.com" and stored["17"]["country"] == "DE"
    assert stored["17"]["attributes"] == {}

    with pytest.raises(ImportFileError, match="crm.csv has no column 'customer_no'; columns found: cust_no, mail, Country"):
        import_customers(engine, path, mapping={"customer_no": "id"})


def test_customers_from_jsonl_parquet_and_tables(engine: Engine, tmp_path: Path) -> None:
    jsonl = write(
        tmp_path,
        "customers.jsonl",
        '{"id": "J1", "email": "j@example.com", "attributes": {"tier": "gold", "visits": 3}, "vip": true}\n'
        '{"id": "J2", "score": 1.5, "tags": ["a", "b"]}\n',
    )
    parquet = tmp_path / "customers.parquet"
    pq.write_table(pa.table({"id": ["P1", "P2"], "age": [31, None], "member": [True, False]}), parquet)
    table = pa.table({"id": ["T1"], "country": ["gb"], "signup": pa.array([T1], pa.timestamp("us", "UTC"))})

    reports = [
        import_customers(engine, jsonl, clock=FixedClock(T1)),
        import_customers(engine, parquet, clock=FixedClock(T1)),
        import_customers(engine, table, clock=FixedClock(T1)),
    ]

    assert [counts(r) for r in reports] == [(2, 2, 0, 0, 0), (2, 2, 0, 0, 0), (1, 1, 0, 0, 0)]
    stored = by_id(engine, schema.customers)
    assert stored["J1"]["attributes"] == {"tier": "gold", "visits": 3, "vip": True}
    assert stored["J2"]["attributes"] == {"score": 1.5, "tags": ["a", "b"]}
    assert stored["P1"]["attributes"] == {"age": 31, "member": True}
    assert stored["P2"]["attributes"] == {"member": False}
    assert stored["T1"]["attributes"] == {"signup": "2024-03-01T12:00:00Z"}
    assert stored["T1"]["country"] == "GB"
    assert reports[2].source == "table"


def test_customer_file_errors_write_nothing(engine: Engine, tmp_path: Path) -> None:
    no_id = write(tmp_path, "customers.csv", "cust_no,email\nC1,a@example.com\n")
    with pytest.raises(ImportFileError) as caught:
        import_customers(engine, no_id)
    assert caught.value.message == "customers.csv has no column 'id'; columns found: cust_no, email"
    assert "--map" in (caught.value.hint or "")

    typo = write(tmp_path, "typo.csv", "id,consent_mail_marketing\nC1,yes\n")
    with pytest.raises(ImportFileError, match="consent_mail_marketing looks like a consent column"):
        import_customers(engine, typo)

    ragged = write(tmp_path, "ragged.csv", "id,email\nC1,a@example.com\nC2,b@example.com,extra\n")
    with pytest.raises(ImportFileError, match="cannot read ragged.csv as CSV"):
        import_customers(engine, ragged)

    with pytest.raises(ImportFileError, match="file not found"):
        import_customers(engine, tmp_path / "missing.csv")
    with pytest.raises(ImportFileError, match="cannot tell the format of notes.txt"):
        import_customers(engine, write(tmp_path, "notes.txt", "id\nC1\n"))
    with pytest.raises(ImportFileError, match="cannot read fake.parquet as PARQUET"):
        import_customers(engine, write(tmp_path, "fake.parquet", "id\nC1\n"))
    with pytest.raises(ImportFileError, match="bad.jsonl line 2 is not valid JSON"):
        import_customers(engine, write(tmp_path, "bad.jsonl", '{"id": "C1"}\n{"id": \n'))

    assert count(engine, schema.customers) == 0
    assert count(engine, schema.consents) == 0


def test_gzipped_csv_and_explicit_format(engine: Engine, tmp_path: Path) -> None:
    packed = tmp_path / "customers.csv.gz"
    packed.write_bytes(gzip.compress(CUSTOMERS.encode()))
    assert counts(import_customers(engine, packed, clock=FixedClock(T1))) == (3, 3, 0, 0, 0)

    odd_name = write(tmp_path, "export.dat", "id\nC9\n")
    assert counts(import_customers(engine, odd_name, format="csv", clock=FixedClock(T1))) == (1, 1, 0, 0, 0)


def test_blank_lines_do_not_shift_csv_row_numbers(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", 'id,note\nC1,"two\nlines"\n\nC2,x\n,y\n')
    report = import_customers(engine, path, clock=FixedClock(T1))
    # spreadsheet rows: header 1, C1 2 (one cell spans two lines), blank 3, C2 4, bad 5
    assert counts(report) == (3, 2, 0, 0, 1)
    assert triples(report) == [(5, "id", "missing id (every customer needs one)")]


# --- events --------------------------------------------------------------------------


def seed_customers(engine: Engine, tmp_path: Path, ids: list[str]) -> None:
    lines = "id\n" + "".join(f"{i}\n" for i in ids)
    import_customers(engine, write(tmp_path, "seed.csv", lines), clock=FixedClock(T1))


EVENTS = """\
id,customer_id,type,occurred_at,revenue,channel
e1,C1,purchase,2024-03-01T09:00:00Z,12.50,web
e2,C1,Purchase,2024-03-02 10:00:00,3,store
e3,C9,view,2024-03-01,,web
e4,C1,view,yesterday,,web
e5,C1,purchase,2024-03-01T11:00:00+02:00,-1,
e1,C1,purchase,2024-03-05T09:00:00Z,1,web
e6,,view,2024-03-01T09:00:00Z,,
e7,C1,add to cart,2024-03-01T09:00:00Z,,
e8,C1,purchase,2024-03-01T09:00:00Z,ten,
e9,C1,view,2024-02-30T09:00:00Z,,
e10,C1,view,2024-03-03T08:00:00-05:00,,
"""


def test_event_row_errors_and_duplicates(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    path = write(tmp_path, "events.csv", EVENTS)

    report = import_events(engine, path)

    assert counts(report) == (11, 3, 0, 0, 8)
    assert triples(report) == [
        (4, "customer_id", "unknown customer 'C9'; import customers first"),
        (5, "occurred_at", "'yesterday' is not a date (use ISO-8601, e.g. 2024-03-01T09:00:00Z)"),
        (6, "revenue", "'-1' is negative (revenue must be 0 or more; money returned is an event of type refund)"),
        (7, "id", "duplicate id, first seen at row 2"),
        (8, "customer_id", "missing customer_id"),
        (9, "type", "'add to cart' is not an event type (use one lower-case word, e.g. purchase or add_to_cart)"),
        (10, "revenue", "'ten' is not a number"),
        (11, "occurred_at", "'2024-02-30T09:00:00Z' is not a date (use ISO-8601, e.g. 2024-03-01T09:00:00Z)"),
    ]
    assert report.messages()[1] == (
        "events.csv row 5, column occurred_at: 'yesterday' is not a date (use ISO-8601, e.g. 2024-03-01T09:00:00Z)"
    )
    stored = by_id(engine, schema.events)
    assert set(stored) == {"e1", "e2", "e10"}
    assert stored["e1"]["occurred_at"] == utc("2024-03-01T09:00:00")
    assert stored["e1"]["revenue"] == 12.5 and stored["e1"]["properties"] == {"channel": "web"}
    assert stored["e2"]["type"] == "purchase"  # lower-cased
    assert stored["e2"]["occurred_at"] == utc("2024-03-02T10:00:00")  # naive = UTC
    assert stored["e10"]["occurred_at"] == utc("2024-03-03T13:00:00")  # offset converted
    assert stored["e10"]["revenue"] is None

    traits = by_id(engine, schema.traits, "customer_id")["C1"]
    assert traits["purchase_count"] == 2
    assert traits["lifetime_spend"] == pytest.approx(15.5)
    assert traits["first_purchase_at"] == utc("2024-03-01T09:00:00")
    assert traits["last_purchase_at"] == utc("2024-03-02T10:00:00")
    assert traits["last_event_at"] == utc("2024-03-03T13:00:00")

    again = import_events(engine, path)
    assert counts(again) == (11, 0, 0, 3, 8)
    assert count(engine, schema.events) == 3
    assert by_id(engine, schema.traits, "customer_id")["C1"] == traits  # not counted twice


def test_jsonl_events_use_line_numbers_and_keep_property_types(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    clean = write(
        tmp_path,
        "clean.jsonl",
        '{"id": "k1", "customer_id": "C1", "type": "view", "occurred_at": "2024-03-01T09:00:00Z", "page": "/a", "ms": 120}\n'
        "\n"
        '{"id": "k2", "customer_id": "C404", "type": "view", "occurred_at": "2024-03-01T09:05:00Z", "page": "/b", "ms": 80}\n'
        '{"id": "k3", "customer_id": "C1", "type": "view", "occurred_at": "2024-03-01T09:06:00Z", "seen": "2024-01-01"}\n',
    )
    # revenue is a number on one line and text on another, and one id is a number
    messy = write(
        tmp_path,
        "messy.jsonl",
        '{"id": "j1", "customer_id": "C1", "type": "purchase", "occurred_at": "2024-03-01T09:00:00Z", "revenue": 10, "properties": {"sku": "A", "qty": 2}}\n'
        "\n"
        '{"id": "j2", "customer_id": "C1", "type": "purchase", "occurred_at": "2024-03-01T11:00:00Z", "revenue": "n/a"}\n'
        '{"id": 4, "customer_id": "C1", "type": "view", "occurred_at": "not a date"}\n'
        '{"id": 5, "customer_id": "C1", "type": "view", "occurred_at": "2024-03-02T00:00:00Z", "note": "say \\"hi\\"\\n"}\n',
    )

    first = import_events(engine, clean)
    second = import_events(engine, messy)

    assert counts(first) == (3, 2, 0, 0, 1)
    assert triples(first) == [(3, "customer_id", "unknown customer 'C404'; import customers first")]
    assert counts(second) == (4, 2, 0, 0, 2)
    assert triples(second) == [
        (3, "revenue", "'n/a' is not a number"),
        (4, "occurred_at", "'not a date' is not a date (use ISO-8601, e.g. 2024-03-01T09:00:00Z)"),
    ]
    stored = by_id(engine, schema.events)
    assert stored["k1"]["properties"] == {"page": "/a", "ms": 120}
    assert stored["k3"]["properties"] == {"seen": "2024-01-01"}  # kept as written
    assert stored["j1"]["properties"] == {"sku": "A", "qty": 2}  # "properties" spread, not nested
    assert stored["j1"]["revenue"] == 10.0
    assert stored["5"]["properties"] == {"note": 'say "hi"\n'}


def test_parquet_and_in_memory_events(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1", "C2"])
    moments = pa.array([T1, T2, T3], pa.timestamp("ms", "UTC"))
    events = pa.table(
        {
            "event_id": [1, 2, 3],
            "customer_id": ["C1", "C2", "C1"],
            "type": ["purchase", "purchase", "view"],
            "occurred_at": moments,
            "revenue": [10.0, 20.0, None],
            "qty": [1, 2, None],
            "gift": [True, None, False],
        }
    )
    parquet = tmp_path / "events.parquet"
    pq.write_table(events, parquet)

    from_file = import_events(engine, parquet, mapping={"event_id": "id"})
    from_table = import_events(engine, events, mapping={"event_id": "id"})

    assert counts(from_file) == (3, 3, 0, 0, 0)
    assert counts(from_table) == (3, 0, 0, 3, 0)
    stored = by_id(engine, schema.events)
    assert stored["1"]["occurred_at"] == T1 and stored["3"]["occurred_at"] == T3
    assert stored["1"]["properties"] == {"qty": 1, "gift": True}
    assert stored["2"]["properties"] == {"qty": 2}
    assert stored["3"]["properties"] == {"gift": False}
    traits = by_id(engine, schema.traits, "customer_id")
    assert traits["C1"]["lifetime_spend"] == 10.0 and traits["C1"]["last_event_at"] == T3
    assert traits["C2"]["first_purchase_at"] == T2


def test_event_file_errors_write_nothing(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    path = write(tmp_path, "events.csv", "id,customer_id,type,when\ne1,C1,view,2024-03-01\n")

    with pytest.raises(ImportFileError) as caught:
        import_events(engine, path)

    assert caught.value.message == "events.csv has no column 'occurred_at'; columns found: id, customer_id, type, when"
    assert count(engine, schema.events) == 0
    assert counts(import_events(engine, path, mapping={"when": "occurred_at"})) == (1, 1, 0, 0, 0)


def test_a_failure_inside_the_transaction_leaves_nothing_behind(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    path = write(tmp_path, "events.csv", EVENTS)

    def broken(*_: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("legato.store.traits.merge_events", broken)
    with pytest.raises(RuntimeError):
        import_events(engine, path)
    assert count(engine, schema.events) == 0

    monkeypatch.undo()
    assert import_events(engine, path).inserted == 3  # the leftover stage does not get in the way


def test_properties_are_valid_json_for_awkward_text(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    rows = [
        ["id", "customer_id", "type", "occurred_at", "note", "path"],
        ["a1", "C1", "view", "2024-03-01T09:00:00Z", 'quote " and \\ backslash', "tab\there"],
        ["a2", "C1", "view", "2024-03-01T09:00:00Z", "line\nbreak", "ünïcödé ✓"],
        ["a3", "C1", "view", "2024-03-01T09:00:00Z", "bell\x07", ""],
    ]
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)

    assert import_events(engine, path).inserted == 3

    stored = by_id(engine, schema.events)
    assert stored["a1"]["properties"] == {"note": 'quote " and \\ backslash', "path": "tab\there"}
    assert stored["a2"]["properties"] == {"note": "line\nbreak", "path": "ünïcödé ✓"}
    assert stored["a3"]["properties"] == {"note": "bell\x07"}


# --- the command line ----------------------------------------------------------------

runner = CliRunner()


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_cli_exit_codes_report_and_errors_file(engine: Engine, tmp_path: Path) -> None:
    good = write(tmp_path, "customers.csv", CUSTOMERS)
    result = runner.invoke(import_app, ["customers", str(good), "--database", url_of(engine)])
    assert result.exit_code == 0, result.output
    assert "rows read" in result.stdout and "inserted" in result.stdout

    bad = write(tmp_path, "bad.csv", BAD_CUSTOMERS)
    errors_file = tmp_path / "rejected.csv"
    result = runner.invoke(
        import_app,
        ["customers", str(bad), "-d", url_of(engine), "--attribute-type", "history=number", "--errors", str(errors_file)],
    )
    assert result.exit_code == 1, result.output
    assert "bad.csv row 9, column history: 'abc' is not a number" in result.stdout
    with errors_file.open(encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 7  # vip is undeclared here, so 'perhaps' is fine
    assert written[0] == {
        "row": "3",
        "column": "time_zone",
        "value": "Mars/Base",
        "reason": "'Mars/Base' is not a time zone (use an IANA name, e.g. Europe/Paris)",
    }

    mapped = write(tmp_path, "crm.csv", "cust_no,email\nX1,x@example.com\n")
    result = runner.invoke(import_app, ["customers", str(mapped), "-d", url_of(engine), "--map", "cust_no=id", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "kind": "customers",
        "source": str(mapped),
        "rows_read": 1,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "warnings": [],
        "errors": [],
        "not_regranted": 0,
        "not_regranted_rows": [],
    }


def test_cli_file_level_errors_exit_2(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    path = write(tmp_path, "events.csv", "id,customer_id,type\ne1,C1,view\n")

    result = runner.invoke(import_app, ["events", str(path), "-d", url_of(engine)])

    assert result.exit_code == 2
    assert "events.csv has no column 'occurred_at'; columns found: id, customer_id, type" in result.output
    missing = runner.invoke(import_app, ["events", str(tmp_path / "none.jsonl"), "-d", url_of(engine)])
    assert missing.exit_code == 2 and "file not found" in missing.output
    malformed = runner.invoke(import_app, ["events", str(path), "-d", url_of(engine), "--map", "oops"])
    assert malformed.exit_code == 2
    assert count(engine, schema.events) == 0


def test_cli_events_json_with_rejections_exit_1(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, ["C1"])
    path = write(tmp_path, "events.csv", EVENTS)

    result = runner.invoke(import_app, ["events", str(path), "-d", url_of(engine), "--json"])

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["inserted"], report["rejected"]) == (3, 8)
    assert report["errors"][0] == {
        "row": 4,
        "column": "customer_id",
        "value": "C9",
        "reason": "unknown customer 'C9'; import customers first",
    }


def test_small_imports_share_one_kept_stage_per_connection(engine: Engine, tmp_path: Path) -> None:
    """The event stage stays on its connection (emptied, not dropped): imports one after the
    other, two in one caller's transaction, and one after a rolled-back transaction (which took
    the stage with it) each see only their own rows."""
    seed_customers(engine, tmp_path, ["C1", "C2"])

    def batch(*ids: str) -> pa.Table:
        return pa.table({"id": list(ids), "customer_id": ["C1"] * len(ids), "type": ["visit"] * len(ids),
                         "occurred_at": ["2024-03-01T09:00:00Z"] * len(ids)})

    assert import_events(engine, batch("a1", "a2")).inserted == 2
    assert import_events(engine, batch("a2", "a3")).inserted == 1
    with engine.begin() as connection:
        assert import_events(connection, batch("b1")).inserted == 1
        assert import_events(connection, batch("b1", "b2")).inserted == 1
    with pytest.raises(RuntimeError), engine.begin() as connection:
        import_events(connection, batch("c1"))
        raise RuntimeError("the caller gives up")
    assert import_events(engine, batch("c1")).inserted == 1
    stored = sorted(r["id"] for r in table_rows(engine, schema.events))
    assert stored == ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert by_id(engine, schema.traits, "customer_id")["C1"]["last_event_at"] is not None


def test_a_decision_id_inside_a_properties_object_is_still_checked(engine: Engine, tmp_path: Path) -> None:
    """The decision_id check is left out only when no properties can hold the key: one sent in a
    nested properties object, its name written with a JSON escape too, is still refused."""
    seed_customers(engine, tmp_path, ["C1"])
    lines = [
        {"id": "d1", "customer_id": "C1", "type": "click", "occurred_at": "2024-03-01T09:00:00Z", "properties": {"decision_id": "999"}},
        {"id": "d2", "customer_id": "C1", "type": "visit", "occurred_at": "2024-03-01T09:00:00Z", "properties": {"page": "/"}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n"
                    + '{"id": "d3", "customer_id": "C1", "type": "click", "occurred_at": "2024-03-01T09:00:00Z", '
                    '"properties": {"decision\\u005fid": "998"}}\n')
    report = import_events(engine, path)
    assert report.inserted == 1 and report.rejected == 2
    assert sorted(r["id"] for r in table_rows(engine, schema.events)) == ["d2"]
