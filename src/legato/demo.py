"""``legato demo``: the whole loop on 64,000 real customers, offline, in well under a minute.

The Hillstrom e-mail experiment ships inside the package (see ``data/PROVENANCE.md``). The
demo turns its rows into customers, adds what the file does not have (ids, example.com
addresses, a US time zone per customer, one summary purchase event, a few revoked
consents — all derived from a hash of the row, so every run is the same), writes the example
playbook, and runs the example agents day by day on a simulated clock.
"""

from __future__ import annotations

import json
import sys
import shutil
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy import Engine
from rich import box
from rich.table import Table

from legato.audience.fields import declared_types
from legato.cli.output import console, emit_json
from legato.clock import FixedClock
from legato.datasets import HILLSTROM, open_binary, shipped_file
from legato.errors import Invalid
from legato.decide.holdout import unit_hash
from legato.deliver.channels import Transport
from legato.deliver.dispatch import transports
from legato.learn.simulation import Day, simulate
from legato.learn.simulator import HillstromWorld
from legato.monitor.lift import Lift, lift
from legato.validation import load_playbook
from legato.playbook.models import Playbook
from legato.store.db import connect, sqlite_url
from legato.store.ingest import import_customers, import_events
from legato.store.schema import review_items

START = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)  # a Monday; the cycle runs at 08:00 UTC
DAYS_PER_MONTH = 30.44
# Shares of the US population by time zone (rounded), used to give each customer a zone.
US_ZONES = (
    ("America/New_York", 0.47),
    ("America/Chicago", 0.29),
    ("America/Denver", 0.07),
    ("America/Los_Angeles", 0.17),
)
REVOKED_SHARE = 0.03
UNKNOWN_ZONE_SHARE = 0.05  # as in real profiles, some customers' zone is not known


def hillstrom_table() -> pa.Table:
    """The bundled Hillstrom rows, as published."""
    with open_binary(shipped_file(HILLSTROM)) as raw:
        return pacsv.read_csv(raw)


def demo_customers(rows: pa.Table, start: datetime) -> tuple[pa.Table, pa.Table]:
    """Customers and their summary purchase events, built from the Hillstrom rows."""
    n = rows.num_rows
    ids = np.array([f"H{i:05d}" for i in range(1, n + 1)])
    zone_draw = unit_hash(ids, "demo:zone")
    bounds = np.cumsum([share for _, share in US_ZONES])
    zones = np.array([name for name, _ in US_ZONES])[np.minimum(np.searchsorted(bounds, zone_draw), len(US_ZONES) - 1)]
    recency = rows.column("recency").to_numpy()
    last_purchase = np.datetime64(start.replace(tzinfo=None), "s") - (recency * DAYS_PER_MONTH * 86400).astype("timedelta64[s]")
    purchase_text = np.datetime_as_string(last_purchase, unit="s", timezone="UTC")
    revoked = unit_hash(ids, "demo:consent") < REVOKED_SHARE
    zones = np.where(unit_hash(ids, "demo:zone-known") < UNKNOWN_ZONE_SHARE, None, zones)
    customers = pa.table(
        {
            "id": ids,
            "email": np.char.add(np.char.lower(ids), "@example.com"),
            "time_zone": pa.array(zones.tolist(), type=pa.string()),
            "country": np.full(n, "US"),
            "consent_email_marketing": np.where(revoked, "revoked", "implied"),
            "consent_at": purchase_text,
            "recency_months": recency,
            "history": rows.column("history"),
            "history_segment": rows.column("history_segment"),
            "mens": rows.column("mens").to_numpy() == 1,
            "womens": rows.column("womens").to_numpy() == 1,
            "zip_code": rows.column("zip_code"),
            "newbie": rows.column("newbie").to_numpy() == 1,
            "purchase_channel": rows.column("channel"),
        }
    )
    events = pa.table(
        {
            "id": np.char.add(ids, "-summary"),
            "customer_id": ids,
            "type": np.full(n, "purchase"),
            "occurred_at": purchase_text,
            "revenue": rows.column("history"),
        }
    )
    return customers, events


ARMS = {"mens_collection": "mens", "womens_collection": "womens"}  # the example creatives → Hillstrom arms


def prepare_world(
    folder: Path, playbook: Playbook, playbook_path: Path, *, seed: int = 7, customers: int | None = None
) -> tuple[Engine, HillstromWorld, dict[str, Transport], datetime]:
    """A fresh database in ``folder`` holding the Hillstrom customers, and the world fitted on them
    (``seed`` draws its customers' responses: the same seed, the same simulated days;
    ``customers``: only the first that many rows, for a smaller store such as the console's tests')."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in ("legato.db", "legato.db-wal", "legato.db-shm"):
        (folder / leftover).unlink(missing_ok=True)
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    engine = connect(sqlite_url(folder.resolve() / "legato.db"))
    rows = hillstrom_table()
    if customers is not None:
        rows = rows.slice(0, customers)
    people, events = demo_customers(rows, START)
    clock = FixedClock(START)
    import_customers(engine, people, attribute_types=declared_types(playbook.attributes), clock=clock)
    import_events(engine, events, clock=clock)
    world = HillstromWorld.fit(rows, people.column("id").to_numpy(zero_copy_only=False), seed=seed)
    # Messages go to the folder's own outbox: a simulation never writes into a real project's.
    return engine, world, transports(playbook, folder), START


# Short headers so a day fits an 80-column terminal; the legend says what each means.
DAY_COLUMNS = ("agent", "decided", "held", "none", "blocked", "review", "sent", "learned")
DAY_LEGEND = (
    "  each day: decided = customers the agent looked at, held = its holdout,\n"
    "  none = chose to send nothing, blocked = a guardrail or the budget stopped it,\n"
    "  review = waiting for a person, learned = outcomes learned from"
)


def day_table(day: Day) -> tuple[Table, list[str]]:
    """One simulated day: a row per agent, and a note per agent on what was suppressed or delayed and why."""
    table = Table(title=f"day {day.number}  {day.cycle.at:%a %Y-%m-%d}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in DAY_COLUMNS:
        table.add_column(column, justify="left" if column == "agent" else "right", min_width=len(column), overflow="fold")
    notes: list[str] = []
    for agent_id, agent in day.cycle.agents.items():
        table.add_row(
            agent_id, f"{agent.audience:,}", f"{agent.holdout:,}", f"{agent.nothing:,}", f"{agent.suppressed_total:,}",
            f"{agent.queued:,}", f"{day.sent[agent_id]:,}", f"{agent.learned_from:,}",
        )
        top = ", ".join(f"{r} {c:,}" for r, c in agent.suppressed.most_common(3))
        by_rule = ", ".join(f"{rule} {count:,}" for rule, count in agent.delayed_by.most_common())
        delayed = f"; delayed {agent.delayed:,} ({by_rule})" if agent.delayed else ""
        notes.append(f"  {agent_id}: suppressed {top or 'nothing'}{delayed}")
    return table, notes


FILE_CHANNEL = "email: {kind: file, path: outbox/email.jsonl}"


def smtp_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``legato demo --smtp``, or an :class:`Invalid` naming the fix."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"--smtp {text!r} is not HOST:PORT", hint="e.g. --smtp 127.0.0.1:2525 (a local server: python -m aiosmtpd -n -l 127.0.0.1:2525)")
    return host.strip("[]"), int(port)


def run_demo(folder: Path, *, days: int, as_json: bool, smtp: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    playbook_path = folder / "playbook.yaml"
    text = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    if smtp is not None:
        # The demo's e-mails go to a real SMTP server: the written playbook says so, as a user's would.
        host, port = smtp_address(smtp)
        assert FILE_CHANNEL in text, "the example playbook's e-mail channel changed; update legato.demo"
        text = text.replace(FILE_CHANNEL, f"email: {{kind: smtp, host: {json.dumps(host)}, port: {port}, connections: 4}}")
    playbook_path.write_text(text, encoding="utf-8")
    playbook = load_playbook(playbook_path)
    say = (lambda *a, **k: None) if as_json else console.print
    say(f"[bold]Legato demo[/] in {folder}/ — the Hillstrom e-mail experiment, 64,000 real customers")
    engine, world, sinks, _ = prepare_world(folder, playbook, playbook_path)
    url = engine.url.render_as_string(hide_password=True)
    say(
        "  imported 64,000 customers with one summary purchase each; "
        "their responses are simulated by a model fitted on the experiment's real outcomes"
    )
    for agent in playbook.agents:
        say(f"  agent {agent.id}: trust stage {agent.trust_stage}, policy {agent.policy.name}, holdout {agent.holdout:.0%}")

    say(DAY_LEGEND, highlight=False)

    def show(day: Day) -> None:
        table, notes = day_table(day)
        say(table)
        say("\n".join(notes), highlight=False)

    history = simulate(engine, playbook, world, ARMS, START, days, sinks, on_day=None if as_json else show)
    with engine.connect() as connection:
        by_day = [
            (number, agent.id, {l.metric: l for l in lift(connection, agent.id, decided_from=START + timedelta(days=number - 1), decided_to=START + timedelta(days=number))})
            for number in range(1, days + 1)
            for agent in playbook.agents
        ]
        final = {agent.id: lift(connection, agent.id) for agent in playbook.agents}
    last = START + timedelta(days=days - 1, hours=12)
    console_key = console_key_for(engine, last)
    serve_line = f"legato serve --database {url} --playbook {playbook_path} --at {last:%Y-%m-%dT%H:%M}"
    if as_json:
        emit_json(
            {
                "console": {"url": CONSOLE_URL, "serve": serve_line, "key": console_key, "key_name": CONSOLE_KEY_NAME},
                "folder": str(folder),
                "database": url,
                "days": [{"day": d.number, "sent": dict(d.sent), "outcome_events": d.outcome_events, "agents": [a.to_dict() for a in d.cycle.agents.values()]} for d in history],
                "lift_by_decision_day": [
                    {"day": number, "agent": agent_id, **{m: l.to_dict() for m, l in metrics.items()}} for number, agent_id, metrics in by_day if metrics
                ],
                "lift": {agent_id: [l.to_dict() for l in lifts] for agent_id, lifts in final.items()},
                "review_queue": [{"kind": k, "agent": a, "reason": r, "status": s, "items": n} for k, a, r, s, n in queue_summary(engine)],
            }
        )
        return
    sent = {agent.id: sum(d.sent[agent.id] for d in history) for agent in playbook.agents}
    senders = [agent_id for agent_id, count in sent.items() if count]
    learning = Table(title="Learning: reward per customer, agent vs holdout, by day decided", title_justify="left")
    for column in ("day", "agent", "agent", "holdout", "lift", "95% interval"):
        text = column == "day" or (column == "agent" and not learning.columns[1:])
        learning.add_column(column, justify="left" if text else "right", no_wrap=True)
    for number, agent_id, metrics in by_day:
        reward = metrics.get("reward_per_customer")
        if reward is None or agent_id not in senders:
            continue
        learning.add_row(
            str(number), agent_id, f"{reward.treated:.4f}", f"{reward.control:.4f}",
            f"{reward.difference:+.4f}", _interval(reward),
        )
    say(learning)
    kpis = Table(title=f"KPIs after {days} days (attribution windows closed)", title_justify="left")
    for column in ("agent", "metric", "agent", "holdout", "lift", "95% interval"):
        text = column == "metric" or (column == "agent" and not kpis.columns)
        kpis.add_column(column, justify="left" if text else "right", no_wrap=True)
    for agent_id, lifts in final.items():
        if agent_id not in senders:
            continue
        for item in lifts:
            if item.metric == "reward_per_customer" or (item.low is None and item.note and item.note.startswith("no ")):
                continue  # reward is the learning table's; a metric with no outcome recorded has nothing to show
            percent = item.metric.endswith("rate")
            label = {"visit_rate": "visits", "conversion_rate": "conversions", "revenue_per_customer": "revenue ($)", "open_rate": "opens", "click_rate": "clicks"}[item.metric]
            value = (lambda v: f"{v:.2%}") if percent else (lambda v: f"{v:.3f}")
            lift_text = f"{item.difference * 100:+.2f} pp" if percent else f"{item.difference:+.3f}"
            kpis.add_row(agent_id, label, value(item.treated), value(item.control), lift_text, _interval(item, percent))
    say(kpis)
    for agent in playbook.agents:
        if agent.id not in senders:
            say(f"  {agent.id} (trust stage {agent.trust_stage}) sent nothing: its proposals wait for a person in the review queue.")
    queue = Table(title="Review queue: what the agents handed to people", title_justify="left")
    for column in ("agent", "stage", "kind", "reason", "status", "items"):
        queue.add_column(column, justify="right" if column == "items" else "left", no_wrap=True)
    stages = {agent.id: agent.trust_stage for agent in playbook.agents}
    for kind, agent_id, reason, status, count in queue_summary(engine):
        queue.add_row(agent_id or "", str(stages.get(agent_id or "", "")), kind, reason, status, f"{count:,}")
    say(queue)
    program = Path(sys.argv[0]).name if sys.argv and Path(sys.argv[0]).name == "legato" else "legato"
    program = sys.argv[0] if program == "legato" and "/" in (sys.argv[0] if sys.argv else "") else program
    at = f"--at {last:%Y-%m-%dT%H:%M}"  # the demo's clock, not today's
    say("\n[bold]What to look at next[/] (the demo runs on a simulated clock, hence --at)")
    for line in (
        f"the review queue:      {program} review list --database {url}",
        f"one item:              {program} review show ID --database {url} {at}",
        f"approve it:            {program} review approve ID --hash HASH --reviewer NAME --database {url} {at}",
        f"an agent's record:     {program} agents show welcome_email --database {url} {at}",
        f"what guardrails did:   {program} report guardrails --database {url}",
        f"the messages sent:     {folder}/outbox/email.jsonl" if smtp is None else f"the e-mails sent:      at the SMTP server {smtp}",
        f"the strategy:          {playbook_path}   (check it: {program} validate {playbook_path})",
        f"one more cycle:        {program} run {playbook_path} --database {url} --at {START + timedelta(days=days):%Y-%m-%dT%H:%M}",
    ):
        say(f"  • {line}", soft_wrap=True, highlight=False)
    say("\n[bold]The web console[/]: the overview, each agent, the review queue, in a browser")
    say(f"  1. start the server:  {program} serve --database {url} --playbook {playbook_path} --at {last:%Y-%m-%dT%H:%M}", soft_wrap=True, highlight=False)
    say(f"  2. open {CONSOLE_URL} and sign in with this key (an admin key named {CONSOLE_KEY_NAME}, shown only now):", soft_wrap=True, highlight=False)
    say(f"     {console_key}", soft_wrap=True, highlight=False, markup=False)


CONSOLE_URL = "http://127.0.0.1:8000/"
CONSOLE_KEY_NAME = "demo"


def console_key_for(engine: Engine, at: datetime) -> str:
    """An admin key for the demo's store, made through the service (the secret is not kept: it is printed once)."""
    from legato.service import keys
    from legato.store.status import KeyRole

    _, secret = keys.create(engine, CONSOLE_KEY_NAME, KeyRole.ADMIN, by="legato demo", now=at)
    return secret


def queue_summary(engine: Engine) -> list[tuple[str, str | None, str, str, int]]:
    """Review items by kind (decision, conversation, finding), agent, reason and status.

    Conversations and findings may have no agent (a reply from someone no agent wrote to).
    """
    agent = sa.func.coalesce(review_items.c.agent_id, "")
    query = (
        sa.select(review_items.c.kind, review_items.c.agent_id, review_items.c.reason, review_items.c.status, sa.func.count())
        .group_by(review_items.c.kind, review_items.c.agent_id, review_items.c.reason, review_items.c.status)
        .order_by(agent, review_items.c.kind, sa.func.count().desc())
    )
    with engine.connect() as connection:
        return [(k, a, r, s, int(n)) for k, a, r, s, n in connection.execute(query)]


def _interval(item: Lift, percent: bool = False) -> str:
    if item.low is None or item.high is None:
        return "too few"
    if percent:
        return f"[{item.low * 100:+.2f}, {item.high * 100:+.2f}] pp"
    return f"[{item.low:+.3f}, {item.high:+.3f}]"
