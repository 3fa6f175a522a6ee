"""The playbook pages in a real browser against ``legato serve``: the playbook in force shown
objectives → KPIs → agents → guardrails; a broken upload shows each problem at its line and
stores nothing; a valid one (sent as a file) becomes a new version, in force, with who uploaded
it, and its diff against the one before; a viewer sees no upload form and a POST of theirs is
refused (403), as is a marketer's POST without the form's token."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect


def name_of(role: str) -> str:
    """The name of the role's key in the console's store (tests/console/conftest.py): who the audit log says acted."""
    return f"{role}-ana"


def in_force_text(api: Any, console_server: Any) -> str:
    """The text of the playbook in force: the stored version the API marks, else the file the server was started with."""
    with api("viewer") as client:
        marked = [v for v in client.get("/v1/playbooks", params={"limit": 500}).json()["versions"] if v["in_force"]]
        if marked:
            return str(client.get(f"/v1/playbooks/{marked[0]['id']}").json()["text"])
    return console_server.store.playbook.read_text(encoding="utf-8")


def versions(api: Any) -> list[dict[str, Any]]:
    with api("viewer") as client:
        return list(client.get("/v1/playbooks", params={"limit": 500}).json()["versions"])


def break_two_lines(text: str) -> tuple[str, dict[int, str]]:
    """The text with two problems, the first agent's trust stage out of range and its policy
    unknown; each problem's line and the words the page must show there."""
    broken = re.sub(r"trust_stage:[ \t]*\d", "trust_stage: 7", text, count=1)
    broken = re.sub(r"(policy:\s*\{?\s*name:[ \t]*)\w+", r"\g<1>no_such_policy", broken, count=1)
    assert broken.count("trust_stage: 7") == 1 and broken.count("no_such_policy") == 1, "the playbook has no trust_stage or policy to break"
    return broken, {line_of(broken, "trust_stage: 7"): "less than or equal to 3", line_of(broken, "no_such_policy"): "unknown policy 'no_such_policy'"}


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_the_playbook_in_force_reads_objectives_kpis_agents_guardrails(console_server: Any, signed_in_page: Any, shot: Any, api: Any) -> None:
    page: Page = signed_in_page("viewer")
    page.goto("/playbook")
    with api("viewer") as client:
        agents = [a["agent"] for a in client.get("/v1/agents").json()["agents"]]
    shown = page.locator("#in-force")
    headings = [h.strip() for h in shown.locator("h2, h3, h4").all_inner_texts()]
    # Objectives first, each with its KPIs, then the agents pursuing it; the guardrails after every objective.
    first = shown.locator(".objective h3").first.inner_text().strip()
    assert headings.index(first) < headings.index("KPIs") < headings.index("Agents") < headings.index("Guardrails every agent obeys"), headings
    assert max(i for i, h in enumerate(headings) if h == "Agents") < headings.index("Guardrails every agent obeys")
    for agent in agents:  # each agent of the store is in the playbook, under its objective
        expect(shown.locator(f".objective article#agent-{agent}")).to_have_count(1)
    expect(shown.locator("table.kpis tbody tr").first).to_contain_text("primary")
    shot(page, "playbook")


def test_a_broken_upload_shows_each_problem_at_its_line_then_a_valid_one_is_a_new_version(console_server: Any, signed_in_page: Any, shot: Any, api: Any) -> None:
    original = in_force_text(api, console_server)
    before = versions(api)
    broken, at = break_two_lines(original)
    page: Page = signed_in_page("marketer")
    page.goto("/playbook")
    page.get_by_label("Playbook YAML").fill(broken)
    page.get_by_role("button", name="Check and upload").click()
    expect(page.locator("#checked h2")).to_have_text("2 problems: nothing was stored")
    links = page.locator("#problems a")
    assert [link.get_attribute("href") for link in links.all()] == [f"#L{n}" for n in sorted(at)]  # in file order
    for n, words in at.items():
        line = page.locator(f"ol.source li#L{n}")
        expect(line).to_have_class(re.compile("has-problem"))
        expect(line.locator("p.problem")).to_contain_text(words)
        expect(line.locator("a.ln")).to_have_text(str(n))
    expect(page.locator("ol.source li.has-problem")).to_have_count(2)
    expect(page.get_by_label("Playbook YAML")).to_have_value(broken)  # kept, to fix
    shot(page, "playbook-problems")
    assert versions(api) == before  # nothing was stored

    valid = original.rstrip("\n") + "\n# uploaded from the console's upload form by its browser test: <b>shown as text</b>\n"
    page.get_by_label("Playbook YAML").fill(valid)
    page.get_by_role("button", name="Check only").click()
    expect(page.locator("#checked h2")).to_have_text("The playbook is valid")
    assert versions(api) == before  # checked, not stored
    page.get_by_label("Playbook YAML").fill("")
    page.get_by_label("Or a file").set_input_files({"name": "playbook.yaml", "mimeType": "application/yaml", "buffer": valid.encode("utf-8")})
    page.get_by_role("button", name="Check and upload").click()
    now = versions(api)
    assert len(now) == len(before) + 1 and now[0]["in_force"]
    newest = now[0]
    assert newest["uploads"][0]["uploaded_by"] == name_of("marketer")
    expect(page.locator("#uploaded")).to_have_text(f"Version {newest['id']} was uploaded by {name_of('marketer')} and is now in force.")
    row = page.locator(f"tr#v{newest['id']}")
    expect(row.locator(".uploaders")).to_contain_text(name_of("marketer"))
    expect(row).to_contain_text("in force")
    shot(page, "playbook-uploaded")

    row.get_by_role("link", name="what changed").click()
    added = page.locator("pre.diff .d-add")
    expect(added.filter(has_text="+# uploaded from the console's upload form")).to_have_count(1)
    expect(page.locator("pre.diff .d-del")).to_have_count(0)
    expect(added).to_contain_text("<b>shown as text</b>")  # escaped: the playbook's text is never markup here
    expect(page.locator("pre.diff b")).to_have_count(0)
    shot(page, "playbook-diff")

    page.get_by_role("link", name=f"version {newest['id']}").first.click()
    expect(page.locator("h1")).to_contain_text(f"Playbook version {newest['id']}")
    last = page.locator("ol.source li").last
    expect(last.locator("code")).to_have_text("# uploaded from the console's upload form by its browser test: <b>shown as text</b>")
    expect(last.locator("a.ln")).to_have_text(str(len(valid.splitlines())))
    expect(page.locator(".facts")).to_contain_text(f"by {name_of('marketer')}")
    shot(page, "playbook-version")


def test_a_viewer_sees_no_upload_form_and_a_post_is_refused(console_server: Any, signed_in_page: Any, shot: Any, api: Any) -> None:
    before = versions(api)
    viewer: Page = signed_in_page("viewer", width=390, height=844)  # a phone
    viewer.goto("/playbook")
    expect(viewer.locator("#versions")).to_be_visible()
    assert viewer.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing wider than the screen
    shot(viewer, "playbook-phone")
    expect(viewer.locator("form#upload-form")).to_have_count(0)
    expect(viewer.locator("textarea")).to_have_count(0)
    token = viewer.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    refused = viewer.request.post("/playbook", multipart={"csrf": token, "intent": "upload", "text": in_force_text(api, console_server)})
    assert refused.status == 403 and "Not allowed for your role" in refused.text()

    marketer: Page = signed_in_page("marketer")
    marketer.goto("/playbook")
    forged = marketer.request.post("/playbook", multipart={"intent": "upload", "text": in_force_text(api, console_server) + "\n# forged\n"})
    assert forged.status == 403  # no CSRF token: refused before anything is done
    assert versions(api) == before
