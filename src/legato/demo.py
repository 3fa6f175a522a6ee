"""``legato demo``: the whole loop on 64,000 real customers, offline, in well under a minute.

The Hillstrom e-mail experiment ships inside the package (see ``data/PROVENANCE.md``). The
demo turns its rows into customers, adds what the file does not have (ids, example.com
addresses, a US time zone per customer, one summary purchase event, a few revoked
consents — all derived from a hash of the row, so every run is the same), writes the example
playbook, and runs the example agents day by day on a simulated clock.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.table import Table

from legato.audience.fields import declared_types
from legato.cli.output import console, emit_json
from legato.clock import FixedClock
from legato.decide.holdout import unit_hash
from legato.deliver.dispatch import dispatch_due, transports
from legato.engine import AgentReport, run_cycle
from legato.playbook.loader import load_playbook
from legato.store.db import connect, sqlite_url
from legato.store.ingest import import_customers, import_events

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


def hillstrom_table() -> pa.Table:
    """The bundled Hillstrom rows, as published."""
    with gzip.open(files("legato").joinpath("data/hillstrom.csv.gz").open("rb")) as raw:  # type: ignore[arg-type]
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
    customers = pa.table(
        {
            "id": ids,
            "email": np.char.add(np.char.lower(ids), "@example.com"),
            "time_zone": zones,
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


@dataclass
class DemoTotals:
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, report: AgentReport, sent: int) -> None:
        totals = self.agents.setdefault(
            report.agent_id,
            {"trust_stage": report.stage, "decisions": 0, "holdout": 0, "do_nothing": 0, "suppressed": 0, "queued_for_review": 0, "sent": 0},
        )
        totals["decisions"] += report.audience
        totals["holdout"] += report.holdout
        totals["do_nothing"] += report.nothing
        totals["suppressed"] += report.suppressed_total
        totals["queued_for_review"] += report.queued
        totals["sent"] += sent


def run_demo(folder: Path, *, days: int, as_json: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in ("legato.db", "legato.db-wal", "legato.db-shm"):
        (folder / leftover).unlink(missing_ok=True)
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    playbook_path = folder / "playbook.yaml"
    playbook_path.write_text(files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    playbook = load_playbook(playbook_path)
    url = sqlite_url(folder.resolve() / "legato.db")
    engine = connect(url)
    say = (lambda *a, **k: None) if as_json else console.print

    say(f"[bold]Legato demo[/] in {folder}/ — loading the Hillstrom e-mail experiment (64,000 real customers)")
    customers, events = demo_customers(hillstrom_table(), START)
    clock = FixedClock(START)
    imported = import_customers(engine, customers, attribute_types=declared_types(playbook.attributes), clock=clock)
    purchases = import_events(engine, events, clock=clock)
    say(f"  imported {imported.inserted:,} customers and {purchases.inserted:,} purchase events")

    channel_transports = transports(playbook, playbook_path.parent)
    totals = DemoTotals()
    daily: list[dict[str, Any]] = []
    for day in range(days):
        clock.set(START + timedelta(days=day))
        report = run_cycle(engine, playbook, clock, channel_transports)
        clock.set(START + timedelta(days=day, hours=15, minutes=59))  # 23:59 UTC: every US window has passed
        delivered = dispatch_due(engine, playbook, clock, channel_transports)
        table = Table(title=f"day {day + 1}  {report.at:%a %Y-%m-%d}", title_justify="left")
        for column in ("agent", "stage", "decided", "holdout", "nothing", "suppressed", "review", "sent"):
            table.add_column(column, justify="left" if column == "agent" else "right")
        reasons: list[str] = []
        for agent_id, agent in report.agents.items():
            sent = agent.sent + delivered.sent.get(agent_id, 0)
            totals.add(agent, sent)
            table.add_row(
                agent_id, str(agent.stage), f"{agent.audience:,}", f"{agent.holdout:,}", f"{agent.nothing:,}",
                f"{agent.suppressed_total:,}", f"{agent.queued:,}", f"{sent:,}",
            )
            top = ", ".join(f"{r} {c:,}" for r, c in agent.suppressed.most_common(3))
            reasons.append(f"  {agent_id} suppressed: {top or 'none'}")
            daily.append({"day": day + 1, **agent.to_dict(), "sent": sent})
        say(table)
        say("\n".join(reasons), highlight=False)

    if as_json:
        emit_json({"folder": str(folder), "database": url, "days": daily, "totals": totals.agents})
        return
    kpis = Table(title=f"KPIs over {days} days", title_justify="left")
    for column in ("agent", "stage", "decisions", "holdout", "sent", "sent/eligible", "suppressed", "review"):
        kpis.add_column(column, justify="left" if column == "agent" else "right")
    for agent_id, t in totals.agents.items():
        eligible = t["decisions"] - t["holdout"]
        kpis.add_row(
            agent_id, str(t["trust_stage"]), f"{t['decisions']:,}", f"{t['holdout']:,}", f"{t['sent']:,}",
            f"{t['sent'] / eligible:.1%}" if eligible else "-", f"{t['suppressed']:,}", f"{t['queued_for_review']:,}",
        )
    say(kpis)
    say(
        "\n[bold]What to look at next[/]\n"
        f"  • the messages that went out: {folder}/outbox/email.jsonl\n"
        f"  • the strategy the agents followed: {playbook_path} (check it with `legato validate {playbook_path}`)\n"
        f"  • a segment: `legato segment {playbook_path} big_spenders --database {url}`\n"
        f"  • one more cycle by hand: `legato run {playbook_path} --database {url} --at 2024-03-11T08:00`"
    )
