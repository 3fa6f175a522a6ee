"""Checks that tie a playbook's sections together, each problem with the field it belongs to.

Pydantic validates each section's shape; this module checks what only the playbook itself
can: unique ids and references (an agent's objective, offers and creatives; a creative's
channel; an objective's lifecycle stages; a cap's tag; protected attributes). What the
packages a playbook configures say about it (expressions, policies, templates, content) is
checked outside this package, by :mod:`legato.validation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from difflib import get_close_matches

from legato.playbook.models import Playbook
from legato.playbook.positions import Path
from legato.playbook.problems import Problem


def check_links(playbook: Playbook) -> list[Problem]:
    return [*_unique_ids(playbook), *_links(playbook)]


def _unique_ids(playbook: Playbook) -> Iterator[Problem]:
    sections: list[tuple[str, Iterable[str], str]] = [
        ("objectives", (o.id for o in playbook.objectives), "id"),
        ("offers", (o.id for o in playbook.offers), "id"),
        ("creatives", (c.id for c in playbook.creatives), "id"),
        ("agents", (a.id for a in playbook.agents), "id"),
        ("lifecycle", (s.stage for s in playbook.lifecycle), "stage"),
        ("values", (v.id for v in playbook.values), "id"),
    ]
    for section, ids, key in sections:
        seen: dict[str, int] = {}
        for index, value in enumerate(ids):
            if value in seen:
                yield Problem((section, index, key), f"'{value}' is already used by {section}[{seen[value]}]", "ids must be unique")
            seen.setdefault(value, index)


def _missing(path: Path, kind: str, name: str, known: Iterable[str]) -> Problem:
    known = sorted(known)
    close = get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else (f"declared: {', '.join(known)}" if known else f"declare it under {kind}")
    return Problem(path, f"no {kind[:-1] if kind.endswith('s') else kind} named '{name}'", hint)


def _links(playbook: Playbook) -> Iterator[Problem]:
    objectives = {o.id for o in playbook.objectives}
    offers = {o.id for o in playbook.offers}
    creatives = {c.id for c in playbook.creatives}
    stages = {s.stage for s in playbook.lifecycle}
    channels = {c.value for c in playbook.channels}
    for i, objective in enumerate(playbook.objectives):
        for j, stage in enumerate(objective.stages):
            if stage not in stages:
                yield _missing(("objectives", i, "stages", j), "lifecycle stages", stage, stages)
    for i, creative in enumerate(playbook.creatives):
        if creative.channel.value not in channels:
            yield Problem(
                ("creatives", i, "channel"),
                f"channel '{creative.channel.value}' is not declared under channels",
                f"add it under channels, or use one of: {', '.join(sorted(channels))}",
            )
        if creative.channel.value == "email" and not creative.subject:
            yield Problem(("creatives", i), "an e-mail creative needs a subject")
        if creative.html is not None and creative.channel.value != "email":
            yield Problem(("creatives", i, "html"), "only an e-mail creative has an HTML part", "remove html, or make the creative's channel email")
    for i, agent in enumerate(playbook.agents):
        if agent.objective not in objectives:
            yield _missing(("agents", i, "objective"), "objectives", agent.objective, objectives)
        for j, offer in enumerate(agent.actions.offers):
            if offer not in offers:
                yield _missing(("agents", i, "actions", "offers", j), "offers", offer, offers)
        for j, creative in enumerate(agent.actions.creatives):
            if creative not in creatives:
                yield _missing(("agents", i, "actions", "creatives", j), "creatives", creative, creatives)
    for i, destination in enumerate(playbook.alerts.destinations):
        if destination.kind == "email":
            spec = playbook.channels.get(destination.channel)  # type: ignore[call-overload]
            if spec is None or spec.kind != "smtp":
                yield Problem(
                    ("alerts", "destinations", i, "channel"),
                    f"alert e-mail goes through an SMTP channel, and channels.{destination.channel} is "
                    + ("not declared" if spec is None else f"of kind {spec.kind}"),
                    "declare channels.email with kind: smtp (host, port, from_address), or remove this destination",
                )
    guard = playbook.guardrails
    for section, rules in (("consent", guard.consent), ("frequency_caps", guard.frequency_caps), ("quiet_hours", guard.quiet_hours)):
        for i, rule in enumerate(rules):
            channel = getattr(rule.channel, "value", rule.channel)
            if channel != "any" and channel not in channels:
                yield Problem(
                    ("guardrails", section, i, "channel"),
                    f"channel '{channel}' is not declared under channels",
                    f"declared: {', '.join(sorted(channels))}",
                )
    tags = {tag for creative in playbook.creatives for tag in creative.tags}
    for i, cap in enumerate(guard.frequency_caps):
        if cap.tag is not None and cap.tag not in tags:
            yield Problem(("guardrails", "frequency_caps", i, "tag"), f"no creative carries the tag '{cap.tag}'", f"tags in use: {', '.join(sorted(tags)) or 'none'}")
    for i, name in enumerate(guard.protected_attributes):
        if name not in playbook.attributes:
            yield Problem(
                ("guardrails", "protected_attributes", i),
                f"protected attribute '{name}' is not declared under attributes",
                "declare it with its type so imports keep it for fairness audits",
            )
