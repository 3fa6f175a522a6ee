"""Evaluate a parsed expression over NumPy columns, for rules that mix customer and decision facts.

Segments run in SQL (:mod:`legato.audience.sql`); escalation rules also read facts that only
exist once the policy has chosen (offer value, expected value, propensity), so they are
evaluated here on the page's arrays, one vectorized operation per AST node. Expressions are
type-checked by :func:`legato.audience.sql.check_value` first (``legato validate``), so this
evaluator does not repeat those checks.

Missing values: numbers are NaN and text is None. A comparison with a missing value is
false, and so is its negation's *comparison*: ``not (x > 1)`` is true for a missing ``x``
(SQL would call both unknown). For an escalation rule that only decides whether to send a
case to a person, "unknown" and "false" both mean "do not escalate" unless the rule asks
``x is null`` explicitly.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from legato.audience.expr import (
    Arithmetic,
    Between,
    BoolOp,
    Call,
    Comparison,
    InList,
    IsNull,
    Literal,
    Name,
    Negate,
    Node,
    Not,
)

_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply}


def evaluate(node: Node, columns: Mapping[str, npt.NDArray[Any]], n: int) -> npt.NDArray[Any]:
    """The value of ``node`` for each of ``n`` rows; booleans come back as a bool array."""
    match node:
        case Literal(value=value):
            if value is None:
                return np.full(n, np.nan)
            return np.full(n, value, dtype=object if isinstance(value, str) else None)
        case Name(name=name):
            return columns[name]
        case Negate(operand=operand):
            return -_numbers(evaluate(operand, columns, n))
        case Not(operand=operand):
            return ~_truth(evaluate(operand, columns, n))
        case Arithmetic(op=op, left=left, right=right):
            a, b = _numbers(evaluate(left, columns, n)), _numbers(evaluate(right, columns, n))
            if op == "/":
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.where(b == 0, np.nan, a / np.where(b == 0, 1, b))
            return _ARITHMETIC[op](a, b)
        case Comparison(op=op, left=left, right=right):
            return _compare(op, evaluate(left, columns, n), evaluate(right, columns, n))
        case BoolOp(op=op, operands=operands):
            values = [_truth(evaluate(child, columns, n)) for child in operands]
            return np.logical_and.reduce(values) if op == "and" else np.logical_or.reduce(values)
        case InList(operand=operand, items=items, negated=negated):
            value = evaluate(operand, columns, n)
            hit = np.zeros(n, dtype=bool)
            for item in items:
                hit |= _compare("=", value, np.full(n, item.value, dtype=object))
            return (~hit & _known(value)) if negated else hit
        case Between(operand=operand, low=low, high=high, negated=negated):
            value = evaluate(operand, columns, n)
            inside = _compare(">=", value, evaluate(low, columns, n)) & _compare("<=", value, evaluate(high, columns, n))
            return (~inside & _known(value)) if negated else inside
        case IsNull(operand=operand, negated=negated):
            missing = ~_known(evaluate(operand, columns, n))
            return ~missing if negated else missing
        case Call(name=name, args=args):
            return _call(name, [evaluate(a, columns, n) for a in args], n)
    raise ValueError(f"cannot evaluate {type(node).__name__} here")


def _known(value: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if value.dtype == object:
        return np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in value], dtype=bool)
    if value.dtype.kind == "f":
        return ~np.isnan(value)
    return np.ones(len(value), dtype=bool)


def _numbers(value: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    if value.dtype == object:
        return np.array([np.nan if v is None else float(v) for v in value])
    return value.astype(np.float64)


def _truth(value: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if value.dtype == bool:
        return value
    return np.array([bool(v) if v is not None and not (isinstance(v, float) and np.isnan(v)) else False for v in value], dtype=bool)


def _compare(op: str, left: npt.NDArray[Any], right: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    known = _known(left) & _known(right)
    if left.dtype == object or right.dtype == object:
        result = np.array([bool(_COMPARE[op](a, b)) if k else False for a, b, k in zip(left, right, known, strict=True)], dtype=bool)
        return result
    with np.errstate(invalid="ignore"):
        return _COMPARE[op](left, right) & known


def _call(name: str, args: list[npt.NDArray[Any]], n: int) -> npt.NDArray[Any]:
    if name == "abs":
        return np.abs(_numbers(args[0]))
    if name == "round":
        x = _numbers(args[0])
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if name == "coalesce":
        result = args[0].astype(object)
        for other in args[1:]:
            missing = ~_known(result)
            result[missing] = other.astype(object)[missing]
        return result
    if name in ("lower", "upper"):
        return np.array([None if v is None else (v.lower() if name == "lower" else v.upper()) for v in args[0]], dtype=object)
    if name == "length":
        return np.array([np.nan if v is None else float(len(v)) for v in args[0]])
    if name == "contains":
        return np.array([a is not None and b is not None and b in a for a, b in zip(args[0], args[1], strict=True)], dtype=bool)
    if name == "starts_with":
        return np.array([a is not None and b is not None and a.startswith(b) for a, b in zip(args[0], args[1], strict=True)], dtype=bool)
    raise ValueError(f"{name}() is not available in rules evaluated after the decision")
