"""Patterns the content rules share, compiled once (the phrase lists live in :mod:`legato.guard.rules`)."""

from __future__ import annotations

import re

from legato.guard import rules

DEADLINE = rules.compile_phrases(rules.DEADLINE_PHRASES)
COUNTDOWN = rules.compile_patterns(rules.COUNTDOWN_PATTERNS)
SCARCITY = rules.compile_phrases(rules.SCARCITY_PHRASES)
CLAIMS = rules.compile_phrases(rules.CLAIM_PHRASES)
STOP = rules.compile_patterns(rules.STOP_INSTRUCTIONS)
AI = rules.compile_patterns(rules.AI_DISCLOSURES)
# "no hurry", "we can't guarantee": a negated phrase is not a pressure tactic or a claim.
NEGATION_BEFORE = re.compile(r"(?:\b(?:no|not|never|cannot|no\s+need\s+to)|n['’]t)\s+$", re.IGNORECASE)
UNSUBSCRIBE_WORD = re.compile(rules.UNSUBSCRIBE_WORDS, re.IGNORECASE)
UNSUBSCRIBE_PLACEHOLDER = re.compile(rules.UNSUBSCRIBE_PLACEHOLDER)
ADDRESS_PLACEHOLDER = re.compile(rules.POSTAL_ADDRESS_PLACEHOLDER)
URL = re.compile(r"\bhttps?://[^\s<>\"'()]+", re.IGNORECASE)
PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
PARAGRAPH = re.compile(r"\n\s*\n")
STREET = "|".join(
    re.escape(form) for word in rules.STREET_WORDS for form in (word.title(), word.upper())
)
POSTAL_ADDRESS = re.compile(
    r"\b\d{1,6}[A-Za-z]?(?:-\d{1,4})?,?\s+(?:[A-Z0-9][\w.'’-]*\s+){0,4}(?:" + STREET + r")\b"
    r"|\b[Pp]\.?\s?[Oo]\.?\s+[Bb][Oo][Xx]\s+\d+"
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:" + "|".join(re.escape(s) for s in rules.STREET_SUFFIXES_BEFORE_NUMBER) + r")\s+\d{1,5}[a-z]?\b"
)
LEADING_LABEL = re.compile(r"^\s*[A-Za-z0-9][^\n:]{0,40}:")
WORD = re.compile(r"\w+(?:['’]\w+)*")
CODE = re.compile(rules.CODE_LEAD_WORDS + r"([A-Za-z0-9-]+)", re.IGNORECASE)
EMOJI = re.compile(
    "(?:[\U0001F1E6-\U0001F1FF]{2}"
    "|[\U0001F000-\U0001FAFF\u2600-\u2604\u2607-\u2712\u2719-\u27BF\u2B50\u2B55\u2B1B\u2B1C]"
    ")(?:[\uFE0F\U0001F3FB-\U0001F3FF]|\u200D[\U0001F000-\U0001FAFF\u2600-\u27BF])*"
)
EMAIL = re.compile(r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Addresses of a role, not a person (GDPR Art. 4(1): personal data relates to a natural person).
ROLE_MAILBOX = re.compile(
    r"^(?:help|support|info|hello|hi|contact|team|care|customercare|service|customerservice|orders|sales|"
    r"privacy|unsubscribe|no-?reply|news|newsletter|marketing|returns|billing|shop|store)@",
    re.IGNORECASE,
)
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
PHONE_HINT = re.compile(r"\d(?:[\s().\-/]*\d){6,}")


def phrase(text: str) -> str:
    """A literal phrase as a case-insensitive, whole-word pattern (flexible spaces, quotes)."""
    escaped = re.escape(text.strip()).replace(r"\ ", r"\s+").replace("'", "['’]")
    return r"(?<!\w)" + escaped + r"(?!\w)"


def normalized(text: str) -> str:
    return " " + re.sub(r"[^0-9a-z]+", " ", text.lower()).strip() + " "


def negated(text: str, start: int) -> bool:
    return NEGATION_BEFORE.search(text, max(0, start - 16), start) is not None
