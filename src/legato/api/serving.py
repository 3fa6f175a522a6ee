"""uvicorn's server for Legato's app: it tells the app when it begins to shut down.

uvicorn waits for every open response before it stops, and an event stream never ends by
itself; so the server sets the app's ``closing`` event first, every stream ends within a
tick, and a Ctrl-C or SIGTERM stops the server at once rather than after its last client.

``legato serve --workers N`` runs N such servers, each its own process on the one listening
socket (:func:`run_workers`, uvicorn's supervisor): requests are answered by both cores instead
of queueing behind one process's interpreter lock. Each worker builds its app from the settings
the parent put in the environment (:func:`worker_app`).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.supervisors import multiprocess

from legato.api.settings import ApiSettings, UnknownCustomers

if TYPE_CHECKING:
    from fastapi import FastAPI

SETTINGS_VARIABLE = "LEGATO_SERVE_SETTINGS"
_built: list[FastAPI] = []  # the app this worker process built (one)
# How long the supervisor waits for a worker's answer before it takes it for hung and replaces it:
# a worker answers once its modules are imported, which takes seconds on a busy machine.
HEALTHCHECK_SECONDS = 60


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI | None = None) -> None:
        super().__init__(config)
        self.legato_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from legato.api.routes.stream import closing

        app = self.legato_app or (_built[0] if _built else None)
        if app is not None:
            closing(app).set()
        await super().shutdown(sockets)


def worker_app() -> FastAPI:
    """The app of one worker of ``legato serve --workers``: the parent's settings, read from the
    environment (the clock is the system's, as ``legato serve`` has it)."""
    from legato.api.app import create_app
    from legato.api.observe import configure_logging

    given = json.loads(os.environ[SETTINGS_VARIABLE])
    settings = ApiSettings(
        database_url=given["database_url"], playbook=Path(given["playbook"]) if given["playbook"] else None,
        rate_limit=given["rate_limit"], burst=given["burst"], body_limit=given["body_limit"],
        link_rate_limit=given["link_rate_limit"], link_burst=given["link_burst"],
        unknown_customers=UnknownCustomers(given["unknown_customers"]), workers=given["workers"],
    )
    app = create_app(settings)
    configure_logging()
    _built[:] = [app]
    return app


def run_workers(settings: ApiSettings, host: str, port: int) -> None:
    """Serve with ``settings.workers`` processes on one socket until a signal stops them all."""
    given = {k: v for k, v in asdict(settings).items() if k != "clock"}
    given["playbook"] = str(settings.playbook.resolve()) if settings.playbook is not None else None
    os.environ[SETTINGS_VARIABLE] = json.dumps(given, default=str)
    config = uvicorn.Config("legato.api.serving:worker_app", factory=True, host=host, port=port, workers=settings.workers,
                            log_config=None, access_log=False, timeout_worker_healthcheck=HEALTHCHECK_SECONDS)
    # Each worker runs this module's Server (streams end at shutdown), not uvicorn's own.
    multiprocess.Process = _Worker  # type: ignore[misc]
    bound = config.bind_socket()
    # Named TCP explicitly: the socket crosses into each worker, and asyncio sets TCP_NODELAY only
    # on connections of a socket whose protocol says TCP. Without it a keep-alive client waited
    # for its delayed ACK on every answer (Nagle): 44 ms a request instead of 1.
    listening = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    listening.set_inheritable(True)
    multiprocess.Multiprocess(config, sockets=[listening]).run()


class _Worker(multiprocess.Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(self.config)
        return self._server
