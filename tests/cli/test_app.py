"""The `legato` command as a user types it: exit codes, messages and --json output."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli.app import app

runner = CliRunner()
EXAMPLE = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")


def write_example(folder: Path, text: str = EXAMPLE) -> Path:
    path = folder / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_example_exits_zero(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write_example(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True


def test_validate_reports_typo_and_bad_expression_with_lines(tmp_path: Path) -> None:
    text = EXAMPLE.replace("    trust_stage: 2\n", "    trust_stag: 2\n", 1).replace(
        'big_spenders: "lifetime_spend >= 500"', 'big_spenders: "lifetime_spend >= 500 and"'
    )
    path = write_example(tmp_path, text)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = text.splitlines()
    typo = next(i for i, line in enumerate(lines, 1) if "trust_stag:" in line)
    segment = next(i for i, line in enumerate(lines, 1) if "big_spenders:" in line)
    assert f"{path}:{typo}:5: agents[0].trust_stag: unknown key 'trust_stag'" in result.output
    assert f"{path}:{segment}:" in result.output and "segments.big_spenders" in result.output
    assert "2 problems" in result.output


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.stdout)
    assert {"brand", "objectives", "agents", "guardrails"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_init_writes_a_valid_project_once(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    assert runner.invoke(app, ["validate", str(target / "playbook.yaml")]).exit_code == 0
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_run_on_empty_database_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(write_example(tmp_path)), "--database", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 4  # Conflict: the store is not in a state to run a cycle
    assert "no customers" in result.output and "legato import customers" in result.output


def test_unreachable_database_is_named(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = runner.invoke(app, ["run", str(write_example(tmp_path)), "--database", url])
    assert result.exit_code == 6  # StoreError: the database cannot be reached
    assert url in result.output


def test_bad_at_time(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(write_example(tmp_path)), "--at", "yesterday"])
    assert result.exit_code == 2 and "'yesterday' is not a date or time" in result.output


def test_demo_then_segment_and_run(tmp_path: Path) -> None:
    """The demo with ``--smtp``: its e-mails go to a real SMTP server on loopback (aiosmtpd),
    which receives each sent message once (one demo run serves both, to keep the suite short)."""
    from tests.smtp_box import Mailbox

    folder = tmp_path / "demo"
    with Mailbox() as box:
        result = runner.invoke(app, ["demo", "--folder", str(folder), "--days", "3", "--json", "--smtp", f"127.0.0.1:{box.port}"])
        received = list(box.received)
    assert result.exit_code == 0, result.output
    assert f"kind: smtp, host: \"127.0.0.1\", port: {box.port}" in (folder / "playbook.yaml").read_text()
    report = json.loads(result.stdout)
    assert [d["day"] for d in report["days"]] == [1, 2, 3]
    agents = {a["agent"]: a for a in report["days"][-1]["agents"]}
    assert agents["welcome_email"]["queued_for_review"] == 300  # stage 0: its daily budget waits for a person
    assert sum(d["sent"]["welcome_email"] for d in report["days"]) == 0  # nothing leaves without approval
    sent = sum(d["sent"]["winback_email"] for d in report["days"])
    assert sent > 0 and agents["winback_email"]["settled"] > 0 and agents["winback_email"]["learned_from"] > 0
    assert agents["winback_email"]["policy_version"] >= 2  # the learned state was saved as a new version
    assert len(received) == sent and len({r.rcpt_tos[0] for r in received}) == sent  # each e-mail once, to its customer
    first = received[0].parsed()
    assert first["From"].addresses[0].addr_spec == "help@hillside.example.com" and first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not (folder / "outbox" / "email.jsonl").exists()
    assert all(d["outcome_events"] > 0 for d in report["days"])
    lift = {item["metric"]: item for item in report["lift"]["winback_email"]}
    assert lift["visit_rate"]["n_control"] > 0 and lift["visit_rate"]["n_treated"] > lift["visit_rate"]["n_control"]
    database = report["database"]
    # The demo ends with the console: the serve line, and an admin key it made for this store.
    from legato.service import keys
    from legato.store.db import connect

    made = report["console"]
    assert made["url"] == "http://127.0.0.1:8000/" and made["serve"].startswith(f"legato serve --database {database} ")
    assert "--at 2024-03-06T20:00" in made["serve"]  # the demo's last day, as its other hints
    found_key = keys.find(connect(database), made["key"])
    assert found_key is not None and found_key.role.value == "admin" and found_key.name == made["key_name"]

    segment = runner.invoke(app, ["segment", str(folder / "playbook.yaml"), "big_spenders", "--database", database, "--at", "2024-03-06", "--json"])
    assert segment.exit_code == 0, segment.output
    sized = json.loads(segment.stdout)
    assert sized["total"] == 64_000 and 0 < sized["size"] < 64_000

    more = runner.invoke(app, ["run", str(folder / "playbook.yaml"), "--database", database, "--at", "2024-03-11T08:00", "--json"])
    assert more.exit_code == 0, more.output
    assert {a["agent"] for a in json.loads(more.stdout)["agents"]} == {"winback_email", "welcome_email"}


@pytest.mark.slow
def test_installed_entry_point_runs() -> None:
    legato = Path(sys.executable).with_name("legato")
    result = subprocess.run([str(legato), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "demo" in result.stdout


def test_a_cycle_before_the_last_one_is_refused(engine: object, database_url: str, tmp_path: Path) -> None:
    from tests.world import PLAYBOOK, load_customers

    load_customers(engine)  # type: ignore[arg-type]
    path = write_example(tmp_path, PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}"))
    first = runner.invoke(app, ["run", str(path), "--database", database_url, "--at", "2024-03-10T08:00", "--json"])
    assert first.exit_code == 0, first.output
    back = runner.invoke(app, ["run", str(path), "--database", database_url, "--at", "2024-03-05T08:00"])
    assert back.exit_code == 4  # Conflict
    assert "the last cycle ran at 2024-03-10 08:00 UTC, after 2024-03-05 08:00 UTC" in back.output and "legato simulate" in back.output
