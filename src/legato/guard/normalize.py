"""See through disguised text: one normal form for every check that reads what people wrote.

A rule that looks for "act now" or for "STOP" is beaten by text that *looks* the same to a
reader but not to a regular expression: full-width letters ("ＡＣＴ ＮＯＷ"), a zero-width
space or soft hyphen inside a word ("ac\u200bt", "un\u00adsubscribe"), bidirectional
controls, or letters borrowed from another script ("Асt now" with a Cyrillic А and с).

:func:`normalize` removes that disguise in three steps, in the order Unicode Technical
Standard #39 suggests for its "skeleton" (decompose, map look-alikes, recompose):

1. NFKC, which folds compatibility forms: full-width and half-width letters, ligatures
   ("ﬁ"), circled and mathematical letters, the ideographic space and the no-break space;
2. removing invisible characters: every format character (Unicode category Cf: zero-width
   space and joiners, soft hyphen, word joiner, byte-order mark, bidi embeddings, overrides
   and isolates), plus the few invisible ones outside Cf (combining grapheme joiner,
   variation selectors, Hangul fillers);
3. mapping confusables: the Cyrillic, Greek and other letters that are drawn like a Latin
   letter become that Latin letter. The table below is our own compact choice of the common
   look-alikes in the idea of TS #39's confusables; it is not the Unicode data file.

The result is for *checking*, not for showing: a Greek or Russian sentence comes out as
nonsense Latin. Callers check the raw text and the normalized text and report a finding if
either matches (:func:`forms`), so nothing a rule caught before is lost.
"""

from __future__ import annotations

import unicodedata

# Invisible characters that are not of category Cf (those are removed by category).
_INVISIBLE_OUTSIDE_CF = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0]  # CGJ, Hangul fillers, Khmer inherent vowels
    + list(range(0xFE00, 0xFE10))  # variation selectors 1-16
    + list(range(0xE0100, 0xE01F0))  # variation selectors supplement
)

# Look-alike letters drawn like a Latin letter: (letters, the Latin letter each stands for).
# Pairs are written as two aligned strings so the table stays readable.
_LOOKALIKES: tuple[tuple[str, str], ...] = (
    # Cyrillic capitals and small letters
    ("АВЕЅІЈКМНОРСТХУԁԛԜ", "ABESIJKMHOPCTXYdqW"),
    ("аеѕіјорсухԝһӏ", "aesijopcyxwhl"),
    ("ЁЇёї", "EIei"),  # NFKC keeps these composed; a reader sees E/I with dots
    ("ԚԌԒ", "QGJ"),
    # Greek capitals and the small letters that pass for Latin ones
    ("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX"),
    ("οαικνρυτ", "oaikvput"),
    ("ςϳ", "cj"),  # final sigma; the lunate sigma "ϲ" becomes it under NFKC
    # Latin-script letters that stand in for plain ones
    ("ıȷɑɡɩʟ", "ijagil"),
    # Armenian and Cherokee letters commonly used as Latin ones
    ("օսհոցլ", "ouhnql"),
    ("ᎪᏴᏟᎠᎬᎻᏆᎫᏦᏞᎷᏃᏢᏚᎢᏙᏔ", "ABCDEHIJKLMZPSTVW"),
)
CONFUSABLES: dict[int, str] = {
    ord(char): latin for letters, latins in _LOOKALIKES for char, latin in zip(letters, latins, strict=True)
}


def is_invisible(char: str) -> bool:
    """True for a character that takes no space and draws nothing (it can hide inside a word)."""
    return unicodedata.category(char) == "Cf" or ord(char) in _INVISIBLE_OUTSIDE_CF


def remove_invisible(text: str) -> str:
    return "".join(char for char in text if not is_invisible(char))


def map_confusables(text: str) -> str:
    return text.translate(CONFUSABLES)


def normalize(text: str) -> str:
    """NFKC, then invisible characters removed, then look-alike letters mapped to Latin."""
    return unicodedata.normalize("NFC", map_confusables(remove_invisible(unicodedata.normalize("NFKC", text))))


def strip_marks(text: str) -> str:
    """Accents removed ("arrêtez" -> "arretez"): people type keywords with and without them."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(char for char in decomposed if unicodedata.category(char) != "Mn"))


def forms(text: str) -> tuple[str, ...]:
    """The text as written and, if it differs, its normal form: a check looks at both."""
    normal = normalize(text)
    return (text,) if normal == text else (text, normal)


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """:func:`normalize` one character at a time, with where each output character came from.

    ``offsets[j]`` is the index in ``text`` of the character that produced output character
    ``j``, so a finding on the normal form can point at what was written. Characters are
    folded one by one (a combining mark is not composed with its letter), which keeps the
    correspondence exact; for matching rules on letters that makes no difference.
    """
    pieces: list[str] = []
    offsets: list[int] = []
    for index, char in enumerate(text):
        piece = map_confusables(remove_invisible(unicodedata.normalize("NFKC", char)))
        pieces.append(piece)
        offsets.extend([index] * len(piece))
    return "".join(pieces), offsets


def raw_span(offsets: list[int], span: tuple[int, int], length: int) -> tuple[int, int]:
    """A span of the normal form as the span of the written text it came from."""
    if not offsets:
        return (0, 0)
    start = offsets[min(span[0], len(offsets) - 1)]
    end = offsets[span[1] - 1] + 1 if span[1] > span[0] else start
    return (start, min(end, length))
