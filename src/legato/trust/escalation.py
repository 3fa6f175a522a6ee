"""Escalation rules: decisions a person must see, whatever the agent's trust stage.

A rule is an expression over the customer's fields (as in segments) and the decision's own
facts (offer value and cost, expected value, propensity). Rules that use customer fields
only run in SQL as part of the audience query; rules that also use decision facts are
evaluated on the page's arrays after the policy has chosen (:mod:`legato.audience.evaluate`).
The first matching rule, highest priority first, gives the case its reason and priority.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from legato.audience.evaluate import evaluate
from legato.audience.expr import Node, identifiers, parse
from legato.audience.fields import StoreResolver
from legato.audience.sql import FieldType, compile_expression, compile_value
from legato.playbook.models import Agent, EscalationRule

# Facts of the decision itself that escalation rules may use besides the customer's fields.
DECISION_FIELDS: dict[str, FieldType] = {
    "offer_value": FieldType.NUMBER,
    "offer_cost": FieldType.NUMBER,
    "expected_value": FieldType.NUMBER,
    "propensity": FieldType.NUMBER,
    # How unsure the policy was: the probability that it would have chosen something else.
    "uncertainty": FieldType.NUMBER,
}


@dataclass(frozen=True)
class _Rule:
    index: int
    spec: EscalationRule
    tree: Node | None  # None: evaluated in SQL as column esc_<index>


class Escalations:
    def __init__(self, agent: Agent, resolver: StoreResolver, dialect: str) -> None:
        self.rules: list[_Rule] = []
        self.columns: list[sa.ColumnElement[Any]] = []
        fetched: set[str] = set()
        for index, spec in sorted(enumerate(agent.escalation), key=lambda item: -item[1].priority):
            tree = parse(spec.when)
            customer_names = identifiers(tree) - set(DECISION_FIELDS)
            if customer_names == identifiers(tree):
                condition = compile_expression(spec.when, resolver, dialect_name=dialect)
                self.columns.append(sa.case((condition, 1), else_=0).label(f"esc_{index}"))
                self.rules.append(_Rule(index, spec, None))
                continue
            for name in sorted(customer_names - fetched):
                if resolver.segment(name) is not None:
                    self.columns.append(sa.case((compile_expression(name, resolver, dialect_name=dialect), True), else_=False).label(f"x_{name}"))
                else:
                    self.columns.append(compile_value(name, resolver, dialect_name=dialect).column.label(f"x_{name}"))
                fetched.add(name)
            self.rules.append(_Rule(index, spec, tree))

    def match(
        self, columns: dict[str, npt.NDArray[Any]], facts: dict[str, npt.NDArray[np.float64]], n: int
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
        """Per row, the reason and priority of the first matching rule (None and 0 where none)."""
        reasons = np.full(n, None, dtype=object)
        priority = np.zeros(n, dtype=np.int64)
        if not self.rules:
            return reasons, priority
        values = {name.removeprefix("x_"): _typed(column) for name, column in columns.items() if name.startswith("x_")}
        values.update(facts)
        for rule in self.rules:
            if rule.tree is None:
                hit = columns[f"esc_{rule.index}"].astype(bool)
            else:
                hit = evaluate(rule.tree, values, n).astype(bool)
            fresh = hit & (reasons == None)  # noqa: E711 - elementwise on objects
            reasons[fresh] = rule.spec.reason
            priority[fresh] = rule.spec.priority
        return reasons, priority


def _typed(column: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Numbers as floats with NaN for missing; text and booleans as they are."""
    sample = next((v for v in column if v is not None), None)
    if isinstance(sample, bool) or sample is None:
        return np.array([bool(v) if v is not None else False for v in column], dtype=bool) if isinstance(sample, bool) else column
    if isinstance(sample, (int, float)):
        return np.array([np.nan if v is None else float(v) for v in column])
    return column
