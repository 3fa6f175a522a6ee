"""The review inbox in a real browser (Debian's Chromium through Playwright) against a real
``legato serve`` over the demo-like store (``tests/console/conftest.py``).

A reviewer opens an item, edits it into something a guardrail blocks and sees the finding
marked as they type, fixes it and saves it; another person approves it (self-approval is off
in the example playbook) and the dispatcher sends it (the outbox row is the store's own record). A filtered set is approved in bulk after a confirmation that says how many and on
which channels, and the store's counts follow. A viewer sees the queue without a button and
its POST is refused. The keyboard works through a queue. A stale approval is a conflict that
says so. Each page's screenshot is saved.
"""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from typing import Any

import sqlalchemy as sa

from tests.console.conftest import ConsoleServer

STAGE0 = {"agent": "welcome_email", "reason": "trust_stage_0"}  # the example's stage-0 agent: all it proposes waits here
FOOTER = "\n\nUnsubscribe: {{ unsubscribe_url }}\n{{ brand.sender_name }}, {{ brand.postal_address }}\n"
BLOCKED = "Hello,\n\nOnly 2 left! The spring collection is in at {{ brand.name }}." + FOOTER
FIXED = "Hello,\n\nThe spring collection is in at {{ brand.name }}, picked for you." + FOOTER


def _open_items(client: Any, **filters: Any) -> list[dict[str, Any]]:
    answer = client.get("/v1/review/items", params={"limit": 1000, **filters})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def _total(client: Any, **filters: Any) -> int:
    answer = client.get("/v1/review/items", params={"limit": 1, **filters})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def _outbox(server: ConsoleServer, decision_id: int) -> Any:
    from legato.store.schema import outbox

    engine = server.store.engine()
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(outbox.c.status, outbox.c.send_at).where(outbox.c.decision_id == decision_id)).first()
    finally:
        engine.dispose()


def _dispatch(server: ConsoleServer, decision_id: int) -> Any:
    """The service's dispatch (what ``legato dispatch`` calls) over the store at the message's
    send time, until its outbox row says sent.

    An approval after the agent's send window moves the message to the next window (the
    dispatcher's rule): the row's new send time is read back and dispatched at, at most twice more.
    """
    from legato.clock import FixedClock
    from legato.service import cycles, delivery
    from legato.validation import load_playbook

    playbook = load_playbook(server.store.playbook)
    engine = server.store.engine()
    try:
        for _ in range(3):
            row = _outbox(server, decision_id)
            assert row is not None, "the approval scheduled no message"
            if row.status == "sent":
                return row
            at = (row.send_at if row.send_at.tzinfo else row.send_at.replace(tzinfo=timezone.utc)) + timedelta(minutes=1)
            delivery.dispatch(engine, playbook, FixedClock(at), cycles.transports_for(playbook, server.store.folder))
    finally:
        engine.dispose()
    return _outbox(server, decision_id)


def test_edit_into_a_blocked_message_see_the_finding_fix_it_approve_it_and_it_is_sent(
    signed_in_page: Any, console_server: ConsoleServer, api: Any, shot: Any
) -> None:
    client = api("admin")
    item = _open_items(client, **STAGE0)[0]
    reviewer = signed_in_page("reviewer")
    reviewer.goto("/review?agent=welcome_email&reason=trust_stage_0")
    assert reviewer.inner_text(".page-head .period").startswith(f"{_total(client, **STAGE0):,} items open")
    shot(reviewer, "review-inbox")
    reviewer.click(f"tr[data-item='{item['id']}'] a[data-open]")
    reviewer.wait_for_url(re.compile(rf".*/review/{item['id']}\?.*"))
    assert reviewer.get_attribute("input[name=content_hash]", "value") == item["content_hash"]
    assert "Why this customer" in reviewer.inner_text("main") and "lifecycle_stage" in reviewer.inner_text("[data-why-facts]")
    shot(reviewer, "review-item")

    reviewer.keyboard.press("e")  # opens the editor, its body focused
    assert reviewer.evaluate("document.activeElement.name") == "body"
    reviewer.fill("textarea[name=body]", BLOCKED)
    reviewer.wait_for_selector("[data-draft-result] [data-draft-check][data-verdict=block]")  # checked as typed, not saved
    assert reviewer.inner_text("[data-draft-result] mark.sev-block").startswith("Only 2 left")
    assert reviewer.locator("[data-draft-result] li[data-rule='compliance.false_scarcity']").count() == 1
    shot(reviewer, "review-edit-blocked")
    reviewer.click("button[name=do][value=save]")  # saving it anyway is refused: nothing saved
    reviewer.wait_for_selector("[data-problem]")
    assert "a guardrail blocks this edit" in reviewer.inner_text("[data-problem]")
    assert _open_items(client, **STAGE0)[0]["content_hash"] == item["content_hash"]

    reviewer.fill("textarea[name=body]", FIXED)
    reviewer.wait_for_selector("[data-draft-result] [data-draft-check]:not([data-verdict=block])")
    assert reviewer.locator("[data-draft-result] mark.sev-block").count() == 0
    reviewer.click("button[name=do][value=save]")
    reviewer.wait_for_url(re.compile(r".*done=edited.*"))
    edited_hash = reviewer.get_attribute("input[name=content_hash]", "value")
    assert edited_hash and edited_hash != item["content_hash"]
    assert "picked for you" in reviewer.inner_text("[data-message-text]")

    admin = signed_in_page("admin")  # the one who edited may not approve it too (review.allow_self_approval is off)
    admin.goto(f"/review/{item['id']}")
    admin.click("form[data-approve] button[type=submit]")
    admin.wait_for_url(re.compile(r".*done=approved.*"))
    assert f"Item {item['id']} approved" in admin.inner_text("[data-notice]")
    shown = client.get(f"/v1/review/items/{item['id']}").json()
    assert shown["item"]["status"] == "approved" and shown["item"]["decided_by"] == "admin-ana"
    assert _outbox(console_server, item["decision_id"]).status == "pending"
    sent = _dispatch(console_server, item["decision_id"])
    assert sent.status == "sent"
    admin.goto(f"/review/{item['id']}")
    assert "outbox: sent" in admin.inner_text("#main")


def test_the_check_button_works_without_typing_through_the_script(signed_in_page: Any, api: Any) -> None:
    item = _open_items(api("admin"), **STAGE0)[-1]
    page = signed_in_page("reviewer")
    page.goto(f"/review/{item['id']}")
    page.click("details[data-edit] summary")
    page.eval_on_selector("textarea[name=body]", "(el, text) => { el.value = text; }", BLOCKED)  # no input event: no live check
    page.click("button[name=do][value=check]")  # a plain form post: the page answers with the findings
    page.wait_for_selector("[data-draft-result] [data-verdict=block]")
    assert "compliance.false_scarcity" in page.inner_text("[data-draft-result]")
    assert _open_items(api("admin"), **STAGE0)[-1]["content_hash"] == item["content_hash"]  # checking saved nothing


def test_bulk_approve_a_filtered_set_after_a_confirmation(signed_in_page: Any, console_server: ConsoleServer, api: Any, shot: Any) -> None:
    client = api("admin")
    wanted = {"agent": "winback_email", "reason": "value:earn_the_return"}
    before = _open_items(client, **wanted)
    assert before, "the demo store has value escalations of the win-back agent"
    page = signed_in_page("reviewer")
    page.goto("/review?agent=winback_email&reason=value%3Aearn_the_return")
    page.click("a.button.primary")  # "Approve all N matching…"
    page.wait_for_selector("[data-bulk-plan]")
    shot(page, "review-bulk-confirm")
    assert int(page.get_attribute("[data-bulk-plan]", "data-count")) == len(before)
    summary = page.inner_text("[data-bulk-summary]")
    assert f"{len(before)} messages will be queued for sending" in summary and "email" in summary
    assert _total(client, **wanted) == len(before)  # the confirmation changed nothing
    page.click("form[data-bulk-form] button[type=submit]")
    page.wait_for_selector("[data-bulk-result]")
    shot(page, "review-bulk-done")
    done = int(page.get_attribute("[data-bulk-result]", "data-done"))
    refused = int(page.get_attribute("[data-bulk-result]", "data-refused"))
    assert done > 0 and done + refused == len(before)
    # The store's counts (what the queue's totals read) follow, and so does every item.
    assert _total(client, **wanted) == refused
    statuses = {client.get(f"/v1/review/items/{i['id']}").json()["item"]["status"] for i in before}
    assert "approved" in statuses and statuses <= {"approved", "open"}
    from legato.store.schema import audit_log

    engine = console_server.store.engine()
    try:
        with engine.connect() as connection:
            approvals = connection.execute(
                sa.select(sa.func.count()).select_from(audit_log).where(
                    audit_log.c.action == "review_approved", audit_log.c.actor == "reviewer-ana",
                    audit_log.c.entity_id.in_([str(i["id"]) for i in before]))
            ).scalar_one()
    finally:
        engine.dispose()
    assert approvals == done  # one audit row per item, under the signed-in key's name


def test_a_viewer_sees_the_queue_but_cannot_approve(signed_in_page: Any, console_server: ConsoleServer, api: Any) -> None:
    item = _open_items(api("admin"), **STAGE0)[0]
    page = signed_in_page("viewer")
    page.goto(f"/review/{item['id']}")
    assert page.locator("form[data-approve]").count() == 0 and page.locator("form[method=post][action^='/review']").count() == 0
    assert page.locator("[data-read-only]").count() == 1
    token = page.get_attribute("meta[name=csrf-token]", "content")
    answer = page.request.post(f"/review/{item['id']}/approve", form={"csrf": token, "content_hash": item["content_hash"]})
    assert answer.status == 403
    bulk = page.request.post("/review/bulk", form={"csrf": token, "action": "approve", **STAGE0})
    assert bulk.status == 403
    page.goto("/review?agent=welcome_email")
    assert page.locator("a[href^='/review/bulk']").count() == 0
    assert api("admin").get(f"/v1/review/items/{item['id']}").json()["item"]["status"] == "open"


def test_keyboard_shortcuts_work_through_the_queue(signed_in_page: Any, api: Any) -> None:
    queue = _open_items(api("admin"), **STAGE0)[:3]
    assert len(queue) == 3
    page = signed_in_page("reviewer")
    page.goto("/review?agent=welcome_email&reason=trust_stage_0")
    assert "j/k" in page.inner_text("#shortcuts-hint").replace(" ", "")
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.get_attribute("tr[aria-selected=true]", "data-item") == str(queue[1]["id"])
    assert f"Item {queue[1]['id']}, 2 of" in page.inner_text("#review-announce")
    page.keyboard.press("k")
    assert page.get_attribute("tr[aria-selected=true]", "data-item") == str(queue[0]["id"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf".*/review/{queue[0]['id']}\?.*"))
    page.keyboard.press("j")
    page.wait_for_url(re.compile(rf".*/review/{queue[1]['id']}\?.*"))
    page.keyboard.press("k")
    page.wait_for_url(re.compile(rf".*/review/{queue[0]['id']}\?.*"))
    page.keyboard.press("?")
    assert page.evaluate("document.getElementById('review-shortcuts').open") is True
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.name") == "reason"  # reject: choose a reason
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("a")  # approve: the next item of the filtered queue opens
    page.wait_for_url(re.compile(rf".*/review/{queue[1]['id']}\?.*done=approved.*"))
    assert api("admin").get(f"/v1/review/items/{queue[0]['id']}").json()["item"]["status"] == "approved"


def test_an_approval_of_content_that_changed_is_a_conflict_that_says_so(signed_in_page: Any, api: Any, shot: Any) -> None:
    client = api("admin")
    escalated = _open_items(client, agent="welcome_email", reason="high_value_customer")
    assert escalated, "the demo store has high-value escalations"
    item = escalated[0]
    first = signed_in_page("admin")
    first.goto(f"/review/{item['id']}")
    assert "high_value_customer" in first.inner_text("[data-escalation]")  # the rule that sent it to a person
    assert "lifetime_spend" in first.inner_text("[data-escalation]")
    shot(first, "review-item-escalated")
    second = signed_in_page("reviewer")
    second.goto(f"/review/{item['id']}")
    second.click("details[data-edit] summary")
    second.fill("textarea[name=body]", FIXED)
    second.click("button[name=do][value=save]")
    second.wait_for_url(re.compile(r".*done=edited.*"))
    first.click("form[data-approve] button[type=submit]")  # the page still names the old hash
    first.wait_for_selector("[data-problem]")
    assert "This message changed since you opened it" in first.inner_text("[data-problem]")
    assert first.get_attribute("input[name=content_hash]", "value") != item["content_hash"]  # the page shows it as it stands now
    assert "picked for you" in first.inner_text("[data-message-text]")
    shot(first, "review-conflict")
    assert client.get(f"/v1/review/items/{item['id']}").json()["item"]["status"] == "open"


def test_review_pages_fit_a_phone(signed_in_page: Any, api: Any, shot: Any) -> None:
    item = _open_items(api("admin"), **STAGE0)[0]
    page = signed_in_page("reviewer", width=390, height=844)
    for path, name in (("/review", "review-inbox-phone"), (f"/review/{item['id']}", "review-item-phone")):
        page.goto(path)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide on a {widths[1]} px screen"
        shot(page, name)


def test_bulk_reject_asks_for_a_reason_and_none_of_them_is_sent(signed_in_page: Any, console_server: ConsoleServer, api: Any) -> None:
    client = api("admin")
    wanted = {"agent": "welcome_email", "reason": "high_value_customer"}
    before = _open_items(client, **wanted)
    assert before, "the demo store has high-value escalations"
    page = signed_in_page("reviewer")
    page.goto("/review/bulk?action=reject&agent=welcome_email&reason=high_value_customer")
    assert int(page.get_attribute("[data-bulk-plan]", "data-count")) == len(before)
    assert "will never be sent" in page.inner_text("[data-bulk-summary]")
    page.click("form[data-bulk-form] button[type=submit]")  # no reason chosen: the browser keeps the form (required)
    assert page.locator("[data-bulk-result]").count() == 0 and _total(client, **wanted) == len(before)
    page.select_option("select[name=because]", "wrong_audience")
    page.fill("input[name=note]", "high spenders get a personal call instead")
    page.click("form[data-bulk-form] button[type=submit]")
    page.wait_for_selector("[data-bulk-result]")
    assert int(page.get_attribute("[data-bulk-result]", "data-done")) == len(before)
    assert _total(client, **wanted) == 0
    assert {client.get(f"/v1/review/items/{i['id']}").json()["item"]["status"] for i in before} == {"rejected"}
    assert all(_outbox(console_server, i["decision_id"]) is None or _outbox(console_server, i["decision_id"]).status == "cancelled" for i in before)
