"""Escalation rules: decisions and conversations a person must see, whatever the agent's trust stage.

A rule is an expression over the customer's fields (as in segments) and the case's own
facts: for a decision its offer value and cost, expected value, propensity and uncertainty
(:data:`DECISION_FIELDS`); for a customer's reply its sentiment and intents
(:data:`INBOUND_FIELDS`). Rules that use customer fields only run in SQL (for decisions, as
part of the audience query); rules that also use the case's facts are evaluated on arrays
after the fact is known (:mod:`legato.audience.evaluate`). The first matching rule, highest
priority first, gives the case its reason, priority and (for replies) the role to answer it.

Declared company values (``values:`` in the playbook) are decision rules too: a decision
matching a value's ``conflicts_when`` goes to a person with the reason ``value:<id>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from legato.audience.evaluate import evaluate
from legato.audience.expr import Node, identifiers, parse
from legato.audience.fields import StoreResolver
from legato.audience.sql import FieldType, compile_expression, compile_value
from legato.playbook.models import Agent, CompanyValue, Playbook

# Facts of the decision itself that escalation rules may use besides the customer's fields.
DECISION_FIELDS: dict[str, FieldType] = {
    "offer_value": FieldType.NUMBER,
    "offer_cost": FieldType.NUMBER,
    "expected_value": FieldType.NUMBER,
    "propensity": FieldType.NUMBER,
    # How unsure the policy was: the probability that it would have chosen something else.
    "uncertainty": FieldType.NUMBER,
}

# The intent classifier's labels (legato.trust.inbound), most pressing first. A message can
# carry several, so rules see each one as a boolean (intent_complaint) and, for the common
# case, the most pressing one as the string ``intent`` ("none" when there is none). Strongly
# negative wording is not an intent: rules read ``sentiment`` for it.
INTENTS: tuple[str, ...] = ("opt_out", "possible_opt_out", "help", "legal_threat", "distress", "human_request", "complaint")
NO_INTENT = "none"
INBOUND_FIELDS: dict[str, FieldType] = {
    "sentiment": FieldType.NUMBER,  # VADER compound score, -1 (hostile) to 1 (delighted)
    "intent": FieldType.STRING,
    **{f"intent_{name}": FieldType.BOOLEAN for name in INTENTS},
}
VALUE_REASON_PREFIX = "value:"


@dataclass(frozen=True)
class Rule:
    """One escalation rule, from an agent's ``escalation``, ``inbound.escalation`` or ``values``."""

    key: str  # unique within its rule set; names the SQL column esc_<key>
    when: str
    reason: str
    priority: int
    role: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)  # fixed evidence, e.g. a value's statement


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    tree: Node | None  # None: evaluated in SQL as column esc_<key>


class RuleSet:
    """Rules over customer fields plus the case's ``facts``, highest priority first.

    ``columns`` are what the customer query must select: ``esc_<key>`` for rules on customer
    fields alone (0/1), ``x_<name>`` for each customer field the other rules read.
    """

    def __init__(self, rules: Iterable[Rule], facts: Mapping[str, FieldType], resolver: StoreResolver, dialect: str) -> None:
        self.rules: list[_Compiled] = []
        self.columns: list[sa.ColumnElement[Any]] = []
        fetched: set[str] = set()
        # Stable: among equal priorities the playbook's order decides.
        for rule in sorted(rules, key=lambda r: -r.priority):
            tree = parse(rule.when)
            customer_names = identifiers(tree) - set(facts)
            if customer_names == identifiers(tree):
                condition = compile_expression(rule.when, resolver, dialect_name=dialect)
                self.columns.append(sa.case((condition, 1), else_=0).label(f"esc_{rule.key}"))
                self.rules.append(_Compiled(rule, None))
                continue
            for name in sorted(customer_names - fetched):
                if resolver.segment(name) is not None:
                    self.columns.append(sa.case((compile_expression(name, resolver, dialect_name=dialect), True), else_=False).label(f"x_{name}"))
                else:
                    self.columns.append(compile_value(name, resolver, dialect_name=dialect).column.label(f"x_{name}"))
                fetched.add(name)
            self.rules.append(_Compiled(rule, tree))

    def first_match(self, columns: Mapping[str, npt.NDArray[Any]], facts: Mapping[str, npt.NDArray[Any]], n: int) -> list[Rule | None]:
        """Per row, the first matching rule (None where none matches)."""
        indices = self._first_index(columns, facts, n)
        return [self.rules[i].rule if i >= 0 else None for i in indices.tolist()]

    def all_matches(self, columns: Mapping[str, npt.NDArray[Any]], facts: Mapping[str, npt.NDArray[Any]]) -> list[Rule]:
        """Every rule the single row matches, highest priority first (for a conversation's evidence)."""
        hits = self._hits(columns, facts, 1)
        return [compiled.rule for compiled, hit in zip(self.rules, hits, strict=True) if bool(hit[0])]

    def match(
        self, columns: Mapping[str, npt.NDArray[Any]], facts: Mapping[str, npt.NDArray[Any]], n: int
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
        """Per row, the reason and priority of the first matching rule (None and 0 where none)."""
        reasons = np.full(n, None, dtype=object)
        priority = np.zeros(n, dtype=np.int64)
        if not self.rules:
            return reasons, priority
        first = self._first_index(columns, facts, n)
        for i, compiled in enumerate(self.rules):
            chosen = first == i
            reasons[chosen] = compiled.rule.reason
            priority[chosen] = compiled.rule.priority
        return reasons, priority

    def _first_index(self, columns: Mapping[str, npt.NDArray[Any]], facts: Mapping[str, npt.NDArray[Any]], n: int) -> npt.NDArray[np.int64]:
        first = np.full(n, -1, dtype=np.int64)
        for i, hit in enumerate(self._hits(columns, facts, n)):
            first[(first < 0) & hit] = i
        return first

    def _hits(self, columns: Mapping[str, npt.NDArray[Any]], facts: Mapping[str, npt.NDArray[Any]], n: int) -> list[npt.NDArray[np.bool_]]:
        if not self.rules:
            return []
        values = {name.removeprefix("x_"): _typed(column) for name, column in columns.items() if name.startswith("x_")}
        values.update(facts)
        return [
            np.asarray(columns[f"esc_{c.rule.key}"]).astype(bool) if c.tree is None else evaluate(c.tree, values, n).astype(bool)
            for c in self.rules
        ]


class Escalations(RuleSet):
    """An agent's decision rules and the playbook's company values, over customer and decision fields."""

    def __init__(self, agent: Agent, resolver: StoreResolver, dialect: str) -> None:
        # The key of an agent rule is its index, so the SQL column is esc_<index> as before.
        rules = [Rule(str(i), spec.when, spec.reason, spec.priority) for i, spec in enumerate(agent.escalation)]
        rules += value_rules(resolver.playbook)
        super().__init__(rules, DECISION_FIELDS, resolver, dialect)


def value_rules(playbook: Playbook) -> list[Rule]:
    """One decision rule per declared company value."""
    return [
        Rule(f"v{i}", value.conflicts_when, VALUE_REASON_PREFIX + value.id, value.priority, evidence=value_evidence(value))
        for i, value in enumerate(playbook.values)
    ]


def value_evidence(value: CompanyValue) -> dict[str, Any]:
    return {"value": value.id, "statement": value.statement, "conflicts_when": value.conflicts_when}


def evidence_for_reason(playbook: Playbook, reason: str) -> dict[str, Any] | None:
    """What a reviewer should read for a decision escalated with ``reason``: a value's statement."""
    if not reason.startswith(VALUE_REASON_PREFIX):
        return None
    wanted = reason.removeprefix(VALUE_REASON_PREFIX)
    value = next((v for v in playbook.values if v.id == wanted), None)
    return value_evidence(value) if value is not None else None


def inbound_rules(playbook: Playbook) -> list[Rule]:
    rules = playbook.inbound.escalation
    return [Rule(str(i), spec.when, spec.reason, spec.priority, spec.role) for i, spec in enumerate(rules)]


def inbound_facts(intents: Sequence[str], sentiment: float) -> dict[str, npt.NDArray[Any]]:
    """A message's facts as one-row arrays, as the rules read them."""
    primary = next((name for name in INTENTS if name in intents), NO_INTENT)
    facts: dict[str, npt.NDArray[Any]] = {
        "sentiment": np.array([float(sentiment)]),
        "intent": np.array([primary], dtype=object),
    }
    facts.update({f"intent_{name}": np.array([name in intents]) for name in INTENTS})
    return facts


def _typed(column: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Numbers as floats with NaN for missing; text and booleans as they are."""
    sample = next((v for v in column if v is not None), None)
    if isinstance(sample, bool) or sample is None:
        return np.array([bool(v) if v is not None else False for v in column], dtype=bool) if isinstance(sample, bool) else column
    if isinstance(sample, (int, float)):
        return np.array([np.nan if v is None else float(v) for v in column])
    return column
