"""`legato serve`: the HTTP API on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from legato.api.settings import UnknownCustomers
from legato.cli.options import DatabaseOption


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database: DatabaseOption = None,
    playbook: Annotated[Path | None, typer.Option("--playbook", help="The playbook cycles, checks and reviews use until one is uploaded (POST /v1/playbooks); without it, the newest playbook uploaded to the store.")] = None,
    rate_limit: Annotated[float, typer.Option(help="Requests a second per key (0: no limit).")] = 100.0,
    burst: Annotated[int, typer.Option(help="Requests a key may send at once before the rate limit applies.")] = 200,
    link_rate_limit: Annotated[float, typer.Option(help="Requests a second per client address to the links messages carry (/v1/unsubscribe, /v1/open, /v1/click; 0: no limit). A one-click unsubscribe with a valid token is always taken.")] = 20.0,
    link_burst: Annotated[int, typer.Option(help="Requests a client address may send to those links at once before their limit applies.")] = 100,
    unknown_customers: Annotated[UnknownCustomers, typer.Option(help="Events for a customer the store does not know: create the customer, or reject the event.")] = UnknownCustomers.CREATE,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes on the one port (e.g. one per core): requests no longer queue behind one process. The rate limit and /metrics' request counters are each process's own.")] = 1,
    at: Annotated[str | None, typer.Option("--at", help="Start the server's clock at this time (ISO-8601, UTC unless an offset is given); it runs on from there. For a store whose cycles ran on a simulated clock, such as legato demo's.")] = None,
) -> None:
    """Serve the HTTP API: ingest (Legato's and Segment's), agents, decisions, the review queue,
    reports, cycles, /metrics. OpenAPI at /openapi.json, docs at /docs.

    Example: `legato keys create --name shop --role ingest` then `legato serve --playbook playbook.yaml`
    """
    import uvicorn

    from legato.api import ApiSettings, create_app
    from legato.api.observe import configure_logging
    from legato.api.serving import Server, run_workers
    from legato.store.db import connect
    from legato.validation import load_playbook

    if playbook is not None:
        load_playbook(playbook)  # a broken playbook is reported now, with its lines, not at the first request
    from legato.clock import ShiftedClock, SystemClock, parse_instant
    from legato.errors import Invalid

    if at is not None and workers > 1:
        raise Invalid("--at runs one server process", hint="leave out --workers, or --at")
    clock = ShiftedClock(parse_instant(at)) if at is not None else SystemClock()
    settings = ApiSettings(database_url=database, playbook=playbook, rate_limit=rate_limit, burst=burst,
                           link_rate_limit=link_rate_limit, link_burst=link_burst,
                           unknown_customers=unknown_customers, workers=workers, clock=clock)
    if workers > 1:
        import os
        import secrets

        from legato.console.auth import SECRET_VARIABLE

        # Every worker signs console sessions with one secret, or a session would hold in one process only.
        os.environ.setdefault(SECRET_VARIABLE, secrets.token_urlsafe(32))
        connect(database).dispose()  # a wrong URL is reported once, and the schema migrated before the workers open it
        configure_logging()
        run_workers(settings, host, port)
        return
    app = create_app(settings)
    configure_logging()  # JSON lines on stderr: one per request (legato.api.access), uvicorn's own too
    Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False), app).run()
