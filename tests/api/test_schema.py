"""schemathesis against the served /openapi.json, on SQLite and PostgreSQL: for every route the
spec lists, generated requests never get a 5xx and never an answer that breaks the spec.

The spec is read from the live server (``served``: uvicorn on loopback), so a route added later
is tested without touching this file. Requests carry a key that may use the route: the ingest
key on routes an ingest key may call (ingest and Segment's), the admin key elsewhere. Valid
and invalid data (schemathesis' positive and negative modes); kept small (a few examples an
operation, no shrinking) so it stays part of the normal run. Driven through schemathesis' Python
API (``from_url``, each operation ``as_strategy``) rather than its pytest plugin, whose lazy
loading from a fixture fails under pytest 9; every failure of every operation is listed at once.

Not checked: ``/v1/stream`` (an event stream never ends, so a generated call would wait
forever; tests/api/test_stream.py tests it), and whether valid data is accepted (a random
agent id is rightly a 404).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Served

# An e-mail as it arrived (POST /v1/deliveries/returned-mail) is bytes: sent as any binary body.
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")

EXAMPLES = 5  # generated requests an operation and mode (valid data, then invalid data)
SKIPPED = {"/v1/stream"}
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def test_the_served_spec_holds(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    schema.config.update(base_url=served.url, request_timeout=30)
    failures: list[str] = []
    asked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED:
            continue
        roles = operation.definition.raw.get("x-roles") or []
        headers = {"Authorization": f"Bearer {served.keys['ingest' if 'ingest' in roles else 'admin']}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check(operation, mode, headers)
            except Unsatisfiable:
                pass  # nothing of it can be invalid (no parameters, no body): the negative mode has nothing to send
            except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - every operation is asked; the failures are listed together
                failures.append(f"{operation.label} ({mode.value}, {served.engine.dialect.name}): {type(error).__name__}: {error}")
        asked += 1
    assert asked >= 6
    assert not failures, "\n\n".join(failures)


def _check(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate])  # no shrinking: a failure is shown as found, and fast
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
