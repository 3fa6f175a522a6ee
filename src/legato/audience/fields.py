"""The names a segment expression can use, and the SQL behind each of them.

Three kinds of field: customer columns, computed traits (kept current by
``legato.store.traits``) and the attributes the playbook declares with their types. A few
derived traits (days since the last purchase, recency, frequency, monetary value) are
themselves written in the expression language, so they need no SQL of their own and behave
identically on SQLite and PostgreSQL. ``lifecycle_stage`` is the playbook's ordered stages
compiled into one ``CASE``; lifecycle definitions cannot use it themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from legato.audience.sql import Field, FieldType, compile_expression, compile_value
from legato.playbook.models import AttributeType, Playbook
from legato.store.schema import customers, traits
from legato.store.types import UTCDateTime

LIFECYCLE_STAGE = "lifecycle_stage"

CUSTOMER_FIELDS: dict[str, tuple[ColumnElement, FieldType]] = {  # type: ignore[type-arg]
    "country": (customers.c.country, FieldType.STRING),
    "region": (customers.c.region, FieldType.STRING),
    "time_zone": (customers.c.time_zone, FieldType.STRING),
    "has_email": (customers.c.email.is_not(None), FieldType.BOOLEAN),
    "has_phone": (customers.c.phone.is_not(None), FieldType.BOOLEAN),
}

TRAIT_FIELDS: dict[str, FieldType] = {
    "purchase_count": FieldType.NUMBER,
    "lifetime_spend": FieldType.NUMBER,
    "purchases_30d": FieldType.NUMBER,
    "revenue_30d": FieldType.NUMBER,
    "purchases_90d": FieldType.NUMBER,
    "revenue_90d": FieldType.NUMBER,
    "first_purchase_at": FieldType.TIMESTAMP,
    "last_purchase_at": FieldType.TIMESTAMP,
    "last_event_at": FieldType.TIMESTAMP,
    # Model scores (legato.learn.scoring); NULL until a model has scored the customer.
    "purchase_propensity": FieldType.NUMBER,
    "visit_propensity": FieldType.NUMBER,
}

# Derived traits, defined in the expression language over the traits above.
DERIVED_FIELDS: dict[str, tuple[str, FieldType]] = {
    "days_since_last_purchase": ("days_since(last_purchase_at)", FieldType.NUMBER),
    "days_since_first_purchase": ("days_since(first_purchase_at)", FieldType.NUMBER),
    "recency": ("days_since(last_purchase_at)", FieldType.NUMBER),
    "frequency": ("purchase_count", FieldType.NUMBER),
    "monetary": ("lifetime_spend / purchase_count", FieldType.NUMBER),
}

_FIELD_TYPE_NAMES = {kind.value for kind in FieldType}


def field_types(playbook: Playbook, *, with_lifecycle: bool) -> dict[str, FieldType]:
    """Every field name an expression may use, with its type (no database needed)."""
    return known_fields(
        {name: kind.value for name, kind in playbook.attributes.items()},
        playbook.guardrails.protected_attributes,
        with_lifecycle=with_lifecycle and bool(playbook.lifecycle),
    )


def known_fields(attributes: Mapping[str, str], protected: Iterable[str], *, with_lifecycle: bool) -> dict[str, FieldType]:
    """Field names and types from declared attribute types (``number``, ``string``, ...)."""
    names: dict[str, FieldType] = {name: kind for name, (_, kind) in CUSTOMER_FIELDS.items()}
    names.update(TRAIT_FIELDS)
    names.update({name: kind for name, (_, kind) in DERIVED_FIELDS.items()})
    names.update({name: FieldType(kind) for name, kind in attributes.items() if kind in _FIELD_TYPE_NAMES})
    if with_lifecycle:
        names[LIFECYCLE_STAGE] = FieldType.STRING
    for name in protected:
        names.pop(name, None)
    return names


class StoreResolver:
    """Resolves names to SQL over ``customers`` joined with ``traits``, at instant ``at``."""

    def __init__(self, playbook: Playbook, at: datetime, dialect_name: str, *, with_lifecycle: bool = True) -> None:
        self.playbook = playbook
        self.dialect_name = dialect_name
        self._now = sa.literal(at, type_=UTCDateTime())
        self._types = field_types(playbook, with_lifecycle=with_lifecycle)
        self._with_lifecycle = with_lifecycle
        self._cache: dict[str, Field] = {}

    def now(self) -> ColumnElement:  # type: ignore[type-arg]
        return self._now

    def known_names(self) -> list[str]:
        return [*self._types, *self.playbook.segments]

    def segment(self, name: str) -> str | None:
        return self.playbook.segments.get(name)

    def field(self, name: str) -> Field | None:
        if name not in self._types:
            return None
        if name not in self._cache:
            self._cache[name] = self._build(name)
        return self._cache[name]

    def _build(self, name: str) -> Field:
        kind = self._types[name]
        if name in CUSTOMER_FIELDS:
            return Field(CUSTOMER_FIELDS[name][0], kind)
        if name in TRAIT_FIELDS:
            return Field(traits.c[name], kind)
        if name in DERIVED_FIELDS:
            return compile_value(DERIVED_FIELDS[name][0], self, dialect_name=self.dialect_name)
        if name == LIFECYCLE_STAGE:
            return Field(lifecycle_case(self.playbook, self.now_instant, self.dialect_name), FieldType.STRING)
        return Field(self._attribute(name, kind), kind)

    @property
    def now_instant(self) -> datetime:
        return self._now.value  # type: ignore[no-any-return]

    def _attribute(self, name: str, kind: FieldType) -> ColumnElement:  # type: ignore[type-arg]
        value = customers.c.attributes[name]
        if kind is FieldType.NUMBER:
            return value.as_float()
        if kind is FieldType.BOOLEAN:
            return value.as_boolean()
        if kind is FieldType.TIMESTAMP:
            text = value.as_string()
            return sa.func.datetime(text) if self.dialect_name == "sqlite" else sa.cast(text, UTCDateTime())
        return value.as_string()


def lifecycle_case(playbook: Playbook, at: datetime, dialect_name: str) -> ColumnElement:  # type: ignore[type-arg]
    """The customer's lifecycle stage: the first stage whose expression holds, else null."""
    resolver = StoreResolver(playbook, at, dialect_name, with_lifecycle=False)
    whens = [(compile_expression(stage.when, resolver, dialect_name=dialect_name), stage.stage) for stage in playbook.lifecycle]
    if not whens:
        return sa.null()
    return sa.case(*whens, else_=sa.null())


def audience_from() -> sa.sql.FromClause:
    """The FROM clause every audience query starts with."""
    return customers.outerjoin(traits, traits.c.customer_id == customers.c.id)


def declared_types(attributes: Mapping[str, AttributeType]) -> dict[str, str]:
    """Attribute types as the importer takes them."""
    return {name: kind.value for name, kind in attributes.items()}
