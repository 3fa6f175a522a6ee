"""`legato keys` and `legato serve` as a user runs them: real processes, a real port, a key
made by one command and accepted by the server the other started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.conftest import playbook_text


LEGATO = [sys.executable, "-c", "from legato.cli.app import main; main()"]


def _legato(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGATO, *args, "--database", database], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_keys_create_list_revoke(database_url: str) -> None:
    made = _legato("keys", "create", "--name", "shop", "--role", "ingest", "--json", database=database_url)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["name"] == "shop" and key["role"] == "ingest" and key["key"].startswith("lg_")
    listed = _legato("keys", "list", "--json", database=database_url)
    assert [k["name"] for k in json.loads(listed.stdout)["keys"]] == ["shop"]
    assert key["key"] not in listed.stdout  # never shown again
    again = _legato("keys", "create", "--name", "shop", "--role", "viewer", database=database_url)
    assert again.returncode == 4 and "revoke it first" in again.stderr
    assert _legato("keys", "revoke", "shop", database=database_url).returncode == 0
    assert json.loads(_legato("keys", "list", "--json", database=database_url).stdout)["keys"] == []
    gone = _legato("keys", "revoke", "shop", database=database_url)
    assert gone.returncode == 3 and "no live key" in gone.stderr


def test_serve_answers_with_a_key_the_cli_made(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'legato.db'}"
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text(), encoding="utf-8")
    key = json.loads(_legato("keys", "create", "--name", "ana", "--role", "viewer", "--json", database=database).stdout)["key"]
    port = _free_port()
    server = subprocess.Popen(
        [*LEGATO, "serve", "--port", str(port), "--database", database, "--playbook", str(playbook)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(timeout=30, url=f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "legato serve did not become ready"
            time.sleep(0.1)
        assert httpx.get(timeout=30, url=f"{url}/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(timeout=30, url=f"{url}/v1/agents").status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=20)
    assert key not in stderr  # the key is never logged


def test_serve_refuses_a_broken_playbook_with_its_line(tmp_path: Path) -> None:
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text().replace("objectives:", "objectivs:"), encoding="utf-8")
    result = _legato("serve", "--port", str(_free_port()), "--playbook", str(playbook), database=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert "playbook.yaml:" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_workers_answers_from_several_processes_and_stops_them_all(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'legato.db'}"
    key = json.loads(_legato("keys", "create", "--name", "shop", "--role", "ingest", "--json", database=database).stdout)["key"]
    port = _free_port()
    server = subprocess.Popen(
        [*LEGATO, "serve", "--port", str(port), "--database", database, "--workers", "2", "--rate-limit", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # two processes import and open the store
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "legato serve --workers 2 did not become ready"
            time.sleep(0.2)
        answers = []
        for n in range(8):  # a connection each: the processes share the port
            batch = [{"id": f"e{n}-{i}", "customer_id": f"c{i}", "type": "visit", "occurred_at": "2024-03-01T09:00:00Z"} for i in range(10)]
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
                answers.append(client.post("/v1/events/batch", json={"batch": batch}))
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        assert sum(a.json()["inserted"] for a in answers) == 80
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    started = {line for line in stderr.splitlines() if "Started server process" in line}
    finished = {line for line in stderr.splitlines() if "Finished server process" in line}
    assert len(started) == 2 and len(finished) == 2, stderr  # both workers served and both stopped
    assert key not in stderr
