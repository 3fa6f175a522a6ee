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
        assert client.get("/v1/alerts", params={"status": "cleared"}).json() == {"alerts": []}
        assert client.get("/v1/alerts", params={"status": "bogus"}).status_code == 422
    with served.client(None) as anonymous:
        assert anonymous.get("/v1/alerts").status_code == 401
