"""SMS part counting: GSM-7 with double-cost extension characters, else UCS-2 code units."""

from __future__ import annotations

import pytest

from legato.guard.sms import GSM_BASIC, GSM_EXTENDED, count_segments, is_gsm7


def test_alphabet_has_the_default_table_and_its_extension() -> None:
    assert len(GSM_BASIC) == 127  # 128 minus the escape that reaches the extension table
    assert GSM_EXTENDED == frozenset("\f^{}\\[~]|€")
    assert is_gsm7("Hillside: 20% off. Reply STOP to opt out. £5 @ café, Ñoño ¿sì?")
    assert not is_gsm7("we’re")  # a curly apostrophe is not GSM-7
    assert not is_gsm7("Ñandú")  # nor is ú (only ù is)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_single_part_holds_160_and_each_joined_part_153(length: int, segments: int) -> None:
    cost = count_segments("a" * length)
    assert (cost.encoding, cost.units, cost.segments) == ("GSM-7", length, segments)


def test_extension_characters_cost_two_septets() -> None:
    assert count_segments("€" * 80).segments == 1  # 160 septets
    cost = count_segments("€" * 81)
    assert (cost.units, cost.segments) == (162, 2)
    assert count_segments("{}" * 40 + "a").units == 161


def test_an_escape_pair_never_straddles_two_parts() -> None:
    cost = count_segments("a" * 152 + "€" + "a" * 10)  # 164 septets
    assert cost.segments == 2
    assert cost.starts == (0, 152)  # the euro sign moves whole to part two


@pytest.mark.parametrize(("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_ucs2_single_part_holds_70_and_each_joined_part_67(length: int, segments: int) -> None:
    cost = count_segments("ł" * length)
    assert (cost.encoding, cost.units, cost.segments, cost.forced_by) == ("UCS-2", length, segments, "ł")


def test_ucs2_counts_utf16_code_units_and_keeps_surrogate_pairs_whole() -> None:
    assert count_segments("😀" * 35).units == 70
    assert count_segments("😀" * 35).segments == 1
    cost = count_segments("😀" * 36)
    assert (cost.units, cost.segments, cost.starts) == (72, 2, (0, 33))


def test_one_character_outside_gsm7_switches_the_whole_text() -> None:
    text = "Hillside: we’ve got new boots. " * 5  # 155 characters
    assert count_segments(text.replace("’", "'")).segments == 1
    cost = count_segments(text)
    assert (cost.encoding, cost.segments, cost.forced_by) == ("UCS-2", 3, "’")
