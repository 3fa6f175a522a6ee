"""`legato outbox`: messages held in doubt (``in_doubt: hold``) and a person's answer for them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from legato.cli.output import console, emit_json, fail
from legato.errors import LegatoError

outbox_app = typer.Typer(help="Messages in doubt: handed to a provider whose answer was lost, held for a person.", no_args_is_help=True)
DatabaseOption = Annotated[Optional[str], typer.Option("--database", "-d", help="Database URL.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@outbox_app.command("in-doubt")
def in_doubt_command(database: DatabaseOption = None, limit: int = 100, as_json: JsonOption = False) -> None:
    """List messages held in doubt, oldest first.

    Example: `legato outbox in-doubt -d sqlite:///legato.db`
    """
    from legato.deliver.dispatch import held_in_doubt
    from legato.store.db import connect

    try:
        held = held_in_doubt(connect(database), limit)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"in_doubt": held})
        return
    if not held:
        console.print("no message is held in doubt")
    for item in held:
        console.print(f"{item['message_id']} (decision {item['decision_id']}, {item['channel']} to {item['customer_id']}, since {item['in_doubt_since']}): {escape(str(item['why']))}", highlight=False)


@outbox_app.command("resolve")
def resolve_command(
    message_ids: Annotated[list[str], typer.Argument(help="Message ids (from `legato outbox in-doubt`).")],
    delivered: Annotated[bool, typer.Option("--delivered/--resend", help="It reached the customer (sent), or send it again.")] = False,
    by: Annotated[str, typer.Option(help="Who decided.")] = "",
    reason: Annotated[str, typer.Option(help="Why (e.g. 'found in the provider's log').")] = "",
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Say what became of messages held in doubt: `--delivered` (recorded sent) or `--resend`.

    Example: `legato outbox resolve MESSAGE_ID --delivered --by ana --reason "in the relay's log"`
    """
    from datetime import datetime, timezone

    from legato.deliver.dispatch import resolve_in_doubt
    from legato.store.db import connect

    try:
        changed = resolve_in_doubt(connect(database), message_ids, delivered=delivered, by=by, reason=reason, now=datetime.now(timezone.utc))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"resolved": changed, "delivered": delivered})
        return
    what = "recorded sent" if delivered else "to be sent again at the next dispatch"
    console.print(f"{changed:,} message{'s' if changed != 1 else ''} {what}" + ("" if changed == len(message_ids) else f" ({len(message_ids) - changed:,} not held in doubt)"), highlight=False)
