"""SQL pieces of the audience query: a playbook field as a float column."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from legato.audience.fields import StoreResolver
from legato.audience.sql import FieldType, compile_value


def feature(resolver: StoreResolver, text: str, dialect: str) -> sa.ColumnElement[Any]:
    field = compile_value(text, resolver, dialect_name=dialect)
    if field.type is FieldType.BOOLEAN:  # PostgreSQL cannot cast boolean to float
        return sa.case((field.column, 1.0), (sa.not_(field.column), 0.0), else_=sa.null())
    return sa.cast(field.column, sa.Float)
