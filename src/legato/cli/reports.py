"""Reports on what the guardrails did and whether targeting was fair."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Optional

import sqlalchemy as sa
import typer
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.clock import SystemClock
from legato.errors import LegatoError

report_app = typer.Typer(help="Reports: guardrail outcomes, lift and fairness audits.", no_args_is_help=True)
DatabaseOption = Annotated[Optional[str], typer.Option("--database", "-d", help="Database URL.")]


@report_app.command("guardrails")
def guardrails(
    database: DatabaseOption = None,
    agent: Annotated[Optional[str], typer.Option(help="Only this agent.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """How many decisions each rule blocked, delayed or escalated, per agent and day.

    Example: `legato report guardrails --database sqlite:///legato-demo/legato.db`
    """
    from legato.store.db import connect
    from legato.store.schema import decisions

    try:
        engine = connect(database)
    except LegatoError as error:
        fail(error)
    query = sa.select(decisions.c.agent_id, decisions.c.decided_at, decisions.c.findings, sa.func.count().label("n")).group_by(
        decisions.c.agent_id, decisions.c.decided_at, decisions.c.findings
    )
    if agent:
        query = query.where(decisions.c.agent_id == agent)
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    with engine.connect() as connection:
        for row in connection.execute(query):
            findings = row.findings if isinstance(row.findings, list) else json.loads(row.findings or "[]")
            for reason in findings:
                counts[(row.agent_id, row.decided_at.date().isoformat())][reason] += row.n
    rows = [
        {"agent": agent_id, "day": day, "rule": reason, "outcome": _outcome(reason), "decisions": n}
        for (agent_id, day), reasons in sorted(counts.items())
        for reason, n in reasons.most_common()
    ]
    if as_json:
        emit_json({"rules": rows})
        return
    table = Table("agent", "day", "rule", "outcome", "decisions", title="Guardrail outcomes", title_justify="left")
    for row in rows:
        table.add_row(row["agent"], row["day"], row["rule"], row["outcome"], f"{row['decisions']:,}")
    console.print(table)


def _outcome(reason: str) -> str:
    if reason.startswith("delayed:"):
        return "delayed"
    if reason.startswith("escalate:"):
        return "escalated"
    if reason == "uplift_gate":
        return "not worth contacting"
    if reason == "holdout_unreachable":
        return "held out; could not have been reached anyway"
    return "blocked"


@report_app.command("lift")
def lift_report(
    database: DatabaseOption = None,
    agent: Annotated[Optional[str], typer.Option(help="Only this agent.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What each agent adds: every KPI against its holdout and against the global control group,
    with 95% intervals (intent-to-treat, settled decisions only).

    Example: `legato report lift --database sqlite:///legato-demo/legato.db`
    """
    from legato.monitor.lift import lift
    from legato.store.db import connect
    from legato.store.schema import agents

    try:
        engine = connect(database)
    except LegatoError as error:
        fail(error)
    rows = []
    with engine.connect() as connection:
        agent_ids = [agent] if agent else list(connection.execute(sa.select(agents.c.id).order_by(agents.c.id)).scalars())
        for agent_id in agent_ids:
            for against in ("holdout", "global_control"):
                # Without a global control group (or before its decisions settle) there is nothing to compare.
                rows += [
                    {"agent": agent_id, "against": against, **item.to_dict()}
                    for item in lift(connection, agent_id, against=against)
                    if item.n_control > 0 and item.n_treated > 0
                ]
    if as_json:
        emit_json({"lift": rows})
        return
    table = Table("agent", "against", "metric", "treated", "control", "difference", "95% interval", "n treated", "n control", title="Lift (intent-to-treat)", title_justify="left")
    for row in rows:
        interval = "too few to say" if row["low"] is None else f"[{row['low']:+.4f}, {row['high']:+.4f}]"
        table.add_row(row["agent"], row["against"], row["metric"], f"{row['treated']:.4f}", f"{row['control']:.4f}", f"{row['difference']:+.4f}", interval, f"{row['n_treated']:,}", f"{row['n_control']:,}")
    console.print(table)
    if not rows:
        console.print("no settled decisions yet: outcomes are attributed once each objective's window has closed")


@report_app.command("fairness")
def fairness(
    playbook: Annotated[Path, typer.Argument(help="The playbook that declares the protected attributes.")],
    database: DatabaseOption = None,
    at: Annotated[Optional[str], typer.Option("--at", help="Audit at this time (ISO-8601), default now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Selection rates per protected group for each agent, with the four-fifths rule and Fisher's test.

    Exits 1 when a breach was found. Each breach is recorded in the audit log and goes to the
    review queue as a finding (one per agent, attribute and day; re-running adds none).
    Example: `legato report fairness playbook.yaml --json`
    """
    from legato.clock import parse_instant
    from legato.monitor.fairness import audit_fairness
    from legato.validation import load_playbook
    from legato.store.db import connect

    try:
        loaded = load_playbook(playbook)
        if not loaded.guardrails.protected_attributes:
            raise LegatoError("the playbook declares no protected attributes to audit", hint="list them under guardrails.protected_attributes")
        audits = audit_fairness(connect(database), loaded, parse_instant(at) if at else SystemClock().now())
    except LegatoError as error:
        fail(error)
    breached = any(a.breaches for a in audits)
    if as_json:
        emit_json({"audits": [a.to_dict() for a in audits], "breach": breached})
    else:
        for audit in audits:
            table = Table("group", "customers", "selected", "rate", title=f"{audit.agent_id} by {audit.attribute}", title_justify="left")
            for g in audit.groups:
                table.add_row(g.group, f"{g.customers:,}", f"{g.selected:,}", f"{g.rate:.1%}")
            console.print(table)
            impact = "n/a" if audit.disparate_impact is None else f"{audit.disparate_impact:.2f}"
            queued = f" → review item {audit.review_item_id}" if audit.review_item_id is not None else ""
            console.print(f"disparate impact ratio {impact}; breaches: {len(audit.breaches)}{queued}")
    if breached:
        raise typer.Exit(1)


suppress_app = typer.Typer(help="The global suppression / do-not-contact list (no marketing on any channel).", no_args_is_help=True)


@suppress_app.command("add")
def suppress_add(
    reason: Annotated[str, typer.Option(help="Why, e.g. 'national do-not-call registry' or 'legal hold'.")],
    email: Annotated[Optional[str], typer.Option(help="An e-mail address.")] = None,
    phone: Annotated[Optional[str], typer.Option(help="A phone number in any usual form, with its country code (+1 415 555 0100) or --country.")] = None,
    customer: Annotated[Optional[str], typer.Option(help="A customer id.")] = None,
    country: Annotated[Optional[str], typer.Option(help="The country (2 letters) a --phone without country code is read in.")] = None,
    database: DatabaseOption = None,
) -> None:
    """Put an address, number or customer on the list; agents and the dispatcher honour it at once.

    Numbers are listed in E.164 and addresses lower-cased, the form imports store, so any
    way of writing a number stops it.

    Example: `legato suppress add --email someone@example.com --reason "asked by phone"`
    """
    from legato.guard.contact import add_suppression
    from legato.store.db import connect

    given = [(kind, value) for kind, value in (("email", email), ("phone", phone), ("customer", customer)) if value]
    try:
        if len(given) != 1:
            raise LegatoError("give exactly one of --email, --phone or --customer")
        engine = connect(database)
        listed = add_suppression(engine, given[0][0], given[0][1], reason, SystemClock().now(), country=country)
    except LegatoError as error:
        fail(error)
    console.print(f"suppressed {given[0][0]} {listed}", markup=False, highlight=False)
