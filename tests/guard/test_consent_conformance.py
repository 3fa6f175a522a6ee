"""One consent rule, three callers: the cycle's mask, the dispatcher's re-check and the review
queue give the same answer for every customer × channel × consent history × purpose.

The table runs under each kind of consent rule a playbook can state (none, express or
implied, express only, soft opt-in), on SQLite and PostgreSQL. A few cells are pinned to
their expected answer so that agreement cannot come from all three being wrong the same way.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.guard.contact import UNDELIVERABLE, add_suppression, suppress
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import decisions, review_items
from legato.trust.review import show_item

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
LONG_AGO = "2020-01-01T00:00:00Z"  # an implied consent given then has expired by AT (730 days)

# history -> (consent cell, consent given at, bought before, on the suppression list, has contact points)
HISTORIES: dict[str, tuple[str, str | None, bool, bool, bool]] = {
    "none": ("", None, False, False, True),
    "express": ("express", None, False, False, True),
    "implied": ("implied", None, False, False, True),
    "implied_expired": ("implied", LONG_AGO, False, False, True),
    "revoked": ("revoked", None, False, False, True),
    "none_buyer": ("", None, True, False, True),
    "implied_expired_buyer": ("implied", LONG_AGO, True, False, True),
    "revoked_buyer": ("revoked", None, True, False, True),
    "express_suppressed": ("express", None, False, True, True),
    "express_no_contact": ("express", None, False, False, False),
    "express_bounced": ("express", None, False, False, True),  # its address and number hard-bounced
}
CHANNELS = ("email", "sms")
PURPOSES = ("marketing", "transactional")
RULES = {
    "no_rule": "",
    "express_or_implied": "{require: express_or_implied}",
    "express": "{require: express}",
    "soft_opt_in": "{require: express_or_implied, existing_customer_exception: true}",
    "long_implied": "{require: express_or_implied, implied_lifetime_days: 3650}",  # the playbook's lifetime, not 730 days
}

BODY = {
    "email": "Hello. Unsubscribe: {{ unsubscribe_url }} Conform Co, {{ brand.postal_address }}",
    "sms": "Conform Co: hello. Reply STOP to opt out.",
}


def make_playbook(rule: str) -> Playbook:
    creatives, agents = [], []
    for channel in CHANNELS:
        for purpose in PURPOSES:
            name = f"{channel}_{purpose}"
            subject = ', subject: "Hello"' if channel == "email" else ""
            creatives.append(f"  - {{id: {name}, channel: {channel}, purpose: {purpose}{subject}, body: {json.dumps(BODY[channel])}}}")
            agents.append(
                f"  - {{id: {name}, objective: reach, audience: 'true', actions: {{creatives: [{name}], send_windows: ['09:00-17:00'], "
                "do_nothing: false}, policy: {name: uniform_random}, holdout: 0, trust_stage: 3}"
            )
    consent = "".join(f"    - {{channel: {c}, purpose: marketing, {RULES[rule][1:-1]}}}\n" for c in CHANNELS) if RULES[rule] else ""
    text = f"""
brand:
  name: Conform Co
  legal: {{sender_name: Conform Co, postal_address: "2 Rule Street", support_contact: "help@conform.example", unsubscribe_url: "https://conform.example/u"}}
objectives:
  - {{id: reach, goal: engagement, why: testing, stages: [any], kpis: [{{metric: visit_rate, target: 0.1}}]}}
lifecycle:
  - {{stage: any, when: "true"}}
channels:
  email: {{kind: file, path: out/email.jsonl}}
  sms: {{kind: file, path: out/sms.jsonl}}
creatives:
{chr(10).join(creatives)}
agents:
{chr(10).join(agents)}
guardrails:
  consent:
{consent or "    []"}
  quiet_hours: []
"""
    return parse_playbook(text.replace("  consent:\n    []", "  consent: []"))


def load(engine: Engine) -> None:
    ids = list(HISTORIES)
    rows = HISTORIES.values()
    import_customers(
        engine,
        pa.table(
            {
                "id": ids,
                "email": [f"{c}@people.example" if contact else None for c, (_, _, _, _, contact) in zip(ids, rows, strict=True)],
                "phone": [("+12125550199" if c == "express_bounced" else "+12125550100") if contact else None
                          for c, (_, _, _, _, contact) in zip(ids, rows, strict=True)],
                "time_zone": ["UTC"] * len(ids),
                "consent_at": [at for (_, at, _, _, _) in rows],
                **{f"consent_{c}_marketing": [cell for (cell, _, _, _, _) in rows] for c in CHANNELS},
            }
        ),
        clock=FixedClock(AT),
    )
    buyers = [c for c, (_, _, bought, _, _) in HISTORIES.items() if bought]
    import_events(
        engine,
        pa.table({"id": [f"p-{c}" for c in buyers], "customer_id": buyers, "type": ["purchase"] * len(buyers),
                  "occurred_at": ["2024-02-01T00:00:00Z"] * len(buyers), "revenue": [20.0] * len(buyers)}),
        clock=FixedClock(AT),
    )
    for customer, (_, _, _, listed, _) in HISTORIES.items():
        if listed:
            add_suppression(engine, "customer", customer, "asked to be left alone", AT)
    with engine.begin() as c:
        for address in ("express_bounced@people.example", "+12125550199"):
            suppress(c, UNDELIVERABLE, address, "hard bounce", AT, by="test")


def cycle_answers(engine: Engine, pb: Playbook, tmp_path: Path) -> dict[tuple[str, str], str | None]:
    """The cycle's mask: one agent per channel and purpose, each customer scheduled or suppressed with the reason."""
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path / "cycle"))
    with engine.connect() as c:
        rows = c.execute(sa.select(decisions.c.agent_id, decisions.c.customer_id, decisions.c.status, decisions.c.findings)).all()
    answers: dict[tuple[str, str], str | None] = {}
    for agent, customer, status, findings in rows:
        reasons = json.loads(findings) if isinstance(findings, str) else findings
        answers[(agent, customer)] = None if status == "scheduled" else "+".join(reasons)
    return answers


def review_answers(engine: Engine, pb: Playbook, ids: dict[tuple[str, str], int]) -> dict[tuple[str, str], str | None]:
    with engine.connect() as c:
        items = dict(c.execute(sa.select(review_items.c.decision_id, review_items.c.id)).all())
    return {key: show_item(engine, items[decision], playbook=pb, now=AT + timedelta(hours=1)).standing for key, decision in ids.items()}


def dispatch_answers(rows: dict[tuple[str, str], tuple[str, str | None]]) -> dict[tuple[str, str], str | None]:
    """The dispatcher's reason code from its error text (None: sent)."""
    return {key: None if status == "sent" else str(error).rsplit("(", 1)[1].split(")")[0] for key, (status, error) in rows.items()}


@pytest.mark.parametrize("rule", list(RULES))
def test_the_cycle_the_dispatcher_and_the_review_queue_agree_on_consent(
    engine: Engine, tmp_path: Path, rule: str, propose: Any, dispatch_all: Any
) -> None:
    pb = make_playbook(rule)
    load(engine)
    cycle = cycle_answers(engine, pb, tmp_path)
    ids = propose(engine, pb, HISTORIES, AT + timedelta(hours=1))
    review = review_answers(engine, pb, ids)
    dispatch = dispatch_answers(dispatch_all(engine, pb, ids, AT + timedelta(hours=1)))
    assert set(cycle) == set(review) == set(dispatch) == {(f"{c}_{p}", h) for c in CHANNELS for p in PURPOSES for h in HISTORIES}
    disagreements = {key: (cycle[key], review[key], dispatch[key]) for key in cycle if not cycle[key] == review[key] == dispatch[key]}
    assert disagreements == {}

    # Pinned cells: the rule itself, not only the callers' agreement.
    for channel in CHANNELS:
        marketing, transactional = f"{channel}_marketing", f"{channel}_transactional"
        assert cycle[(marketing, "revoked_buyer")] == f"consent_revoked:{channel}"  # revocation wins
        assert cycle[(marketing, "express_suppressed")] == "do_not_contact"
        assert cycle[(marketing, "express_no_contact")] == f"no_contact_point:{channel}"
        assert cycle[(marketing, "express")] is None
        assert cycle[(transactional, "revoked")] is None and cycle[(transactional, "none")] is None
        assert cycle[(transactional, "express_no_contact")] == f"no_contact_point:{channel}"
        assert cycle[(marketing, "express_bounced")] == cycle[(transactional, "express_bounced")] == f"undeliverable:{channel}"
        soft = rule == "soft_opt_in"
        assert cycle[(marketing, "none_buyer")] == (None if soft or rule == "no_rule" else f"no_consent:{channel}")
        assert cycle[(marketing, "implied_expired_buyer")] == (None if rule in ("no_rule", "long_implied") else f"no_consent:{channel}")
        assert cycle[(marketing, "implied")] == (f"no_consent:{channel}" if rule == "express" else None)
        assert cycle[(marketing, "implied_expired")] == (None if rule in ("no_rule", "long_implied") else f"no_consent:{channel}")


# --- history: which statement stands, in Python (a reply, an event) and in SQL (an import) ---

T0, T1, T2 = (datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3))
STORED = {
    "none": None,
    "express_t1": ("granted", "express", T1),
    "express_undated": ("granted", "express", None),
    "implied_t1": ("granted", "implied", T1),
    "revoked_t1": ("revoked", "express", T1),
    "revoked_undated": ("revoked", "express", None),  # recorded at T1
}
NEW = {
    "express_t0": ("granted", "express", T0), "express_t1": ("granted", "express", T1), "express_t2": ("granted", "express", T2),
    "express_undated": ("granted", "express", None), "implied_t1": ("granted", "implied", T1), "implied_t2": ("granted", "implied", T2),
    "implied_undated": ("granted", "implied", None), "revoked_t0": ("revoked", "express", T0), "revoked_t2": ("revoked", "express", T2),
    "revoked_undated": ("revoked", "express", None),
}


def test_the_history_rule_gives_one_answer_in_python_and_in_sql(engine: Engine) -> None:
    from legato.guard.consent import Change, Statement, change, sql_change
    from legato.store.schema import consents, customers

    pairs = [(s, n) for s in STORED for n in NEW]
    new_table = sa.Table(
        "legato_test_new_statements", sa.MetaData(),
        sa.Column("customer_id", sa.String(64)), sa.Column("status", sa.String(16)), sa.Column("kind", sa.String(16)),
        sa.Column("stated_at", consents.c.stated_at.type),
    )
    with engine.begin() as c:
        new_table.create(c)
    try:
        with engine.begin() as c:
            for i, (stored, new) in enumerate(pairs):
                c.execute(sa.insert(customers).values(id=f"p{i}", attributes={}, created_at=AT, updated_at=AT))
                if STORED[stored] is not None:
                    status, kind, at = STORED[stored]  # type: ignore[misc]
                    c.execute(sa.insert(consents).values(customer_id=f"p{i}", channel="sms", purpose="marketing", status=status, kind=kind,
                                                         source="test", recorded_at=T1, stated_at=at))
                status, kind, at = NEW[new]
                c.execute(sa.insert(new_table).values(customer_id=f"p{i}", status=status, kind=kind, stated_at=at))
            stored_alias = consents.alias("stored")
            joined = new_table.outerjoin(stored_alias, sa.and_(stored_alias.c.customer_id == new_table.c.customer_id, stored_alias.c.channel == "sms"))
            in_sql = dict(c.execute(sa.select(new_table.c.customer_id, sql_change(stored_alias, new_table)).select_from(joined)).all())
    finally:
        with engine.begin() as c:
            new_table.drop(c)
    in_python = {}
    for i, (stored, new) in enumerate(pairs):
        held = STORED[stored]
        on_file = Statement(held[0], held[1], held[2], T1) if held is not None else None
        in_python[f"p{i}"] = change(on_file, Statement(*NEW[new]))
    assert {k: Change(int(v)) for k, v in in_sql.items()} == in_python

    answers = {pair: in_python[f"p{i}"] for i, pair in enumerate(pairs)}
    # Pinned: only an express consent dated after the revocation undoes it.
    for revoked in ("revoked_t1", "revoked_undated"):
        assert answers[(revoked, "express_t2")] is Change.WRITE
        assert answers[(revoked, "express_t1")] is Change.REFUSED_OLDER and answers[(revoked, "express_t0")] is Change.REFUSED_OLDER
        assert answers[(revoked, "express_undated")] is Change.REFUSED_UNDATED
        assert answers[(revoked, "implied_t2")] is Change.REFUSED_IMPLIED and answers[(revoked, "implied_undated")] is Change.REFUSED_IMPLIED
        assert answers[(revoked, "revoked_t2")] is Change.WRITE and answers[(revoked, "revoked_undated")] is Change.KEEP
    # A revocation wins over every grant on file but an express one dated after it.
    assert answers[("express_t1", "revoked_t0")] is Change.KEEP
    assert answers[("implied_t1", "revoked_t0")] is Change.WRITE
    assert answers[("express_t1", "revoked_undated")] is Change.WRITE and answers[("express_undated", "revoked_t0")] is Change.WRITE
    # Between grants the latest wins; an undated one does not replace a dated one.
    assert answers[("implied_t1", "express_t2")] is Change.WRITE and answers[("implied_t1", "implied_t2")] is Change.WRITE
    assert answers[("express_t1", "implied_t2")] is Change.KEEP  # a purchase takes nothing from an express consent
    assert answers[("express_t1", "implied_undated")] is Change.KEEP and answers[("express_t1", "express_t0")] is Change.KEEP
    assert answers[("none", "implied_undated")] is Change.WRITE
