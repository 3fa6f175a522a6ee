"""Mask personal data in what customers write before it is stored or shown.

Customers paste card numbers, security codes, passwords and bank details into replies
("charge it to 4111 1111 1111 1111, cvv 123"). Nothing in Legato needs them, and a reply is
kept in the store, the audit log and the review queue where many people read it, so they are
masked on the way in (PCI DSS forbids storing a security code at all and a full card number
in the clear). What stays is enough to help: the card's last four digits, an IBAN's country
and last four, a phone number's last two digits, an e-mail address's domain.

Masking runs on the text as written and on its normal form (:mod:`legato.guard.normalize`),
so full-width digits or a zero-width space inside the number do not hide it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from legato.guard.normalize import normalize

_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_SECURITY_CODE = re.compile(r"\b(cvv2?|cvc2?|cid|csc|security code|code de securite|codigo de seguridad|cryptogramme)\b(\W{0,3})(\d{3,4})\b", re.I)
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b(ssn|social security( number)?)\b(\W{0,3})\d{9}\b", re.I)
_IBAN = re.compile(r"\b([A-Z]{2})(\d{2})((?: ?[A-Z0-9]){11,30})\b")
_PASSWORD = re.compile(r"\b(password|passcode|pin|mot de passe|mdp|contrasena|contraseña|clave)\b(\s*(?:is|est|es|:|=)\s*)(\S+)", re.I)
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-]+)@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?![\w])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _card(match: re.Match[str]) -> str:
    digits = normalize(re.sub(r"\D", "", match.group(0)))  # full-width digits count as digits
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return f"[card ••••{digits[-4:]}]"
    return match.group(0)


def _iban(match: re.Match[str]) -> str:
    compact = re.sub(r"\s", "", match.group(0))
    if 15 <= len(compact) <= 34 and _iban_valid(compact):
        return f"[iban {compact[:2]}••••{compact[-4:]}]"
    return match.group(0)


def _phone(match: re.Match[str]) -> str:
    # A phone number is written with a "+" or with separators; a run of bare digits is more
    # likely an order number, and a date is a date.
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    written_as_phone = found.startswith("+") or re.search(r"\d[ .()-]+\d", found) is not None
    if 10 <= len(digits) <= 15 and written_as_phone and not _DATE.fullmatch(found.strip()):
        return f"[phone ••••{digits[-2:]}]"
    return found


_STEPS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_SECURITY_CODE, lambda m: f"{m.group(1)}{m.group(2)}[code]"),
    (_PASSWORD, lambda m: f"{m.group(1)}{m.group(2)}[secret]"),
    (_SSN, lambda m: "[ssn]"),
    (_IBAN, _iban),
    (_CARD, _card),
    (_EMAIL, lambda m: f"[email]@{m.group(2)}"),
    (_PHONE, _phone),
)


def mask(text: str) -> str:
    """The text with card numbers, codes, passwords, SSNs, IBANs, e-mail addresses and phones masked."""
    normal = normalize(text)
    if normal != text and _mask_once(normal) != normal:
        # Something is there in the normal form (full-width digits, a zero-width space inside
        # a number): keep the normal form, masked, rather than the disguised original.
        return _mask_once(normal)
    return _mask_once(text)


def _mask_once(text: str) -> str:
    for pattern, replace in _STEPS:
        text = pattern.sub(replace, text)
    return text
