"""Why a customer is in an audience: the fields an expression reads, and one customer's values of them.

A reviewer asks "why this customer?". The answer is the audience expression and the values of
exactly the fields it reads (through named segments too), nothing else of the customer: the
least personal data that explains the choice. Values are read through the same resolver the
segment SQL uses, so a derived field (``days_since_last_purchase``) or the lifecycle stage
means here what it meant to the cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.audience.expr import ExpressionError, identifiers, parse
from legato.audience.fields import StoreResolver, audience_from
from legato.playbook.models import Playbook
from legato.store.schema import customers


def fields_read(playbook: Playbook, expression: str) -> list[str]:
    """The customer fields ``expression`` reads, named segments expanded, in name order."""
    seen: set[str] = set()
    found: set[str] = set()
    pending = [expression]
    while pending:
        try:
            names = identifiers(parse(pending.pop()))
        except ExpressionError:
            continue  # validated at load; an expression that no longer parses explains nothing
        for name in names - seen:
            seen.add(name)
            if name in playbook.segments:
                pending.append(playbook.segments[name])
            else:
                found.add(name)
    return sorted(found)


def facts_of(connection: Connection, playbook: Playbook, expression: str, customer_id: str, at: datetime) -> dict[str, Any]:
    """This customer's value of each customer field ``expression`` reads, at ``at``.

    Names that are not customer fields (an escalation rule's ``offer_value``, say) are left out.
    """
    resolver = StoreResolver(playbook, at, connection.dialect.name)
    columns = []
    for name in fields_read(playbook, expression):
        field = resolver.field(name)
        if field is not None:
            columns.append(field.column.label(name))
    if not columns:
        return {}
    row = connection.execute(sa.select(*columns).select_from(audience_from()).where(customers.c.id == customer_id)).mappings().first()
    return {key: _plain(value) for key, value in (row or {}).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return value
