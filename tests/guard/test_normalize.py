"""The normal form that every text check reads: full-width, invisible and look-alike characters undone."""

from __future__ import annotations

import unicodedata

from legato.guard.normalize import CONFUSABLES, forms, is_invisible, normalize, normalize_with_offsets, raw_span, strip_marks


def test_full_width_forms_fold_to_ascii() -> None:
    assert normalize("ＡＣＴ ＮＯＷ") == "ACT NOW"
    assert normalize("jane.doe＠gmail.com") == "jane.doe@gmail.com"
    assert normalize("ﬁnal\u3000sale") == "final sale"  # ligature and ideographic space


def test_invisible_characters_are_removed() -> None:
    hidden = "a\u200bc\u200ct\u200d n\u2060o\ufeffw un\u00adsubscribe \u202ebidi\u202c \u2066iso\u2069 x\ufe0fy"
    assert normalize(hidden) == "act now unsubscribe bidi iso xy"
    for char in "\u200b\u00ad\u200e\u200f\u202a\u202e\u2066\u2069\u061c\u034f\ufe0f":
        assert is_invisible(char), hex(ord(char))
    assert not any(is_invisible(char) for char in "a é 1 ✓")


def test_look_alike_letters_map_to_latin() -> None:
    assert normalize("Асt now") == "Act now"  # Cyrillic А and с
    assert normalize("ЅТОР") == "STOP"
    assert normalize("Οrder nοw") == "Order now"  # Greek omicrons
    # Every target is one plain Latin letter, and no Latin letter maps anywhere.
    assert all(len(target) == 1 and target.isascii() and target.isalpha() for target in CONFUSABLES.values())
    assert not any(chr(code).isascii() for code in CONFUSABLES)
    # The table is applied after NFKC: a letter NFKC changes would never be looked up.
    assert [chr(code) for code in CONFUSABLES if unicodedata.normalize("NFKC", chr(code)) != chr(code)] == []
    assert normalize("ϲancel") == "cancel"  # lunate sigma: NFKC makes it a final sigma, mapped to c


def test_plain_text_is_left_as_it_is_and_forms_lists_both() -> None:
    text = "Hello Zoë, 20% off today — l'été arrive"
    assert normalize(text) == unicodedata.normalize("NFC", text)
    assert forms(text) == (text,)
    assert forms("ＡＣＴ") == ("ＡＣＴ", "ACT")


def test_strip_marks() -> None:
    assert strip_marks("arrêtez désabonnez más") == "arretez desabonnez mas"


def test_offsets_point_back_at_what_was_written() -> None:
    text = "Buy: ａ\u200bct ｎｏｗ ﬁne"
    normal, offsets = normalize_with_offsets(text)
    assert normal == "Buy: act now fine"
    start = normal.index("act now")
    assert raw_span(offsets, (start, start + len("act now")), len(text)) == (5, 13)
    assert text[5:13] == "ａ\u200bct ｎｏｗ"
    ligature = normal.index("fine")
    assert raw_span(offsets, (ligature, ligature + 2), len(text)) == (14, 15)  # "fi" came from one "ﬁ"
