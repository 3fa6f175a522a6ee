"""Playbooks over real HTTP: validate (every problem at its line), upload as a new version under
the key's name that is in force at once and after a restart, and an upload that does not
validate: 422 with every problem and its line, nothing stored."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.api import ApiSettings
from legato.clock import FixedClock
from legato.store.schema import audit_log, playbook_uploads, playbook_versions
from tests.api.conftest import Served, playbook_text, serve
from tests.world import AT

YAML = {"content-type": "application/yaml"}


def _line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def _stored(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        count = lambda table: int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())  # noqa: E731
        uploads = int(connection.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "playbook_uploaded")).scalar_one())
        return count(playbook_versions), count(playbook_uploads), uploads


def _broken() -> str:
    text = playbook_text().replace("policy: {name: uniform_random}", "policy: {name: uniform_randm}")
    return text.replace("    holdout: 0.0", "    holdot: 0.0")


def test_validate_answers_every_problem_at_its_line(served: Served) -> None:
    text = _broken()
    with served.client("viewer") as client:
        answer = client.post("/v1/playbooks/validate", content=text.encode(), headers=YAML)
        fine = client.post("/v1/playbooks/validate", content=playbook_text().encode(), headers=YAML)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False and body["summary"] is None
    places = {(p["field"], p["line"]) for p in body["problems"]}
    assert ("agents[0].holdot", _line_of(text, "holdot")) in places
    assert ("agents[0].policy.name", _line_of(text, "uniform_randm")) in places
    assert all(p["column"] >= 1 for p in body["problems"])
    assert any(p["hint"] == "did you mean 'holdout'?" for p in body["problems"])
    assert fine.json()["valid"] is True and fine.json()["summary"] == {"objectives": 1, "segments": 0, "creatives": 1, "agents": 1}


def test_validate_names_a_yaml_syntax_error_and_an_empty_body(served: Served) -> None:
    with served.client("viewer") as client:
        syntax = client.post("/v1/playbooks/validate", content=b"brand: {name: Test\nagents: [", headers=YAML)
        empty = client.post("/v1/playbooks/validate", content=b"", headers=YAML)
        binary = client.post("/v1/playbooks/validate", content=b"\xff\xfe brand", headers=YAML)
    (problem,) = syntax.json()["problems"]
    assert problem["field"] == "YAML syntax" and problem["line"] >= 1 and "quoting" in problem["hint"]
    assert empty.status_code == 422 and empty.json()["error"]["message"] == "the body is empty"
    assert binary.status_code == 422 and "UTF-8" in binary.json()["error"]["message"]


def test_an_upload_that_does_not_validate_is_422_with_every_problem_and_stores_nothing(served: Served) -> None:
    text = _broken()
    with served.client("marketer") as client:
        answer = client.post("/v1/playbooks", content=text.encode(), headers=YAML)
        still = client.post("/v1/checks/message", json={"creative": "hello"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["kind"] == "invalid" and error["message"].endswith("; nothing was stored")
    assert error["message"].startswith("the playbook has 2 problems")
    assert {(p["field"], p["line"]) for p in error["problems"]} == {
        ("agents[0].holdot", _line_of(text, "holdot")), ("agents[0].policy.name", _line_of(text, "uniform_randm"))}
    assert all(p["reason"] and p["column"] for p in error["problems"])
    assert _stored(served.engine) == (0, 0, 0)
    assert still.status_code == 200  # the playbook in force is the one the server had


def test_an_upload_is_a_new_version_under_the_keys_name_and_in_force_at_once(served: Served) -> None:
    text = "# uploaded by the test\n" + playbook_text().replace("id: hello", "id: welcome").replace("creatives: [hello]", "creatives: [welcome]")
    with served.client("marketer") as client:
        answer = client.post("/v1/playbooks", content=text.encode(), headers=YAML)
        again = client.post("/v1/playbooks", content=text.encode(), headers=YAML)
        checked = client.post("/v1/checks/message", json={"creative": "welcome"})
        gone = client.post("/v1/checks/message", json={"creative": "hello"})
    with served.client("viewer") as client:
        listed = client.get("/v1/playbooks")
        shown = client.get(answer.headers["location"])
        missing = client.get("/v1/playbooks/999")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["new_version"] is True and body["version"]["in_force"] is True
    assert body["version"]["uploads"][0]["uploaded_by"] == "marketer-key"
    assert again.status_code == 201 and again.json()["new_version"] is False and again.json()["version"]["id"] == body["version"]["id"]
    assert checked.status_code == 200 and gone.status_code == 422
    (version,) = listed.json()["versions"]
    assert version["in_force"] is True and len(version["uploads"]) == 2 and listed.json()["next_before"] is None
    assert shown.status_code == 200 and shown.json()["text"] == text  # the text as sent, its comment kept
    assert missing.status_code == 404 and missing.json()["error"]["hint"] == "list the versions with GET /v1/playbooks"
    assert _stored(served.engine) == (1, 2, 2)


def test_an_uploaded_file_channel_stays_in_the_servers_folder(served: Served) -> None:
    text = playbook_text().replace("path: out/email.jsonl", "path: ../../etc/email.jsonl")
    with served.client("admin") as client:
        answer = client.post("/v1/playbooks", content=text.encode(), headers=YAML)
    assert answer.status_code == 422
    (problem,) = answer.json()["error"]["problems"]
    assert (problem["field"], problem["line"]) == ("channels.email.path", _line_of(text, "../../etc"))
    assert "relative path without '..'" in problem["hint"]
    assert _stored(served.engine) == (0, 0, 0)


def test_a_server_restarted_without_a_playbook_carries_on_with_the_newest_upload(served: Served) -> None:
    text = playbook_text().replace("id: hello", "id: welcome").replace("creatives: [hello]", "creatives: [welcome]")
    with served.client("marketer") as client:
        assert client.post("/v1/playbooks", content=text.encode(), headers=YAML).status_code == 201
    headers = {"Authorization": f"Bearer {served.keys['viewer']}"}
    for url in serve(served.engine, ApiSettings(clock=FixedClock(AT), rate_limit=0)):
        with httpx.Client(timeout=30, base_url=url, headers=headers) as client:
            assert client.post("/v1/checks/message", json={"creative": "welcome"}).status_code == 200
    # --playbook names the file to use: it wins over what was uploaded.
    for url in serve(served.engine, ApiSettings(playbook=served.playbook, clock=FixedClock(AT), rate_limit=0)):
        with httpx.Client(timeout=30, base_url=url, headers=headers) as client:
            assert client.post("/v1/checks/message", json={"creative": "hello"}).status_code == 200
            assert client.get("/v1/playbooks").json()["versions"][0]["in_force"] is False


def test_only_keys_that_steer_upload(served: Served) -> None:
    for role in ("viewer", "reviewer", "ingest"):
        with served.client(role) as client:
            assert client.post("/v1/playbooks", content=playbook_text().encode(), headers=YAML).status_code == 403, role
    assert _stored(served.engine) == (0, 0, 0)


def test_with_several_workers_an_upload_to_one_is_in_force_on_the_others(served: Served) -> None:
    """Two apps on one store, as two processes of `legato serve --workers 2` are."""
    text = playbook_text().replace("id: hello", "id: welcome").replace("creatives: [hello]", "creatives: [welcome]")
    first = serve(served.engine, ApiSettings(playbook=served.playbook, clock=FixedClock(AT), rate_limit=0, workers=2))
    second = serve(served.engine, ApiSettings(playbook=served.playbook, clock=FixedClock(AT), rate_limit=0, workers=2))
    try:
        one, other = next(first), next(second)
        headers = {"Authorization": f"Bearer {served.keys['marketer']}"}
        with httpx.Client(timeout=30, base_url=other, headers=headers) as client:
            assert client.post("/v1/checks/message", json={"creative": "hello"}).status_code == 200  # the file, until an upload
        with httpx.Client(timeout=30, base_url=one, headers=headers) as client:
            assert client.post("/v1/playbooks", content=text.encode(), headers=YAML).status_code == 201
        with httpx.Client(timeout=30, base_url=other, headers=headers) as client:
            assert client.post("/v1/checks/message", json={"creative": "welcome"}).status_code == 200
            assert client.post("/v1/checks/message", json={"creative": "hello"}).status_code == 422
            assert client.get("/v1/playbooks").json()["versions"][0]["in_force"] is True
    finally:
        first.close()
        second.close()
