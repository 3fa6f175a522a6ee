"""Each creative of a playbook through the one check of a message, for ``legato validate``.

A creative is checked as every variant an agent can send: alone, and with each offer an
agent pairs it with (an offer's deadline changes what counts as fake urgency). Blocking
findings are problems; escalating and warning ones are notes a marketer may act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from legato.deliver.render import unknown_names
from legato.guard.message import MessageChecker
from legato.playbook.models import Playbook
from legato.playbook.problems import Problem


@dataclass(frozen=True)
class ContentFinding:
    creative: str
    offer: str | None
    rule: str
    severity: str
    reason: str


def creative_variants(playbook: Playbook) -> list[tuple[int, str, str | None]]:
    """(index in ``creatives``, creative id, offer id) for every variant an agent can choose."""
    offers: dict[str, set[str | None]] = {c.id: set() for c in playbook.creatives}
    for agent in playbook.agents:
        for creative in agent.actions.creatives:
            paired: list[str | None] = list(agent.actions.offers) or [None]
            offers.setdefault(creative, set()).update(paired)
    variants = []
    for index, creative in enumerate(playbook.creatives):
        for offer in sorted(offers[creative.id] or {None}, key=lambda o: o or ""):
            variants.append((index, creative.id, offer))
    return variants


def content_findings(playbook: Playbook) -> list[tuple[int, ContentFinding]]:
    checker = MessageChecker(playbook)
    found: list[tuple[int, ContentFinding]] = []
    for index, creative, offer in creative_variants(playbook):
        if offer is not None and offer not in checker.offers:
            continue  # a dangling offer is reported by the references check
        check = checker.check(checker.variant(creative, offer))
        for finding in check.findings:
            found.append((index, ContentFinding(creative, offer, finding.rule, finding.severity, finding.reason)))
    return found


def content_problems(playbook: Playbook, *, severities: tuple[str, ...] = ("block",)) -> list[Problem]:
    """The findings of the given severities as problems placed at their creative."""
    problems = []
    # A name the template context never has is reported where it is written, by the
    # references check (legato.deliver.render.unknown_names); not again here per variant.
    named = {i for i, creative in enumerate(playbook.creatives) if unknown_names(playbook, creative)}
    for index, finding in content_findings(playbook):
        if finding.severity not in severities:
            continue
        if index in named and finding.rule == "template.undefined_variable":
            continue
        variant = f" with offer '{finding.offer}'" if finding.offer else ""
        problems.append(
            Problem(
                ("creatives", index),
                f"content{variant}: {finding.severity}: {finding.rule}: {finding.reason}",
                f"`legato check message --playbook FILE --creative {finding.creative}` shows where in the text",
            )
        )
    return problems
