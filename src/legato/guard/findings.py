"""What a content check returns: findings, their severities, and the text their spans index.

A finding has a rule id, a family, a severity and the character span it is about. Families:
``voice`` (:mod:`legato.guard.voice`), ``compliance`` (:mod:`legato.guard.compliance`),
``personal_data`` (:mod:`legato.guard.personal_data`) and ``template`` (a creative that
cannot be rendered safely, :func:`legato.deliver.render.render_template`).

**The checked text.** Spans index into one string per message (:func:`checked_text`): a
message whose channel has a heading (an e-mail's subject, a push notification's title, see
:mod:`legato.channels`) is ``label + " " + heading + "\\n\\n" + body``; anything else is the
body alone. A finding about something *missing* (an unsubscribe link, say) spans the part
where it belongs, usually the whole body.

**Severity.** ``block`` stops the message, ``escalate`` sends it to a person for review,
``warn`` is recorded and shown. :func:`verdict` is the most severe finding, else ``ok``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from legato.channels import REGISTRY


class Severity(str, Enum):
    WARN = "warn"
    ESCALATE = "escalate"
    BLOCK = "block"


FAMILIES = ("voice", "compliance", "personal_data", "template")
SEVERITIES = tuple(s.value for s in Severity)
_RANK = {"ok": 0, "warn": 1, "escalate": 2, "block": 3}
CHANNELS = frozenset(REGISTRY)
PURPOSES = frozenset({"marketing", "transactional"})


@dataclass(frozen=True)
class Finding:
    rule: str
    family: str
    severity: str
    span: tuple[int, int]
    reason: str


@dataclass(frozen=True)
class Message:
    channel: str
    body: str
    subject: str | None = None
    title: str | None = None
    purpose: str = "marketing"


def verdict(findings: Iterable[Finding]) -> str:
    """The most severe finding's severity: "block", "escalate", "warn", or "ok"."""
    worst = "ok"
    for finding in findings:
        if _RANK[finding.severity] > _RANK[worst]:
            worst = finding.severity
    return worst


def family_verdicts(findings: Iterable[Finding]) -> dict[str, str]:
    """The verdict of each family, "ok" for a family without findings."""
    result = dict.fromkeys(FAMILIES, "ok")
    for finding in findings:
        if _RANK[finding.severity] > _RANK[result[finding.family]]:
            result[finding.family] = finding.severity
    return result



@dataclass(frozen=True)
class Layout:
    """The checked text of a message and where its heading and body sit in it."""

    text: str
    heading: tuple[int, int] | None  # the subject or title
    body: tuple[int, int]


def layout(message: Message) -> Layout:
    spec = REGISTRY.get(message.channel)
    heading = getattr(message, spec.heading) if spec is not None and spec.heading else None
    if spec is None or spec.heading_label is None or heading is None:
        return Layout(message.body, None, (0, len(message.body)))
    label = spec.heading_label + " "
    start = len(label)
    text = label + heading + "\n\n" + message.body
    body_start = start + len(heading) + 2
    return Layout(text, (start, start + len(heading)), (body_start, len(text)))


def checked_text(message: Message) -> str:
    """The string every finding's span indexes into (see the module docstring)."""
    return layout(message).text
