"""The phrase lists the content checks look for: data, kept readable, compiled once.

Phrases are written in lower case and match case-insensitively as whole words. A space
matches any run of spaces, line breaks or hyphens ("risk free" also finds "risk-free"), an
apostrophe matches a straight or a curly one, and these placeholders stand for a kind of
word:

- ``{n}``: a number, in digits or words ("3", "1,200", "three", "a few");
- ``{time}``: a unit of time ("hours", "mins", "days");
- ``{people}``: who is said to be looking ("people", "shoppers", "others");
- ``{item}``: one word that is not a unit of time ("pairs", "jackets");
- ``{when}``: a moment a deadline names ("tonight", "Sunday", "May 31", "midnight").

Changing a list changes what the checker finds; the labeled suite in
``bench/data/content_suite.yaml`` shows the effect (``bench/content_checks.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PLACEHOLDERS = {
    "{n}": r"(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|fifty|a\s+few|a\s+handful|a\s+couple(?:\s+of)?)",
    "{time}": r"(?:hours?|hrs?|minutes?|mins?|seconds?|secs?|days?)",
    "{people}": r"(?:people|persons|shoppers|customers|others|visitors|buyers|users)",
    "{item}": r"(?!(?:hours?|hrs?|minutes?|mins?|seconds?|secs?|days?)\b)[a-z]+",
    "{when}": (
        r"(?:tonight|today|tomorrow|midnight|this\s+weekend|(?:this\s+|on\s+)?(?:mon|tues|wednes|thurs|fri|satur|sun)day"
        r"|(?:on\s+)?(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
        r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?\s+\d{1,2}(?:st|nd|rd|th)?|\d{1,2}/\d{1,2}(?:/\d{2,4})?)"
    ),
}

# --- fake urgency: deadline wording, allowed only when the offer has a real deadline ----
# FTC Act §5 (15 U.S.C. 45) and the FTC staff report "Bringing Dark Patterns to Light"
# (Sept. 2022) on false deadlines and countdown timers; EU UCPD 2005/29/EC Annex I point 7
# ("falsely stating that a product will only be available for a very limited time").
DEADLINE_PHRASES: tuple[str, ...] = (
    "ends {when}",
    "ending {when}",
    "ends at midnight",
    "expires {when}",
    "until {when}",
    "through {when}",
    "valid until",
    "only until",
    "prices go up",
    "ends soon",
    "ending soon",
    "closing soon",
    "last chance",
    "last day to",
    "last day for",
    "final day to",
    "final day for",
    "final hours",
    "final call",
    "hurry",
    "act now",
    "act fast",
    "don't wait",
    "don't delay",
    "today only",
    "tonight only",
    "{n} {time} only",
    "limited time",
    "before it's too late",
    "now or never",
    "time is running out",
    "clock is ticking",
    "won't last",
    "expires in {n} {time}",
    "ends in {n} {time}",
    "ending in {n} {time}",
    "only {n} {time} left",
    "{n} {time} left",
    "for the next {n} {time}",
    "countdown",
    "while you still can",
)

# A running clock written out, e.g. "02:14:59 left" or "3h 12m left".
COUNTDOWN_PATTERNS: tuple[str, ...] = (
    r"\b\d{1,2}:\d{2}:\d{2}\b",
    r"\b\d{1,2}\s*h(?:rs?)?\s*\d{1,2}\s*m(?:in)?s?\b(?:\s+left)?",
)

# --- false scarcity: stock and audience claims; always blocked, Legato has no stock data
# FTC staff report "Bringing Dark Patterns to Light" (2022): low-stock and "N people are
# viewing" messages; EU UCPD Art. 6(1) (misleading action) and Annex I point 7.
SCARCITY_PHRASES: tuple[str, ...] = (
    "only {n} left",
    "just {n} left",
    "only {n} {item} left",
    "just {n} {item} left",
    "only {n} remain",
    "only {n} remaining",
    "only {n} {item} remain",
    "only {n} {item} remaining",
    "{n} left in stock",
    "left in stock",
    "low stock",
    "low in stock",
    "stock is low",
    "limited stock",
    "stock is limited",
    "limited quantities",
    "limited quantity",
    "before they're gone",
    "before it's gone",
    "before they sell out",
    "almost gone",
    "almost sold out",
    "nearly sold out",
    "selling fast",
    "selling out",
    "going fast",
    "few left",
    "stock is running low",
    "running low on stock",
    "stock is running out",
    "running out of stock",
    "{n} {people} are viewing",
    "{n} {people} are looking at",
    "{n} {people} are watching",
    "{n} {people} viewing",
    "{n} {people} have this in their cart",
    "{n} {people} have this in their basket",
    "in {n} carts",
    "in {n} baskets",
    "{n} {people} just bought",
    "someone just bought",
    "bought this {n} {time} ago",
    "bought {n} {time} ago",
)

# --- claims that need evidence before they are sent: escalated to a person ------------
# FTC Policy Statement Regarding Advertising Substantiation (1984) and EU UCPD Art. 12
# (the trader must be able to prove factual claims). Guarantees: the FTC Guides for the
# Advertising of Warranties and Guarantees (16 CFR Part 239) ask that the terms be stated
# and honoured; shipping-time promises need a reasonable basis (16 CFR Part 435). Generic
# environmental claims: EU Directive 2024/825, which adds them to UCPD Annex I.
CLAIM_PHRASES: tuple[str, ...] = (
    "guaranteed",
    "guarantee",
    "guarantees",
    "risk free",
    "money back",
    "#1",
    "number one",
    "no. 1",
    "clinically proven",
    "scientifically proven",
    "proven to",
    "100% safe",
    "completely safe",
    "100% effective",
    "no side effects",
    "doctor recommended",
    "dermatologist recommended",
    "fda approved",
    "miracle",
    "best in the world",
    "world's best",
    "lowest prices anywhere",
    "lowest price anywhere",
    "cheapest anywhere",
    "eco friendly",
    "carbon neutral",
    "climate neutral",
)

# --- SMS: how a first text says how to stop (CTIA Messaging Principles and Best
# Practices, 2023: the opt-in confirmation names the program and gives opt-out steps) ---
STOP_INSTRUCTIONS: tuple[str, ...] = (
    r"\b(?:reply|text|txt|send|respond(?:\s+with)?)\s+[\"'“‘]?(?:stop|stopall|end|quit|cancel|unsubscribe|opt[\s-]?out)\b",
    r"\bstop\s+to\s+(?:opt[\s-]?out|end|unsubscribe|cancel|quit)\b",
)

# --- AI disclosure (EU AI Act Art. 50: tell people they deal with an AI; mark AI text) ---
AI_DISCLOSURES: tuple[str, ...] = (
    r"\b(?:written|drafted|created|generated|composed|produced|prepared)\s+(?:by|with|using)\s+(?:the\s+help\s+of\s+)?(?:an?\s+)?(?:ai|artificial\s+intelligence)\b",
    r"\bai[\s-]+(?:generated|written|assisted|drafted)\b",
    r"\b(?:i\s+am|i'm|i’m|this\s+is)\s+an?\s+(?:ai|artificial\s+intelligence|automated|virtual)\b",
    r"\b(?:ai|virtual)\s+(?:assistant|agent)\b",
)

# --- e-mail opt-out and postal address ---------------------------------------------
UNSUBSCRIBE_WORDS = r"\b(?:unsubscribe|opt[\s-]?out)\b"
UNSUBSCRIBE_PLACEHOLDER = r"\{\{-?\s*unsubscribe_url\s*-?\}\}"
POSTAL_ADDRESS_PLACEHOLDER = r"\{\{-?\s*(?:brand\.)?postal_address\s*-?\}\}"
STREET_WORDS: tuple[str, ...] = (
    "street", "st", "avenue", "ave", "road", "rd", "boulevard", "blvd", "lane", "ln",
    "drive", "dr", "way", "court", "ct", "place", "pl", "square", "sq", "terrace",
    "parkway", "pkwy", "highway", "hwy", "circle", "trail", "plaza", "suite",
)
# Street name first, number after (German, Dutch, Scandinavian addresses).
STREET_SUFFIXES_BEFORE_NUMBER: tuple[str, ...] = ("straße", "strasse", "str.", "weg", "gasse", "platz", "straat", "laan", "gatan", "vej")

# --- shouting ------------------------------------------------------------------------
# Capitalised words of five or more letters that are names or keywords, not shouting.
ACRONYMS: frozenset[str] = frozenset(
    {
        "STOP", "STOPALL", "HELP", "START", "UNSUBSCRIBE", "CANCEL", "QUIT", "UNSTOP",
        "HTTPS", "HTTP", "HTML", "NASDAQ", "UNICEF", "UNESCO", "NASCAR", "ASCII",
        "USPS", "UPS", "FEDEX", "SMS", "FAQS", "COVID", "OSHA", "NATO", "LEGO", "IKEA",
    }
)
# A code after these words ("use code SPRING") is a code, not shouting.
CODE_LEAD_WORDS = r"\b(?:code|coupon|promo|voucher)\s*:?\s*"


def phrase_regex(phrases: Iterable[str]) -> str:
    """One alternation for a list of phrases written in the notation above."""
    parts = []
    for phrase in sorted(phrases, key=len, reverse=True):
        pieces = re.split(r"(\{[a-z]+\})", phrase)
        out = []
        for piece in pieces:
            if piece in PLACEHOLDERS:
                out.append(PLACEHOLDERS[piece])
                continue
            escaped = re.escape(piece)
            escaped = escaped.replace(r"\ ", r"[\s-]+").replace("'", "['’]").replace(r"\-", r"[\s-]+")
            out.append(escaped)
        parts.append("".join(out))
    return r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)"


def compile_phrases(phrases: Iterable[str]) -> re.Pattern[str]:
    return re.compile(phrase_regex(phrases), re.IGNORECASE)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
