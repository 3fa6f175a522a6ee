"""Cycles over real HTTP: one started over HTTP runs in the background and produces decisions,
its status and the history read it; while a cycle holds the lease another is 409 naming the
holder; an empty store, a cycle back in time and a failure each say what happened."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from legato.cycle import run as cycle_run
from legato.cycle.lease import hold
from legato.errors import LegatoError
from legato.store.schema import cycles, decisions
from tests.api.conftest import Served
from tests.world import AT, expected_eligible, load_customers


def _finished(client: httpx.Client, url: str, within: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        state = client.get(url).json()
        if state["status"] != "running" or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_a_cycle_started_over_http_produces_decisions(served: Served) -> None:
    load_customers(served.engine)
    with served.client("marketer") as client:
        answer = client.post("/v1/cycles")
        assert answer.status_code == 202, answer.text
        started = answer.json()
        assert started["resumed"] is False and answer.headers["location"] == started["status_url"] == f"/v1/cycles/{started['cycle_id']}"
        state = _finished(client, started["status_url"])
        history = client.get("/v1/cycles").json()
    assert state["status"] == "finished" and state["error"] is None and state["finished_at"] is not None
    (mailer,) = state["agents"]
    audience = len([c for i, c in enumerate(f"c{i:03d}" for i in range(40)) if i % 4 != 3])
    assert (mailer["agent"], mailer["partitions"], mailer["done"], mailer["decisions"]) == ("mailer", 1, 1, audience)
    with served.engine.connect() as connection:
        made = connection.execute(sa.select(decisions.c.customer_id, decisions.c.status).where(decisions.c.cycle_id == started["cycle_id"])).all()
    assert len(made) == audience
    assert {c for c, status in made if status == "scheduled"} == expected_eligible()  # consent and the audience decide who gets one
    assert [c["id"] for c in history["cycles"]] == [started["cycle_id"]] and history["cycles"][0]["playbook_version_id"] is not None


def test_a_second_cycle_while_the_first_holds_the_lease_is_409_naming_it(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    load_customers(served.engine)
    release, reached = threading.Event(), threading.Event()
    real = cycle_run.dispatch_due

    def slow_dispatch(*args: Any, **kwargs: Any) -> Any:  # the first cycle waits here, its decisions written, holding the lease
        reached.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(cycle_run, "dispatch_due", slow_dispatch)
    with served.client("marketer") as client:
        first = client.post("/v1/cycles").json()
        assert reached.wait(60)
        second = client.post("/v1/cycles")
        running = client.get(first["status_url"]).json()
        release.set()
        done = _finished(client, first["status_url"])
        third = client.post("/v1/cycles")  # the lease is free again
        assert third.status_code == 202
        _finished(client, third.json()["status_url"])
    assert second.status_code == 409, second.text
    error = second.json()["error"]
    assert error["kind"] == "conflict" and "another cycle is running on this database: held by host" in error["message"]
    assert f"running cycle {first['cycle_id']}" in error["message"]
    assert f"GET /v1/cycles/{first['cycle_id']}" in error["hint"]
    assert running["status"] == "running" and running["agents"][0]["done"] == 1
    assert done["status"] == "finished"


def test_a_cycle_held_by_another_process_is_409_and_nothing_starts(served: Served) -> None:
    load_customers(served.engine)
    with hold(served.engine), served.client("admin") as client:
        answer = client.post("/v1/cycles")
    assert answer.status_code == 409 and "held by host" in answer.json()["error"]["message"]
    with served.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 0


def test_an_empty_store_and_a_cycle_back_in_time_are_409_with_the_fix(served: Served) -> None:
    with served.client("marketer") as client:
        empty = client.post("/v1/cycles")
        load_customers(served.engine)
        _finished(client, client.post("/v1/cycles").json()["status_url"])
        served.clock.set(AT - timedelta(days=1))
        back = client.post("/v1/cycles")
    assert empty.status_code == 409 and "import customers first" in empty.json()["error"]["hint"]
    assert back.status_code == 409 and back.json()["error"]["message"].startswith("the last cycle ran at 2024-03-04 08:00 UTC")


def test_a_cycle_that_fails_says_why(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    load_customers(served.engine)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise LegatoError("the e-mail provider refused the login", hint="check the provider's key")

    monkeypatch.setattr(cycle_run, "dispatch_due", broken)
    with served.client("marketer") as client:
        state = _finished(client, client.post("/v1/cycles").json()["status_url"])
        again = client.post("/v1/cycles")  # the failed cycle is finished first, not a new one started
        monkeypatch.undo()
        assert again.status_code == 202 and again.json()["resumed"] is True
        _finished(client, again.json()["status_url"])
    assert state["status"] == "failed"
    assert state["error"] == "the e-mail provider refused the login (check the provider's key)"


def test_cycles_are_started_by_keys_that_steer_and_read_by_all_that_read(served: Served) -> None:
    load_customers(served.engine)
    for role in ("viewer", "reviewer", "ingest"):
        with served.client(role) as client:
            assert client.post("/v1/cycles").status_code == 403, role
    with served.client("viewer") as client:
        assert client.get("/v1/cycles").json() == {"cycles": [], "next_before": None}
        missing = client.get("/v1/cycles/7")
    assert missing.status_code == 404 and missing.json()["error"]["hint"] == "list the cycles with GET /v1/cycles"
