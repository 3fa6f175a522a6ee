"""What a template sees, how a variant is named, and what stops a template from rendering."""

from __future__ import annotations

import re

import pytest

from legato.deliver.render import (
    CreativeTemplate,
    RenderError,
    SampleCustomer,
    check_template,
    check_template_access,
    customer_context,
    edited_creative,
    message_context,
    render_template,
    variant_hash,
)
from legato.deliver.tokens import KeyRing, message_token
from legato.validation import parse_playbook
from legato.playbook.models import Creative

PLAYBOOK = parse_playbook("""
brand:
  name: Render Co
  legal: {sender_name: Render Co, postal_address: "3 Mill Row", support_contact: "help@render.example", unsubscribe_url: "https://render.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
offers:
  - {id: ten, kind: percent_off, value: 10, cost: 1.0}
channels:
  email: {kind: console}
creatives:
  - {id: note, channel: email, subject: "For {{ customer.first_name }}", body: "{{ offer.value }}% off. {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - {id: a, objective: grow, audience: "true", actions: {creatives: [note], send_windows: ["09:00-17:00"]}, policy: {name: uniform_random}}
""")
NOTE = PLAYBOOK.creative("note")


def test_a_template_sees_the_customer_the_offer_the_brand_and_this_messages_opt_out_link() -> None:
    customer = customer_context("c1", "c1@people.example", None, {"first_name": "Ana"})
    rendered = CreativeTemplate(NOTE).render(message_context(PLAYBOOK, customer, PLAYBOOK.offer("ten"), "tok"))
    assert rendered.subject == "For Ana"
    assert rendered.body == "10% off. https://render.example/u?t=tok 3 Mill Row"  # a whole number, not 10.0
    assert rendered.title is None


def test_an_undefined_attribute_is_an_error_never_a_blank() -> None:
    customer = customer_context("c1", None, None, {})
    with pytest.raises(RenderError, match="first_name"):
        CreativeTemplate(NOTE).render(message_context(PLAYBOOK, customer, PLAYBOOK.offer("ten"), "tok"))


def test_the_stand_in_customer_has_every_attribute() -> None:
    rendered = CreativeTemplate(NOTE).render(message_context(PLAYBOOK, SampleCustomer(id="[id]"), PLAYBOOK.offer("ten"), "x"))
    assert rendered.subject == "For [first_name]"


def test_message_tokens_are_stable_per_message_and_never_look_like_card_numbers() -> None:
    ring = KeyRing((b"k" * 32,), "test")
    assert message_token(7, "c1", ring) == message_token(7, "c1", ring) != message_token(8, "c1", ring)
    tokens = [message_token(i, "c1", ring) for i in range(2000)]
    assert all(re.fullmatch(r"[a-z2-7]+\.[a-z2-7]{26}", t) for t in tokens)
    assert not any(re.search(r"\d{13}", t) for t in tokens)


def test_the_variant_hash_names_the_templates_and_the_offer() -> None:
    base = variant_hash(NOTE, "ten")
    assert variant_hash(NOTE, "ten") == base
    assert variant_hash(NOTE, None) != base
    assert variant_hash(NOTE.model_copy(update={"body": NOTE.body + "!"}), "ten") != base
    assert variant_hash(NOTE.model_copy(update={"subject": "Other"}), "ten") != base


def test_a_reviewers_edit_replaces_only_the_parts_it_names() -> None:
    edited = edited_creative(NOTE, {"body": "New body {{ unsubscribe_url }}", "edited_by": "ana"})
    assert (edited.subject, edited.body, edited.id) == (NOTE.subject, "New body {{ unsubscribe_url }}", "note")


def test_template_errors_are_findings_with_the_span_of_the_expression() -> None:
    source = "Hi {{ customer.name }} and {{ customer.__class__ }}"
    [finding] = render_template(source, {"customer": {"name": "x"}}).findings
    assert finding.rule == "template.forbidden_access" and source[finding.span[0] : finding.span[1]] == "{{ customer.__class__ }}"
    assert check_template(Creative(id="bad", channel="email", subject="s", body="{{ unclosed")) is not None
    sneaky = Creative(id="sneaky", channel="email", subject="s", body="{{ customer.__class__.__mro__ }}")
    assert "forbids" in (check_template_access(PLAYBOOK, sneaky) or "")
    assert check_template_access(PLAYBOOK, NOTE) is None


def test_an_offer_reads_in_its_own_unit() -> None:
    """`{{ offer.value }}` rendered "10.0" whatever the offer; `offer.label` says it as a customer reads it."""
    from legato.deliver.render import offer_context
    from legato.playbook.models import Offer

    assert offer_context(Offer(id="a", kind="amount_off", value=10, cost=10), "USD")["label"] == "$10 off"
    assert offer_context(Offer(id="a", kind="amount_off", value=7.5, cost=7.5), "EUR")["label"] == "€7.50 off"
    assert offer_context(Offer(id="a", kind="amount_off", value=1500, cost=9), "SEK")["label"] == "SEK 1,500 off"
    assert offer_context(Offer(id="p", kind="percent_off", value=12.5, cost=1), "USD")["label"] == "12.5% off"
    assert offer_context(Offer(id="f", kind="free_shipping", value=0, cost=5), "USD") | {} == {
        "id": "f", "kind": "free_shipping", "value": 0, "cost": 5.0, "deadline": None, "label": "free shipping"
    }
