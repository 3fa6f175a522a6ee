"""The console's browser tests: one demo-like store, one real ``legato serve``, one Chromium.

Session-scoped (all of it is built once per test process; the console's tests run in one xdist
group, so once per suite):

- ``console_store``: a SQLite store filled by ``legato.demo``'s own pieces (the first
  :data:`CUSTOMERS` Hillstrom customers, :data:`DAYS` simulated days of the example playbook),
  and one key per role made through :mod:`legato.service.keys`;
- ``console_server``: ``legato serve`` started as a real process on a free loopback port over
  that store (started while the days are simulated, ready before any test), with ``--at`` the demo's last day (as ``legato demo`` tells a user to start it) and
  a known ``LEGATO_CONSOLE_SECRET`` (a test forges an expired session with it); stopped in
  teardown with deadlines;
- ``browser``: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright's sync API. A
  missing Chromium FAILS every browser test, it does not skip them: ``.ci/run`` installs it.

Per test: ``signed_in_page(role)`` (a factory) opens a fresh browser context (no cookies), signs
in through the sign-in form with that role's key and returns the page; ``shot(page, name)`` saves
a screenshot into ``$LEGATO_TEST_ARTIFACTS`` or ``test-artifacts/console/``. ``api(role)`` is an
httpx client with that role's Bearer key, for checking the page against the API.
"""

from __future__ import annotations

import os

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CUSTOMERS = 1500  # Hillstrom rows: enough for every part of the pages to have something, small enough to build in seconds
DAYS = 4  # the example's attribution window is 2 days: decisions of the first days settle, so lift can be measured
ROLES = ("viewer", "marketer", "reviewer", "admin")
SECRET = "console-tests-secret-not-for-production"
ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = 90.0  # seconds for legato serve to answer /readyz (imports on a busy 2-core machine)
STOP_DEADLINE = 20.0
ACTION_MS = 15_000  # Playwright's wait for any one action or navigation


@dataclass
class ConsoleStore:
    folder: Path
    url: str
    playbook: Path
    at: datetime  # the server's clock starts here: the demo's last day, 20:00 UTC (what legato demo prints)
    keys: dict[str, str] = field(default_factory=dict)  # role -> secret

    def engine(self) -> Any:
        from legato.store.db import connect

        return connect(self.url)


@dataclass
class ConsoleServer:
    url: str
    store: ConsoleStore
    process: subprocess.Popen[str]

    def api(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.store.keys[role]}"}, timeout=60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(store: ConsoleStore) -> tuple[subprocess.Popen[str], str, Any]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path]), "LEGATO_CONSOLE_SECRET": SECRET}
    log = (store.folder / "serve.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-c", "from legato.cli.app import main; main()", "serve", "--port", str(port),
         "--database", store.url, "--playbook", str(store.playbook), "--at", f"{store.at:%Y-%m-%dT%H:%M}", "--rate-limit", "0"],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=store.folder,
    )
    return process, f"http://127.0.0.1:{port}", log


def _ready(process: subprocess.Popen[str], url: str, store: ConsoleStore) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"legato serve exited with {process.returncode}: {(store.folder / 'serve.log').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"legato serve did not answer /readyz within {START_DEADLINE:g} s")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)


@pytest.fixture(scope="session")
def _console_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """The store and its server: ``legato serve`` is started as soon as the store's schema and
    customers are in, so its start (imports, on a busy machine many seconds) overlaps the
    simulated days; it reads nothing of them until the tests ask."""
    from legato.demo import ARMS, START, prepare_world
    from legato.learn.simulation import simulate
    from legato.service import keys
    from legato.validation import load_playbook

    folder = tmp_path_factory.mktemp("console-store")
    playbook_path = folder / "playbook.yaml"
    playbook_path.write_text(files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    playbook = load_playbook(playbook_path)
    engine, world, sinks, _ = prepare_world(folder, playbook, playbook_path, customers=CUSTOMERS)
    at = START + timedelta(days=DAYS - 1, hours=12)
    store = ConsoleStore(folder, engine.url.render_as_string(hide_password=False), playbook_path, at)
    process, url, log = _serve(store)
    try:
        try:
            simulate(engine, playbook, world, ARMS, START, DAYS, sinks)
            for role in ROLES:
                _, secret = keys.create(engine, f"{role}-ana", role, by="tests", now=at)
                store.keys[role] = secret
        finally:
            engine.dispose()
        _ready(process, url, store)
        yield ConsoleServer(url, store, process)
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="session")
def console_store(_console_world: ConsoleServer) -> ConsoleStore:
    return _console_world.store


@pytest.fixture(scope="session")
def console_server(_console_world: ConsoleServer) -> ConsoleServer:
    return _console_world


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the console's browser tests need Debian's Chromium "
                    "(apt-get install -y chromium; .ci/run installs it). They fail rather than skip.", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


def artifacts() -> Path:
    folder = Path(os.environ.get("LEGATO_TEST_ARTIFACTS") or ROOT / "test-artifacts" / "console")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    def save(page: Any, name: str) -> Path:
        path = artifacts() / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
def new_page(browser: Any, console_server: ConsoleServer) -> Iterator[Callable[..., Any]]:
    """A factory of pages in fresh browser contexts (no cookies), all closed after the test."""
    contexts: list[Any] = []

    def make(*, width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(base_url=console_server.url, viewport={"width": width, "height": height})
        context.set_default_timeout(ACTION_MS)
        contexts.append(context)
        return context.new_page()

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def sign_in(page: Any, key: str) -> None:
    page.goto("/sign-in")
    page.fill("#key", key)
    page.click("button[type=submit]")


@pytest.fixture
def signed_in_page(new_page: Callable[..., Any], console_server: ConsoleServer) -> Callable[..., Any]:
    """``signed_in_page("viewer")``: a page signed in through the form with that role's key, on the overview."""

    def make(role: str, **viewport: int) -> Any:
        page = new_page(**viewport)
        sign_in(page, console_server.store.keys[role])
        page.wait_for_url(f"{console_server.url}/")
        return page

    return make


@pytest.fixture
def api(console_server: ConsoleServer) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(role: str = "admin") -> httpx.Client:
        client = console_server.api(role)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One store, one server and one browser for every console test: they all run on one xdist worker.
    for item in items:
        if "tests/console/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.xdist_group("console"))



