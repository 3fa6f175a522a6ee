"""GET /v1/alerts on a real server: the incidents with their deliveries, for any role that reads."""

from __future__ import annotations

from tests.api.conftest import Served
from tests.monitor.test_alert_delivery import INCIDENT, raise_breach


def test_get_v1_alerts(served: Served) -> None:
    raise_breach(served.engine)
    with served.client("viewer") as client:
        answer = client.get("/v1/alerts", params={"status": "open"})
        assert answer.status_code == 200, answer.text
        [alert] = answer.json()["alerts"]
        assert (alert["incident"], alert["kind"], alert["agent"], alert["deliveries"]) == (INCIDENT, "stop_loss", "mailer", [])
        assert client.get("/v1/alerts", params={"status": "cleared"}).json() == {"alerts": [], "next_cursor": None}
        assert client.get("/v1/alerts", params={"status": "bogus"}).status_code == 422
    with served.client(None) as anonymous:
        assert anonymous.get("/v1/alerts").status_code == 401


def test_get_v1_alerts_pages_by_cursor(served: Served) -> None:
    from legato.monitor.alerts import incident_key, raise_alert
    from legato.store.status import AlertKind
    from tests.world import AT

    with served.engine.begin() as connection:
        for i in range(5):
            raise_alert(connection, incident_key(AlertKind.ANOMALY, "mailer", f"series_{i}"), AlertKind.ANOMALY, f"odd {i}", {}, AT, agent_id="mailer")
    with served.client("viewer") as client:
        seen: list[str] = []
        cursor = None
        for _ in range(4):  # 5 alerts, 2 a page: 3 pages, the last without a cursor
            body = client.get("/v1/alerts", params={"limit": 2, **({"after": cursor} if cursor else {})}).json()
            seen += [a["summary"] for a in body["alerts"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"odd {i}" for i in range(5)] and cursor is None
        bad = client.get("/v1/alerts", params={"after": "nope"})
        assert bad.status_code == 422 and "not a page cursor" in bad.text and "Traceback" not in bad.text
        assert client.get("/v1/alerts", params={"limit": 0}).status_code == 422
