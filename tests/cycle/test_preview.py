"""`legato preview`: the cycle's own answer, and nothing written (issue 11, "A preview").

The preview runs the cycle's steps in one transaction that is rolled back
(legato.cycle.preview), so these tests check the two things that design must guarantee: a
preview and then the real cycle at the same time give the same counts by route and reason,
and the preview leaves every table (and the outbox file) as it found it.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.cycle.preview import PreviewCommitted, rolled_back
from legato.deliver.dispatch import dispatch_due, transports
from legato.errors import NotFound
from legato.playbook.models import Playbook
from legato.service.preview import ROUTES, preview
from legato.store.ingest import import_customers
from legato.store.schema import customers, decisions, metadata, review_items
from legato.validation import parse_playbook

from tests.world import AT, PLAYBOOK, TWO_CHANNELS, load_customers

runner = CliRunner()


def world_playbook(stage: int = 2) -> Playbook:
    """The shared e-mail world with every route a cycle takes: a holdout, a global control
    group, a learning policy that may do nothing (settled after one day), a daily budget,
    consent the customers lack or revoked, and a cap of one e-mail per three days."""
    text = PLAYBOOK.replace("STAGE", str(stage)).replace("HOLDOUT", "0.2").replace("BUDGET", "{daily_sends: 8}")
    text = text.replace("    policy: {name: uniform_random}", "    policy: {name: beta_thompson}")
    text = text.replace("kpis: [{metric: visit_rate, target: 0.1}]}", "kpis: [{metric: conversion_rate, target: 0.1}], attribution_days: 1}")
    text = text.replace("do_nothing: false", "do_nothing: true").replace("agents:\n", "global_control: 0.1\nagents:\n", 1)
    return parse_playbook(text)


def written(engine: Engine, cycle_id: int, agent: str) -> dict[str, Any]:
    """What the cycle wrote for one agent, counted from the store: decisions by route, the
    suppression reasons on them, and the reasons of the review items queued."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(decisions.c.route, decisions.c.findings).where(decisions.c.cycle_id == cycle_id, decisions.c.agent_id == agent)
        ).all()
        queued = connection.execute(
            sa.select(review_items.c.reason)
            .join(decisions, decisions.c.id == review_items.c.decision_id)
            .where(decisions.c.cycle_id == cycle_id, decisions.c.agent_id == agent, decisions.c.route == "queued")
        ).scalars().all()
    routes = Counter(str(r.route) for r in rows)
    suppressed = Counter(r.findings[0] for r in rows if r.route == "suppressed")
    return {"routes": {str(route): routes.get(str(route), 0) for route in ROUTES}, "suppressed": dict(suppressed), "queued_for": dict(Counter(queued))}


def shown(result: Any, agent: str) -> dict[str, Any]:
    part = next(a for a in result.to_dict()["agents"] if a["agent"] == agent)
    return {key: part[key] for key in ("routes", "suppressed", "queued_for", "delayed_by")}


def same_as_the_cycle(engine: Engine, pb: Playbook, at: Any, folder: Path, agent: str | None = None) -> dict[str, Any]:
    """Preview at ``at``, then run the cycle at ``at``: the preview's counts must be the cycle's."""
    seen = preview(engine, pb, at, agent=agent)
    report = run_cycle(engine, pb, FixedClock(at), transports(pb, folder))
    for each in [agent] if agent else [a.id for a in pb.agents]:
        ran = report.agents[each]
        expected = written(engine, report.cycle_id, each) | {"delayed_by": dict(sorted(ran.delayed_by.items()))}
        assert shown(seen, each) == expected
        assert dict(ran.routes) == {k: v for k, v in expected["routes"].items() if v}
    return shown(seen, agent or pb.agents[0].id)


def test_a_preview_then_the_cycle_at_the_same_time_give_the_same_counts(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=80)
    pb = world_playbook()
    first = same_as_the_cycle(engine, pb, AT, tmp_path)
    routes = first["routes"]
    assert routes["holdout"] and routes["control"] and routes["suppressed"] and routes["scheduled"]
    assert {"budget:daily_sends", "consent_revoked:email", "no_consent:email"} <= set(first["suppressed"])
    # The messages go out; two days later their outcomes are settled (the policy learns
    # before it decides) and the cap of one e-mail per three days holds everyone just sent.
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
    later = AT + timedelta(days=2)
    second = same_as_the_cycle(engine, pb, later, tmp_path)
    assert any(reason.startswith("frequency_cap:") for reason in second["suppressed"])


def test_a_preview_of_stage_one_counts_what_waits_for_review(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=80)
    pb = world_playbook(stage=1)
    first = same_as_the_cycle(engine, pb, AT, tmp_path)
    assert first["routes"]["queued"] and first["queued_for"] == {"not_approved_before": first["routes"]["queued"]}
    # The next day the messages waiting for review count toward the cap, in both.
    second = same_as_the_cycle(engine, pb, AT + timedelta(days=1), tmp_path)
    assert any(reason.startswith("frequency_cap:") for reason in second["suppressed"])


def test_a_preview_of_one_agent_counts_the_agents_before_it(engine: Engine, tmp_path: Path) -> None:
    ids = [f"c{i:03d}" for i in range(20)]
    table = pa.table(
        {
            "id": ids,
            "email": [f"{c}@test.example" for c in ids],
            "phone": [f"+1212555{i:04d}" for i in range(20)],
            "time_zone": ["UTC"] * 20,
            "consent_email_marketing": ["express"] * 20,
            # half can be texted: the texter runs first and takes their one message a day
            "consent_sms_marketing": ["express" if i % 2 else "" for i in range(20)],
        }
    )
    import_customers(engine, table, clock=FixedClock(AT))
    text = TWO_CHANNELS.replace("  quiet_hours: []\n", "  quiet_hours: []\n  frequency_caps:\n    - {channel: any, max: 1, days: 1, on_block: drop}\n")
    pb = parse_playbook(text)
    # texter runs first and takes the one message a day everyone may get: mailer's preview says so.
    mailer = same_as_the_cycle(engine, pb, AT, tmp_path, agent="mailer")
    assert mailer["routes"]["scheduled"] == 10 and mailer["suppressed"] == {"frequency_cap:any channel 1 per day": 10}


def snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table, as text, in order."""
    with engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(sa.select(table)).all())
            for table in metadata.sorted_tables
        }


def test_a_preview_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=80)
    pb = world_playbook(stage=1)
    outbox_file = tmp_path / "out" / "email.jsonl"
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    stage_two = world_playbook(stage=2)
    run_cycle(engine, stage_two, FixedClock(AT + timedelta(days=1)), transports(stage_two, tmp_path))
    dispatch_due(engine, stage_two, FixedClock(AT + timedelta(days=1, hours=2)), transports(stage_two, tmp_path))
    assert outbox_file.exists()
    before, file_before = snapshot(engine), outbox_file.read_bytes()
    # Two days on, a cycle would settle and learn (a policy version), reserve budget, expire
    # overdue review items, write decisions, messages, review items and audit rows.
    result = preview(engine, stage_two, AT + timedelta(days=3), sample_count=5)
    part = result.to_dict()["agents"][0]
    assert part["would_settle"] > 0 and part["routes"]["scheduled"] > 0 and part["samples"]
    assert snapshot(engine) == before
    assert {name: len(rows) for name, rows in snapshot(engine).items()} == {name: len(rows) for name, rows in before.items()}
    assert outbox_file.read_bytes() == file_before


def test_a_preview_on_a_new_store_leaves_no_outbox_file(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    pb = world_playbook()
    before = snapshot(engine)
    preview(engine, pb, AT)
    assert snapshot(engine) == before
    assert not (tmp_path / "out").exists()


def test_the_preview_transaction_refuses_to_commit(engine: Engine) -> None:
    load_customers(engine, n=4)
    with pytest.raises(PreviewCommitted):
        with rolled_back(engine) as joined:
            with joined.connect() as connection:
                connection.execute(sa.delete(customers))
                connection.commit()
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one() == 4


def test_samples_are_rendered_and_checked_with_no_more_than_a_reviewer_sees(engine: Engine) -> None:
    load_customers(engine, n=40)
    result = preview(engine, world_playbook(stage=1), AT, sample_count=2)
    samples = result.to_dict()["agents"][0]["samples"]
    assert len(samples) == 2
    for sample in samples:
        assert sample["route"] == "queued" and sample["review_reason"] == "not_approved_before"
        assert sample["content"]["subject"] == "Hi gold" and sample["verdict"] == "ok"
        assert "t=preview" in sample["content"]["body"]  # the preview's unsubscribe token, as in review show
        assert "@" not in json.dumps(sample)  # no address: a reviewer sees the message, not the contact point


def test_an_unknown_agent_is_a_clear_error(engine: Engine) -> None:
    load_customers(engine, n=4)
    with pytest.raises(NotFound, match="no agent 'maler'") as raised:
        preview(engine, world_playbook(), AT, agent="maler")
    assert raised.value.hint == "its agents are: mailer"


# --- the command -------------------------------------------------------------------------


def write_world(folder: Path, database_url: str) -> Path:
    from legato.store.db import connect

    engine = connect(database_url)
    load_customers(engine, n=40)
    engine.dispose()
    path = folder / "playbook.yaml"
    body = PLAYBOOK.replace("STAGE", "1").replace("HOLDOUT", "0.2").replace("BUDGET", "{}")
    path.write_text(body, encoding="utf-8")
    return path


def test_preview_json_shape(database_url: str, tmp_path: Path) -> None:
    path = write_world(tmp_path, database_url)
    result = runner.invoke(app, ["preview", str(path), "--at", AT.isoformat(), "--database", database_url, "--json", "--samples", "1"])
    assert result.exit_code == 0, result.output
    shape = json.loads(result.stdout)
    assert set(shape) == {"preview", "at", "written", "agents"} and shape["preview"] is True and shape["written"] == "nothing"
    (agent,) = shape["agents"]
    assert set(agent) == {
        "agent", "runs", "why_not", "trust_stage", "audience", "routes", "suppressed", "queued_for", "delayed",
        "delayed_by", "would_settle", "stop_loss_breaches", "samples",
    }
    assert list(agent["routes"]) == ["scheduled", "queued", "suppressed", "holdout", "control", "gated", "nothing"]
    assert agent["agent"] == "mailer" and agent["runs"] is True and agent["trust_stage"] == 1
    assert sum(agent["routes"].values()) == agent["audience"] == 30
    assert agent["queued_for"] == {"not_approved_before": agent["routes"]["queued"]}
    (sample,) = agent["samples"]
    assert set(sample) == {
        "customer_id", "route", "review_reason", "channel", "creative", "offer", "send_at", "content", "verdict", "findings", "render_error",
    }
    assert not (tmp_path / "out").exists()


def test_preview_prints_routes_reasons_and_messages(database_url: str, tmp_path: Path) -> None:
    path = write_world(tmp_path, database_url)
    result = runner.invoke(app, ["preview", str(path), "--at", AT.isoformat(), "--database", database_url], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "nothing was written or sent" in out and "mailer (trust stage 1)" in out
    for word in ("scheduled", "queued", "suppressed", "holdout", "control", "gated", "nothing", "consent_revoked:email", "not_approved_before"):
        assert word in out
    assert "subject: Hi gold" in out and all(len(line) <= 80 for line in out.splitlines())


def test_preview_of_an_unknown_agent_exits_3(database_url: str, tmp_path: Path) -> None:
    path = write_world(tmp_path, database_url)
    result = runner.invoke(app, ["preview", str(path), "--agent", "maler", "--at", AT.isoformat(), "--database", database_url])
    assert result.exit_code == 3
    assert "the playbook has no agent 'maler'" in result.output and "its agents are: mailer" in result.output


# --- what a run would refuse, and what a preview must not touch ---------------------------


def test_an_opt_out_waiting_in_the_pending_file_counts_and_the_file_is_left_alone(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from legato.trust import pending_optouts
    from legato.trust.pending_optouts import PendingOptOut

    load_customers(engine, n=40)
    path = tmp_path / "pending-optouts.jsonl"
    monkeypatch.setenv(pending_optouts.PATH_VARIABLE, str(path))
    pb = world_playbook()
    revoked = shown(preview(engine, pb, AT), "mailer")["suppressed"]["consent_revoked:email"]
    pending_optouts.save(path, PendingOptOut(customer_id="c001", channel="email", channels=["email"], received_at=AT.isoformat(), text="stop"))
    text, before = path.read_bytes(), snapshot(engine)
    seen = preview(engine, pb, AT)
    # The cycle writes the opt-out first, so c001 is not mailed: the preview counts it the same way.
    assert shown(seen, "mailer")["suppressed"]["consent_revoked:email"] == revoked + 1
    assert path.read_bytes() == text and snapshot(engine) == before
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert dict(report.agents["mailer"].suppressed) == shown(seen, "mailer")["suppressed"]


def test_a_preview_is_refused_where_a_run_would_not_start_that_cycle(engine: Engine, tmp_path: Path) -> None:
    from legato.errors import Conflict
    from legato.store.schema import cycles

    load_customers(engine, n=20)
    pb = world_playbook()
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=1)), transports(pb, tmp_path))
    with pytest.raises(Conflict, match="the last cycle ran at"):
        preview(engine, pb, AT)  # before the last cycle
    with engine.begin() as connection:
        connection.execute(sa.update(cycles).values(status="failed"))
    with pytest.raises(Conflict, match="did not finish") as raised:
        preview(engine, pb, AT + timedelta(days=2))
    assert "legato run" in (raised.value.hint or "")


def test_a_paused_agent_is_shown_as_not_run(engine: Engine) -> None:
    from legato.store.status import AgentStatus
    from legato.trust import agent_state

    load_customers(engine, n=20)
    pb = world_playbook()
    with engine.begin() as connection:
        agent_state.create(connection, "mailer", 2, AT)
        agent_state.change_status(connection, "mailer", AgentStatus.PAUSED, actor="ana", reason="test", now=AT)
    (part,) = preview(engine, pb, AT).to_dict()["agents"]
    assert part["runs"] is False and part["why_not"] == "paused" and sum(part["routes"].values()) == 0


def test_a_score_refit_the_cycle_would_try_is_rolled_back_too(engine: Engine, tmp_path: Path) -> None:
    from legato.store.schema import settings

    load_customers(engine, n=20)  # too little history to fit: the cycle records its attempt
    pb = parse_playbook(
        PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
            "objectives:", 'segments: {likely_buyers: "purchase_propensity > 0.3"}\nobjectives:'
        )
    )
    before = snapshot(engine)
    preview(engine, pb, AT)
    assert snapshot(engine) == before
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(settings)).scalar_one() > len(before["settings"])
