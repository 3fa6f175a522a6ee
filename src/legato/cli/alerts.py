"""`legato alerts`: the incidents the monitors raised and where each was delivered; one delivery run for cron."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from legato.cli.options import AtOption, DatabaseOption, JsonOption, now_at
from legato.cli.output import console, emit_json, fail
from legato.errors import LegatoError

alerts_app = typer.Typer(help="Alerts: one per incident (a stop-loss, an anomaly), a follow-up when it clears.", no_args_is_help=True)


@alerts_app.command("list")
def list_command(
    agent: Annotated[Optional[str], typer.Option(help="Only this agent's alerts.")] = None,
    status: Annotated[Optional[str], typer.Option(help="open or cleared.")] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """The incidents, open and cleared, each with its delivery to each destination.

    Example: `legato alerts list --status open -d sqlite:///legato.db`
    """
    from legato.service import alerts
    from legato.store.db import connect

    try:
        found = alerts.listing(connect(database), agent_id=agent, status=status)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"alerts": found})
        return
    if not found:
        console.print("no alert has been raised")
    for alert in found:
        cleared = f", cleared {alert['cleared_at'][:16]} by {alert['cleared_by']}" if alert["cleared_at"] else ""
        repeats = f", seen {alert['repeats']} more time(s)" if alert["repeats"] else ""
        console.print(f"#{alert['id']} {escape(alert['incident'])} ({alert['status']}) opened {alert['opened_at'][:16]}{cleared}{repeats}", highlight=False)
        console.print(f"  {escape(alert['summary'])}", highlight=False)
        for d in alert["deliveries"]:
            detail = f", at {d['sent_at'][:16]}" if d["sent_at"] else f", next try {d['due_at'][:16]}" if d["status"] == "pending" else ""
            console.print(f"  {d['phase']} to {escape(d['destination'])}: {d['status']}, {d['attempts']} attempt(s){detail}", highlight=False)
            if d["last_error"] and d["status"] != "sent":
                console.print(f"    last error: {escape(d['last_error'])}", highlight=False)


@alerts_app.command("deliver")
def deliver_command(
    playbook: Annotated[Optional[Path], typer.Option("--playbook", help="The playbook YAML file; without it, the newest uploaded to the store.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver the alerts and follow-ups due, once, then exit (for cron; `legato run` and
    `legato worker` do it as well). Each goes once to each destination; failures wait and retry.

    Example: `legato alerts deliver --playbook playbook.yaml -d sqlite:///legato.db`
    """
    from legato.service import alerts
    from legato.service.playbook_source import StoreSource
    from legato.store.db import connect
    from legato.validation import load_playbook

    try:
        loaded = load_playbook(playbook) if playbook is not None else None  # a broken playbook is named before the store is opened
        engine = connect(database)
        if loaded is None:
            loaded = StoreSource(engine, Path.cwd()).first().playbook  # the newest uploaded to the store
        report = alerts.deliver(engine, loaded, now_at(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(report)
        return
    for which in ("sent", "retry", "failed"):
        for destination, n in sorted(report[which].items()):
            console.print(f"{which:<7} {n:>4}  {escape(destination)}", highlight=False)
    if not any(report.values()):
        console.print("no alert was due")
