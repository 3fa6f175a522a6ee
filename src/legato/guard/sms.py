"""How many SMS parts a text costs: GSM-7 when every character fits, else UCS-2.

The one owner of segment counting: the content checks warn about a text of more parts than
the channel registry allows (:mod:`legato.guard.voice`, ``max_segments`` in
:mod:`legato.channels`), and the SMS transport counts what it hands the provider, which
bills by part (:mod:`legato.deliver.twilio`). It lives with the checks, which import nothing
from delivery; delivery imports it.

Sources: 3GPP TS 23.038 §6.2.1 defines the GSM 7-bit default alphabet and its extension
table (reached with an escape, so each extension character costs two septets); 3GPP TS
23.040 §9.2.3.24.1 defines the concatenation header, which takes 6 octets of the 140 and
leaves 153 septets (GSM-7) or 67 UTF-16 code units (UCS-2) per part. A single part holds
160 septets or 70 code units. A character never straddles two parts: an escape pair or a
surrogate pair that would not fit moves whole to the next part, as senders do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The default alphabet, in table order (TS 23.038 §6.2.1); "\x1b" (escape) is left out
# because it is how the extension table is reached, never a character of its own.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = "\f^{}\\[~]|€"

GSM_BASIC: frozenset[str] = frozenset(_GSM_BASIC)
GSM_EXTENDED: frozenset[str] = frozenset(_GSM_EXTENDED)
_GSM_ALL = GSM_BASIC | GSM_EXTENDED

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PER_PART = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SmsSegments:
    """The cost of one SMS text."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    starts: tuple[int, ...]  # index in the text where each part begins
    forced_by: str | None = None  # the first character that is not GSM-7, if any


def is_gsm7(text: str) -> bool:
    return set(text) <= _GSM_ALL


def count_segments(text: str) -> SmsSegments:
    """Encoding, size and parts of ``text``; an empty text still costs one part."""
    if is_gsm7(text):
        costs = [2 if char in GSM_EXTENDED else 1 for char in text]
        encoding: Literal["GSM-7", "UCS-2"] = "GSM-7"
        forced_by = None
    else:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
        encoding = "UCS-2"
        forced_by = next(char for char in text if char not in _GSM_ALL)
    units = sum(costs)
    if units <= SINGLE[encoding]:
        return SmsSegments(encoding, units, 1, (0,), forced_by)
    limit = PER_PART[encoding]
    starts = [0]
    used = 0
    for index, cost in enumerate(costs):
        if used + cost > limit:
            starts.append(index)
            used = 0
        used += cost
    return SmsSegments(encoding, units, len(starts), tuple(starts), forced_by)
