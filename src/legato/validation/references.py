"""What the packages a playbook configures say about it, each problem with its field.

The playbook package checks its own shape and its own references (:mod:`legato.playbook.links`);
whether an expression parses and type-checks, a policy takes its parameters and a template
renders in the sandbox is for the audience, decide and deliver packages to say, so those
checks live here, outside the playbook package, and :func:`legato.validation.load_playbook`
hands them to the loader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from difflib import get_close_matches

from legato.audience.expr import Comparison, ExpressionError, InList, Literal, Name, Node, identifiers, parse, walk
from legato.audience.fields import LIFECYCLE_STAGE, field_types, known_fields
from legato.audience.sql import FieldType, check_expression, check_value
from legato.decide.actions import action_keys
from legato.decide.registry import check_policy
from legato.deliver.render import check_template, check_template_access, unknown_names
from legato.playbook.problems import Problem
from legato.playbook.models import Playbook
from legato.playbook.positions import Path
from legato.trust.escalation import DECISION_FIELDS, INBOUND_FIELDS, INTENTS, NO_INTENT

def check_references(playbook: Playbook) -> list[Problem]:
    """What the packages a playbook configures say about it: features, policies, templates."""
    return [*_policies(playbook), *_templates(playbook)]


def expression_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Problems in every expression of a playbook, read from the raw YAML data.

    This runs even when other sections fail validation, so a misspelled key elsewhere does
    not hide a broken segment: the marketer sees both at once.
    """
    # Only well-formed declarations: a list or mapping where a type belongs is the models' to report.
    attributes = {k: v for k, v in _mapping(data.get("attributes")).items() if isinstance(v, str)}
    guardrails = _mapping(data.get("guardrails"))
    listed = guardrails.get("protected_attributes")
    protected = {p for p in listed if isinstance(p, str)} if isinstance(listed, list) else set()
    stages = data.get("lifecycle") if isinstance(data.get("lifecycle"), list) else []
    lifecycle = [s for s in stages if isinstance(s, dict)]
    segments = {k: v for k, v in _mapping(data.get("segments")).items() if isinstance(v, str)}
    customer = known_fields(attributes, protected, with_lifecycle=bool(lifecycle))
    staged = known_fields(attributes, protected, with_lifecycle=False)
    decision = {**customer, **DECISION_FIELDS}
    # Replies: customer fields plus the message's sentiment and intents (legato.trust.escalation).
    inbound = {**customer, **INBOUND_FIELDS}
    agents = data.get("agents") if isinstance(data.get("agents"), list) else []
    places: list[tuple[Path, Any, dict[str, FieldType]]] = []
    places += [(("segments", name), text, customer) for name, text in segments.items()]
    places += [(("lifecycle", i, "when"), stage.get("when"), staged) for i, stage in enumerate(stages) if isinstance(stage, dict)]
    for i, agent in enumerate(agents):
        if not isinstance(agent, dict):
            continue
        places.append((("agents", i, "audience"), agent.get("audience"), customer))
        rules = agent.get("escalation") if isinstance(agent.get("escalation"), list) else []
        places += [(("agents", i, "escalation", j, "when"), r.get("when"), decision) for j, r in enumerate(rules) if isinstance(r, dict)]
    section = _mapping(data.get("inbound"))
    inbound_rules = section.get("escalation") if isinstance(section.get("escalation"), list) else []
    places += [(("inbound", "escalation", j, "when"), r.get("when"), inbound) for j, r in enumerate(inbound_rules) if isinstance(r, dict)]
    values = data.get("values") if isinstance(data.get("values"), list) else []
    places += [(("values", j, "conflicts_when"), v.get("conflicts_when"), decision) for j, v in enumerate(values) if isinstance(v, dict)]
    problems: list[Problem] = []
    for path, text, names in places:
        if not isinstance(text, str) or not text.strip():
            continue  # missing or mistyped: the model validation reports it
        problem = _protected_use(path, text, protected)
        if problem is not None:
            problems.append(problem)
            continue
        try:
            check_expression(text, names, segments)
        except ExpressionError as exc:
            problem = _expression_problem(path, text, exc)
            if problem.hint is None and names is not customer and names is not staged:
                facts = INBOUND_FIELDS if names is inbound else DECISION_FIELDS
                problem = Problem(problem.path, problem.message, f"besides customer fields, this rule can read {', '.join(facts)}", offset=problem.offset)
            problems.append(problem)
            continue
        if names is inbound:
            problems += _unknown_labels(path, text, "intent", (*INTENTS, NO_INTENT), "an intent the classifier gives", "intents")
        if LIFECYCLE_STAGE in names:
            problems += _unknown_stages(path, text, [s.get("stage") for s in lifecycle])
    return problems


def _unknown_stages(path: Path, text: str, stages: list[Any]) -> list[Problem]:
    """``lifecycle_stage = "actve"`` type-checks but holds for nobody: name the stages there are."""
    names = tuple(s for s in stages if isinstance(s, str))
    return _unknown_labels(path, text, LIFECYCLE_STAGE, names, "a lifecycle stage of this playbook", "stages")


def _unknown_labels(path: Path, text: str, field: str, labels: tuple[str, ...], what: str, plural: str) -> list[Problem]:
    """A text field compared with a value it never takes (``intent = "complaints"``): name the values it takes."""
    problems: list[Problem] = []
    for node in walk(parse(text)):
        literals: list[Node] = []
        if isinstance(node, Comparison) and node.op in ("=", "!="):
            if isinstance(node.left, Name) and node.left.name == field:
                literals = [node.right]
            elif isinstance(node.right, Name) and node.right.name == field:
                literals = [node.left]
        elif isinstance(node, InList) and isinstance(node.operand, Name) and node.operand.name == field:
            literals = list(node.items)
        for literal in literals:
            if isinstance(literal, Literal) and isinstance(literal.value, str) and literal.value not in labels:
                close = get_close_matches(literal.value, labels, n=1)
                hint = (f"did you mean '{close[0]}'? " if close else "") + f"{plural} are {', '.join(labels) or 'none'}"
                problems.append(Problem(path, f"'{literal.value}' is not {what}", hint, offset=getattr(literal, "start", None)))
    return problems


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _protected_use(path: Path, text: str, protected: set[str]) -> Problem | None:
    try:
        used = identifiers(parse(text)) & protected
    except ExpressionError:
        return None  # reported with its caret by check_expression
    if not used:
        return None
    name = sorted(used)[0]
    match = re.search(rf"\b{re.escape(name)}\b", text)
    return Problem(
        path,
        f"'{name}' is a protected attribute and cannot be used for targeting",
        "protected attributes may only be used in fairness audits; remove it from the expression",
        offset=match.start() if match else None,
    )


def _expression_problem(path: Path, text: str, exc: ExpressionError) -> Problem:
    # An error inside a referenced segment is reported where the segment is defined.
    if exc.source != text:
        return Problem(path, exc.message, exc.hint)
    caret = exc.render().splitlines()
    message = exc.message + "\n    " + "\n    ".join(caret[1:3]) if len(caret) >= 3 else exc.message
    return Problem(path, message, exc.hint, offset=exc.start)


def _policies(playbook: Playbook) -> Iterator[Problem]:
    fields = field_types(playbook, with_lifecycle=True)
    protected = set(playbook.guardrails.protected_attributes)
    for i, agent in enumerate(playbook.agents):
        for j, text in enumerate(agent.features):
            path = ("agents", i, "features", j)
            problem = _protected_use(path, text, protected)
            if problem is not None:
                yield problem
                continue
            try:
                kind = check_value(text, fields, playbook.segments)
            except ExpressionError as exc:
                yield _expression_problem(path, text, exc)
                continue
            yield from _unknown_stages(path, text, [s.stage for s in playbook.lifecycle])
            if kind not in (FieldType.NUMBER, FieldType.BOOLEAN):
                yield Problem(path, f"feature '{text}' is a {kind.value}; policies need numbers or booleans", "compare it, e.g. zip_code = \"Urban\"")
        for error in check_policy(agent.policy.name, agent.policy.params, action_keys(agent)):
            yield Problem(("agents", i, "policy", *error.field), error.message, error.hint)


def _templates(playbook: Playbook) -> Iterator[Problem]:
    for i, creative in enumerate(playbook.creatives):
        error = check_template(creative) or check_template_access(playbook, creative)
        if error:
            yield Problem(("creatives", i), error, "Jinja2 syntax: {{ customer.name }}, {% if offer %}...{% endif %}; no _private attributes")
            continue
        # A name the context never has would stop every message of this creative at send time.
        for unknown in unknown_names(playbook, creative):
            yield Problem(("creatives", i, unknown.part), unknown.message, unknown.hint, offset=unknown.offset)


__all__ = ["DECISION_FIELDS", "LIFECYCLE_STAGE", "check_references"]
