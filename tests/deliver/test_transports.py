"""Transports carry rendered messages out; the file transport writes each message id once."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from legato.deliver.channels import ConsoleTransport, FileTransport
from legato.deliver.dispatch import transports
from legato.validation import parse_playbook


def message(i: int) -> dict[str, object]:
    return {"message_id": i, "channel": "email", "to": f"c{i}@people.example", "subject": "Hi", "body": f"Body {i}"}


def test_the_file_transport_appends_json_lines_and_skips_ids_it_already_holds(tmp_path: Path) -> None:
    path = tmp_path / "out" / "email.jsonl"
    FileTransport(path).send([message(1), message(2)])
    again = FileTransport(path)  # a new process after a crash between writing and recording
    again.send([message(2), message(3)])
    again.send([message(3)])
    assert [json.loads(line)["message_id"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_the_console_transport_prints_each_message(tmp_path: Path) -> None:
    out = io.StringIO()
    ConsoleTransport(Console(file=out, width=200)).send([message(1)])
    printed = out.getvalue()
    assert "c1@people.example" in printed and "Body 1" in printed


def test_each_declared_channel_gets_its_transport_relative_to_the_playbook(tmp_path: Path) -> None:
    pb = parse_playbook("""
brand:
  name: T
  legal: {sender_name: T, postal_address: "1 A St", support_contact: "help@t.example", unsubscribe_url: "https://t.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
  sms: {kind: console}
creatives:
  - {id: n, channel: sms, body: "T: hi. Reply STOP to opt out."}
agents:
  - {id: a, objective: grow, audience: "true", actions: {creatives: [n], send_windows: ["09:00-17:00"]}, policy: {name: uniform_random}}
""")
    made = transports(pb, tmp_path)
    assert isinstance(made["email"], FileTransport) and made["email"].path == tmp_path / "out/email.jsonl"
    assert isinstance(made["sms"], ConsoleTransport)
