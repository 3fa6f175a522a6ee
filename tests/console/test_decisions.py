"""The decisions and audit pages in a real browser against ``legato serve``: search a customer's
decisions and open one, whose why (scores, holdout, guardrails, route, status) is what the API's
``/v1/decisions/{id}`` says; page through every decision by cursor without a repeat; a value the
search cannot read is said next to its field; an agent paused over the API is in the audit log
with who did it and why."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import Page, expect


def name_of(role: str) -> str:
    """The name of the role's key in the console's store (tests/console/conftest.py): who the audit log says acted."""
    return f"{role}-ana"


def a_customer_with_a_message(api: Any) -> tuple[str, dict[str, Any]]:
    """A customer whose newest decision was routed to a send (queued or scheduled), and that decision, from the API."""
    with api("viewer") as client:
        for route in ("queued", "scheduled"):
            found = client.get("/v1/decisions", params={"route": route, "limit": 1}).json()["items"]
            if found:
                return found[0]["customer_id"], found[0]
    raise AssertionError("the console's store has no decision routed to a send")


def test_search_a_customer_and_open_a_decision_whose_why_is_the_apis(console_server: Any, signed_in_page: Any, shot: Any, api: Any) -> None:
    customer, chosen = a_customer_with_a_message(api)
    page: Page = signed_in_page("viewer")
    page.goto("/decisions")
    page.get_by_label("Customer").fill(customer)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(rf"/decisions\?customer={customer}&"))  # a GET form: the search is a link
    rows = page.locator("table.decisions tbody tr")
    expect(rows.first).to_be_visible()
    assert set(rows.locator("td:nth-child(4)").all_inner_texts()) == {customer}
    with api("viewer") as client:
        every = client.get("/v1/decisions", params={"customer": customer}).json()["items"]
    assert [int(d) for d in rows.evaluate_all("rows => rows.map(r => r.dataset.decision)")] == [d["id"] for d in every]
    shot(page, "decisions")

    page.locator(f'tr[data-decision="{chosen["id"]}"] a').click()
    expect(page).to_have_url(f"{console_server.url}/decisions/{chosen['id']}")
    with api("viewer") as client:
        shown = client.get(f"/v1/decisions/{chosen['id']}").json()
    d = shown["decision"]
    expect(page.locator("#route")).to_have_text(d["route"])
    expect(page.locator("#status")).to_have_text(d["status"])
    expect(page.locator("#action")).to_have_text(d["action"])
    assert float(page.locator("#propensity").get_attribute("value") or "nan") == d["propensity"]
    if d["expected_value"] is None:
        expect(page.locator("#expected-value")).to_have_text("not scored")
    else:
        assert float(page.locator("#expected-value").get_attribute("value") or "nan") == d["expected_value"]
    expect(page.locator("#holdout")).to_have_text("yes: no message, kept to measure lift" if d["holdout"] else "no")
    expect(page.locator("#control")).to_have_text("yes: no marketing from any agent" if d["control"] else "no")
    if d["reasons"]:
        expect(page.locator("#reasons li")).to_have_text(d["reasons"])
    else:
        expect(page.locator("#reasons")).to_contain_text("No guardrail stopped it")
    if shown["why"] is not None:  # why this customer: the audience, and only the fields it reads
        expect(page.locator("#audience")).to_have_text(shown["why"]["audience"])
        facts = page.locator("table.facts-table").first.locator("tbody th")
        assert facts.all_inner_texts() == list(shown["why"]["facts"])
    shot(page, "decision")


def test_every_decision_a_page_at_a_time_and_a_bad_value_said_at_its_field(console_server: Any, signed_in_page: Any, shot: Any, api: Any) -> None:
    page: Page = signed_in_page("viewer", width=390, height=844)  # a phone: the table scrolls in its box, the page does not
    with api("viewer") as client:
        first = client.get("/v1/decisions", params={"limit": 100}).json()
    page.goto("/decisions")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "decisions-phone")
    seen = [int(d) for d in page.locator("table.decisions tbody tr").evaluate_all("rows => rows.map(r => r.dataset.decision)")]
    assert seen == [d["id"] for d in first["items"][: len(seen)]] and len(seen) == min(50, len(first["items"]))
    if len(first["items"]) > 50:  # the second page starts where the first ended
        page.get_by_role("link", name="Older decisions").click()
        more = [int(d) for d in page.locator("table.decisions tbody tr").evaluate_all("rows => rows.map(r => r.dataset.decision)")]
        assert more and more == [d["id"] for d in first["items"][50:50 + len(more)]]
        expect(page.get_by_role("link", name="Newest")).to_be_visible()

    newest = first["items"][0]["decided_at"][:16]  # the minute of the newest decision, as a datetime-local field gives it
    page.goto("/decisions")
    page.get_by_label("Decided before (UTC)").fill(newest)
    page.get_by_role("button", name="Search").click()
    with api("viewer") as client:
        older = client.get("/v1/decisions", params={"until": newest + ":00Z", "limit": 50}).json()["items"]
    shown = [int(d) for d in page.locator("table.decisions tbody tr").evaluate_all("rows => rows.map(r => r.dataset.decision)")]
    assert older and shown == [d["id"] for d in older]

    answer = page.goto("/decisions?status=lost&since=yesterday")
    assert answer is not None and answer.status == 422
    expect(page.locator("#e-status")).to_contain_text("'lost' is not one of: nothing, holdout")
    expect(page.locator("#e-since")).to_contain_text("'yesterday' is not a date and time")
    expect(page.locator("#f-status")).to_have_attribute("aria-invalid", "true")
    answer = page.goto("/decisions/2147483647")
    assert answer is not None and answer.status == 404
    expect(page.locator(".error")).to_contain_text("there is no decision 2147483647")


def test_the_audit_log_shows_a_pause_done_through_the_api(console_server: Any, signed_in_page: Any, shot: Any, api: Any) -> None:
    reason = f"checking the winter creative {uuid.uuid4().hex[:8]}"
    with api("marketer") as client:
        agents = [a["agent"] for a in client.get("/v1/agents").json()["agents"] if a["status"] == "active"]
        assert agents, "the console's store has no active agent to pause"
        agent = agents[0]
        paused = client.post(f"/v1/agents/{agent}/pause", json={"reason": reason})
        assert paused.status_code == 200, paused.text
        try:
            page: Page = signed_in_page("viewer")
            page.goto("/audit")
            page.get_by_label("What (action)").select_option("agent_paused")
            page.get_by_label("Agent").fill(agent)
            page.get_by_role("button", name="Filter").click()
            row = page.locator("table.audit tbody tr").filter(has_text=reason)
            expect(row).to_have_count(1)
            expect(row.locator("td.actor")).to_have_text(name_of("marketer"))
            expect(row.locator("td.action")).to_have_text("agent_paused")
            expect(row.locator("td.entity")).to_have_text(f"agent {agent}")
            shot(page, "audit")
        finally:
            resumed = client.post(f"/v1/agents/{agent}/resume", json={"reason": "the console test is done"})
            assert resumed.status_code == 200, resumed.text
