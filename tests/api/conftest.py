"""A real server for every API test: uvicorn on loopback, one per test and backend, and keys of each role.

``served`` starts the app on a free port of 127.0.0.1 over the ``engine`` fixture's store
(SQLite and PostgreSQL), with the shared world's playbook and a clock fixed at its ``AT``
(``served.clock.set`` moves it), and makes one key per role. Tests talk to it with httpx
through ``served.client(role)``: real HTTP, real sockets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from legato.api import ApiSettings, create_app
from legato.clock import FixedClock
from legato.service import keys
from legato.store.status import KeyRole
from tests.world import AT, PLAYBOOK


@dataclass
class Served:
    url: str
    engine: Engine
    clock: FixedClock
    playbook: Path
    keys: dict[str, str] = field(default_factory=dict)  # role -> key

    def client(self, role: str | None = "admin", **options: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)  # type: ignore[arg-type]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


def playbook_text(stage: int = 2) -> str:
    return PLAYBOOK.replace("STAGE", str(stage)).replace("HOLDOUT", "0.0").replace("BUDGET", "{}")


def serve(engine: Engine, settings: ApiSettings) -> Iterator[str]:
    """Run the app for ``engine`` on a free loopback port until the generator is closed; yields its URL."""
    app = create_app(settings, engine=engine)
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(engine: Engine, tmp_path: Path) -> Iterator[Served]:
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text(), encoding="utf-8")
    clock = FixedClock(AT)
    settings = ApiSettings(playbook=playbook, clock=clock, rate_limit=0)
    made = {role.value: keys.create(engine, f"{role.value}-key", role, by="test", now=AT)[1] for role in KeyRole}
    for url in serve(engine, settings):
        yield Served(url, engine, clock, playbook, made)
