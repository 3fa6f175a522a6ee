"""The console in a real browser (Chromium through Playwright) against a real ``legato serve``.

Sign-in, the overview's numbers against the API's, pausing an agent and the next cycle
skipping it, what a viewer may not do, CSRF, security headers, expired sessions, live updates
without a reload, and a phone's width. Screenshots of each page go to the test artifacts.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import sqlalchemy as sa

from tests.console.conftest import SECRET, ConsoleServer

PAUSED_AGENT = "welcome_email"  # stage 0 in the example playbook: everything it proposes goes to review
OTHER_AGENT = "winback_email"
CYCLE_DEADLINE = 180.0


def _accept_dialogs(page: Any) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def _wait(what: str, check: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.2)


def _audit(server: ConsoleServer, action: str, agent: str) -> list[Any]:
    from legato.store.schema import audit_log

    engine = server.store.engine()
    try:
        with engine.connect() as connection:
            return list(connection.execute(
                sa.select(audit_log).where(audit_log.c.action == action, audit_log.c.entity == "agent", audit_log.c.entity_id == agent)
                .order_by(audit_log.c.id)
            ))
    finally:
        engine.dispose()


def test_sign_in_refuses_a_bad_key_and_takes_a_good_one(new_page: Any, console_server: ConsoleServer, shot: Any) -> None:
    page = new_page()
    answer = page.goto("/")
    assert page.url.endswith("/sign-in?why=none") and answer.status == 200  # sent to sign in, not shown the data
    page.fill("#key", "lg_not-a-key-anyone-made")
    with page.expect_response(lambda r: r.url.endswith("/sign-in") and r.request.method == "POST") as posted:
        page.click("button[type=submit]")
    assert posted.value.status == 401
    assert "unknown or revoked" in page.inner_text("#sign-in-error")
    shot(page, "sign-in-refused")
    page.fill("#key", console_server.store.keys["reviewer"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{console_server.url}/")
    assert page.inner_text("h1") == "Overview"
    assert "reviewer-ana" in page.inner_text("header")


def test_overview_numbers_match_the_api(signed_in_page: Any, api: Any, shot: Any) -> None:
    page = signed_in_page("viewer")
    client = api("viewer")
    queue = client.get("/v1/review/items", params={"status": "open", "limit": 1}).json()
    assert int(page.get_attribute("[data-figure=queue-open]", "data-value")) == queue["total"] > 0
    for agent in client.get("/v1/agents").json()["agents"]:
        assert page.get_attribute(f"[data-agent-state={agent['agent']}]", "data-status") == agent["status"]
    # The lift per customer, loaded after the page, is the API's lift report over the same days.
    page.wait_for_selector("#lift-per-customer[data-loaded=true]")
    period = page.inner_text("#lift-per-customer p.small")
    since, until_last = re.findall(r"\d{4}-\d{2}-\d{2}", period)[:2]
    from datetime import date, timedelta

    until = (date.fromisoformat(until_last) + timedelta(days=1)).isoformat()
    report = client.get("/v1/reports/lift", params={"since": since, "until": until}).json()
    compared = 0
    for element in page.query_selector_all("#lift-per-customer [data-lift][data-metric]"):
        agent, metric, shown = element.get_attribute("data-lift"), element.get_attribute("data-metric"), float(element.get_attribute("data-value"))
        group = next(g for g in report["groups"] if g["agent"] == agent and g["against"] == "holdout")
        lift = next(l for l in group["lifts"] if l["metric"] == metric)
        assert shown == pytest.approx(lift["difference"], abs=1e-12)
        compared += 1
    assert compared >= 1
    # The KPI lines: the sends of the primary KPI's agent over the period are the API's daily sends summed.
    days = client.get("/v1/reports/kpis", params={"since": since, "until": until}).json()["days"]
    for row in page.query_selector_all("[data-kpi$=':sends:kpi']"):
        agent = row.get_attribute("data-kpi").split(":")[0]
        assert float(row.get_attribute("data-value")) == sum(d["sends"] for d in days if d["agent"] == agent)
    shot(page, "overview")


def test_pause_with_a_reason_and_the_next_cycle_skips_the_agent(signed_in_page: Any, console_server: ConsoleServer, api: Any, shot: Any) -> None:
    page = signed_in_page("marketer")
    _accept_dialogs(page)
    page.goto(f"/agents/{PAUSED_AGENT}")
    shot(page, "agent")
    page.fill("#pause-reason", "the spring offer ended early")
    page.click("[data-action=pause]")
    page.wait_for_url(re.compile(r".*done=paused$"))
    assert page.get_attribute("[data-agent-status]", "data-agent-status") == "paused"
    pause = _audit(console_server, "agent_paused", PAUSED_AGENT)[-1]
    assert pause.actor == "marketer-ana" and pause.detail["reason"] == "the spring offer ended early"
    shown = page.inner_text("[data-changes] tr[data-action=agent_paused]")  # the page's own account of it, from the audit log
    assert "marketer-ana" in shown and "the spring offer ended early" in shown
    client = api("marketer")
    try:
        started = client.post("/v1/cycles")
        assert started.status_code == 202, started.text
        cycle_id = started.json()["cycle_id"]
        state = _wait("the cycle to finish", lambda: (s := client.get(f"/v1/cycles/{cycle_id}").json())["status"] in ("finished", "failed") and s,
                      CYCLE_DEADLINE)
        assert state["status"] == "finished", state
        from legato.store.schema import decisions

        engine = console_server.store.engine()
        try:
            with engine.connect() as connection:
                counts = dict(connection.execute(
                    sa.select(decisions.c.agent_id, sa.func.count()).where(decisions.c.cycle_id == cycle_id).group_by(decisions.c.agent_id)
                ).all())
        finally:
            engine.dispose()
        assert counts.get(PAUSED_AGENT, 0) == 0  # paused: it decided nothing in the cycle
        assert counts.get(OTHER_AGENT, 0) > 0  # the other agent did decide, so the cycle really ran
        page.goto(f"/agents/{PAUSED_AGENT}")
        assert page.get_attribute("[data-agent-status]", "data-agent-status") == "paused"
    finally:
        page.goto(f"/agents/{PAUSED_AGENT}")
        if page.query_selector("#resume-reason") is not None:
            page.fill("#resume-reason", "the test is over")
            page.click("[data-action=resume]")
            page.wait_for_url(re.compile(r".*done=resumed$"))
    assert _audit(console_server, "agent_resumed", PAUSED_AGENT)[-1].actor == "marketer-ana"


def test_a_viewer_has_no_pause_button_and_its_post_is_refused(signed_in_page: Any, api: Any) -> None:
    page = signed_in_page("viewer")
    page.goto(f"/agents/{PAUSED_AGENT}")
    assert page.query_selector("[data-action=pause]") is None and page.query_selector("form[action$='/pause']") is None
    token = page.get_attribute("meta[name=csrf-token]", "content")
    answer = page.request.post(f"/agents/{PAUSED_AGENT}/pause", form={"reason": "a viewer tries", "csrf": token})
    assert answer.status == 403 and "Only admin, marketer keys may steer" in answer.text()
    assert next(a for a in api("viewer").get("/v1/agents").json()["agents"] if a["agent"] == PAUSED_AGENT)["status"] == "active"


def test_a_post_without_the_csrf_token_is_refused(signed_in_page: Any, api: Any) -> None:
    page = signed_in_page("marketer")
    page.goto(f"/agents/{PAUSED_AGENT}")
    for form in ({"reason": "no token"}, {"reason": "a wrong token", "csrf": "not-the-session-token"}):
        answer = page.request.post(f"/agents/{PAUSED_AGENT}/pause", form=form)
        assert answer.status == 403 and "security token" in answer.text()
    other_site = page.request.post(f"/agents/{PAUSED_AGENT}/pause", form={"reason": "x", "csrf": page.get_attribute("meta[name=csrf-token]", "content")},
                                   headers={"Origin": "https://evil.example"})
    assert other_site.status == 403 and "another site" in other_site.text()
    assert next(a for a in api().get("/v1/agents").json()["agents"] if a["agent"] == PAUSED_AGENT)["status"] == "active"


def test_security_headers_on_every_console_answer(signed_in_page: Any) -> None:
    page = signed_in_page("viewer")
    for path in ("/", "/agents", f"/agents/{PAUSED_AGENT}", "/sign-in", "/static/console.css", "/no-such-page"):
        answer = page.request.get(path)
        headers = answer.headers
        assert "content-security-policy" in headers, (path, answer.status, headers)
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin", path
    answer = page.request.get("/")
    assert answer.headers["cache-control"] == "no-store"
    cookie = next(c for c in page.context.cookies() if c["name"] == "legato_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()


@pytest.mark.parametrize(("hours_since_sign_in", "minutes_idle", "said"), [(13, 1, "time limit"), (1, 31, "without use")])
def test_an_expired_session_goes_back_to_sign_in(new_page: Any, console_server: ConsoleServer, hours_since_sign_in: int,
                                                  minutes_idle: int, said: str) -> None:
    from legato.console.auth import COOKIE, Session, seal
    from legato.service import keys
    from legato.store.status import KeyRole

    engine = console_server.store.engine()
    try:
        key = keys.find(engine, console_server.store.keys["admin"])
    finally:
        engine.dispose()
    now = time.time()
    old = Session(key.id, key.name, KeyRole.ADMIN, now - hours_since_sign_in * 3600, now - minutes_idle * 60, "token")
    page = new_page()
    page.context.add_cookies([{"name": COOKIE, "value": seal(SECRET.encode(), old), "url": console_server.url}])
    page.goto("/agents")
    assert "/sign-in?why=" in page.url and "next=%2Fagents" in page.url
    assert said in page.inner_text("main")
    fresh = Session(key.id, key.name, KeyRole.ADMIN, now, now, "token")  # the same key, in time: taken
    page.context.add_cookies([{"name": COOKIE, "value": seal(SECRET.encode(), fresh), "url": console_server.url}])
    page.goto("/agents")
    assert page.url.endswith("/agents")
    forged = seal(b"another secret", fresh)  # not signed by the server: refused
    page.context.add_cookies([{"name": COOKIE, "value": forged, "url": console_server.url}])
    page.goto("/agents")
    assert "/sign-in" in page.url


def test_the_overview_updates_itself_without_reloading(signed_in_page: Any, api: Any) -> None:
    page = signed_in_page("viewer")
    page.wait_for_selector("body[data-live=open]")
    page.evaluate("window.__notReloaded = true")
    client = api("admin")
    assert client.post(f"/v1/agents/{OTHER_AGENT}/pause", json={"reason": "watching the overview"}).status_code == 200
    try:
        page.wait_for_selector(f"[data-agent-state={OTHER_AGENT}][data-status=paused]", timeout=20_000)
        assert page.evaluate("window.__notReloaded") is True
    finally:
        assert client.post(f"/v1/agents/{OTHER_AGENT}/resume", json={"reason": "done watching"}).status_code == 200
    page.wait_for_selector(f"[data-agent-state={OTHER_AGENT}][data-status=active]", timeout=20_000)


def test_pages_fit_a_phone_without_scrolling_sideways(signed_in_page: Any, shot: Any) -> None:
    page = signed_in_page("marketer", width=390, height=844)
    for path, name in (("/", "overview-phone"), ("/agents", "agents-phone"), (f"/agents/{PAUSED_AGENT}", "agent-phone")):
        page.goto(path)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide on a {widths[1]} px screen"
        shot(page, name)


def test_agents_list_and_sign_out(signed_in_page: Any, api: Any, shot: Any) -> None:
    page = signed_in_page("admin")
    page.goto("/agents")
    listed = {row.get_attribute("data-agent-row"): row.get_attribute("data-status") for row in page.query_selector_all("[data-agent-row]")}
    assert listed == {a["agent"]: a["status"] for a in api().get("/v1/agents").json()["agents"]}
    shot(page, "agents")
    page.click("header button[type=submit]")  # sign out
    page.wait_for_url(re.compile(r".*/sign-in\?why=signed_out$"))
    page.goto("/agents")
    assert "/sign-in" in page.url


def test_promote_and_demote_each_need_a_reason_and_are_audited(signed_in_page: Any, console_server: ConsoleServer, api: Any, shot: Any) -> None:
    page = signed_in_page("admin")
    _accept_dialogs(page)
    page.goto(f"/agents/{OTHER_AGENT}")
    stage = int(page.get_attribute("[data-agent-stage]", "data-agent-stage"))
    token = page.get_attribute("meta[name=csrf-token]", "content")
    empty = page.request.post(f"/agents/{OTHER_AGENT}/promote", form={"to_stage": str(stage + 1), "reason": "  ", "csrf": token})
    assert empty.status == 422 and "needs a reason" in empty.text()
    assert page.get_attribute("[data-promotion]", "data-promotion") == "not-recommended"  # a short demo record: the page says why
    page.fill("#promote-reason", "launch week: the team reviews its sends by hand")
    page.click("[data-action=promote]")
    page.wait_for_url(re.compile(r".*done=promoted$"))
    assert int(page.get_attribute("[data-agent-stage]", "data-agent-stage")) == stage + 1
    promoted = _audit(console_server, "trust_promoted", OTHER_AGENT)[-1]
    assert promoted.actor == "admin-ana" and promoted.detail["override_reason"] == "launch week: the team reviews its sends by hand"
    assert promoted.detail["unmet"]  # an override: the unmet criteria are recorded beside the reason
    page.select_option("#demote-stage", str(stage))
    page.fill("#demote-reason", "launch week is over")
    page.click("[data-action=demote]")
    page.wait_for_url(re.compile(r".*done=demoted$"))
    demoted = _audit(console_server, "trust_demoted", OTHER_AGENT)[-1]
    assert demoted.actor == "admin-ana" and demoted.detail["reason"] == "launch week is over" and demoted.detail["to"] == stage
    assert next(a for a in api().get("/v1/agents").json()["agents"] if a["agent"] == OTHER_AGENT)["trust_stage"] == stage
    # A marketer steers but may not promote: no promote form, and its POST is 403.
    marketer = signed_in_page("marketer")
    marketer.goto(f"/agents/{OTHER_AGENT}")
    assert marketer.query_selector("[data-action=promote]") is None and marketer.query_selector("[data-action=demote]") is not None
    refused = marketer.request.post(f"/agents/{OTHER_AGENT}/promote", form={
        "to_stage": str(stage + 1), "reason": "x", "csrf": marketer.get_attribute("meta[name=csrf-token]", "content")})
    assert refused.status == 403
