"""Content checks see through disguise: full-width, homoglyphs, zero-width and soft hyphens, both forms checked."""

from __future__ import annotations

import pytest

from legato.guard.content import ContentChecker, Message, checked_text

CHECKER = ContentChecker()
PLAIN = "Big news: Act now, the spring collection is in. Reply STOP to opt out."


def _rules(body: str) -> set[str]:
    return {f.rule for f in CHECKER.check(Message(channel="sms", body=body))}


def test_the_plain_phrase_is_found() -> None:
    assert any("urgency" in rule for rule in _rules(PLAIN)), _rules(PLAIN)


@pytest.mark.parametrize(
    "disguised",
    [
        PLAIN.replace("Act now", "Асt now"),  # Cyrillic А and с
        PLAIN.replace("Act now", "ＡＣＴ ＮＯＷ"),  # full-width
        PLAIN.replace("Act now", "Ac\u200bt n\u200co\u200dw"),  # zero-width space and joiners
        PLAIN.replace("Act now", "Act no\u00adw"),  # soft hyphen
    ],
)
def test_disguised_urgency_is_found_and_points_at_what_was_written(disguised: str) -> None:
    message = Message(channel="sms", body=disguised)
    findings = [f for f in CHECKER.check(message) if "urgency" in f.rule]
    assert findings, CHECKER.check(message)
    start, end = findings[0].span
    written = checked_text(message)[start:end]
    assert written.strip() and "Big news" not in written and "collection" not in written


def test_a_disguised_email_address_is_personal_data() -> None:
    body = "Write to jane.doe＠gmail.com for your prize. Reply STOP to opt out."
    rules = {f.rule for f in CHECKER.check(Message(channel="sms", body=body))}
    assert any(rule.startswith("personal_data.") for rule in rules), rules
    personalized = CHECKER.check_personalized(Message(channel="sms", body=body))
    assert any(f.rule.startswith("personal_data.") for f in personalized)


def test_an_undisguised_message_gets_the_same_findings_as_before() -> None:
    message = Message(channel="sms", body=PLAIN)
    assert all("look-alike" not in f.reason for f in CHECKER.check(message))
