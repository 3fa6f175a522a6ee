"""Personal data that must never travel in a message: other people's e-mail addresses and
phone numbers, payment card numbers, bank account numbers.

The recipient's own address and number (``allowed_personal``), the brand's own contact
points, role mailboxes and toll-free numbers are not personal data of anyone else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import phonenumbers

from legato.guard import patterns as P
from legato.guard.findings import Finding
from legato.playbook.models import Brand

PHONE_REGION = "US"  # how national-format numbers are read; "+CC" numbers are found anywhere


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


class PersonalDataRules:
    """Finds personal data in a message's checked text, allowing the brand's own contact points."""

    def __init__(self, brand: Brand | None) -> None:
        self._allowed_emails: set[str] = set()
        self._allowed_domains: set[str] = set()
        self._allowed_phones: set[str] = set()
        if brand is None:
            return
        legal = brand.legal
        for field in (legal.support_contact, legal.postal_address, legal.unsubscribe_url):
            for email in P.EMAIL.findall(field):
                self._allowed_emails.add(email.lower())
                self._allowed_domains.add(email.rsplit("@", 1)[1].lower())
            for match in phonenumbers.PhoneNumberMatcher(field, PHONE_REGION):
                self._allowed_phones.add(phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164))
        host = re.match(r"https?://([^/:?#]+)", legal.unsubscribe_url, re.IGNORECASE)
        if host:
            self._allowed_domains.add(host.group(1).lower())

    def findings(self, text: str, allowed_personal: Sequence[str] = ()) -> list[Finding]:
        out: list[Finding] = []
        allowed_emails = {v.strip().lower() for v in allowed_personal if "@" in v}
        allowed_phones = {key for v in allowed_personal if "@" not in v and (key := _phone_key(v))}

        def add(rule: str, span: tuple[int, int], reason: str) -> None:
            out.append(Finding(f"personal_data.{rule}", "personal_data", "block", span, reason))

        if "@" in text:
            for match in P.EMAIL.finditer(text):
                address = match.group().lower()
                if (
                    address in allowed_emails
                    or address in self._allowed_emails
                    or address.rsplit("@", 1)[1] in self._allowed_domains
                    or P.ROLE_MAILBOX.match(address)
                ):
                    continue
                add("email_address", match.span(), "an e-mail address that is not the recipient's own (GDPR Art. 5(1)(f))")

        taken: list[tuple[int, int]] = []
        for match in P.CARD.finditer(text):
            digits = re.sub(r"\D", "", match.group())
            if 13 <= len(digits) <= 19 and _luhn(digits):
                taken.append(match.span())
                add(
                    "payment_card",
                    match.span(),
                    "a payment card number (Luhn-valid); never send one in a message (PCI DSS v4.0 req. 4.2.2)",
                )
        for match in P.IBAN.finditer(text):
            groups = match.group().split(" ")
            while groups:
                if _iban_valid("".join(groups)):
                    end = match.start() + len(" ".join(groups))
                    taken.append((match.start(), end))
                    add("bank_account", (match.start(), end), "an IBAN bank account number (GDPR Art. 5(1)(f))")
                    break
                groups.pop()

        if P.PHONE_HINT.search(text):
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

