"""Personal data in customers' replies is masked: what stays is enough to help, never the secret."""

from __future__ import annotations

from legato.guard.redact import luhn_valid, mask


def test_card_numbers_and_security_codes() -> None:
    assert mask("charge 4111 1111 1111 1111 cvv 123 thanks") == "charge [card ••••1111] cvv [code] thanks"
    assert mask("card 5500-0000-0000-0004") == "card [card ••••0004]"
    assert mask("CVC: 9876") == "CVC: [code]"
    # Not a card (fails the Luhn check): an order number stays readable.
    assert not luhn_valid("1234567890123") and mask("order 1234567890123 never came") == "order 1234567890123 never came"


def test_disguised_digits_are_masked_too() -> None:
    assert mask("４１１１ １１１１ １１１１ １１１１") == "[card ••••1111]"
    assert mask("4111\u200b1111 1111 1111") == "[card ••••1111]"


def test_other_personal_data() -> None:
    assert mask("my ssn is 123-45-6789") == "my ssn is [ssn]"
    assert mask("IBAN FR76 3000 6000 0112 3456 7890 189") == "IBAN [iban FR••••0189]"
    assert mask("password: hunter2") == "password: [secret]"
    assert mask("write to jane.doe@gmail.com") == "write to [email]@gmail.com"
    assert mask("call +1 (415) 555-0100") == "call [phone ••••00]"


def test_ordinary_text_is_untouched() -> None:
    for text in ("STOP", "on 2024-03-04 I ordered 2 pairs for $120.00", "size 10, order 55512", "Arrêtez"):
        assert mask(text) == text
