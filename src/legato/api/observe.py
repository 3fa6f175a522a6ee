"""Watching the server: a request id on every request, one JSON log line per request, /metrics.

**Request id.** A caller's ``X-Request-Id`` is kept when it is a plain token (letters, digits,
``._:-``, at most 128), so a proxy's id follows the request through; otherwise one is made. It
is put in ``request.state.request_id`` (error bodies carry it), returned as ``X-Request-Id``
on every response, and written on the request's log line.

**Logs.** One line per request on the ``legato.api.access`` logger: time, level, request id,
method, route *template* (``/v1/agents/{agent_id}``, never the path, which can hold a customer
id), status, duration and the key's name. No bodies, query strings, customer ids, emails or
keys. :func:`configure_logging` makes every log record a JSON line (``legato serve`` calls it).

**Metrics.** Each app has its own :class:`~prometheus_client.CollectorRegistry` (tests run
several apps in one process). Requests by route template and status, latency histograms, and
events ingested (:func:`events_ingested`, called by the ingest routes) are counted in the
process; the review queue, the outbox backlog, cycles, and alerts raised and delivered by kind
are read from the store at scrape
time (:class:`StoreCollector`), so they are right whichever process changed them. A server's
own counters start at zero when it starts, as Prometheus expects of counters.

``/metrics`` takes a key that may read (any role but ``ingest``): the figures are not personal
but they are the business's volumes. Prometheus sends it with ``authorization: {credentials: KEY}``
in the scrape config.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from legato.api.security import Ability, Caller, allow

REQUEST_ID_HEADER = "X-Request-Id"
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"  # the route label of a path no route has: a label per unknown path would grow without bound

# Seconds: most API calls take milliseconds; an ingest batch or a bulk review action up to a few seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

access_log = logging.getLogger("legato.api.access")


class Metrics:
    """The figures of one app, on its own registry."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("legato_http_requests", "HTTP requests answered, by method, route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("legato_http_request_duration_seconds", "Time to answer an HTTP request (a stream: how long it was open)",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ingested = Counter("legato_events_ingested", "Events taken in over HTTP, by source (legato: /v1/events; segment: the tracking spec)",
                                ["source"], registry=self.registry)
        self.registry.register(StoreCollector(engine))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class StoreCollector(Collector):
    """The store's figures, read at each scrape. A store that cannot be read gives ``legato_store_up 0``
    and nothing else, rather than a failed scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return []  # so registering does not read the store

    def collect(self) -> Iterator[Metric]:
        from legato.service.operations import store_figures

        up = GaugeMetricFamily("legato_store_up", "1 when the store answered this scrape")
        try:
            figures = store_figures(self.engine)
        except Exception:  # noqa: BLE001 - a scrape reports the store down; /readyz says why
            logging.getLogger("legato.api").warning("metrics: the store could not be read", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queue = GaugeMetricFamily("legato_review_queue_items", "Review items waiting for a person, by status (open, audit) and reason",
                                  labels=["status", "reason"])
        for (status, reason), count in sorted(figures.review_queue.items()):
            queue.add_metric([status, reason], count)
        yield queue
        backlog = GaugeMetricFamily("legato_outbox_messages", "Outbox messages not yet sent or given up, by status", labels=["status"])
        for status, count in figures.outbox.items():
            backlog.add_metric([status], count)
        yield backlog
        cycles = GaugeMetricFamily("legato_cycles", "Cycles in the store, by status", labels=["status"])
        for status, count in figures.cycles.by_status.items():
            cycles.add_metric([status], count)
        yield cycles
        durations = HistogramMetricFamily("legato_cycle_duration_seconds", "Start to end of every ended cycle, by outcome (finished, failed)",
                                          labels=["outcome"])
        for outcome in ("finished", "failed"):
            seconds = [s for o, s in figures.cycles.durations if o == outcome]
            buckets = [(_bound(b), sum(1 for s in seconds if s <= b)) for b in CYCLE_BUCKETS] + [("+Inf", len(seconds))]
            durations.add_metric([outcome], buckets, sum(seconds))
        yield durations
        raised = GaugeMetricFamily("legato_alerts", "Alerts the monitors raised, by kind (stop_loss, anomaly) and status (open, cleared)",
                                   labels=["kind", "status"])
        for (kind, status), count in sorted(figures.alerts.items()):
            raised.add_metric([kind, status], count)
        yield raised
        sent = GaugeMetricFamily("legato_alert_deliveries", "Alert deliveries per destination, by kind, phase (opened, cleared) and "
                                 "status (pending, sending, sent: delivered, failed: given up)", labels=["kind", "phase", "status"])
        for (kind, phase, status), count in sorted(figures.alert_deliveries.items()):
            sent.add_metric([kind, phase, status], count)
        yield sent
        last = GaugeMetricFamily("legato_cycle_last_finished_timestamp_seconds", "When the last finished cycle ended (Unix time; 0: none yet)")
        last.add_metric([], figures.cycles.last_finished_at.timestamp() if figures.cycles.last_finished_at else 0.0)
        yield last


class WorkerMetrics:
    """`legato worker`'s figures on a registry of its own, served by prometheus-client's own HTTP
    server (:meth:`serve`, ``--metrics-port``): messages sent, retried and dead by channel and
    cycles by outcome, counted in the process (each worker its own series; Prometheus sums
    them), and the store's figures read at each scrape (:class:`StoreCollector`: the outbox
    backlog by status, the review queue, cycles), as ``legato serve``'s /metrics has them.

    Why not counters in the store, read by ``legato serve``: every dispatch batch of every
    worker would update the same few rows, and on PostgreSQL those row locks would serialise
    the workers' result transactions; the backlog, which is the store's, is read from it.
    """

    def __init__(self, engine: Engine) -> None:
        from prometheus_client import Gauge

        self.registry = CollectorRegistry(auto_describe=False)
        self.messages = Counter("legato_worker_messages", "Messages this worker handed to a transport, by channel and result (sent, retry, dead)",
                                ["channel", "result"], registry=self.registry)
        self.cycles = Counter("legato_worker_cycles", "Cycles this worker ran, by outcome (finished, resumed, interrupted, failed)",
                              ["outcome"], registry=self.registry)
        self.last_dispatch = Gauge("legato_worker_last_dispatch_timestamp_seconds", "When this worker last looked for due messages (Unix time)",
                                   registry=self.registry)
        self.registry.register(StoreCollector(engine))

    def count_messages(self, by_channel: dict[tuple[str, str], int]) -> None:
        for (channel, result), n in by_channel.items():
            self.messages.labels(channel, result).inc(n)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve /metrics on ``host:port`` from a thread; returns the server (``shutdown()`` stops it)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


def _bound(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


def events_ingested(request: Request, count: int, *, source: str = "legato") -> None:
    """Count ``count`` events taken in by this request (``source``: ``legato`` or ``segment``)."""
    if count > 0:
        request.app.state.metrics.ingested.labels(source).inc(count)


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _ACCEPTED_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


def route_of(scope: Scope, routes: Iterable[BaseRoute]) -> str:
    """The template of the route that answered, or that would have (an answer given before routing:
    an idempotent replay, a 413 from the body limit)."""
    route = scope.get("route")
    if route is None:
        for candidate in routes:
            if candidate.matches(scope)[0] != Match.NONE:
                route = candidate
                break
    return getattr(route, "path", None) or UNMATCHED


class Observer:
    """ASGI middleware: the request id, the request's log line and its metrics.

    An exception no handler took (a bug) is answered here with the app's own 500 handler, so the
    500 carries ``X-Request-Id`` and is counted like any answer (Starlette would answer it
    outside every middleware).
    """

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app, self.fastapi = app, fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = finished = False

        def finish() -> None:
            # Written before the last body part goes out, so the line is there by the time
            # the client has its answer (a test, or an operator tailing the log, reads it then).
            nonlocal finished
            if finished:
                return
            finished = True
            seconds = time.perf_counter() - started
            route = route_of(scope, self.fastapi.router.routes)
            self.fastapi.state.metrics.observe(scope["method"], route, status, seconds)
            caller = scope["state"].get("caller")
            access_log.log(
                logging.ERROR if status >= 500 else logging.INFO, "request",
                extra={"request_id": request_id, "method": scope["method"], "route": route, "status": status,
                       "duration_ms": round(seconds * 1000, 2), "key": caller.name if isinstance(caller, Caller) else None},
            )

        async def sending(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            if response_started:
                raise
            handler = self.fastapi.exception_handlers.get(Exception)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), error)
            await response(scope, receive, sending)
        finally:
            finish()  # a response that never finished (the client left, a stream ended) is logged here


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the request's fields, the
    record's own ``fields`` (a dict given as ``extra={"fields": {...}}``: `legato worker`'s), the error."""

    FIELDS = ("request_id", "method", "route", "status", "duration_ms", "key")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update({key: value for key, value in extra.items() if key not in line})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (a live display may have replaced it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: int | str = logging.INFO, stream: Any = None) -> logging.Handler:
    """Every record (Legato's, uvicorn's) as a JSON line on ``stream`` (stderr).

    uvicorn's own access log is switched off: it writes the raw path and query string, where
    customer ids and emails can be; ``legato.api.access`` writes the route template instead.
    """
    handler = logging.StreamHandler(stream or _Stderr())
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True
    return handler


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, latency, events ingested, review queue, outbox backlog, cycles",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format (OpenMetrics when asked)"}},
)
def metrics(request: Request, caller: Caller = Depends(allow(Ability.READ))) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(request.app.state.metrics.registry), media_type=content_type)


def install(app: FastAPI) -> None:
    """Metrics for ``app``'s store, the /metrics route, and the middleware (add it last: outermost)."""
    app.state.metrics = Metrics(app.state.context.engine)
    app.include_router(router)
    app.add_middleware(Observer, fastapi=app)
