"""Request ids, JSON access logs without personal data, and /metrics parsed with prometheus-client's parser."""

from __future__ import annotations

import io
import json
import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from legato.api.observe import JsonLines, configure_logging
from legato.clock import FixedClock
from legato.cycle import run_cycle
from tests.api.conftest import Served
from tests.world import AT, load_customers, playbook


def metrics_of(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Each sample name with its (labels, value) pairs."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_a_request_id_on_every_answer_and_in_error_bodies(served: Served) -> None:
    with served.client("viewer") as client:
        made = client.get("/v1/agents")
        kept = client.get("/v1/agents/nobody", headers={"X-Request-Id": "proxy-42.a:b"})
        replaced = client.get("/v1/agents", headers={"X-Request-Id": "has spaces and {braces}"})
    with served.client(None) as anonymous:
        refused = anonymous.get("/v1/agents")
    assert len(made.headers["x-request-id"]) == 32
    assert kept.status_code == 404 and kept.headers["x-request-id"] == "proxy-42.a:b"
    assert kept.json()["request_id"] == "proxy-42.a:b"
    assert replaced.headers["x-request-id"] != "has spaces and {braces}"
    assert refused.status_code == 401 and refused.json()["request_id"] == refused.headers["x-request-id"]


def test_metrics_need_a_key_that_reads(served: Served) -> None:
    with served.client(None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with served.client("ingest") as ingest:
        assert ingest.get("/metrics").status_code == 403
    with served.client("viewer") as viewer:
        answer = viewer.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")


def test_metrics_count_requests_by_route_template_and_read_the_store(served: Served) -> None:
    load_customers(served.engine)
    run_cycle(served.engine, playbook(stage=0), FixedClock(AT), {})  # stage 0: every send waits for a person
    with served.client("viewer") as client:
        for name in ("nobody", "someone", "mailer"):
            client.get(f"/v1/agents/{name}")
        client.get("/no/such/route/c001")
        text = client.get("/metrics").text
    found = metrics_of(text)
    requests = {(s["route"], s["status"]): v for s, v in found["legato_http_requests_total"]}
    assert requests[("/v1/agents/{agent_id}", "404")] == 2  # the template, not the customer's or agent's id
    assert requests[("/v1/agents/{agent_id}", "200")] == 1
    assert requests[("unmatched", "404")] == 1
    assert not any("c001" in route for route, _ in requests)
    assert any(s["route"] == "/v1/agents/{agent_id}" and s["le"] == "+Inf" for s, _ in found["legato_http_request_duration_seconds_bucket"])
    assert found["legato_store_up"] == [({}, 1.0)]
    queue = {(s["status"], s["reason"]): v for s, v in found["legato_review_queue_items"]}
    assert sum(queue.values()) > 0 and all(status == "open" for status, _ in queue)
    assert {s["status"] for s, _ in found["legato_outbox_messages"]} == {"pending", "claimed", "retry", "dead", "in_doubt"}
    cycles = {s["status"]: v for s, v in found["legato_cycles"]}
    assert cycles["finished"] == 1 and cycles["running"] == 0
    assert ({"outcome": "finished"}, 1.0) in found["legato_cycle_duration_seconds_count"]
    assert found["legato_cycle_last_finished_timestamp_seconds"][0][1] == AT.timestamp()


def test_a_cycle_run_elsewhere_shows_at_the_next_scrape(served: Served) -> None:
    with served.client("viewer") as client:
        before = metrics_of(client.get("/metrics").text)
        load_customers(served.engine)
        run_cycle(served.engine, playbook(stage=2), FixedClock(AT), {})  # as `legato run` in another process would
        after = metrics_of(client.get("/metrics").text)
    assert {s["status"]: v for s, v in before["legato_cycles"]}["finished"] == 0
    assert {s["status"]: v for s, v in after["legato_cycles"]}["finished"] == 1
    assert {s["status"]: v for s, v in after["legato_outbox_messages"]}["pending"] > 0


def test_events_ingested_is_a_counter_routes_can_add_to() -> None:
    from legato.api.observe import Metrics
    from legato.store.db import connect

    metrics = Metrics(connect("sqlite://"))
    metrics.ingested.labels("segment").inc(3)
    from prometheus_client import generate_latest

    found = metrics_of(generate_latest(metrics.registry).decode())
    assert ({"source": "segment"}, 3.0) in found["legato_events_ingested_total"]


def test_one_json_log_line_per_request_without_personal_data(served: Served) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    kept, level, access = root.handlers[:], root.level, logging.getLogger("uvicorn.access").disabled
    configure_logging(logging.INFO, stream)
    try:
        with served.client("marketer") as client:
            client.get("/v1/agents/c001@test.example?email=c001@test.example")
            client.post("/v1/agents/mailer/pause", json={"reason": "customer c001@test.example complained"})
    finally:
        root.handlers[:], root.level = kept, level
        logging.getLogger("uvicorn.access").disabled = access
    # What the server wrote (this process also holds the test's httpx client, which logs its URLs).
    written = [json.loads(line) for line in stream.getvalue().splitlines()]
    served_lines = [line for line in written if line["logger"].startswith(("legato", "uvicorn"))]
    lines = [line for line in served_lines if line["logger"] == "legato.api.access"]
    assert len(lines) == 2
    first, second = lines
    assert set(first) >= {"time", "level", "request_id", "method", "route", "status", "duration_ms", "key"}
    assert first["route"] == "/v1/agents/{agent_id}" and first["status"] == 404 and first["key"] == "marketer-key"
    assert second["method"] == "POST" and second["route"] == "/v1/agents/{agent_id}/pause"
    assert not [line for line in served_lines if "c001" in json.dumps(line) or "test.example" in json.dumps(line)]


def test_the_formatter_keeps_an_error_with_its_request_id() -> None:
    record = logging.LogRecord("legato.api", logging.ERROR, __file__, 1, "unhandled error", None, (ValueError, ValueError("boom"), None))
    record.request_id = "r1"
    line = json.loads(JsonLines().format(record))
    assert line["request_id"] == "r1" and line["level"] == "error" and "ValueError: boom" in line["error"]


def test_openmetrics_when_asked(served: Served) -> None:
    with httpx.Client(timeout=30, base_url=served.url, headers={"Authorization": f"Bearer {served.keys['viewer']}",
                                                    "Accept": "application/openmetrics-text; version=1.0.0"}) as client:
        answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")


def test_alerts_raised_and_delivered_by_kind_are_read_from_the_store(served: Served) -> None:
    from datetime import timedelta

    from legato.monitor.alert_delivery import deliver_alerts
    from legato.monitor.alerts import clear_alert, incident_key, raise_alert
    from legato.store.status import AlertKind

    stop, odd = incident_key(AlertKind.STOP_LOSS, "mailer"), incident_key(AlertKind.ANOMALY, "mailer", "sends")
    with served.engine.begin() as connection:  # as a cycle's monitors raise them, in another process
        raise_alert(connection, stop, AlertKind.STOP_LOSS, "paused", {}, AT, agent_id="mailer")
        raise_alert(connection, stop, AlertKind.STOP_LOSS, "paused", {}, AT, agent_id="mailer")  # a repeat: the same incident
        raise_alert(connection, odd, AlertKind.ANOMALY, "sends fell", {}, AT, agent_id="mailer")
        clear_alert(connection, odd, AT + timedelta(hours=1), by="monitor")
    assert deliver_alerts(served.engine, playbook(stage=2), AT + timedelta(hours=2)).sent == {"log": 3}  # opened ×2, the anomaly's follow-up
    with served.client("viewer") as client:
        found = metrics_of(client.get("/metrics").text)
    raised = {(s["kind"], s["status"]): v for s, v in found["legato_alerts"]}
    assert raised == {("stop_loss", "open"): 1, ("stop_loss", "cleared"): 0, ("anomaly", "open"): 0, ("anomaly", "cleared"): 1}
    sent = {(s["kind"], s["phase"], s["status"]): v for s, v in found["legato_alert_deliveries"]}
    assert len(sent) == 2 * 2 * 4 and sum(sent.values()) == 3
    assert sent[("stop_loss", "opened", "sent")] == 1 and sent[("anomaly", "opened", "sent")] == 1 and sent[("anomaly", "cleared", "sent")] == 1
    assert sent[("stop_loss", "opened", "failed")] == 0
