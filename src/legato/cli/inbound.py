"""`legato inbound`: what customers write back — receive, list the escalated ones, resolve them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.clock import SystemClock, parse_instant
from legato.errors import LegatoError

inbound_app = typer.Typer(help="Customers' replies: opt-outs and HELP at once, the rest routed to a person.", no_args_is_help=True)
DatabaseOption = Annotated[Optional[str], typer.Option("--database", "-d", help="Database URL.")]
AtOption = Annotated[Optional[str], typer.Option("--at", help="Act at this time (ISO-8601), default now.")]


def _now(at: str | None):  # type: ignore[no-untyped-def]
    return parse_instant(at) if at else SystemClock().now()


@inbound_app.command("receive")
def receive_command(
    playbook: Annotated[Path, typer.Argument(help="The playbook (brand, support contact, caps for the HELP reply).")],
    customer: Annotated[str, typer.Option(help="Customer id of the sender.")],
    text: Annotated[str, typer.Option(help="What the customer wrote.")],
    channel: Annotated[str, typer.Option(help="sms, email, whatsapp, push or webhook.")] = "sms",
    database: DatabaseOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Take in one message from a customer and act on it.

    Example: `legato inbound receive playbook.yaml --customer C42 --channel sms --text "STOP"`
    """
    from legato.playbook.loader import load_playbook
    from legato.store.db import connect
    from legato.trust.inbound import receive

    try:
        handled = receive(connect(database), load_playbook(playbook), customer, channel, text, _now(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(handled.to_dict())
        return
    console.print(f"message {handled.message_id}: {handled.action}" + (f" ({handled.reason})" if handled.reason else ""))
    if handled.reply:
        console.print(f"reply to send: {handled.reply}", highlight=False)


@inbound_app.command("list")
def list_command(
    database: DatabaseOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Escalated messages waiting for a person, highest priority first.

    Example: `legato inbound list --json`
    """
    from legato.store.db import connect
    from legato.trust.inbound import open_messages

    try:
        rows = open_messages(connect(database), limit=limit)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"messages": rows})
        return
    table = Table("id", "customer", "reason", "priority", "received", "text", title="Messages waiting for a person", title_justify="left")
    for row in rows:
        table.add_row(str(row["id"]), row["customer_id"], row["reason"] or "", str(row["priority"]), f"{row['received_at']:%Y-%m-%d %H:%M}", row["text"][:60])
    console.print(table)


@inbound_app.command("resolve")
def resolve_command(
    message: Annotated[int, typer.Argument(help="The inbound message id.")],
    by: Annotated[str, typer.Option("--by", help="Who dealt with it.")],
    note: Annotated[str, typer.Option(help="How the customer was answered.")],
    database: DatabaseOption = None,
    at: AtOption = None,
) -> None:
    """Close a message a person has dealt with.

    Example: `legato inbound resolve 7 --by ana --note "called back, refund issued"`
    """
    from legato.store.db import connect
    from legato.trust.inbound import resolve

    try:
        resolve(connect(database), message, by, note, _now(at))
    except LegatoError as error:
        fail(error)
    console.print(f"resolved inbound message {message}")
