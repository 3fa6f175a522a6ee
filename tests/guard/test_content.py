"""Content checks: each rule on its own, spans into the checked text, caching, templates."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

import pytest

from legato.guard.content import (
    ContentChecker,
    Finding,
    Message,
    checked_text,
    family_verdicts,
    reading_grade,
    verdict,
)
from legato.deliver.render import render_template
from legato.validation import parse_playbook
from legato.playbook.models import Brand, LegalIdentity, Offer, Voice

EXAMPLE = parse_playbook(files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8"))
BRAND = EXAMPLE.brand
FOOTER = (
    "\n\nUnsubscribe: https://hillside.example.com/unsubscribe?u=1\n"
    "Hillside Outfitters, 100 Example Street, Springfield, OR 97477, USA"
)
SALE = Offer(id="sale", kind="percent_off", value=20, cost=5, deadline=datetime(2025, 5, 31, tzinfo=UTC))
SHIPPING = Offer(id="shipping", kind="free_shipping", value=8, cost=3)


def email(body: str, subject: str = "Spring is in", **kw: str) -> Message:
    return Message("email", body + FOOTER, subject=subject, **kw)


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def quoted(message: Message, finding: Finding) -> str:
    return checked_text(message)[finding.span[0] : finding.span[1]]


@pytest.fixture
def hillside() -> ContentChecker:
    return ContentChecker(BRAND, offers={"sale": SALE, "shipping": SHIPPING})


# --- the API -----------------------------------------------------------------------------


def test_checked_text_layout_per_channel() -> None:
    assert checked_text(Message("email", "Hi.", subject="New")) == "Subject: New\n\nHi."
    assert checked_text(Message("push", "Body", title="Title")) == "Title: Title\n\nBody"
    assert checked_text(Message("push", "Body")) == "Body"
    assert checked_text(Message("sms", "Hi", subject="ignored")) == "Hi"


def test_verdict_is_the_most_severe_finding() -> None:
    def f(severity: str, family: str = "voice") -> Finding:
        return Finding("x", family, severity, (0, 1), "r")

    assert verdict([]) == "ok"
    assert verdict([f("warn"), f("escalate")]) == "escalate"
    assert verdict([f("escalate"), f("block"), f("warn")]) == "block"
    assert family_verdicts([f("warn"), f("block", "compliance")]) == {
        "voice": "warn",
        "compliance": "block",
        "personal_data": "ok",
        "template": "ok",
    }


def test_an_on_brand_compliant_email_is_ok(hillside: ContentChecker) -> None:
    message = email("Hello Sam,\n\nThe spring collection has arrived. Take a look when you have a minute.")
    assert hillside.check(message) == []


def test_results_are_cached_per_distinct_input(hillside: ContentChecker, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = hillside._personal.findings
    monkeypatch.setattr(hillside._personal, "findings", lambda *a: calls.append(1) or original(*a))
    message = email("Only 2 left.")
    first = hillside.check(message)
    assert hillside.check(message) == first
    assert len(calls) == 1
    hillside.check(message, allowed_personal=("sam@example.org",))
    hillside.check(Message("email", message.body, subject="Other"))
    assert len(calls) == 3


def test_bad_input_is_refused(hillside: ContentChecker) -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        hillside.check(Message("fax", "hello"))
    with pytest.raises(ValueError, match="purpose"):
        hillside.check(Message("sms", "hello", purpose="other"))
    with pytest.raises(ValueError, match="offer 'nope'"):
        hillside.check(Message("sms", "hello"), offer_id="nope")


# --- voice ---------------------------------------------------------------------------------


def test_avoided_phrases_match_whole_words_in_any_case(hillside: ContentChecker) -> None:
    message = email("CHEAP boots, and cheaper socks. Don’t miss out.")
    found = [f for f in hillside.check(message) if f.rule == "voice.avoided_phrase"]
    assert [quoted(message, f) for f in found] == ["CHEAP", "Don’t miss out"]
    assert {f.severity for f in found} == {"escalate"}


def test_required_phrases_must_appear() -> None:
    brand = BRAND.model_copy(update={"voice": Voice(required_phrases=["Happy trails"])})
    checker = ContentChecker(brand)
    missing = checker.check(email("New boots are in."))
    assert rules(missing) == ["voice.required_phrase_missing"]
    assert checker.check(email("New boots are in. Happy  trails.")) == []


def test_exclamation_marks_beyond_the_limit(hillside: ContentChecker) -> None:
    message = email("New boots! New socks! New tents!")
    [finding] = [f for f in hillside.check(message) if f.rule == "voice.exclamation_marks"]
    assert finding.severity == "warn"
    assert quoted(message, finding) == "! New tents!"  # from the first mark past the allowed one
    assert ContentChecker().check(Message("sms", "A! B! C!")) == []  # three is the default limit
    assert rules(ContentChecker().check(Message("sms", "A! B! C! D!"))) == ["voice.exclamation_marks"]


def test_emoji_policy() -> None:
    def checker(policy: str) -> ContentChecker:
        return ContentChecker(BRAND.model_copy(update={"voice": Voice(emoji=policy)}))

    text = Message("sms", "New boots 🥾 and tents ⛺ and flags 🇨🇦")
    assert len(checker("none").check(text)) == 3
    sparing = checker("sparing").check(text)
    assert [quoted(text, f) for f in sparing] == ["⛺", "🇨🇦"]
    assert checker("allowed").check(text) == []
    assert checker("none").check(Message("sms", "✓ Free returns ★ 5 stars © 2025")) == []


def test_shouting() -> None:
    checker = ContentChecker()
    message = Message("sms", "HUGE SPRING SALE. Use code SPRING or WELCOME10 at https://x.example/SALE. Reply STOP to end.")
    [run] = checker.check(message)
    assert (run.rule, quoted(message, run)) == ("voice.shouting", "HUGE SPRING SALE")
    single = Message("sms", "Our BIGGEST sale, from NASA to the USA.")
    assert [quoted(single, f) for f in checker.check(single)] == ["BIGGEST"]
    # A run stops at a line break: two runs of two, and only SHIPPING is long enough alone.
    lines = Message("sms", "FREE SHIPPING\nNOW ON")
    assert [quoted(lines, f) for f in checker.check(lines)] == ["SHIPPING"]


def test_reading_grade_works_offline_and_skips_short_text() -> None:
    assert reading_grade("Short and sweet.") is None
    simple = "The new boots are in. They are warm and dry. Come and try a pair this week. We think you will like them."
    hard = (
        "Notwithstanding considerable manufacturing complexities, our organization systematically "
        "reengineered fundamental characteristics of waterproof-breathable membranes, consequently "
        "delivering substantially improved environmental adaptability alongside uncompromising "
        "ergonomic functionality for discerning mountaineering professionals."
    )
    simple_grade, hard_grade = reading_grade(simple), reading_grade(hard)
    assert simple_grade is not None and hard_grade is not None
    assert simple_grade < 4
    assert hard_grade > 16


def test_grading_and_tone_need_no_network(tmp_path: Path) -> None:
    """A full check in a fresh interpreter whose sockets refuse to connect, with no nltk data."""
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network disabled for this test')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "from importlib.resources import files\n"
        "from legato.guard.content import ContentChecker, Message, reading_grade\n"
        "from legato.validation import parse_playbook\n"
        "brand = parse_playbook(files('legato.playbook').joinpath('example/playbook.yaml').read_text()).brand\n"
        "rude = 'Your old jacket is ugly and embarrassing. You look terrible. ' * 3\n"
        "print([f.rule for f in ContentChecker(brand).check(Message('sms', rude))])\n"
        "print(reading_grade('The new boots are in. They are warm and dry. Come and try a pair. ' * 3))\n"
    )
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    rules_line, grade_line = done.stdout.splitlines()
    assert rules_line == "['voice.negative_tone']"
    assert float(grade_line) < 5


def test_reading_grade_and_tone_per_brand(hillside: ContentChecker) -> None:
    hard = email(
        "Hello,\n\nNotwithstanding considerable manufacturing complexities, our organization systematically "
        "reengineered fundamental characteristics of waterproof-breathable membranes, consequently "
        "delivering substantially improved environmental adaptability."
    )
    assert rules(hillside.check(hard)) == ["voice.reading_grade"]
    rude = email("Your old jacket is ugly, worn out and embarrassing. Stop looking terrible and replace it.")
    [finding] = hillside.check(rude)
    assert (finding.rule, finding.severity) == ("voice.negative_tone", "warn")
    # Compliance wording is not tone: "STOP" in the opt-out line is not negativity.
    assert hillside.check(Message("sms", "Hillside Outfitters: new boots. Reply STOP to opt out.")) == []


def test_channel_lengths() -> None:
    checker = ContentChecker()
    assert rules(checker.check(Message("push", "ok", title="x" * 51))) == ["voice.push_title_length"]
    assert checker.check(Message("push", "y" * 150, title="x" * 50)) == []
    assert rules(checker.check(Message("push", "y" * 151))) == ["voice.push_body_length"]
    long_subject = Message("email", "Hi" + FOOTER, subject="s" * 79)
    [finding] = checker.check(long_subject)
    assert (finding.rule, finding.span) == ("voice.email_subject_length", (9, 88))
    sms = Message("sms", "a" * 460)
    [parts] = checker.check(sms)
    assert (parts.rule, parts.span) == ("voice.sms_segments", (459, 460))
    assert checker.check(Message("sms", "a" * 459)) == []
    assert rules(checker.check(Message("whatsapp", "w " * 513))) == ["voice.whatsapp_length"]


# --- compliance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "footer",
    [
        "Unsubscribe: {{ unsubscribe_url }}",
        "Unsubscribe: {{unsubscribe_url}}",
        "To unsubscribe, visit https://mail.example.net/u/123",
        "https://mail.example.net/u/123 (unsubscribe)",
        "Opt out: https://mail.example.net/u/123",
    ],
)
def test_unsubscribe_link_forms(footer: str) -> None:
    message = Message("email", f"Hello.\n\n{footer}\n1 Main Street", subject="Hi")
    assert ContentChecker().check(message) == []


def test_marketing_email_without_opt_out_or_address_is_blocked(hillside: ContentChecker) -> None:
    message = Message("email", "Hello.\n\nReply to unsubscribe.", subject="Hi")
    found = hillside.check(message)
    assert rules(found) == ["compliance.postal_address_missing", "compliance.unsubscribe_missing"]
    assert {f.span for f in found} == {(len("Subject: Hi\n\n"), len(checked_text(message)))}  # the body
    far = "Guide: https://x.example/guide\n\n" + "Plenty of words about walks. " * 6 + "\n\nTo unsubscribe write to us."
    assert "compliance.unsubscribe_missing" in rules(ContentChecker().check(Message("email", far + "\n1 Main Street")))


def test_postal_address_from_the_playbook_or_one_that_looks_like_it(hillside: ContentChecker) -> None:
    wrapped = "Hello.\n\nUnsubscribe: {{ unsubscribe_url }}\nHillside Outfitters\n100 Example Street\nSpringfield, OR 97477, USA"
    assert hillside.check(Message("email", wrapped, subject="Hi")) == []
    other = "Hello.\n\nUnsubscribe: {{ unsubscribe_url }}\n42 River Road, Eugene"
    assert rules(hillside.check(Message("email", other, subject="Hi"))) == ["compliance.postal_address_missing"]
    generic = ContentChecker()
    for address in ("42 River Road, Eugene", "P.O. Box 118, Portland", "Hauptstraße 5, Berlin", "{{ brand.postal_address }}"):
        assert generic.check(Message("email", f"Hi.\n\nUnsubscribe: {{{{ unsubscribe_url }}}}\n{address}")) == []
    assert generic.check(Message("email", "Save 20 on the best way to cook.\n\nUnsubscribe: {{ unsubscribe_url }}")) != []


def test_first_sms_names_the_brand_and_says_how_to_stop(hillside: ContentChecker) -> None:
    good = Message("sms", "Hillside Outfitters: new boots. Reply STOP to opt out.")
    assert hillside.check(good, first_sms=True) == []
    bad = Message("sms", "New boots are in, stop by.")
    assert rules(hillside.check(bad, first_sms=True)) == ["compliance.sms_brand_missing", "compliance.sms_stop_missing"]
    assert hillside.check(bad, first_sms=False) == []
    generic = ContentChecker()
    assert generic.check(Message("sms", "Northwind: hi. Text STOP to end."), first_sms=True) == []
    assert rules(generic.check(Message("sms", "hi. Text STOP to end."), first_sms=True)) == ["compliance.sms_brand_missing"]


def test_fake_urgency_is_blocked_unless_the_offer_has_a_deadline(hillside: ContentChecker) -> None:
    message = Message("push", "Sale ends tonight. Hurry, expires in 3 hours. 02:14:59")
    found = hillside.check(message, offer_id="shipping")
    assert [quoted(message, f) for f in found] == ["ends tonight", "Hurry", "expires in 3 hours", "02:14:59"]
    assert {f.rule for f in found} == {"compliance.fake_urgency"}
    assert hillside.check(message, offer_id="sale") == []
    assert hillside.check(Message("push", "No hurry, take your time.")) == []


def test_scarcity_is_blocked_even_with_a_deadline(hillside: ContentChecker) -> None:
    for text in ("Only 2 left in your size.", "14 people are viewing this.", "Selling fast!", "In 9 carts now."):
        found = hillside.check(Message("push", text), offer_id="sale")
        assert rules(found) == ["compliance.false_scarcity"], text
    assert hillside.check(Message("push", "A free tote, while supplies last.")) == []
    assert hillside.check(Message("push", "Only 3 hours left on the sale."), offer_id="sale") == []


def test_claims_escalate_and_no_hidden_fees_guaranteed_is_one(hillside: ContentChecker) -> None:
    message = Message("push", "No hidden fees, guaranteed.")
    [finding] = hillside.check(message)
    assert (finding.rule, finding.severity, quoted(message, finding)) == (
        "compliance.unsubstantiated_claim",
        "escalate",
        "guaranteed",
    )
    assert hillside.check(Message("push", "No hidden fees.")) == []
    assert hillside.check(Message("push", "We can't guarantee delivery dates.")) == []
    for text in ("The #1 boot.", "Risk-free trial.", "Clinically proven comfort.", "100% safe for kids."):
        assert rules(hillside.check(Message("push", text))) == ["compliance.unsubstantiated_claim"], text
    assert hillside.check(Message("push", "Order #12345 shipped.")) == []


def test_transactional_skips_marketing_rules_but_not_personal_data(hillside: ContentChecker) -> None:
    text = "Your return window ends tonight. Guaranteed refund. Card 4111 1111 1111 1111."
    found = hillside.check(Message("email", text, subject="Returns", purpose="transactional"))
    assert rules(found) == ["personal_data.payment_card"]


def test_ai_disclosure_when_required() -> None:
    checker = ContentChecker(BRAND, require_ai_disclosure=True)
    assert rules(checker.check(Message("sms", "You may like the Ridge jacket."))) == ["compliance.ai_disclosure_missing"]
    for text in (
        "You may like the Ridge jacket. Written with AI.",
        "I'm an AI assistant for Hillside. You may like the Ridge jacket.",
        "You may like the Ridge jacket (AI-generated suggestion).",
        "This message was drafted with the help of artificial intelligence.",
    ):
        assert checker.check(Message("sms", text)) == [], text
    assert ContentChecker(BRAND).check(Message("sms", "You may like the Ridge jacket.")) == []


# --- personal data -------------------------------------------------------------------------


def test_personal_data_is_blocked_except_the_recipients_own(hillside: ContentChecker) -> None:
    text = "Mail Jo.Baker@gmail.com or call (541) 555-0143. You: sam@example.org, +1 541 555 0178."
    message = Message("sms", text)
    found = hillside.check(message, allowed_personal=("SAM@example.org", "541-555-0178"))
    assert [(f.rule, quoted(message, f)) for f in found] == [
        ("personal_data.email_address", "Jo.Baker@gmail.com"),
        ("personal_data.phone_number", "(541) 555-0143"),
    ]
    assert {f.severity for f in found} == {"block"}


def test_cards_need_luhn_and_ibans_need_their_check_digits(hillside: ContentChecker) -> None:
    assert rules(hillside.check(Message("sms", "Card 4539-1488-0343-6467 saved."))) == ["personal_data.payment_card"]
    assert hillside.check(Message("sms", "Gift card 1234 5678 9012 3456.")) == []
    assert rules(hillside.check(Message("sms", "Pay to GB82 WEST 1234 5698 7654 32 please."))) == ["personal_data.bank_account"]
    assert rules(hillside.check(Message("sms", "Pay to GB82WEST12345698765432."))) == ["personal_data.bank_account"]
    assert hillside.check(Message("sms", "Style GB12 ABCD 1234 5678 9012 34.")) == []


def test_the_brands_own_contacts_and_business_lines_are_not_personal() -> None:
    legal = LegalIdentity(
        sender_name="Hillside Outfitters",
        postal_address="100 Example Street, Springfield, OR 97477, USA",
        support_contact="+1 541 555 0100",
        unsubscribe_url="https://hillside.example.com/unsubscribe",
    )
    checker = ContentChecker(Brand(name="Hillside Outfitters", legal=legal))
    text = "Call (541) 555-0100 or 1-800-555-0199, or write to anna@hillside.example.com or help@other.example."
    assert checker.check(Message("sms", text)) == []


# --- templates -----------------------------------------------------------------------------


def test_template_renders_in_the_sandbox() -> None:
    result = render_template("Hello {{ customer.first_name }}", {"customer": {"first_name": "Sam"}})
    assert (result.text, result.findings) == ("Hello Sam", ())


def test_undefined_variable_spans_its_expression() -> None:
    source = "Hello {{ name }},\n\n{% for i in items %}{{ i }}{% endfor %}\nPoints: {{ customer.points }}"
    result = render_template(source, {"name": "Sam", "items": [1], "customer": {}})
    [finding] = result.findings
    assert (finding.rule, finding.severity, result.text) == ("template.undefined_variable", "block", None)
    assert source[finding.span[0] : finding.span[1]] == "{{ customer.points }}"
    [missing] = render_template("A {{ a }} B {{ b }}", {"a": 1}).findings
    assert missing.span == (12, 19)


@pytest.mark.parametrize("expression", ["{{ customer.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ customer.__init__.__globals__ }}"])
def test_unsafe_attribute_access_is_blocked(expression: str) -> None:
    source = f"Hi {{{{ customer.name }}}}\n{expression}"
    [finding] = render_template(source, {"customer": {"name": "Sam"}}).findings
    assert finding.rule == "template.forbidden_access"
    assert source[finding.span[0] : finding.span[1]] == expression


def test_template_syntax_errors_span_the_broken_expression() -> None:
    source = "Hello\nHi {{ name , you\nBye"
    [finding] = render_template(source, {"name": "x"}).findings
    assert finding.rule == "template.syntax_error"
    assert source[finding.span[0] : finding.span[1]] == "{{ name , you"
    source = "Hi {{ name }}\n{{ name | nofilter }}"
    [finding] = render_template(source, {"name": "x"}).findings
    assert source[finding.span[0] : finding.span[1]] == "{{ name | nofilter }}"
