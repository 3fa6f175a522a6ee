"""What the review pages make of the service's answers, without a browser: the findings marked
in the message's text, an SMS's parts, and the filter read from a form."""

from __future__ import annotations

import pytest

from legato.console.pages.review import Filters, MessageView, marked
from legato.errors import Invalid
from legato.guard.sms import count_segments


def finding(rule: str, span: tuple[int, int], where: str = "copy", excerpt: str = "", severity: str = "block", whole: bool = False) -> dict:
    return {"rule": rule, "family": "compliance", "severity": severity, "span": list(span), "reason": rule, "in": where,
            "excerpt": excerpt, "whole": whole}


def test_copy_findings_are_marked_by_span_and_variant_findings_where_their_words_are() -> None:
    text = "Only 2 left! Hello Ana, last chance."
    found = [
        finding("scarcity", (0, 11), "copy", "Only 2 left"),
        finding("urgency", (20, 31), "variant", "last chance", severity="warn"),  # the stand-in's text differs: found by its words
        finding("unsubscribe_missing", (0, len(text)), "copy", text, whole=True),  # about the whole body: listed, not marked
        finding("not_here", (3, 9), "variant", "nowhere in this copy"),
    ]
    pieces = marked(text, found, None)
    assert "".join(p.text for p in pieces) == text
    by_text = {p.text: p for p in pieces if p.marks}
    assert by_text["Only 2 left"].marks == (1,) and by_text["Only 2 left"].severity == "block"
    assert by_text["last chance"].marks == (2,) and by_text["last chance"].severity == "warn"
    assert all(3 not in p.marks and 4 not in p.marks for p in pieces)


def test_overlapping_findings_split_the_text_and_the_worst_severity_shows() -> None:
    pieces = marked("abcdef", [finding("a", (0, 4), severity="warn"), finding("b", (2, 6))], None)
    assert [(p.text, p.marks, p.severity) for p in pieces] == [("ab", (1,), "warn"), ("cd", (1, 2), "block"), ("ef", (2,), "block")]


def test_an_sms_shows_its_parts_and_an_email_its_subject_line() -> None:
    body = "Hi Ana, " + "spring is here " * 12 + "Reply STOP to opt out"
    sms = MessageView.of("sms", {"subject": None, "title": None, "body": body}, [])
    assert sms is not None and sms.sms == count_segments(body) and sms.sms.segments == 2
    email = MessageView.of("email", {"subject": "New in", "title": None, "body": "Hello", "html": "<p>Hello</p>"}, [])
    assert email is not None and email.sms is None and email.html == "<p>Hello</p>"
    assert "".join(p.text for p in email.pieces) == "Subject: New in\n\nHello"  # the text the findings' spans index
    assert MessageView.of("email", None, []) is None


def test_the_filter_from_a_form() -> None:
    filters = Filters.of({"agent": " winback ", "reason": "", "min_priority": "50", "older_than_hours": "1.5", "status": ""})
    assert (filters.agent, filters.reason, filters.min_priority, filters.older_than_hours, filters.status) == ("winback", None, 50, 1.5, "open")
    assert filters.narrows and filters.query(after="x") == "?agent=winback&min_priority=50&older_than_hours=1.5&after=x"
    assert Filters.of({}).query() == "" and not Filters.of({}).narrows
    for bad, words in (({"min_priority": "high"}, "not a whole number"), ({"min_priority": "101"}, "out of range"),
                       ({"status": "maybe"}, "not a status"), ({"kind": "email"}, "not a kind"), ({"older_than_hours": "-1"}, "out of range")):
        with pytest.raises(Invalid, match=words) as caught:
            Filters.of(bad)
        assert caught.value.hint
