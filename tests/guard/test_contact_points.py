"""One form for every address and number (the channel registry's): E.164 phone numbers and
trimmed, lower-cased e-mail addresses, at import, on the suppression list and at send."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.channels import ContactError, normalize_contact, normalize_email, normalize_emails, normalize_phone
from legato.clock import FixedClock
from legato.guard.contact import add_suppression
from legato.store.ingest import import_customers
from legato.store.schema import customers, suppressions

from tests.world import AT, send_round, two_channel_playbook


@pytest.mark.parametrize(
    ("given", "country", "expected"),
    [
        ("+14155550100", None, "+14155550100"),
        ("+1 (415) 555-0100", None, "+14155550100"),
        (" +1.415.555.0100 ", None, "+14155550100"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("415-555-0100", "us", "+14155550100"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("0033 6 12 34 56 78", None, "+33612345678"),
    ],
)
def test_phone_numbers_take_one_form(given: str, country: str | None, expected: str) -> None:
    assert normalize_phone(given, country) == expected


@pytest.mark.parametrize(("given", "why"), [("(415) 555-0100", "no country code"), ("+1 555", "not a valid"), ("call me", "not a phone number")])
def test_what_is_not_a_phone_number_is_refused_with_the_fix(given: str, why: str) -> None:
    with pytest.raises(ContactError, match=why) as raised:
        normalize_phone(given)
    assert "country code" in (raised.value.hint or "")


def test_email_addresses_are_trimmed_and_lower_cased_one_way_for_a_column_and_a_value() -> None:
    given = [" Jane.Doe+Boots@Example.COM ", "ann@example.com", None, "not an address", "a@b@c"]
    column, bad = normalize_emails(pa.array(given, pa.string()))
    assert column.to_pylist()[:3] == ["jane.doe+boots@example.com", "ann@example.com", None]
    assert bad.tolist() == [False, False, False, True, True]
    for value, refused in zip(given, bad.tolist()):
        if value is not None and not refused:
            assert normalize_email(value) == normalize_contact("email", value)
    with pytest.raises(ContactError):
        normalize_email("not an address")


def test_the_importer_stores_the_one_form_and_names_row_and_field_of_a_bad_number(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(
        "id,email,phone,country\n"
        "a,Ann@Example.com ,+1 (415) 555-0100,\n"
        "b,bob@example.com,(415) 555-0101,US\n"
        "c,carl@example.com,555-0102,\n"
        "d,dan@example.com,+1 555,\n",
        encoding="utf-8",
    )
    report = import_customers(engine, path, clock=FixedClock(AT))
    assert report.rejected == 2
    assert [(e.row, e.column) for e in report.errors] == [(4, "phone"), (5, "phone")]
    assert "no country code" in report.errors[0].reason and "is not a valid phone number" in report.errors[1].reason
    with engine.connect() as c:
        stored = {r.id: (r.email, r.phone) for r in c.execute(sa.select(customers.c.id, customers.c.email, customers.c.phone))}
    assert stored == {"a": ("ann@example.com", "+14155550100"), "b": ("bob@example.com", "+14155550101")}


def test_a_formatted_number_on_the_list_stops_texts(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(
        "id,email,phone,time_zone,consent_sms_marketing,consent_email_marketing\n"
        "a,a@example.com,+1 (415) 555-0100,UTC,express,express\n"  # the case: listed as +14155550100
        "b,B@Example.com,+14155550101,UTC,express,express\n"
        "c,c@example.com,+1 415 555 0102,UTC,express,express\n",  # not listed: still reached
        encoding="utf-8",
    )
    import_customers(engine, path, clock=FixedClock(AT))
    assert add_suppression(engine, "phone", "+14155550100", "national do-not-call registry", AT) == "+14155550100"
    assert add_suppression(engine, "phone", "+1 415-555-0101", "asked by phone", AT) == "+14155550101"
    with engine.connect() as c:
        assert set(c.execute(sa.select(suppressions.c.value)).scalars()) == {"+14155550100", "+14155550101"}

    reached = send_round(engine, two_channel_playbook(), AT, tmp_path / "round")
    assert reached["sms"] == {"c": "+14155550102"}  # the one form at send too
    assert reached["email"] == {"c": "c@example.com"}  # the list stops every channel's marketing
    add_suppression(engine, "email", " C@EXAMPLE.com", "complained by phone", AT)
    later = send_round(engine, two_channel_playbook(), AT.replace(day=AT.day + 7), tmp_path / "later")
    assert later == {"sms": {}, "email": {}}
