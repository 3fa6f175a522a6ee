"""Policy versions: every learning step saves one; a rollback continues from an earlier one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.decide.versions import list_versions, roll_back
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.errors import LegatoError
from legato.store.ingest import import_events
from legato.store.schema import audit_log, decisions, policy_states
from tests.world import learning_playbook as playbook
from tests.world import AT, load_customers


def learned_twice(engine: Engine, tmp_path: Path) -> None:
    """Two learning steps: versions 1 (fresh), 2 and 3."""
    load_customers(engine, n=20)
    pb = playbook()
    sinks = transports(pb, tmp_path)
    for day in range(3):
        at = AT + timedelta(days=4 * day)
        run_cycle(engine, pb, FixedClock(at), sinks)
        dispatch_due(engine, pb, FixedClock(at + timedelta(hours=2)), sinks)  # 10:00, inside the send window
        with engine.connect() as c:
            sent = c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "sent", decisions.c.decided_at == at)).scalars().all()
        import_events(engine, pa.table({"id": [f"p{day}-{c}" for c in sent], "customer_id": sent, "type": ["purchase"] * len(sent), "occurred_at": [(at + timedelta(hours=11)).isoformat()] * len(sent)}), clock=FixedClock(at))


def test_rollback_saves_the_old_state_as_the_newest_and_the_cycle_continues_from_it(engine: Engine, tmp_path: Path) -> None:
    learned_twice(engine, tmp_path)
    versions = list_versions(engine, "mailer")
    assert [v.version for v in versions] == [3, 2, 1]
    with engine.connect() as c:
        states = dict(c.execute(sa.select(policy_states.c.version, policy_states.c.state)).all())
    assert states[3]["alpha"] != states[1]["alpha"]  # it learned
    restored = roll_back(engine, "mailer", 1, "ana", "purchases were double-counted", AT + timedelta(days=9))
    assert (restored.version, restored.restored_from) == (4, 1)
    with engine.connect() as c:
        state4 = c.execute(sa.select(policy_states.c.state).where(policy_states.c.version == 4)).scalar_one()
        (detail,) = c.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == "policy_rolled_back")).scalars().all()
    assert state4["alpha"] == states[1]["alpha"] and state4["beta"] == states[1]["beta"]
    assert detail == {"from_version": 3, "to_version": 1, "new_version": 4, "reason": "purchases were double-counted"}
    # The next cycle loads version 4 (no reset) and learns on top of it.
    report = run_cycle(engine, playbook(), FixedClock(AT + timedelta(days=12)), transports(playbook(), tmp_path)).agents["mailer"]
    with engine.connect() as c:
        resets = c.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "policy_reset")).scalar_one()
    assert resets == 0 and report.policy_version == 5


def test_bad_rollbacks_change_nothing(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(LegatoError, match="has no saved policy yet"):
        roll_back(engine, "mailer", 1, "ana", "x", AT)
    learned_twice(engine, tmp_path)
    for version, message in ((9, "has no policy version 9"), (3, "already the newest")):
        with pytest.raises(LegatoError, match=message):
            roll_back(engine, "mailer", version, "ana", "x", AT)
    with pytest.raises(LegatoError, match="needs a reason"):
        roll_back(engine, "mailer", 1, "ana", " ", AT)
    assert [v.version for v in list_versions(engine, "mailer")] == [3, 2, 1]


def test_versions_and_rollback_from_the_command_line(engine: Engine, tmp_path: Path, database_url: str) -> None:
    learned_twice(engine, tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["agents", "versions", "mailer", "-d", database_url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [v["version"] for v in json.loads(listed.stdout)["versions"]] == [3, 2, 1]
    done = runner.invoke(app, ["agents", "rollback", "mailer", "--to", "2", "--by", "ana", "--reason", "bad feed", "-d", database_url, "--at", "2024-03-20T00:00"])
    assert done.exit_code == 0 and "continues from version 2 (saved as version 4)" in done.stdout
    refused = runner.invoke(app, ["agents", "rollback", "mailer", "--to", "7", "--by", "ana", "--reason", "x", "-d", database_url])
    assert refused.exit_code == 3 and "has no policy version 7" in refused.output
