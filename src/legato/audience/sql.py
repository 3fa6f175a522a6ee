"""Type-check a parsed segment expression and compile it to a SQLAlchemy Core condition.

Values only ever reach SQL as bound parameters or as columns the caller's :class:`Resolver`
hands out, so an expression cannot inject SQL. Types are checked before any SQL exists, so
a marketer sees "cannot compare string with number" with a caret, not a database error.

Semantics worth knowing (they are SQL's, on purpose):

* Missing values are SQL ``NULL`` and logic is three-valued. ``x > 1`` is unknown when ``x``
  is null, and so is ``not (x > 1)``: a customer without ``x`` matches neither. Use
  ``x is null`` to ask for them explicitly. ``x not in (...)`` likewise excludes null ``x``.
* A reference to a named segment means "the customer is in that segment" and is strictly
  true or false (``coalesce(condition, false)``), so ``not lapsed`` includes customers for
  whom ``lapsed`` is unknown.
* ``/`` is true division; dividing by zero yields null on every database (PostgreSQL would
  otherwise abort the whole query).
* ``contains`` and ``starts_with`` are case-sensitive on both databases (no ``LIKE``, whose
  case rules differ); wrap both sides in ``lower()`` to ignore case. SQLite's ``lower`` and
  ``upper`` only change ASCII letters.
* ``round(n)`` rounds halves away from zero on both databases.
* A string literal compared with a timestamp must be an ISO-8601 date or datetime; it is
  read as UTC unless it carries an offset. ``"2024-01-31"`` means midnight UTC.
* On SQLite, timestamps (stored as ISO text) are compared through ``julianday()`` so that
  ``2024-01-01T10:00`` and ``2024-01-01 10:00:00.000000`` compare as the same instant. On
  PostgreSQL a TIMESTAMP field's column must be a real ``timestamptz`` expression.
"""

from __future__ import annotations

import difflib
import enum
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from legato.audience.expr import (
    Arithmetic,
    Between,
    BoolOp,
    Call,
    Comparison,
    ExpressionError,
    InList,
    IsNull,
    Literal,
    Name,
    Negate,
    Node,
    Not,
    parse,
)

__all__ = [
    "DIALECTS",
    "FUNCTIONS",
    "Field",
    "FieldType",
    "Resolver",
    "check_expression",
    "compile_expression",
    "compile_value",
]

DIALECTS = ("sqlite", "postgresql")


class FieldType(str, enum.Enum):
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class Field:
    """A customer attribute or trait as the expression sees it: a SQL column and its type."""

    column: ColumnElement  # type: ignore[type-arg]
    type: FieldType


class Resolver(Protocol):
    """What the compiler needs from its caller: names to columns, segments, and "now"."""

    def field(self, name: str) -> Field | None:
        """The attribute or trait called ``name``, or None if there is none."""
        ...

    def segment(self, name: str) -> str | None:
        """The source text of the named segment, or None if there is none."""
        ...

    def known_names(self) -> list[str]:
        """Every field and segment name, for "did you mean" hints."""
        ...

    def now(self) -> ColumnElement:  # type: ignore[type-arg]
        """The evaluation time as SQL, normally a bound timezone-aware UTC timestamp."""
        ...


# SQLAlchemy types used for bound literals and function results, per expression type.
_SA_TYPES: dict[FieldType, Callable[[], sa.types.TypeEngine]] = {  # type: ignore[type-arg]
    FieldType.NUMBER: sa.Float,
    FieldType.STRING: sa.String,
    FieldType.BOOLEAN: sa.Boolean,
    FieldType.TIMESTAMP: lambda: sa.DateTime(timezone=True),
}

# name -> (minimum arguments, maximum arguments or None for "any number")
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "coalesce": (2, None),
    "contains": (2, 2),
    "days_since": (1, 1),
    "length": (1, 1),
    "lower": (1, 1),
    "round": (1, 1),
    "starts_with": (2, 2),
    "upper": (1, 1),
}

_ORDERING = ("<", "<=", ">", ">=")
_COMPARATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class _Typed:
    """A compiled sub-expression and its type; ``type`` None stands for the ``null`` literal."""

    sql: ColumnElement  # type: ignore[type-arg]
    type: FieldType | None


def _type_name(kind: FieldType | None) -> str:
    return "null" if kind is None else kind.value


def compile_expression(source: str, resolver: Resolver, *, dialect_name: str) -> ColumnElement:  # type: ignore[type-arg]
    """Parse, type-check and compile to a boolean SQL expression.

    ``dialect_name`` is 'sqlite' or 'postgresql': date arithmetic and a few functions
    differ between them. Raises :class:`ExpressionError` for any mistake in ``source`` or
    in a segment it references.
    """
    if dialect_name not in DIALECTS:
        raise ValueError(f"unsupported dialect {dialect_name!r}; expected one of {', '.join(DIALECTS)}")
    return _Compiler(source, resolver, dialect_name, stack=()).condition()


def compile_value(source: str, resolver: Resolver, *, dialect_name: str) -> Field:
    """Parse, type-check and compile an expression of any type, e.g. a derived field.

    ``lifetime_spend / purchase_count`` gives a NUMBER field; a bare ``null`` is refused
    because a value needs a type.
    """
    if dialect_name not in DIALECTS:
        raise ValueError(f"unsupported dialect {dialect_name!r}; expected one of {', '.join(DIALECTS)}")
    compiler = _Compiler(source, resolver, dialect_name, stack=())
    tree = parse(source)
    result = compiler.compile(tree)
    if result.type is None:
        raise compiler.error("the expression is always null, so it has no type", tree)
    return Field(result.sql, result.type)


def check_expression(source: str, names: Mapping[str, FieldType], segments: Mapping[str, str]) -> None:
    """Validate without a database (used by ``legato validate``).

    Parses, resolves every identifier against ``names`` (fields) and ``segments`` (name to
    source), type-checks, and detects segment cycles, by compiling against placeholder
    columns. Raises :class:`ExpressionError`.
    """
    compile_expression(source, _MappingResolver(names, segments), dialect_name="sqlite")


def check_value(source: str, names: Mapping[str, FieldType], segments: Mapping[str, str]) -> FieldType:
    """Validate a value expression without a database and return its type."""
    return compile_value(source, _MappingResolver(names, segments), dialect_name="sqlite").type


class _MappingResolver:
    """A resolver over plain mappings whose columns are placeholders, never executed."""

    def __init__(self, names: Mapping[str, FieldType], segments: Mapping[str, str]) -> None:
        self._names = {name: FieldType(kind) for name, kind in names.items()}
        self._segments = dict(segments)

    def field(self, name: str) -> Field | None:
        kind = self._names.get(name)
        return None if kind is None else Field(sa.column(name, _SA_TYPES[kind]()), kind)

    def segment(self, name: str) -> str | None:
        return self._segments.get(name)

    def known_names(self) -> list[str]:
        return sorted({*self._names, *self._segments})

    def now(self) -> ColumnElement:  # type: ignore[type-arg]
        return sa.bindparam("now", type_=sa.DateTime(timezone=True))


class _Compiler:
    """Compiles one source text; referenced segments get a compiler of their own.

    ``stack`` holds the segments being compiled around this one, to detect cycles.
    """

    def __init__(self, source: str, resolver: Resolver, dialect: str, stack: tuple[str, ...]) -> None:
        self.source = source
        self.resolver = resolver
        self.dialect = dialect
        self.stack = stack

    def error(self, message: str, node: Node, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, self.source, node.start, node.end, hint)

    def text(self, node: Node) -> str:
        return self.source[node.start : node.end]

    # -- entry point

    def condition(self) -> ColumnElement:  # type: ignore[type-arg]
        tree = parse(self.source)
        result = self.compile(tree)
        if result.type is not FieldType.BOOLEAN:
            raise self.error(
                f"the expression must be a condition (true or false), but it is a {_type_name(result.type)}",
                tree,
                _condition_hint(self.text(tree), result.type),
            )
        return result.sql

    # -- dispatch

    def compile(self, node: Node) -> _Typed:
        match node:
            case Literal():
                return self.literal(node)
            case Name():
                return self.name(node)
            case Negate():
                operand = self.number(node.operand, "'-'")
                return _Typed(-operand, FieldType.NUMBER)
            case Not():
                return _Typed(sa.not_(self.boolean(node.operand, "'not'")), FieldType.BOOLEAN)
            case BoolOp():
                parts = [self.boolean(operand, f"'{node.op}'") for operand in node.operands]
                combine = sa.and_ if node.op == "and" else sa.or_
                return _Typed(combine(*parts), FieldType.BOOLEAN)
            case Arithmetic():
                return self.arithmetic(node)
            case Comparison():
                return self.comparison(node)
            case InList():
                return self.in_list(node)
            case Between():
                return self.between(node)
            case IsNull():
                operand = self.compile(node.operand).sql
                return _Typed(operand.is_not(None) if node.negated else operand.is_(None), FieldType.BOOLEAN)
            case Call():
                return self.call(node)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover - the parser makes no others

    # -- leaves

    def literal(self, node: Literal) -> _Typed:
        value = node.value
        if value is None:
            return _Typed(sa.null(), None)
        if isinstance(value, bool):
            return _Typed(sa.true() if value else sa.false(), FieldType.BOOLEAN)
        if isinstance(value, int):
            return _Typed(sa.literal(value, sa.Integer()), FieldType.NUMBER)
        if isinstance(value, float):
            return _Typed(sa.literal(value, sa.Float()), FieldType.NUMBER)
        return _Typed(sa.literal(value, sa.String()), FieldType.STRING)

    def name(self, node: Name) -> _Typed:
        field = self.resolver.field(node.name)
        segment = self.resolver.segment(node.name)
        if field is not None and segment is not None:
            raise self.error(
                f"'{node.name}' is both a field and a segment",
                node,
                "rename the segment so the expression is unambiguous",
            )
        if field is not None:
            return _Typed(field.column, FieldType(field.type))
        if segment is not None:
            return _Typed(self.segment(node, segment), FieldType.BOOLEAN)
        hint = _did_you_mean(node.name, self.resolver.known_names())
        raise self.error(f"unknown field or segment '{node.name}'", node, hint)

    def segment(self, node: Name, source: str) -> ColumnElement:  # type: ignore[type-arg]
        if node.name in self.stack:
            cycle = [*self.stack[self.stack.index(node.name) :], node.name]
            raise self.error(
                f"segment cycle: {' -> '.join(cycle)}",
                node,
                "a segment cannot refer back to itself, directly or through other segments",
            )
        inner = _Compiler(source, self.resolver, self.dialect, (*self.stack, node.name))
        try:
            condition = inner.condition()
        except ExpressionError as exc:
            raise exc.in_segment(node.name) from None
        # Membership is two-valued: a customer is in the segment or not, never "unknown".
        return sa.func.coalesce(condition, sa.false(), type_=sa.Boolean())

    # -- type requirements

    def boolean(self, node: Node, context: str) -> ColumnElement:  # type: ignore[type-arg]
        result = self.compile(node)
        if result.type is not FieldType.BOOLEAN:
            raise self.error(
                f"{context} needs a condition (true or false), but this is a {_type_name(result.type)}",
                node,
                _condition_hint(self.text(node), result.type),
            )
        return result.sql

    def number(self, node: Node, context: str) -> ColumnElement:  # type: ignore[type-arg]
        result = self.compile(node)
        if result.type is not FieldType.NUMBER:
            raise self.error(f"{context} needs a number, but this is a {_type_name(result.type)}", node)
        return result.sql

    def string(self, node: Node, context: str) -> ColumnElement:  # type: ignore[type-arg]
        result = self.compile(node)
        if result.type is not FieldType.STRING:
            raise self.error(f"{context} needs a string, but this is a {_type_name(result.type)}", node)
        return result.sql

    # -- operators

    def arithmetic(self, node: Arithmetic) -> _Typed:
        left = self.number(node.left, f"'{node.op}'")
        right = self.number(node.right, f"'{node.op}'")
        if node.op == "+":
            sql = left + right
        elif node.op == "-":
            sql = left - right
        elif node.op == "*":
            sql = left * right
        else:
            # True division on both databases; x / 0 is null rather than a failed query.
            sql = sa.cast(left, sa.Float()) / sa.func.nullif(right, 0, type_=sa.Float())
        return _Typed(sql, FieldType.NUMBER)

    def comparison(self, node: Comparison) -> _Typed:
        left, right = self.compile(node.left), self.compile(node.right)
        if left.type is None or right.type is None:
            raise self.error(
                f"cannot compare with null using '{node.op}'",
                node,
                "use 'is null' (or 'is not null') to test for a missing value",
            )
        left, right = self.unify(node, (node.left, left), (node.right, right))
        if left.type is FieldType.BOOLEAN and node.op in _ORDERING:
            raise self.error(f"'{node.op}' cannot order conditions (true/false)", node, "use '=' or '!='")
        a, b = self.comparable(left), self.comparable(right)
        return _Typed(_COMPARATORS[node.op](a, b), FieldType.BOOLEAN)

    def in_list(self, node: InList) -> _Typed:
        operand = self.compile(node.operand)
        if operand.type is None:
            raise self.error("cannot test null with 'in'", node.operand, "use 'is null'")
        items = []
        for item in node.items:
            if item.value is None:
                raise self.error(
                    "null cannot be in an 'in' list",
                    item,
                    "use 'is null' (or 'is not null') to test for a missing value",
                )
            _, compiled = self.unify(item, (node.operand, operand), (item, self.literal(item)))
            items.append(self.comparable(compiled))
        sql = self.comparable(operand).in_(items)
        return _Typed(sa.not_(sql) if node.negated else sql, FieldType.BOOLEAN)

    def between(self, node: Between) -> _Typed:
        operand = self.compile(node.operand)
        bounds = []
        for bound in (node.low, node.high):
            compiled = self.compile(bound)
            if operand.type is None or compiled.type is None:
                raise self.error("'between' cannot use null", bound if compiled.type is None else node.operand)
            operand, compiled = self.unify(node, (node.operand, operand), (bound, compiled))
            bounds.append(self.comparable(compiled))
        if operand.type is FieldType.BOOLEAN:
            raise self.error("'between' cannot order conditions (true/false)", node)
        sql = self.comparable(operand).between(bounds[0], bounds[1])
        return _Typed(sa.not_(sql) if node.negated else sql, FieldType.BOOLEAN)

    def unify(self, where: Node, left: tuple[Node, _Typed], right: tuple[Node, _Typed]) -> tuple[_Typed, _Typed]:
        """Make two operands comparable or raise a type mismatch located at ``where``.

        The only conversion is an ISO string literal next to a timestamp, which becomes a
        bound UTC datetime.
        """
        (left_node, a), (right_node, b) = left, right
        if a.type is b.type:
            return a, b
        if a.type is FieldType.TIMESTAMP and _is_string_literal(right_node):
            return a, self.timestamp_literal(right_node)  # type: ignore[arg-type]
        if b.type is FieldType.TIMESTAMP and _is_string_literal(left_node):
            return self.timestamp_literal(left_node), b  # type: ignore[arg-type]
        hint = None
        if FieldType.TIMESTAMP in (a.type, b.type):
            hint = (
                "compare a timestamp with another timestamp or an ISO date such as \"2024-01-31\"; "
                "use days_since(...) to compare ages in days"
            )
        elif FieldType.BOOLEAN in (a.type, b.type):
            hint = "conditions compare only with true or false"
        elif _is_string_literal(left_node) or _is_string_literal(right_node):
            hint = "quoted values are strings; remove the quotes to write a number"
        raise self.error(f"cannot compare {_type_name(a.type)} with {_type_name(b.type)}", where, hint)

    def timestamp_literal(self, node: Literal) -> _Typed:
        assert isinstance(node.value, str)
        try:
            value = datetime.fromisoformat(node.value.strip())
        except ValueError:
            raise self.error(
                f"{node.value!r} is not an ISO-8601 date or datetime",
                node,
                'write e.g. "2024-01-31" or "2024-01-31T09:30:00Z" (UTC unless an offset is given)',
            ) from None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return _Typed(sa.literal(value, sa.DateTime(timezone=True)), FieldType.TIMESTAMP)

    def comparable(self, value: _Typed) -> ColumnElement:  # type: ignore[type-arg]
        """The form in which ``value`` is compared: on SQLite timestamps go through julianday()."""
        if value.type is FieldType.TIMESTAMP and self.dialect == "sqlite":
            return sa.func.julianday(value.sql, type_=sa.Float())
        return value.sql

    # -- functions

    def call(self, node: Call) -> _Typed:
        if node.name not in FUNCTIONS:
            name_node = Name(name=node.name, start=node.start, end=node.name_end)
            raise self.error(
                f"unknown function '{self.source[node.start:node.name_end]}' "
                f"(known functions: {', '.join(sorted(FUNCTIONS))})",
                name_node,
                _did_you_mean(node.name, list(FUNCTIONS)),
            )
        low, high = FUNCTIONS[node.name]
        count = len(node.args)
        if count < low or (high is not None and count > high):
            if high is None:
                wanted = f"at least {low} arguments"
            else:
                wanted = f"{low} argument{'s' if low != 1 else ''}"
            raise self.error(f"{node.name}() takes {wanted}, got {count}", node)
        args = node.args
        context = f"{node.name}()"
        match node.name:
            case "lower" | "upper":
                fn = sa.func.lower if node.name == "lower" else sa.func.upper
                return _Typed(fn(self.string(args[0], context), type_=sa.String()), FieldType.STRING)
            case "length":
                return _Typed(sa.func.length(self.string(args[0], context), type_=sa.Integer()), FieldType.NUMBER)
            case "abs":
                return _Typed(sa.func.abs(self.number(args[0], context), type_=sa.Float()), FieldType.NUMBER)
            case "round":
                value = self.number(args[0], context)
                if self.dialect == "postgresql":
                    # round(double precision) rounds half to even; round(numeric) away from zero.
                    value = sa.cast(value, sa.Numeric())
                return _Typed(sa.func.round(value, type_=sa.Float()), FieldType.NUMBER)
            case "days_since":
                return _Typed(self.days_since(args[0]), FieldType.NUMBER)
            case "contains":
                text, part = self.string(args[0], context), self.string(args[1], context)
                position = sa.func.instr(text, part) if self.dialect == "sqlite" else sa.func.strpos(text, part)
                return _Typed(position > 0, FieldType.BOOLEAN)
            case "starts_with":
                text, prefix = self.string(args[0], context), self.string(args[1], context)
                head = sa.func.substr(text, 1, sa.func.length(prefix), type_=sa.String())
                return _Typed(head == prefix, FieldType.BOOLEAN)
            case "coalesce":
                return self.coalesce(node)
        raise AssertionError(node.name)  # pragma: no cover - FUNCTIONS and the match agree

    def days_since(self, arg: Node) -> ColumnElement:  # type: ignore[type-arg]
        value = self.compile(arg)
        if value.type is FieldType.STRING and _is_string_literal(arg):
            value = self.timestamp_literal(arg)  # type: ignore[arg-type]
        if value.type is not FieldType.TIMESTAMP:
            raise self.error(f"days_since() needs a timestamp, but this is a {_type_name(value.type)}", arg)
        now = self.resolver.now()
        if self.dialect == "sqlite":
            return sa.func.julianday(now, type_=sa.Float()) - sa.func.julianday(value.sql, type_=sa.Float())
        seconds = sa.type_coerce(sa.extract("epoch", now - value.sql), sa.Float())
        return seconds / sa.literal(86400.0, sa.Float())

    def coalesce(self, node: Call) -> _Typed:
        compiled = [(arg, self.compile(arg)) for arg in node.args]
        typed = [(arg, value) for arg, value in compiled if value.type is not None]
        if not typed:
            raise self.error("coalesce() needs at least one argument that is not null", node)
        # The first non-literal argument decides the type, so string literals can become timestamps.
        anchor = next(((arg, v) for arg, v in typed if not isinstance(arg, Literal)), typed[0])
        parts = []
        for arg, value in compiled:
            if value.type is not None:
                _, value = self.unify(arg, anchor, (arg, value))
            parts.append(value.sql)
        kind = anchor[1].type
        assert kind is not None
        return _Typed(sa.func.coalesce(*parts, type_=_SA_TYPES[kind]()), kind)


def _is_string_literal(node: Node) -> bool:
    return isinstance(node, Literal) and isinstance(node.value, str)


def _condition_hint(text: str, kind: FieldType | None) -> str | None:
    if kind is FieldType.NUMBER:
        return f"compare it, e.g. '{text} > 0'"
    if kind is FieldType.STRING:
        return f"compare it, e.g. '{text} = \"...\"'"
    if kind is FieldType.TIMESTAMP:
        return f"compare it, e.g. 'days_since({text}) > 30' or '{text} is not null'"
    return None


def _did_you_mean(name: str, known: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if not matches:
        return None
    quoted = [f"'{match}'" for match in matches]
    if len(quoted) == 1:
        return f"did you mean {quoted[0]}?"
    return f"did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?"
