"""What the law and the carriers require of a message.

Marketing e-mail carries an opt-out link and the sender's postal address; the first message
on a channel whose registry entry has first-message rules (a first SMS) names the brand and
says how to stop; marketing claims no deadline the offer lacks, no scarcity Legato cannot
verify and no claim without evidence; and where the playbook asks for it, every message
says it was written with AI. Transactional messages (an order update) are held to the
channel and disclosure rules only.
"""

from __future__ import annotations

import re

from legato.channels import REGISTRY, FirstMessageRule
from legato.guard import patterns as P
from legato.guard.findings import Finding, Layout, Message
from legato.playbook.models import Brand

# How far from the word "unsubscribe" a link may be and still count as the opt-out link.
UNSUBSCRIBE_LINK_DISTANCE = 120


class ComplianceRules:
    """The compliance rules for one brand's messages (generic ones without a brand: a postal
    address is then anything that looks like one)."""

    def __init__(self, brand: Brand | None, *, require_ai_disclosure: bool = False) -> None:
        self.brand = brand
        self.require_ai_disclosure = require_ai_disclosure
        self._brand_name: re.Pattern[str] | None = None
        self._address: str | None = None
        self._unsubscribe_base: str | None = None
        if brand is not None:
            legal = brand.legal
            names = {brand.name, legal.sender_name}
            self._brand_name = re.compile("|".join(P.phrase(n) for n in names), re.IGNORECASE)
            self._address = P.normalized(legal.postal_address)
            self._unsubscribe_base = legal.unsubscribe_url

    def findings(self, message: Message, layout: Layout, *, has_deadline: bool, first_message: bool) -> list[Finding]:
        text = layout.text
        body = text[layout.body[0] : layout.body[1]]
        out: list[Finding] = []

        def add(rule: str, severity: str, span: tuple[int, int], reason: str) -> None:
            out.append(Finding(f"compliance.{rule}", "compliance", severity, span, reason))

        marketing = message.purpose == "marketing"
        if marketing and message.channel == "email":
            if not self._has_unsubscribe(body):
                add(
                    "unsubscribe_missing",
                    "block",
                    layout.body,
                    "marketing e-mail needs a working unsubscribe link near the word 'unsubscribe' "
                    "(CAN-SPAM 15 U.S.C. 7704(a)(3) and (a)(5)(A)(ii); CASL s. 6(2)(c) and s. 11)",
                )
            if not self._has_postal_address(body):
                where = "the sender's postal address from the playbook" if self._address else "a postal address"
                add(
                    "postal_address_missing",
                    "block",
                    layout.body,
                    f"marketing e-mail must show {where} "
                    "(CAN-SPAM 15 U.S.C. 7704(a)(5)(A)(iii); CASL s. 6(2)(a) with CRTC Regulations SOR/2012-36 s. 2)",
                )

        rules = REGISTRY[message.channel].first_message if first_message else frozenset()
        if rules:
            if FirstMessageRule.BRAND in rules and not self._names_brand(body):
                who = f"'{self.brand.name}'" if self.brand else "the sender (for example 'Brand: ...' at the start)"
                add(
                    "sms_brand_missing",
                    "block",
                    layout.body,
                    f"the first SMS to a number must name {who} (CTIA Messaging Principles and Best Practices)",
                )
            if FirstMessageRule.STOP in rules and P.STOP.search(body) is None:
                add(
                    "sms_stop_missing",
                    "block",
                    layout.body,
                    "the first SMS to a number must say how to stop, e.g. 'Reply STOP to opt out' "
                    "(CTIA Messaging Principles and Best Practices)",
                )

        if marketing:
            if not has_deadline:
                for pattern in (P.DEADLINE, P.COUNTDOWN):
                    for match in pattern.finditer(text):
                        if pattern is P.DEADLINE and P.negated(text, match.start()):
                            continue
                        add(
                            "fake_urgency",
                            "block",
                            match.span(),
                            f"'{match.group()}' claims a deadline, but the offer has none "
                            "(FTC Act §5; EU UCPD Annex I point 7)",
                        )
            for match in P.SCARCITY.finditer(text):
                if P.negated(text, match.start()):
                    continue
                add(
                    "false_scarcity",
                    "block",
                    match.span(),
                    f"'{match.group()}' claims scarcity or other shoppers' interest that Legato cannot verify "
                    "(FTC Act §5; EU UCPD Art. 6)",
                )
            for match in P.CLAIMS.finditer(text):
                if P.negated(text, match.start()):
                    continue
                add(
                    "unsubstantiated_claim",
                    "escalate",
                    match.span(),
                    f"'{match.group()}' is a claim that needs evidence or stated terms before it is sent "
                    "(FTC substantiation policy; 16 CFR Part 239 for guarantees; EU UCPD Art. 12)",
                )

        if self.require_ai_disclosure and P.AI.search(text) is None:
            add(
                "ai_disclosure_missing",
                "block",
                layout.body,
                "the playbook requires saying the message was written with AI or comes from an AI assistant "
                "(EU AI Act Art. 50)",
            )
        return out

    def _has_unsubscribe(self, body: str) -> bool:
        if P.UNSUBSCRIBE_PLACEHOLDER.search(body):
            return True
        if self._unsubscribe_base is not None and self._unsubscribe_base in body:
            return True
        words = [m.span() for m in P.UNSUBSCRIBE_WORD.finditer(body)]
        if not words:
            return False
        for link in P.URL.finditer(body):
            for start, end in words:
                gap = max(link.start() - end, start - link.end(), 0)
                if gap <= UNSUBSCRIBE_LINK_DISTANCE:
                    return True
        return False

    def _has_postal_address(self, body: str) -> bool:
        if P.ADDRESS_PLACEHOLDER.search(body):
            return True
        if self._address is not None:
            return self._address in P.normalized(body)
        return P.POSTAL_ADDRESS.search(body) is not None

    def _names_brand(self, body: str) -> bool:
        if self._brand_name is not None:
            return self._brand_name.search(body) is not None
        return P.LEADING_LABEL.match(body) is not None

