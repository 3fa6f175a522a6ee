"""`legato validate` puts every creative through the one check of a message; `legato check
message --creative` shows the same check for one creative."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from legato.cli.app import app

runner = CliRunner()

PLAYBOOK = """brand:
  name: Valid Co
  legal: {sender_name: Valid Co, postal_address: "5 Check Road", support_contact: "help@valid.example", unsubscribe_url: "https://valid.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: console}
creatives:
  - {id: fine, channel: email, subject: "Spring", body: "New in. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
  - {id: receipt, channel: email, purpose: PURPOSE, subject: "Your order", body: "Thanks for your order; it ships tomorrow."}
  - {id: bold, channel: email, subject: "Spring", body: "Guaranteed results. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - {id: a, objective: grow, audience: "true", actions: {creatives: [fine, receipt, bold]}, policy: {name: uniform_random}}
"""


def write(tmp_path: Path, purpose: str) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(PLAYBOOK.replace("PURPOSE", purpose), encoding="utf-8")
    return path


def test_a_creative_the_guardrails_block_makes_the_playbook_invalid_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "marketing")
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert any(line.startswith(f"{path}:12:") and "compliance.unsubscribe_missing" in line for line in report["problems"])
    assert not any("creatives[0]" in line or "creatives[2]" in line for line in report["problems"])


def test_a_transactional_receipt_passes_and_an_unproven_claim_is_a_note(tmp_path: Path) -> None:
    path = write(tmp_path, "transactional")
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert [n for n in report["notes"] if "unsubstantiated_claim" in n and f"{path}:13:" in n]


def test_check_message_takes_text_channel_and_purpose_from_the_creative(tmp_path: Path) -> None:
    path = write(tmp_path, "transactional")
    ok = runner.invoke(app, ["check", "message", "--playbook", str(path), "--creative", "receipt", "--json"])
    assert (ok.exit_code, json.loads(ok.stdout)["verdict"]) == (0, "ok")
    typed = runner.invoke(app, ["check", "message", "--playbook", str(path), "--channel", "email", "--json",
                                "--text", "Subject: Your order\n\nThanks for your order; it ships tomorrow."])
    assert typed.exit_code == 1  # typed text is marketing unless said otherwise...
    said = runner.invoke(app, ["check", "message", "--playbook", str(path), "--channel", "email", "--purpose", "transactional", "--json",
                               "--text", "Subject: Your order\n\nThanks for your order; it ships tomorrow."])
    assert said.exit_code == 0  # ...and judged as the creative is once it is
    both = runner.invoke(app, ["check", "message", "--playbook", str(path), "--creative", "receipt", "--channel", "sms"])
    assert both.exit_code == 2 and "from the playbook" in both.output
