"""Whom and when, in a cycle: channels among those consented to, the global control group,
the uplift gate and learned send times (engine level, both databases)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.monitor.lift import lift
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import decisions
from tests.world import AT, PLAYBOOK


def base(**replacements: str) -> str:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def import_consented(engine: Engine, ids: list[str], *, zone: str = "UTC", tiers: list[str] | None = None, since: timedelta = timedelta(0)) -> None:
    """Customers with an e-mail address and express e-mail consent."""
    n = len(ids)
    import_customers(
        engine,
        pa.table(
            {
                "id": ids,
                "email": [f"{c}@test.example" for c in ids],
                "time_zone": [zone] * n,
                "tier": tiers or ["gold"] * n,
                "consent_email_marketing": ["express"] * n,
            }
        ),
        attribute_types={"tier": "string"},
        clock=FixedClock(AT - since),
    )


def two_channel_playbook(policy: str = "{name: lin_ts}") -> Playbook:
    return parse_playbook(
        base(
            **{
                "  email: {kind: file, path: out/email.jsonl}": "  email: {kind: file, path: out/email.jsonl}\n  sms: {kind: file, path: out/sms.jsonl}",
                "creatives:\n  - {id: hello,": 'creatives:\n  - {id: text, channel: sms, body: "Test Co: new arrivals are in. Reply STOP to opt out."}\n  - {id: hello,',
                "actions: {creatives: [hello],": "actions: {creatives: [hello, text],",
                "    - {channel: email, purpose: marketing}": "    - {channel: email, purpose: marketing}\n    - {channel: sms, purpose: marketing}",
                "policy: {name: uniform_random}": f"policy: {policy}",
            }
        )
    )


def test_the_policy_chooses_only_among_channels_the_customer_consented_to(engine: Engine, tmp_path: Path) -> None:
    n = 200
    ids = [f"c{i:03d}" for i in range(n)]
    kind = np.array(["email", "sms", "both", "none"])[np.arange(n) % 4]
    import_customers(
        engine,
        pa.table(
            {
                "id": ids,
                "email": [f"{c}@test.example" for c in ids],
                "phone": [f"+1212555{i:04d}" for i in range(n)],
                "time_zone": ["UTC"] * n,
                "tier": ["gold"] * n,
                "consent_email_marketing": np.where(np.isin(kind, ["email", "both"]), "express", "").tolist(),
                "consent_sms_marketing": np.where(np.isin(kind, ["sms", "both"]), "express", "").tolist(),
            }
        ),
        attribute_types={"tier": "string"},
        clock=FixedClock(AT),
    )
    pb = two_channel_playbook()
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path)).agents["mailer"]
    with engine.connect() as c:
        rows = c.execute(sa.select(decisions.c.customer_id, decisions.c.channel, decisions.c.status, decisions.c.propensity, decisions.c.findings)).all()
    by_kind = {k: [r for r in rows if kind[int(r.customer_id[1:])] == k] for k in ("email", "sms", "both", "none")}
    assert {r.channel for r in by_kind["email"]} == {"email"} and {r.status for r in by_kind["email"]} == {"scheduled"}
    assert {r.channel for r in by_kind["sms"]} == {"sms"} and {r.status for r in by_kind["sms"]} == {"scheduled"}
    # With only one channel open the choice was certain; with both, each had a chance.
    assert {r.propensity for r in by_kind["email"] + by_kind["sms"]} == {1.0}
    assert {r.channel for r in by_kind["both"]} == {"email", "sms"}
    assert all(r.status == "suppressed" and r.channel is None for r in by_kind["none"])
    assert report.suppressed == {"no_consent:email+no_consent:sms": 50}
    assert report.scheduled == 150
    # What the policy could choose from is kept for off-policy evaluation (actions: hello, text).
    from legato.decide.features import decode_allowed

    with engine.connect() as c:
        stored = dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.allowed_actions)).all())
    masks = {k: decode_allowed([stored[f"c{i:03d}"] for i in range(n) if kind[i] == k], 2) for k in ("email", "sms", "both", "none")}
    assert masks["both"] is None and masks["none"] is None  # all allowed / not decided by the policy
    assert masks["email"].tolist() == [[True, False]] * 50 and masks["sms"].tolist() == [[False, True]] * 50


def test_global_control_gets_no_marketing_from_any_agent_and_measures_the_program(engine: Engine, tmp_path: Path) -> None:
    n = 400
    import_consented(engine, [f"g{i:03d}" for i in range(n)])
    text = base(**{"agents:\n": "global_control: 0.2\nagents:\n"}).replace("HOLDOUT", "0.1")
    text = text.replace("holdout: 0\n", "holdout: 0.1\n")
    pb = parse_playbook(text)
    sinks = transports(pb, tmp_path)
    first = run_cycle(engine, pb, FixedClock(AT), sinks).agents["mailer"]
    assert 50 < first.global_control < 110 and first.holdout > 0
    with engine.connect() as c:
        control = set(c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "control")).scalars())
    assert len(control) == first.global_control
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=3)), sinks)
    sent = {line.split('"customer_id": "')[1].split('"')[0] for line in (tmp_path / "out/email.jsonl").read_text().splitlines()}
    assert sent and not (sent & control)
    # Membership is stable: the same customers are in control four days later.
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), sinks)
    with engine.connect() as c:
        later = set(c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "control", decisions.c.decided_at > AT)).scalars())
    assert later == control

    # Everybody who got a message visits; the control group does not.
    visits = sorted(sent)
    import_events(engine, pa.table({"id": [f"v{c}" for c in visits], "customer_id": visits, "type": ["visit"] * len(visits), "occurred_at": [(AT + timedelta(days=1)).isoformat()] * len(visits)}), clock=FixedClock(AT))
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=12)), sinks)  # settles the first two cycles (7-day window)
    with engine.connect() as c:
        program = {m.metric: m for m in lift(c, "mailer", against="global_control")}
        own = {m.metric: m for m in lift(c, "mailer")}
    assert program["visit_rate"].control == 0.0 and program["visit_rate"].treated > 0.3
    # Two cycles, but n counts customers: each is in one group once.
    assert program["visit_rate"].n_control == len(control)
    assert own["visit_rate"].n_control + own["visit_rate"].n_treated + program["visit_rate"].n_control == n


def uplift_store(engine: Engine, n: int = 600) -> list[str]:
    ids = [f"u{i:03d}" for i in range(n)]
    import_consented(engine, ids, tiers=["gold" if i % 2 else "silver" for i in range(n)])
    return ids


def test_the_uplift_gate_stays_open_until_it_has_learned_then_skips_customers_a_message_does_not_move(engine: Engine, tmp_path: Path) -> None:
    ids = uplift_store(engine)
    text = base(**{"audience: 'tier in (\"gold\", \"silver\")'": "audience: 'tier in (\"gold\", \"silver\")'\n    uplift_gate: {min_uplift: 0.1, min_samples: 50}"})
    text = text.replace("holdout: 0\n", "holdout: 0.3\n").replace("kpis: [{metric: visit_rate, target: 0.1}]}", "kpis: [{metric: visit_rate, target: 0.1}], attribution_days: 2}")
    pb = parse_playbook(text)
    sinks = transports(pb, tmp_path)
    first = run_cycle(engine, pb, FixedClock(AT), sinks).agents["mailer"]
    assert first.uplift_gate is not None and first.uplift_gate["open"] and "needed" in first.uplift_gate["reason"]
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=3)), sinks)
    with engine.connect() as c:
        rows = c.execute(sa.select(decisions.c.customer_id, decisions.c.status)).all()
    # A message makes gold customers visit (60% vs 10%); silver ones visit 10% either way.
    rng = np.random.default_rng(0)
    tier = {c: ("gold" if int(c[1:]) % 2 else "silver") for c in ids}
    chance = {(True, "gold"): 0.6, (False, "gold"): 0.1, (True, "silver"): 0.1, (False, "silver"): 0.1}
    visitors = [r.customer_id for r in rows if rng.random() < chance[(r.status == "sent", tier[r.customer_id])]]
    import_events(engine, pa.table({"id": [f"v{c}" for c in visitors], "customer_id": visitors, "type": ["visit"] * len(visitors), "occurred_at": [(AT + timedelta(days=1)).isoformat()] * len(visitors)}), clock=FixedClock(AT))

    second = run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), sinks).agents["mailer"]
    assert second.uplift_gate is not None and not second.uplift_gate["open"], second.uplift_gate
    with engine.connect() as c:
        later = c.execute(sa.select(decisions.c.customer_id, decisions.c.status, decisions.c.findings).where(decisions.c.decided_at > AT)).all()
    gated = [r for r in later if "uplift_gate" in r.findings]
    scheduled = [r for r in later if r.status == "scheduled"]
    assert second.uplift_gate["gated"] == len(gated) > 0
    assert {r.status for r in gated} == {"gated"}  # not the policy's "do nothing": it never learns from them
    # The gate keeps (nearly) every gold customer and skips (nearly) every silver one.
    assert sum(tier[r.customer_id] == "silver" for r in gated) >= 0.9 * len(gated)
    assert sum(tier[r.customer_id] == "gold" for r in scheduled) >= 0.9 * len(scheduled)


def test_learned_send_time_uses_each_customers_hours_or_the_populations(engine: Engine, tmp_path: Path) -> None:
    ids = [f"s{i:02d}" for i in range(30)]
    import_consented(engine, ids, zone="America/New_York", since=timedelta(days=60))
    # s00-s09 open at 10:xx New York time, s10-s24 at 15:xx; s25-s29 have one open only (thin history).
    rows: dict[str, list[str]] = {"id": [], "customer_id": [], "type": [], "occurred_at": []}
    for i, customer in enumerate(ids):
        local_hour = 10 if i < 10 else 15
        for day in range(6 if i < 25 else 1):
            # 10:20 / 15:20 in New York in February = 15:20 / 20:20 UTC
            at = AT - timedelta(days=day + 2)
            rows["id"].append(f"o{i}-{day}")
            rows["customer_id"].append(customer)
            rows["type"].append("open")
            rows["occurred_at"].append(at.replace(hour=local_hour + 5, minute=20).isoformat())
    import_events(engine, pa.table(rows), clock=FixedClock(AT))
    pb = parse_playbook(base(**{"audience: 'tier in (\"gold\", \"silver\")'": "audience: 'tier in (\"gold\", \"silver\")'\n    send_time: {mode: learned, min_events: 5}"}))
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path)).agents["mailer"]
    assert report.own_send_time == 25
    with engine.connect() as c:
        send_at = dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.send_at)).all())
    hours = {c: (t - timedelta(hours=5)).hour for c, t in send_at.items()}  # New York is UTC-5 in March before DST
    assert {hours[c] for c in ids[:10]} == {10}
    assert {hours[c] for c in ids[10:25]} == {15}
    assert {hours[c] for c in ids[25:]} == {15}  # the population's favourite hour


def test_report_lift_shows_both_comparisons(engine: Engine, tmp_path: Path, database_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from legato.cli.app import app

    test_global_control_gets_no_marketing_from_any_agent_and_measures_the_program(engine, tmp_path)
    result = CliRunner().invoke(app, ["report", "lift", "--database", database_url, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["lift"]
    visit = {r["against"]: r for r in rows if r["metric"] == "visit_rate"}
    assert set(visit) == {"holdout", "global_control"}
    assert visit["global_control"]["control"] == 0.0 and visit["global_control"]["low"] > 0.3


def test_learned_send_time_in_a_half_hour_zone(engine: Engine, tmp_path: Path) -> None:
    """India is UTC+5:30: opens at 09:40-09:50 UTC are 15:10-15:20 local, not 14:xx."""
    ids = [f"i{i}" for i in range(3)]
    import_consented(engine, ids, zone="Asia/Kolkata", since=timedelta(days=30))
    rows: dict[str, list[str]] = {"id": [], "customer_id": [], "type": [], "occurred_at": []}
    for i, customer in enumerate(ids):
        for day in range(6):
            rows["id"].append(f"o{i}-{day}")
            rows["customer_id"].append(customer)
            rows["type"].append("open")
            rows["occurred_at"].append((AT - timedelta(days=day + 1)).replace(hour=9, minute=40 + day).isoformat())
    import_events(engine, pa.table(rows), clock=FixedClock(AT))
    pb = parse_playbook(base(**{"audience: 'tier in (\"gold\", \"silver\")'": "audience: 'tier in (\"gold\", \"silver\")'\n    send_time: {mode: learned}"}))
    run_cycle(engine, pb, FixedClock(AT - timedelta(hours=6)), transports(pb, tmp_path))  # 07:30 in Kolkata
    with engine.connect() as c:
        send_at = c.execute(sa.select(decisions.c.send_at)).scalars().all()
    assert {(t + timedelta(hours=5, minutes=30)).strftime("%H:%M") for t in send_at} == {"15:00"}


def test_held_out_customers_who_could_not_be_reached_are_not_the_gates_control(engine: Engine, tmp_path: Path) -> None:
    from legato.decide.uplift_gate import fit_gate
    from legato.playbook.models import UpliftGateSettings
    from tests.world import load_customers

    load_customers(engine, n=200)  # every 10th revoked, every 10th (offset 5) without consent
    pb = parse_playbook(base().replace("holdout: 0\n", "holdout: 0.5\n"))
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as c:
        held = c.execute(sa.select(decisions.c.customer_id, decisions.c.findings).where(decisions.c.holdout.is_(True))).all()
    unreachable = {r.customer_id for r in held if "holdout_unreachable" in r.findings}
    assert unreachable and all(int(cid[1:]) % 10 in (0, 5) for cid in unreachable)
    assert {r.customer_id for r in held if int(r.customer_id[1:]) % 10 in (0, 5) and int(r.customer_id[1:]) % 4 != 3} == unreachable
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=8)), transports(pb, tmp_path))  # settles the first cycle
    with engine.connect() as c:
        gate = fit_gate(c, pb.agents[0], pb.objectives[0], AT + timedelta(days=8), UpliftGateSettings(min_samples=50))
    assert gate.control == len(held) - len(unreachable)


def test_outside_the_whatsapp_window_the_policy_chooses_email_instead(engine: Engine, tmp_path: Path) -> None:
    from legato.trust.inbound import receive

    ids = [f"w{i}" for i in range(40)]
    import_consented(engine, ids)
    import_customers(engine, pa.table({"id": ids, "phone": [f"+1212555{i:04d}" for i in range(40)], "consent_whatsapp_marketing": ["express"] * 40}), clock=FixedClock(AT))
    pb = parse_playbook(
        base(
            **{
                "  email: {kind: file, path: out/email.jsonl}": "  email: {kind: file, path: out/email.jsonl}\n  whatsapp: {kind: file, path: out/wa.jsonl}",
                "creatives:\n  - {id: hello,": 'creatives:\n  - {id: chat, channel: whatsapp, body: "Test Co: new arrivals are in. Reply STOP to opt out."}\n  - {id: hello,',
                "actions: {creatives: [hello],": "actions: {creatives: [hello, chat],",
                "    - {channel: email, purpose: marketing}": "    - {channel: email, purpose: marketing}\n    - {channel: whatsapp, purpose: marketing}",
            }
        )
    )
    receive(engine, pb, "w1", "whatsapp", "hi, do you have boots in size 9?", AT - timedelta(hours=2))  # opens w1's window
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path)).agents["mailer"]
    with engine.connect() as c:
        channel = dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.channel)).all())
    assert not report.suppressed and report.scheduled == 40
    assert {channel[c] for c in ids if c != "w1"} == {"email"}  # WhatsApp was not on offer for them


def test_off_policy_evaluation_asks_the_candidate_among_the_same_channels(engine: Engine, tmp_path: Path) -> None:
    from legato.learn.evaluate import evaluate_candidate, logged_decisions
    from legato.playbook.models import PolicySpec

    test_the_policy_chooses_only_among_channels_the_customer_consented_to(engine, tmp_path)  # cycle at AT
    pb = two_channel_playbook()
    sinks = transports(pb, tmp_path)
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), sinks)
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), sinks)
    dispatch_due(engine, pb, FixedClock(AT + timedelta(days=4, hours=2)), sinks)
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=12)), sinks)  # settles both
    logged = logged_decisions(engine, pb, "mailer")
    assert logged.allowed is not None and (~logged.allowed).any()
    # "SMS, else e-mail" asked among what each customer could receive: e-mail-only customers
    # get e-mail, so every logged decision keeps weight on average; unmasked, they would all
    # be asked for SMS and a third of the weights would be 0.
    result = evaluate_candidate(engine, pb, "mailer", PolicySpec(name="fixed", params={"action": 1, "fallback": 0}))
    assert abs(result["mean_weight"] - 1.0) < 0.25, result["mean_weight"]


def test_a_fixed_rule_never_becomes_another_message(engine: Engine, tmp_path: Path) -> None:
    test_the_policy_chooses_only_among_channels_the_customer_consented_to(engine, tmp_path)  # cycle at AT
    pb = two_channel_playbook("{name: fixed, params: {action: 1}}")  # always the SMS
    report = run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), transports(pb, tmp_path)).agents["mailer"]
    with engine.connect() as c:
        rows = c.execute(sa.select(decisions.c.customer_id, decisions.c.channel, decisions.c.findings).where(decisions.c.decided_at > AT)).all()
    assert {r.channel for r in rows} == {"sms", None}
    email_only = [r for r in rows if int(r.customer_id[1:]) % 4 == 0]
    assert email_only and all(r.channel is None and r.findings == ["rule_action_unavailable"] for r in email_only)
    assert report.suppressed["rule_action_unavailable"] == len(email_only)
