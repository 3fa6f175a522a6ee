"""Decisions over real HTTP, on SQLite and PostgreSQL: searched by customer, agent, status, route
and time, newest first, a page at a time by cursor (no gaps or repeats, also while a cycle
writes more); each with its why (propensity and expected value, holdout and control, the
guardrails' reasons, route, status, review item, message, outcome), and one decision with
the customer's values of the fields its audience reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.schema import decisions
from tests.api.conftest import Served
from tests.world import AT, load_customers, playbook

N = 40


def cycle(engine: Engine, tmp_path: Path, *, at: Any = AT, n: int = N) -> None:
    """A real cycle at stage 0 with a holdout: queued proposals, held-out and suppressed customers."""
    pb = playbook(stage=0, holdout=0.2)
    run_cycle(engine, pb, FixedClock(at), transports(pb, tmp_path))


def every(client: httpx.Client, limit: int, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page of a search; the decisions in the order given, and how many pages."""
    found: list[dict[str, Any]] = []
    after, pages = None, 0
    while True:
        answer = client.get("/v1/decisions", params={"limit": limit, **params, **({"after": after} if after else {})})
        assert answer.status_code == 200, answer.text
        found += answer.json()["items"]
        pages += 1
        after = answer.json()["next_cursor"]
        if after is None:
            return found, pages


def ids(engine: Engine, *where: Any) -> set[int]:
    with engine.connect() as c:
        return set(c.execute(sa.select(decisions.c.id).where(*where)).scalars())


def test_pages_newest_first_without_gaps_or_repeats_while_a_cycle_writes_more(served: Served, tmp_path: Path,
                                                                               write_decisions: Callable[..., None]) -> None:
    load_customers(served.engine, N)
    cycle(served.engine, tmp_path)
    write_decisions("sent", 60, decided_at=AT - timedelta(days=1))
    before = ids(served.engine)
    with served.client("viewer") as client:
        first = client.get("/v1/decisions", params={"limit": 9}).json()
        # A later cycle writes while the reader pages: the pages already read do not shift.
        cycle(served.engine, tmp_path, at=AT + timedelta(days=1))
        assert ids(served.engine) > before
        rest, _ = every(client, 9, after=first["next_cursor"])
        again, pages = every(client, 13)
    seen = [d["id"] for d in first["items"] + rest]
    assert len(seen) == len(set(seen)) == len(before) and set(seen) == before
    order = [(d["decided_at"], d["id"]) for d in again]
    assert order == sorted(order, reverse=True)  # newest first, then by id
    assert len(again) == len(ids(served.engine)) and pages == -(-len(again) // 13)


def test_search_by_customer_agent_status_route_and_time(served: Served, tmp_path: Path, write_decisions: Callable[..., None]) -> None:
    load_customers(served.engine, N)
    cycle(served.engine, tmp_path)
    write_decisions("sent", 5, agent_id="other", decided_at=AT - timedelta(days=2))
    with served.client("viewer") as client:
        def found(**params: Any) -> set[int]:
            return {d["id"] for d in every(client, 1000, **params)[0]}

        assert found(customer="c001") == ids(served.engine, decisions.c.customer_id == "c001") != set()
        assert found(agent="other") == ids(served.engine, decisions.c.agent_id == "other") and len(found(agent="other")) == 5
        assert found(status="queued") == ids(served.engine, decisions.c.status == "queued") != set()
        assert found(route="holdout") == ids(served.engine, decisions.c.route == "holdout") != set()
        assert found(agent="mailer", status="suppressed") == ids(served.engine, decisions.c.agent_id == "mailer", decisions.c.status == "suppressed")
        day = {"since": (AT - timedelta(days=2)).isoformat(), "until": (AT - timedelta(days=1)).isoformat()}
        assert found(**day) == ids(served.engine, decisions.c.agent_id == "other")
        assert found(since=AT.isoformat()) == ids(served.engine, decisions.c.agent_id == "mailer")
        assert found(until=AT.isoformat(), agent="mailer") == set()
        assert found(customer="nobody") == set()
        naive = client.get("/v1/decisions", params={"since": "2024-03-04T08:00:00"})
        empty = client.get("/v1/decisions", params={"since": AT.isoformat(), "until": AT.isoformat()})
        bad = client.get("/v1/decisions", params={"status": "maybe", "limit": 1001})
        cursor = client.get("/v1/decisions", params={"after": "1.x"})
        huge = client.get("/v1/decisions", params={"after": "99999999999999999999999.1"})
    assert naive.status_code == 422 and naive.json()["error"]["problems"][0]["field"] == "query.since"
    assert empty.status_code == 422 and "time range is empty" in empty.json()["error"]["message"]
    assert bad.status_code == 422 and {p["field"] for p in bad.json()["error"]["problems"]} == {"query.status", "query.limit"}
    assert cursor.status_code == 422 and huge.status_code == 422 and "is not a page cursor" in huge.json()["error"]["message"]


def test_each_decision_comes_with_its_why(served: Served, tmp_path: Path, write_decisions: Callable[..., None]) -> None:
    load_customers(served.engine, N)
    cycle(served.engine, tmp_path)
    write_decisions("control", 1, decided_at=AT - timedelta(days=1))
    write_decisions("sent", 1, decided_at=AT - timedelta(days=1), reward=2.5, purchased=True, revenue=40.0)
    with served.client("viewer") as client:
        by_customer = {d["customer_id"]: d for d in every(client, 1000)[0]}
    queued = by_customer["c001"]
    assert queued["route"] == queued["status"] == "queued" and queued["creative_id"] == "hello" and queued["channel"] == "email"
    assert queued["action"] == "hello/no_offer/09:00-17:00" and queued["send_at"].startswith("2024-03-04T09:00")
    assert queued["propensity"] == 1.0 and queued["holdout"] is False and queued["control"] is False
    assert queued["review"]["reason"] == "trust_stage_0" and queued["review"]["status"] == "open"
    assert queued["reasons"] == ["trust_stage_0"] and queued["delivery"] is None and queued["outcome"] is None
    revoked = by_customer["c000"]  # every 10th customer revoked consent
    assert revoked["route"] == "suppressed" and revoked["findings"] == ["consent_revoked:email"] and revoked["reasons"] == ["consent_revoked:email"]
    held = [d for d in by_customer.values() if d["route"] == "holdout"]
    assert held and all(d["holdout"] is True and d["action"] == "nothing" and d["review"] is None for d in held)
    [control] = [d for d in by_customer.values() if d["route"] == "control"]
    assert control["control"] is True and control["holdout"] is False
    [settled] = [d for d in by_customer.values() if d["status"] == "sent"]  # written settled, eight days on
    assert settled["outcome"]["reward"] == 2.5 and settled["outcome"]["purchased"] is True and settled["outcome"]["revenue"] == 40.0
    assert settled["outcome"]["settled_at"].startswith((AT + timedelta(days=8)).date().isoformat())


def test_one_decision_says_why_this_customer_and_where_its_message_is(served: Served, tmp_path: Path) -> None:
    load_customers(served.engine, N)
    cycle(served.engine, tmp_path)
    with served.client("reviewer") as client:
        [item] = client.get("/v1/review/items", params={"limit": 1}).json()["items"]
        client.post(f"/v1/review/items/{item['id']}/approve", json={"content_hash": item["content_hash"]})
        answer = client.get(f"/v1/decisions/{item['decision_id']}")
        missing = client.get("/v1/decisions/999999")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["why"] == {"audience": 'tier in ("gold", "silver")', "facts": {"tier": "gold"}, "escalation": None}
    decision = shown["decision"]
    assert decision["id"] == item["decision_id"] and decision["customer_id"] == item["customer_id"]
    assert decision["status"] == "scheduled" and decision["route"] == "queued" and decision["approved_by"] == "reviewer-key"
    assert decision["review"]["status"] == "approved" and decision["review"]["decided_by"] == "reviewer-key"
    assert decision["delivery"]["status"] == "pending" and decision["delivery"]["attempts"] == 0
    assert decision["playbook_version"] is not None
    assert missing.status_code == 404 and missing.json()["error"]["kind"] == "not_found"


def test_every_reader_may_search_and_an_ingest_key_may_not(served: Served) -> None:
    for role in ("viewer", "marketer", "reviewer", "admin"):
        with served.client(role) as client:
            assert client.get("/v1/decisions").json() == {"items": [], "next_cursor": None}
    with served.client("ingest") as client:
        assert client.get("/v1/decisions").status_code == 403
