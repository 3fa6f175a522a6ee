"""A draft of an edit checked as the edit would be, nothing saved (the console checks as a
reviewer types); and every finding a reviewer is shown carries the words it points at."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from legato.service import review
from legato.trust.review import ReviewError, list_items, show_item


def _review_tests() -> Any:
    spec = importlib.util.spec_from_file_location("legato_tests_review_helpers", Path(__file__).with_name("test_review.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _review_tests()
AT = helpers.AT
BLOCKED = "Only 2 left! Hello {{ customer.id }}. 1 Main St"
FIXED = "Hello again {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"


def test_a_draft_is_checked_as_the_edit_would_be_and_nothing_is_saved(engine: Engine, tmp_path: Path) -> None:
    pb, _, _ = helpers.stage0_queue(engine, tmp_path, n=12)
    item = list_items(engine)[0]
    before = helpers.snapshot(engine)

    blocked = review.check_edit(engine, item.id, body=BLOCKED)
    assert blocked.verdict == "block" and blocked.changed and blocked.content_hash != item.content_hash
    by_rule = {f["rule"]: f for f in blocked.findings}
    assert {"compliance.false_scarcity", "compliance.unsubscribe_missing"} <= set(by_rule)
    scarcity = by_rule["compliance.false_scarcity"]
    # The excerpt is the words the span points at, in the text it indexes.
    text = blocked.text if scarcity["in"] == "copy" else None
    assert scarcity["excerpt"] and "2 left" in scarcity["excerpt"]
    if text is not None:
        assert text[scarcity["span"][0]:scarcity["span"][1]] == scarcity["excerpt"]
    assert blocked.content is not None and blocked.content["body"].startswith(f"Only 2 left! Hello {item.customer_id}.")
    # The edit itself refuses the same draft for the same rules.
    with pytest.raises(ReviewError, match="compliance.false_scarcity"):
        review.edit(engine, item.id, "bob", playbook=pb, body=BLOCKED, now=AT)

    fixed = review.check_edit(engine, item.id, body=FIXED)
    assert fixed.verdict in ("ok", "warn") and fixed.render_error is None
    assert fixed.content is not None and fixed.content["body"].startswith(f"Hello again {item.customer_id}. Unsubscribe: https://")
    broken = review.check_edit(engine, item.id, body="Hello {{ customer.nickname }}")
    assert broken.verdict == "block" and any(f["family"] == "template" for f in broken.findings)
    assert helpers.snapshot(engine) == before  # checking wrote nothing

    edited, _ = review.edit(engine, item.id, "bob", playbook=pb, body=FIXED, now=AT)
    assert edited.content_hash == fixed.content_hash  # the hash the draft said it would have
    assert not review.check_edit(engine, item.id, body=FIXED).changed


def test_shown_findings_name_the_words_they_point_at(engine: Engine, tmp_path: Path) -> None:
    helpers.stage0_queue(engine, tmp_path, n=12)
    item = list_items(engine)[0]
    review.edit(engine, item.id, "bob", body="THIS IS A VERY BIG DAY for you. Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}", now=AT)
    shown = show_item(engine, item.id)
    assert shown.findings, "the capitals are a finding (a warning)"
    for finding in shown.findings:
        assert finding["in"] in ("variant", "copy") and isinstance(finding["excerpt"], str)
    assert any(f["rule"] == "voice.shouting" and f["excerpt"] and f["excerpt"] in "THIS IS A VERY BIG DAY" for f in shown.findings)
    assert shown.content is not None and "html" in shown.content


def test_a_draft_of_what_is_not_a_message_is_refused(engine: Engine, tmp_path: Path) -> None:
    helpers.stage0_queue(engine, tmp_path, n=12)
    with pytest.raises(ReviewError, match="there is no review item 999999"):
        review.check_edit(engine, 999999, body="Hello")


def test_neighbours_in_a_filtered_queue_and_the_totals_by_reason_and_agent(engine: Engine, tmp_path: Path) -> None:
    from legato.trust.review.model import QueueFilter

    helpers.stage0_queue(engine, tmp_path, n=12)
    items = list_items(engine)
    assert len(items) >= 3
    everything = QueueFilter()
    assert review.around(engine, everything, items[0]) == (None, items[1].id)
    assert review.around(engine, everything, items[1]) == (items[0].id, items[2].id)
    assert review.around(engine, everything, items[-1]) == (items[-2].id, None)
    assert review.around(engine, QueueFilter(agent="nobody"), items[1]) == (None, None)
    review.escalate(engine, items[-1].id, "ana", to_role="legal", note="look", now=AT)  # priority up: first in the queue now
    moved = show_item(engine, items[-1].id).item
    assert review.around(engine, everything, moved) == (None, items[0].id)
    assert review.totals(engine) == {"reason": {"trust_stage_0": len(items)}, "agent": {"mailer": len(items)}, "kind": {"decision": len(items)}}
    review.reject(engine, items[0].id, "ana", "off_brand", now=AT)
    assert review.totals(engine)["reason"] == {"trust_stage_0": len(items) - 1}
    assert review.totals(engine, "rejected")["agent"] == {"mailer": 1}
    shown = show_item(engine, items[1].id)
    assert shown.template is not None and "{{ unsubscribe_url }}" in (shown.template["body"] or "")
