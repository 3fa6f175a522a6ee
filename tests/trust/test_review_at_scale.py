"""The review queue at a marketer's scale: totals, pages by cursor, filters, acting on many
items at once (each on its own hash and audit row), and what a stage-1 approval unlocks."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.review import review_app
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.service import review as service
from legato.store.ingest import import_customers
from legato.store.schema import audit_log, review_items
from legato.trust.review import approve, edit
from legato.trust.review.model import QueueFilter, ReviewInvalid
from legato.validation import parse_playbook
from tests.world import AT, expected_eligible, load_customers, playbook

runner = CliRunner()
WHEN = "2024-03-04T08:30"


def queued(engine: Engine, tmp_path: Path, *, stage: int = 0, n: int = 40) -> int:
    """n customers and one cycle at AT; returns how many proposals wait in the queue."""
    load_customers(engine, n)
    pb = playbook(stage=stage)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(review_items)).scalar_one())


def cli(*args: str) -> Any:
    return runner.invoke(review_app, list(args))


def test_the_list_counts_all_it_matches_and_pages_by_cursor_without_gaps_or_repeats(engine: Engine, tmp_path: Path) -> None:
    total = queued(engine, tmp_path)
    assert total == len(expected_eligible(40)) > 10
    seen: list[int] = []
    after = None
    while True:
        page = service.page(engine, QueueFilter(), limit=7, after=after)
        assert page.total == total
        seen += [item.id for item in page.items]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert len(seen) == total and len(set(seen)) == total


def test_the_list_header_says_how_many_there_are_not_how_many_it_shows(engine: Engine, database_url: str, tmp_path: Path) -> None:
    total = queued(engine, tmp_path)
    shown = cli("list", "-d", database_url, "--limit", "5")
    assert shown.exit_code == 0, shown.output
    assert f"5 of {total} open review item(s)" in shown.output
    assert "next page: legato review list --limit 5 --after " in shown.output and f"--database {database_url}" in shown.output
    cursor = shown.output.split("--after ")[1].split()[0]
    rest = json.loads(cli("list", "-d", database_url, "--limit", "100", "--after", cursor, "--json").stdout)
    assert rest["total"] == total and len(rest["items"]) == total - 5 and rest["next_cursor"] is None
    bad = cli("list", "-d", database_url, "--after", "nonsense")
    assert bad.exit_code == 2 and "is not a page cursor" in bad.output and "Traceback" not in bad.output


def test_filters_by_reason_family_priority_age_and_variant(engine: Engine, tmp_path: Path) -> None:
    total = queued(engine, tmp_path)
    [one] = service.page(engine, QueueFilter(), limit=1).items
    assert service.page(engine, QueueFilter(reason="trust_stage_0")).total == total
    assert service.page(engine, QueueFilter(reason="trust")).total == 0  # a family is the part before ":", not any prefix
    assert service.page(engine, QueueFilter(min_priority=51)).total == 0
    assert service.page(engine, QueueFilter(older_than=timedelta(hours=1), now=AT + timedelta(minutes=30))).total == 0
    assert service.page(engine, QueueFilter(older_than=timedelta(hours=1), now=AT + timedelta(hours=2))).total == total
    assert service.page(engine, QueueFilter(variant=one.content_hash)).total == total  # one creative: one variant
    assert service.page(engine, QueueFilter(variant="0" * 64)).total == 0


def test_approval_needs_the_hash_the_reviewer_saw(engine: Engine, database_url: str, tmp_path: Path) -> None:
    queued(engine, tmp_path)
    [item] = service.page(engine, QueueFilter(), limit=1).items
    with pytest.raises(ReviewInvalid, match="an approval names the content hash you reviewed"):
        approve(engine, item.id, "ana", content_hash=None, now=AT)
    missing = cli("approve", str(item.id), "-d", database_url, "--reviewer", "ana", "--at", WHEN)
    assert missing.exit_code == 2 and "--hash" in missing.output


def test_approve_all_acts_on_each_item_on_its_own_hash_and_audit_row(engine: Engine, database_url: str, tmp_path: Path) -> None:
    total = queued(engine, tmp_path)
    items = service.page(engine, QueueFilter(), limit=100).items
    # Someone edits one item after the reviewer looked at the variant: that one is not approved unseen.
    edit(engine, items[0].id, "bob", body="Hello {{ customer.id }}, a new note. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}", now=AT)
    variant = items[1].content_hash
    dry = cli("approve-all", "-d", database_url, "--variant", variant, "--reviewer", "ana", "--at", WHEN, "--dry-run")
    assert dry.exit_code == 0 and f"would approve {total - 1} item(s); nothing changed" in dry.output
    done = cli("approve-all", "-d", database_url, "--variant", variant, "--reviewer", "ana", "--at", WHEN, "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert len(result["done"]) == total - 1 and result["refused"] == []
    with engine.connect() as c:
        audited = c.execute(sa.select(audit_log.c.entity_id).where(audit_log.c.action == "review_approved")).scalars().all()
        statuses = dict(c.execute(sa.select(review_items.c.id, review_items.c.status)).all())
    assert sorted(map(int, audited)) == sorted(i["id"] for i in result["done"])  # one audit row per item
    assert statuses[items[0].id] == "open"  # the edited one has another hash: not in the variant
    unfiltered = cli("approve-all", "-d", database_url, "--reviewer", "ana", "--at", WHEN)
    assert unfiltered.exit_code == 2 and "needs a filter that narrows the queue" in unfiltered.output


def test_a_bulk_action_reports_each_item_it_could_not_do_and_does_the_rest(engine: Engine, tmp_path: Path) -> None:
    total = queued(engine, tmp_path)
    # c001 revoked consent after the cycle: its proposal cannot be approved; the others can.
    import_customers(engine, pa.table({"id": ["c001"], "consent_email_marketing": ["revoked"]}), clock=FixedClock(AT))
    result = service.approve_matching(engine, QueueFilter(agent="mailer"), "ana", now=AT + timedelta(minutes=5))
    assert len(result.done) == total - 1
    [(refused, why)] = result.refused
    assert "cannot be sent now" in why
    with engine.connect() as c:
        assert c.execute(sa.select(review_items.c.status).where(review_items.c.id == refused)).scalar_one() == "open"
    rejected = service.reject_matching(engine, QueueFilter(agent="mailer"), "ana", "off_brand", now=AT + timedelta(minutes=6))
    assert [i.id for i in rejected.done] == [refused] and rejected.refused == []


def test_a_stage_1_approval_says_how_many_customers_it_now_reaches_unreviewed(engine: Engine, database_url: str, tmp_path: Path) -> None:
    total = queued(engine, tmp_path, stage=1)
    assert total == len(expected_eligible(40))  # nothing approved yet: every send waits ("not_approved_before")
    [item] = service.page(engine, QueueFilter(), limit=1).items
    said = cli("approve", str(item.id), "-d", database_url, "--hash", item.content_hash, "--reviewer", "ana", "--at", WHEN)
    assert said.exit_code == 0, said.output
    text = " ".join(said.output.split())
    assert f"stage 1: agent mailer may now send hello without review from its next cycle on; its last cycle proposed it to {total} customer(s)" in text
    assert f"{total - 1} of whom still wait in the queue" in text
    pb = playbook(stage=1)
    later = run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), transports(pb, tmp_path)).agents["mailer"]
    assert later.queued == 0 and later.scheduled > 0  # what the message said: the next cycle sends it unreviewed


def test_show_prints_an_approve_command_with_every_flag_it_needs(engine: Engine, database_url: str, tmp_path: Path) -> None:
    queued(engine, tmp_path)
    [item] = service.page(engine, QueueFilter(), limit=1).items
    shown = cli("show", str(item.id), "-d", database_url, "--at", WHEN)
    assert shown.exit_code == 0, shown.output
    assert f"legato review approve {item.id} --hash {item.content_hash} --reviewer NAME --database {database_url} --at {WHEN}" in shown.output


def test_show_says_why_this_customer_with_only_the_fields_the_choice_read(engine: Engine, database_url: str, tmp_path: Path) -> None:
    queued(engine, tmp_path)
    [item] = service.page(engine, QueueFilter(), limit=1).items
    why = service.show(engine, item.id, now=AT).why
    assert why == {"audience": 'tier in ("gold", "silver")', "facts": {"tier": "gold"}}  # no e-mail, no other attribute
    shown = cli("show", str(item.id), "-d", database_url, "--at", WHEN)
    assert """why this customer: in the audience 'tier in ("gold", "silver")' (tier = gold)""" in shown.output


def test_show_names_the_escalation_rule_and_the_customer_fields_it_read(engine: Engine, tmp_path: Path, b2b_and_upsell_playbook: str) -> None:
    pb = parse_playbook(b2b_and_upsell_playbook.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}"))
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    [b2b] = [i for i in service.page(engine, QueueFilter(), limit=100).items if i.customer_id == "c001"]
    why = service.show(engine, b2b.id, now=AT).why
    assert why is not None and why["escalation"]["rule"] == "b2b_renewal"
    assert why["escalation"]["facts"] == {"account_type": "business", "renewal_days": 20.0}
