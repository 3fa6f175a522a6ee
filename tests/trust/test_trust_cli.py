"""`legato review` and `legato agents` as a user types them: names required, --json, exit codes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.agents import agents_app
from legato.cli.review import review_app
from legato.store.schema import agents, audit_log, outbox


def _review_tests() -> Any:
    spec = importlib.util.spec_from_file_location("legato_tests_review_cli_helpers", Path(__file__).with_name("test_review.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


review = _review_tests()
runner = CliRunner()
AT = "2024-03-04T08:30"


def run(app: Any, *args: str) -> Any:
    return runner.invoke(app, list(args))


def queue(engine: Engine, tmp_path: Path) -> Path:
    review.stage0_queue(engine, tmp_path)
    path = tmp_path / "playbook.yaml"
    path.write_text(review.stage0_playbook_text(), encoding="utf-8")
    return path


def test_review_list_show_approve(engine: Engine, database_url: str, tmp_path: Path) -> None:
    playbook = queue(engine, tmp_path)
    listed = run(review_app, "list", "-d", database_url, "--limit", "5", "--json")
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.stdout)["items"]
    assert len(items) == 5 and items[0]["priority"] == 50 and items[0]["status"] == "open"
    item = items[0]["id"]

    shown = run(review_app, "show", str(item), "-d", database_url, "--playbook", str(playbook), "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["content"]["subject"] == "Hi gold" and detail["content_hash"] == items[0]["content_hash"]
    human = run(review_app, "show", str(item), "-d", database_url, "--playbook", str(playbook))
    assert human.exit_code == 0 and f"--hash {detail['content_hash']}" in human.stdout

    missing = run(review_app, "approve", str(item), "-d", database_url)
    assert missing.exit_code == 2 and "--reviewer" in missing.output
    stale = run(review_app, "approve", str(item), "-d", database_url, "--reviewer", "ana", "--hash", "abc", "--at", AT)
    assert stale.exit_code == 4 and "content changed since you looked; review again" in stale.output

    ok = run(review_app, "approve", str(item), "-d", database_url, "--by", "ana", "--hash", detail["content_hash"], "--at", AT, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["status"] == "approved"
    again = run(review_app, "approve", str(item), "-d", database_url, "--reviewer", "bob", "--hash", detail["content_hash"], "--at", AT)
    assert again.exit_code == 4 and "already approved by ana" in again.output
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 1

    unknown = run(review_app, "show", "99999", "-d", database_url)
    assert unknown.exit_code == 3 and "there is no review item 99999" in unknown.output


def test_review_edit_reject_escalate_withdraw(engine: Engine, database_url: str, tmp_path: Path) -> None:
    playbook = queue(engine, tmp_path)
    ids = [i["id"] for i in json.loads(run(review_app, "list", "-d", database_url, "--json").stdout)["items"]]

    blocked = run(review_app, "edit", str(ids[0]), "-d", database_url, "--playbook", str(playbook), "--reviewer", "bob",
                  "--body", "Only 2 left! {{ unsubscribe_url }} 1 Main St", "--at", AT)
    assert blocked.exit_code == 2 and "compliance.false_scarcity" in blocked.output
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ customer.id }}, new arrivals. Unsubscribe: {{ unsubscribe_url }} 1 Main St", encoding="utf-8")
    edited = run(review_app, "edit", str(ids[0]), "-d", database_url, "--playbook", str(playbook), "--reviewer", "bob",
                 "--body-file", str(body), "--at", AT, "--json")
    assert edited.exit_code == 0, edited.output
    assert json.loads(edited.stdout)["edited"] is True
    new_hash = json.loads(edited.stdout)["content_hash"]
    own = run(review_app, "approve", str(ids[0]), "-d", database_url, "--reviewer", "bob", "--no-self-approval", "--hash", new_hash, "--at", AT)
    assert own.exit_code == 5 and "cannot also approve it" in own.output
    # The playbook's review.allow_self_approval (false unless it says otherwise) decides when no flag is given.
    by_playbook = run(review_app, "approve", str(ids[0]), "-d", database_url, "--reviewer", "bob", "--playbook", str(playbook), "--hash", new_hash, "--at", AT)
    assert by_playbook.exit_code == 5 and "cannot also approve it" in by_playbook.output
    by_version = run(review_app, "approve", str(ids[0]), "-d", database_url, "--reviewer", "bob", "--hash", new_hash, "--at", AT)
    assert by_version.exit_code == 5 and "cannot also approve it" in by_version.output  # the decision's playbook says so

    bad = run(review_app, "reject", str(ids[1]), "-d", database_url, "--reviewer", "ana", "--reason", "meh", "--at", AT)
    assert bad.exit_code == 2 and "off_brand" in bad.output
    rejected = run(review_app, "reject", str(ids[1]), "-d", database_url, "--reviewer", "ana", "--reason", "timing", "--at", AT)
    assert rejected.exit_code == 0 and "rejected review item" in rejected.stdout

    escalated = run(review_app, "escalate", str(ids[2]), "-d", database_url, "--reviewer", "ana", "--to-role", "legal",
                    "--note", "claim?", "--at", AT, "--json")
    assert escalated.exit_code == 0 and json.loads(escalated.stdout)["priority"] == 75
    legal = json.loads(run(review_app, "list", "-d", database_url, "--role", "legal", "--json").stdout)["items"]
    assert [i["id"] for i in legal] == [ids[2]]

    hashes = {i["id"]: i["content_hash"] for i in json.loads(run(review_app, "list", "-d", database_url, "--json").stdout)["items"]}
    assert run(review_app, "approve", str(ids[3]), "-d", database_url, "--reviewer", "ana", "--hash", hashes[ids[3]], "--at", AT).exit_code == 0
    withdrawn = run(review_app, "withdraw", str(ids[3]), "-d", database_url, "--reviewer", "ana", "--at", AT)
    assert withdrawn.exit_code == 0, withdrawn.output
    with engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status)).scalars().all() == ["cancelled"]
        actions = c.execute(sa.select(audit_log.c.action).where(audit_log.c.entity == "review_item")).scalars().all()
    assert sorted(actions) == sorted(["review_edited", "review_rejected", "review_escalated", "review_approved", "review_withdrawn"])


def test_review_show_and_approve_need_no_playbook_and_a_changed_file_changes_nothing(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """The message shown and approved is the decision's own (its playbook version is in the store)."""
    playbook = queue(engine, tmp_path)
    item = json.loads(run(review_app, "list", "-d", database_url, "--limit", "1", "--json").stdout)["items"][0]["id"]
    plain = run(review_app, "show", str(item), "-d", database_url, "--json")
    assert plain.exit_code == 0, plain.output
    detail = json.loads(plain.stdout)
    assert detail["content"]["subject"] == "Hi gold" and detail["matches_playbook"] is True
    playbook.write_text(review.stage0_playbook_text().replace('subject: "Hi {{ customer.tier }}"', 'subject: "URGENT {{ customer.tier }}"'), encoding="utf-8")
    flagged = run(review_app, "show", str(item), "-d", database_url, "--playbook", str(playbook))
    assert flagged.exit_code == 0, flagged.output
    assert "subject: Hi gold" in flagged.stdout and "URGENT" not in flagged.stdout
    assert "the playbook file's creative differs" in flagged.stdout
    approved = run(review_app, "approve", str(item), "-d", database_url, "--reviewer", "ana", "--hash", detail["content_hash"], "--at", AT)
    assert approved.exit_code == 0, approved.output


def test_agents_list_show_promote_demote_pause_resume(engine: Engine, database_url: str, tmp_path: Path) -> None:
    queue(engine, tmp_path)
    listed = run(agents_app, "list", "-d", database_url, "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)["agents"][0]["trust_stage"] == 0
    shown = run(agents_app, "show", "mailer", "-d", database_url, "--at", AT, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["promotion"]["qualifies"] is False
    assert run(agents_app, "show", "mailer", "-d", database_url, "--at", AT).exit_code == 0

    refused = run(agents_app, "promote", "mailer", "--to", "1", "--by", "ana", "-d", database_url, "--at", AT)
    assert refused.exit_code == 4 and "does not qualify for stage 1" in refused.output and "--override" in refused.output
    nobody = run(agents_app, "promote", "mailer", "--to", "1", "-d", database_url)
    assert nobody.exit_code == 2
    forced = run(agents_app, "promote", "mailer", "--to", "1", "--by", "ana", "--override", "pilot", "-d", database_url, "--at", AT, "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["override_reason"] == "pilot"
    demoted = run(agents_app, "demote", "mailer", "--to", "0", "--by", "ana", "--reason", "complaints", "-d", database_url, "--at", AT)
    assert demoted.exit_code == 0 and "demoted mailer from stage 1 to 0" in demoted.stdout
    assert run(agents_app, "pause", "mailer", "--by", "ana", "--reason", "freeze", "-d", database_url, "--at", AT).exit_code == 0
    again = run(agents_app, "pause", "mailer", "--by", "ana", "--reason", "freeze", "-d", database_url, "--at", AT)
    assert again.exit_code == 4 and "already paused" in again.output
    resumed = run(agents_app, "resume", "mailer", "--reviewer", "bob", "-d", database_url, "--at", AT, "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["status"] == "active"
    with engine.connect() as c:
        assert c.execute(sa.select(agents.c.trust_stage, agents.c.status)).one() == (0, "active")
        actions = c.execute(sa.select(audit_log.c.action).where(audit_log.c.entity == "agent").order_by(audit_log.c.id)).scalars().all()
    assert actions[-4:] == ["trust_promoted", "trust_demoted", "agent_paused", "agent_resumed"]


def test_a_b2b_renewal_a_high_value_upsell_and_an_angry_reply_wait_in_one_queue(
    engine: Engine, database_url: str, tmp_path: Path, b2b_and_upsell_playbook: str
) -> None:
    """Issue 5's "done when": the three cases reach `legato review list` with their reasons."""
    from legato.cli.app import app
    from legato.clock import FixedClock
    from legato.deliver.dispatch import transports
    from legato.cycle import run_cycle
    from legato.validation import load_playbook

    helpers = review.helpers
    text = b2b_and_upsell_playbook.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    path = tmp_path / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    pb = load_playbook(path)
    run_cycle(engine, pb, FixedClock(helpers.AT), transports(pb, tmp_path))  # stage 3: only escalations reach people

    angry = runner.invoke(app, ["inbound", "receive", str(path), "--customer", "c004", "--text", "This is a disgrace, I want a refund NOW!",
                                "-d", database_url, "--at", AT, "--json"])
    assert angry.exit_code == 0, angry.output
    reply = json.loads(angry.stdout)
    assert reply["action"] == "escalated" and reply["reason"] == "complaint"

    listed = run(review_app, "list", "-d", database_url, "--json")
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.stdout)["items"]
    assert [(i["kind"], i["customer_id"], i["reason"], i["priority"]) for i in items] == [
        ("decision", "c001", "b2b_renewal", 90),
        ("decision", "c002", "high_value_upsell", 80),
        ("conversation", "c004", "complaint", 75),
    ]
    human = run(review_app, "list", "-d", database_url)
    assert human.exit_code == 0 and all(reason in human.stdout for reason in ("b2b_renewal", "high_value_upsell", "complaint"))
    conversations = json.loads(run(review_app, "list", "-d", database_url, "--kind", "conversation", "--json").stdout)["items"]
    assert [i["id"] for i in conversations] == [reply["review_item_id"]]

    item = str(reply["review_item_id"])
    shown = run(review_app, "show", item, "-d", database_url)
    assert shown.exit_code == 0 and "I want a refund NOW!" in shown.stdout and f"legato review resolve {item}" in shown.stdout
    refused = run(review_app, "approve", item, "-d", database_url, "--reviewer", "ana", "--hash", "none", "--at", AT)
    assert refused.exit_code == 2 and "it is a customer's reply, not a proposed message" in refused.output
    done = run(review_app, "resolve", item, "-d", database_url, "--reviewer", "ana", "--note", "refund issued", "--at", AT, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["status"] == "resolved"
    again = run(review_app, "resolve", item, "-d", database_url, "--reviewer", "ana", "--note", "again", "--at", AT)
    assert again.exit_code == 4 and "already resolved by ana" in again.output
    remaining = json.loads(run(review_app, "list", "-d", database_url, "--json").stdout)["items"]
    assert [i["reason"] for i in remaining] == ["b2b_renewal", "high_value_upsell"]
