"""/v1/stream over real HTTP with httpx streaming: changes made outside the server (a cycle as the
CLI runs it, a demotion, a stop-loss breach) arrive as events, Last-Event-ID resumes, heartbeats
keep an idle stream open, and a shutdown ends open streams."""

from __future__ import annotations

import json
from collections import Counter
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine

from legato.api import ApiSettings, create_app
from legato.api.serving import Server
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.service import agents, keys
from legato.store.status import KeyRole
from legato.trust import agent_state
from tests.api.conftest import Served
from tests.world import AT, load_customers, playbook

Event = dict[str, Any]


def events(lines: Iterator[str]) -> Iterator[Event]:
    """SSE as a browser reads it: fields until a blank line; comments kept as ``comment``."""
    event: Event = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            event["comment"] = value
        elif name == "data":
            event["data"] = json.loads(value)
        else:
            event[name] = value


def read_until(stream: Iterator[Event], wanted: set[str], seconds: float = 20) -> list[Event]:
    seen: list[Event] = []
    deadline = time.monotonic() + seconds
    for event in stream:
        seen.append(event)
        if wanted <= {e.get("event") for e in seen}:
            return seen
        assert time.monotonic() < deadline, f"no {wanted - {e.get('event') for e in seen}} in {seen}"
    raise AssertionError(f"the stream ended: {seen}")


def test_changes_made_elsewhere_arrive_and_last_event_id_resumes(served: Served) -> None:
    load_customers(served.engine)
    with served.client("viewer") as client, client.stream("GET", "/v1/stream", params={"heartbeat": 1}) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        stream = events(answer.iter_lines())
        opening = next(stream)
        assert opening["comment"] == "legato stream" and opening["retry"] == "2000" and "id" in opening
        # A cycle as `legato run` runs it, in another thread: it writes the store, not the server.
        threading.Thread(target=run_cycle, args=(served.engine, playbook(stage=0), FixedClock(AT), {})).start()
        seen = [opening, *read_until(stream, {"cycle_started", "cycle_finished", "review_item"})]
        with served.engine.begin() as connection:
            agent_state.change_stage(connection, "mailer", 1, cause=agent_state.StageCause.PROMOTION, actor="ana", reason="ready", now=AT)
        with served.engine.begin() as connection:
            agent_state.change_stage(connection, "mailer", 0, cause=agent_state.StageCause.STOP_LOSS, actor="stop_loss",
                                     reason="complaint_rate above 0.01", now=AT, detail={"kpi": "complaint_rate", "value": 0.05})
        agents.pause(served.engine, "mailer", "ana", "launch week", now=AT)
        seen += read_until(stream, {"trust_stage_changed", "stop_loss_breach", "agent_paused"})
    by_event = {e["event"]: e for e in seen if "event" in e}
    item = by_event["review_item"]["data"]
    assert item["agent"] == "mailer" and item["status"] == "open" and "customer_id" not in item
    assert by_event["cycle_finished"]["data"]["status"] == "finished"
    assert by_event["trust_stage_changed"]["data"].items() >= {"agent": "mailer", "from": 0, "to": 1, "cause": "trust_promoted", "by": "ana"}.items()
    assert by_event["stop_loss_breach"]["data"]["breach"] == {"kpi": "complaint_rate", "value": 0.05}
    assert by_event["agent_paused"]["data"]["reason"] == "launch week"
    assert any("comment" in e and e["comment"] == "heartbeat" for e in seen)

    # Resume from the opening position: every change comes again (in order within each source:
    # the audit log, the queue, cycles); from the
    # last review item: none of the items again.
    names = [e["event"] for e in seen if "event" in e]
    with served.client("viewer") as client, client.stream("GET", "/v1/stream", headers={"Last-Event-ID": opening["id"]}) as answer:
        again = read_until(events(answer.iter_lines()), set(names))
    assert Counter(e["event"] for e in again if "event" in e) == Counter(names)
    last_item = [e["id"] for e in seen if e.get("event") == "review_item"][-1]
    with served.client("viewer") as client, client.stream("GET", "/v1/stream", headers={"Last-Event-ID": last_item}) as answer:
        rest = read_until(events(answer.iter_lines()), {"agent_paused", "cycle_finished"})
    assert "review_item" not in {e.get("event") for e in rest}


def test_a_malformed_last_event_id_is_422(served: Served) -> None:
    with served.client("viewer") as client:
        answer = client.get("/v1/stream", headers={"Last-Event-ID": "not-a-position"})
    assert answer.status_code == 422
    assert "stream position" in answer.json()["error"]["message"]


def test_ingest_keys_may_not_read_the_stream(served: Served) -> None:
    with served.client("ingest") as client:
        assert client.get("/v1/stream").status_code == 403


def test_a_shutdown_ends_open_streams(engine: Engine) -> None:
    secret = keys.create(engine, "console", KeyRole.VIEWER, by="test", now=AT)[1]
    app = create_app(ApiSettings(clock=FixedClock(AT), rate_limit=0), engine=engine)

    class Quiet(Server):
        def install_signal_handlers(self) -> None:
            pass

    server = Quiet(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"), app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        with client.stream("GET", "/v1/stream") as answer:
            stream = events(answer.iter_lines())
            next(stream)
            began = time.monotonic()
            server.should_exit = True
            rest = list(stream)  # ends: the server closed it
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - began < 5
    assert all("event" not in e for e in rest)
