"""The check of one message before it goes out: a text a person wrote, or a creative of a playbook.

Both go through the one check of a message (:class:`legato.guard.message.MessageChecker`):
a text is checked as typed (an e-mail starts ``Subject: ...``, a blank line, then the body;
a push notification may start with ``Title: ...``), a creative exactly as the cycle checks
its variants (rendered for a stand-in customer, its channel and purpose its own).
``legato check message`` and ``POST /v1/checks/message`` call :func:`check_text` and
:func:`check_creative`.
"""

from __future__ import annotations

from dataclasses import dataclass

from legato.channels import REGISTRY
from legato.errors import Invalid
from legato.guard.findings import Finding, Message, checked_text, verdict
from legato.guard.message import MessageChecker
from legato.playbook.models import Playbook

# The channels a person can write a message for (a webhook carries data, not a message).
CHANNELS = tuple(name for name in REGISTRY if name != "webhook")
PURPOSES = ("marketing", "transactional")


@dataclass(frozen=True)
class Checked:
    """The message as the checks read it, every finding with its place, and the verdict."""

    message: Message
    findings: list[Finding]

    @property
    def verdict(self) -> str:
        return verdict(self.findings)

    @property
    def text(self) -> str:
        """The checked text the findings' spans index into (heading line, then the body)."""
        return checked_text(self.message)


def checker(playbook: Playbook | None) -> MessageChecker:
    """The one check with the playbook's brand voice, legal identity and offers, or the built-in defaults."""
    return MessageChecker(playbook)


def check_text(
    playbook: Playbook | None, channel: str, raw: str, *, purpose: str = "marketing", offer: str | None = None, first_sms: bool = True
) -> Checked:
    """A text as a person wrote it, on ``channel``, against the playbook's rules (or the defaults)."""
    if channel not in CHANNELS:
        raise Invalid(f"'{channel}' is not a channel a message can be checked for", hint=f"use one of {', '.join(CHANNELS)}")
    if purpose not in PURPOSES:
        raise Invalid(f"'{purpose}' is not a purpose", hint="use marketing or transactional (an order update: no opt-out needed)")
    check = checker(playbook)
    _known_offer(check, offer)
    message = parse_message(channel, raw, purpose=purpose)
    return Checked(message, check.check_text(message, offer_id=offer, first=first_sms))


def check_creative(playbook: Playbook, creative: str, *, offer: str | None = None) -> Checked:
    """A creative of the playbook checked as the cycle checks it (rendered for a stand-in customer)."""
    check = checker(playbook)
    _known_offer(check, offer)
    if creative not in {c.id for c in playbook.creatives}:
        known = ", ".join(sorted(c.id for c in playbook.creatives)) or "none"
        raise Invalid(f"creative '{creative}' is not in the playbook", hint=f"creatives: {known}")
    variant = check.variant(creative, offer)
    result = check.check(variant)
    message = result.message()
    if message is None:  # its templates do not render: the findings say why, over the template's body
        message = Message(result.channel, variant.creative.body, purpose=result.purpose)
    return Checked(message, list(result.findings))


def _known_offer(check: MessageChecker, offer: str | None) -> None:
    if offer is not None and offer not in check.offers:
        known = ", ".join(sorted(check.offers)) or "none"
        raise Invalid(f"offer '{offer}' is not in the playbook", hint=f"offers: {known}")


def parse_message(channel: str, raw: str, *, purpose: str = "marketing") -> Message:
    """A :class:`Message` from text as a person writes it: a channel with a heading (the
    registry's: an e-mail's ``Subject:``, a push notification's ``Title:``) starts with it."""
    raw = raw.replace("\r\n", "\n")
    spec = REGISTRY[channel]
    if spec.heading is None or spec.heading_label is None:
        return Message(channel, raw, purpose=purpose)
    heading, body = _split_header(raw, spec.heading_label)
    if heading is None and channel == "email":
        raise Invalid(
            "an e-mail must start with a 'Subject:' line, then a blank line, then the body",
            hint="write 'Subject: ...' as the first line, a blank line, then the body: from a file (--file FILE), or in bash "
            "--text $'Subject: New boots\\n\\nHello, ...' (plain double quotes keep \\n as two characters)",
        )
    return Message(channel, body, purpose=purpose, **{spec.heading: heading})


def _split_header(raw: str, label: str) -> tuple[str | None, str]:
    first, newline, rest = raw.partition("\n")
    if not first.startswith(label) or not newline:
        return None, raw
    blank, newline, body = rest.partition("\n")
    if blank.strip() or not newline:
        return None, raw
    return first[len(label) :].strip(), body
