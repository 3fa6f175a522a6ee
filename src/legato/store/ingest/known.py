"""Columns named like a field the importer knows, which it would otherwise keep as an
attribute or property without a word.

A customer file with ``timezone``, ``email_consent`` or ``mobile`` imports fine, but the
customers end up with no zone, no consent and no phone: the values sit in ``attributes``.
An event file with ``amount`` gives purchases worth nothing. Each such column gets a
warning with the ``--map`` that fixes it. A column the playbook declares as an attribute is
meant as one and is never warned about.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from legato.channels import NAMES as CHANNELS

# Other spellings of each field, compared after lower-casing and dropping everything but
# letters and digits ("Time Zone", "time-zone" and "timezone" are one name).
_CUSTOMER_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("customer_id", "customerid", "cust_id", "custno", "customer_no", "client_id", "user_id", "userid"),
    "email": ("e_mail", "email_address", "emailaddress", "mail"),
    "phone": ("phone_number", "phonenumber", "mobile", "mobile_number", "cell", "cellphone", "msisdn", "telephone", "tel"),
    "time_zone": ("timezone", "tz", "zone", "tzname", "iana_zone"),
    "country": ("country_code", "countrycode", "iso_country", "nation"),
    "region": ("state", "province", "region_code"),
    "consent_at": ("consent_date", "consented_at", "opt_in_at", "optin_date", "consent_time"),
}
_EVENT_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("event_id", "eventid", "order_id", "orderid", "transaction_id"),
    "customer_id": ("customer", "customerid", "cust_id", "user_id", "userid", "client_id", "id_customer"),
    "type": ("event_type", "eventtype", "event", "kind", "action"),
    "occurred_at": ("timestamp", "ts", "time", "date", "datetime", "created_at", "event_time", "occurred", "event_date", "order_date"),
    "revenue": ("amount", "value", "price", "total", "sales", "order_value", "dollar_value", "amount_usd", "spend", "net_revenue"),
}


@dataclass(frozen=True)
class ColumnWarning:
    """A column the importer kept as an attribute or property although it looks like a field."""

    column: str
    field: str
    kept_as: str  # "attribute" or "property"

    def describe(self, source: str) -> str:
        owner = "a customer" if self.kept_as == "attribute" else "an event"
        return (
            f"{source}: column {self.column} looks like {self.field} but was kept as {owner} {self.kept_as}; "
            f"--map {self.column}={self.field} imports it as {self.field}"
        )


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _matches(columns: Iterable[str], fields: dict[str, tuple[str, ...]], present: Collection[str]) -> dict[str, str]:
    """column -> field for the columns that look like a field the file does not have."""
    found: dict[str, str] = {}
    for field, aliases in fields.items():
        if field in present:
            continue
        keys = {_key(field), *(_key(a) for a in aliases)}
        for column in columns:
            if column not in found and _key(column) in keys:
                found[column] = field
                break
    return found


def customer_column_warnings(columns: list[str], kept: list[str], declared: Collection[str]) -> list[ColumnWarning]:
    """Warnings for the ``kept`` columns (stored as attributes) that look like a customer field.

    ``columns`` are all of the file's columns after ``--map``; a field the file already has
    is not suggested again. Consent columns: ``email_consent``, ``sms_opt_in`` and the like
    look like ``consent_<channel>_marketing``.
    """
    candidates = [c for c in kept if c not in declared]
    found = _matches(candidates, _CUSTOMER_ALIASES, set(columns))
    for column in candidates:
        if column in found:
            continue
        channel = _consent_channel(column)
        if channel is not None and f"consent_{channel}_marketing" not in columns:
            found[column] = f"consent_{channel}_marketing"
    return [ColumnWarning(column, found[column], "attribute") for column in kept if column in found]


def event_column_warnings(columns: list[str], kept: list[str]) -> list[ColumnWarning]:
    """Warnings for the ``kept`` columns (stored as properties) that look like an event field."""
    found = _matches(kept, _EVENT_ALIASES, set(columns))
    return [ColumnWarning(column, found[column], "property") for column in kept if column in found]


def suggested_column(field: str, columns: list[str], *, events: bool) -> str | None:
    """A column of the file that looks like the required ``field`` it lacks (for the error's --map)."""
    aliases = (_EVENT_ALIASES if events else _CUSTOMER_ALIASES).get(field, ())
    keys = {_key(field), *(_key(a) for a in aliases)}
    return next((c for c in columns if _key(c) in keys), None)


def _consent_channel(column: str) -> str | None:
    """The channel of a column like ``email_consent``, ``sms_optin``, ``opt_in_email``."""
    words = [w for w in re.split(r"[^a-z0-9]+", column.lower()) if w]
    joined = "".join(words)
    if not any(marker in joined for marker in ("consent", "optin", "subscribed", "permission")):
        return None
    if any(marker in joined for marker in ("unsub", "optout", "revoked", "withdrawn")):
        return None  # the opposite of a consent: mapping it as one would turn "yes" around
    for channel in CHANNELS:
        if channel in words or joined.startswith(channel) or joined.endswith(channel):
            return channel
    return None
