"""Content guardrails: every message is checked before it can be sent.

A :class:`ContentChecker` looks at one rendered message and returns
:class:`~legato.guard.findings.Finding` s from three rule sets, each in its own module:
the brand's voice and the channel's limits (:mod:`legato.guard.voice`), what the law and
the carriers require (:mod:`legato.guard.compliance`) and personal data that must never
travel (:mod:`legato.guard.personal_data`). Rendering a creative and checking it, bound to
its content hash, is :mod:`legato.guard.message`: callers check messages through it.

**Disguised text.** Each message is checked as written and, when it differs, in its normal
form (:mod:`legato.guard.normalize`: NFKC, invisible characters removed, look-alike letters
mapped), so "ＡＣＴ ＮＯＷ", a Cyrillic "Асt now", "jane.doe＠gmail.com" or a zero-width space
inside a word are seen for what they say. A rule that fires only on the normal form reports
a finding spanning the written characters it came from.

Results are cached per distinct (message, offer, first message, allowed values), because a
variant rendered for everybody is checked once, not once per customer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from legato.guard.compliance import ComplianceRules
from legato.guard.findings import (
    CHANNELS,
    FAMILIES,
    PURPOSES,
    SEVERITIES,
    Finding,
    Message,
    checked_text,
    family_verdicts,
    layout,
    verdict,
)
from legato.guard.normalize import normalize, normalize_with_offsets, raw_span
from legato.guard.personal_data import PersonalDataRules
from legato.guard.voice import VoiceRules, prose_of, reading_grade
from legato.playbook.models import Brand, Offer, Playbook

CACHE_SIZE = 4096

__all__ = [
    "CHANNELS", "FAMILIES", "PURPOSES", "SEVERITIES", "ContentChecker", "Finding", "Message",
    "checked_text", "family_verdicts", "prose_of", "reading_grade", "verdict",
]


class ContentChecker:
    """Checks rendered messages against a brand's voice, the law and personal-data rules.

    Without a brand, only channel limits, generic voice rules (shouting, at most three
    exclamation marks) and the compliance and personal-data rules apply; a postal address
    is then anything that looks like one.
    """

    def __init__(
        self,
        brand: Brand | None = None,
        *,
        offers: Mapping[str, Offer] | None = None,
        require_ai_disclosure: bool = False,
    ) -> None:
        self.brand = brand
        self.offers = dict(offers or {})
        self.require_ai_disclosure = require_ai_disclosure
        self._voice = VoiceRules(brand)
        self._compliance = ComplianceRules(brand, require_ai_disclosure=require_ai_disclosure)
        self._personal = PersonalDataRules(brand)
        self._cache: OrderedDict[tuple[object, ...], tuple[Finding, ...]] = OrderedDict()

    @classmethod
    def for_playbook(cls, playbook: Playbook) -> ContentChecker:
        """The checker for a playbook's brand, offers and disclosure rule (one place builds it)."""
        return cls(playbook.brand, offers={o.id: o for o in playbook.offers}, require_ai_disclosure=playbook.brand.ai_disclosure)

    def check(
        self,
        message: Message,
        *,
        offer_id: str | None = None,
        first_sms: bool = False,
        allowed_personal: Sequence[str] = (),
    ) -> list[Finding]:
        """Every finding for one rendered message, ordered by position.

        ``first_sms``: the message is the first on its channel to this address, so the
        channel's first-message rules apply (a first text names the brand and says STOP).
        """
        key = (message, offer_id, first_sms, tuple(allowed_personal))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return list(cached)
        if message.channel not in CHANNELS:
            raise ValueError(f"unknown channel '{message.channel}'; expected one of {sorted(CHANNELS)}")
        if message.purpose not in PURPOSES:
            raise ValueError(f"unknown purpose '{message.purpose}'; expected marketing or transactional")
        has_deadline = False
        if offer_id is not None:
            if offer_id not in self.offers:
                raise ValueError(f"offer '{offer_id}' is not among the offers this checker was given")
            has_deadline = self.offers[offer_id].deadline is not None
        def all_rules(checked: Message) -> list[Finding]:
            laid_out = layout(checked)
            found = self._voice.findings(checked, laid_out)
            found += self._compliance.findings(checked, laid_out, has_deadline=has_deadline, first_message=first_sms)
            found += self._personal.findings(laid_out.text, allowed_personal)
            return found

        findings = _both_forms(message, all_rules)
        findings.sort(key=lambda f: (f.span[0], f.span[1], f.rule))
        self._cache[key] = tuple(findings)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return findings

    def check_personalized(self, message: Message, *, allowed_personal: Sequence[str] = ()) -> list[Finding]:
        """What filling in one customer's details can add to a variant checked whole: personal
        data (someone else's address or number, a card number in an attribute)."""
        findings = _both_forms(message, lambda checked: self._personal.findings(layout(checked).text, allowed_personal))
        return sorted(findings, key=lambda f: (f.span[0], f.span[1], f.rule))


def _both_forms(message: Message, check: Callable[[Message], list[Finding]]) -> list[Finding]:
    """``check`` on the message as written and on its normal form; what only the normal form
    shows is added, its span moved onto the written characters."""
    found = check(message)
    text = layout(message).text
    # Plain ASCII has nothing to undo (the usual case, and check_personalized runs per
    # customer): the character-by-character pass is only for text that may hide something.
    if text.isascii() or normalize(text) == text:
        return found
    normal_text, offsets = normalize_with_offsets(text)
    if normal_text == text:
        return found
    parts = {part: normalize_with_offsets(value)[0] for part in ("subject", "title", "body") if (value := getattr(message, part)) is not None}
    normal = replace(message, **parts)
    if layout(normal).text != normal_text:  # the layout's own words are ASCII; a mismatch is a bug to see, not to guess at
        raise AssertionError("the normal form of a message must lay out like its parts")
    seen = {f.rule for f in found}
    for finding in check(normal):
        if finding.rule not in seen:
            seen.add(finding.rule)
            span = raw_span(offsets, finding.span, len(text))
            found.append(replace(finding, span=span, reason=finding.reason + " (seen once look-alike, full-width or invisible characters are read as plain letters)"))
    return found
