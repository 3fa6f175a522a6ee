"""`legato inbound`: what customers write back — receive one, list those waiting in the review queue."""

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
    channel: Annotated[Optional[str], typer.Option(help="sms, email, whatsapp, push or webhook; default sms if the playbook has it, else its first channel.")] = None,
    database: DatabaseOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Take in one message from a customer and act on it.

    Example: `legato inbound receive playbook.yaml --customer C42 --channel sms --text "STOP"`
    """
    from legato.service import replies
    from legato.validation import load_playbook

    try:
        handled = replies.receive_in(database, load_playbook(playbook), customer, text, now=_now(at), channel=channel)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(handled.to_dict())
        return
    console.print(f"message {handled.message_id}: {handled.action}" + (f" ({handled.reason})" if handled.reason else ""))
    if handled.review_item_id is not None:
        console.print(f"waiting for a person as review item {handled.review_item_id} (legato review show {handled.review_item_id})", highlight=False)
    if handled.reply:
        console.print(f"reply to send: {handled.reply}", highlight=False)


@inbound_app.command("opt-out")
def opt_out_command(
    item: Annotated[int, typer.Argument(help="The review item of the reply (reason possible_opt_out).")],
    playbook: Annotated[Path, typer.Option(help="The playbook (brand and channels for the confirmation).")],
    reviewer: Annotated[str, typer.Option(help="Who decided.")],
    channel: Annotated[Optional[list[str]], typer.Option(help="Channel to revoke (repeat); default: the reply's channel and those it names.")] = None,
    database: DatabaseOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Decide that a reply waiting for a person is an opt-out: revoke consent and close the item.

    A reply that is not one is closed with `legato review resolve ITEM --note ...`; until either
    happens, no marketing reaches the customer.
    Example: `legato inbound opt-out 12 --playbook playbook.yaml --reviewer ana --channel email`
    """
    from legato.validation import load_playbook
    from legato.store.db import connect
    from legato.trust.inbound import confirm_opt_out

    try:
        loaded = load_playbook(playbook)
        revoked, reply = confirm_opt_out(connect(database), loaded, item, reviewer, _now(at), channels=frozenset(channel) if channel else None)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"item": item, "revoked": sorted(revoked), "reply": reply})
        return
    console.print(f"item {item}: marketing revoked on {', '.join(sorted(revoked))}", highlight=False)
    console.print(f"reply to send: {reply}", highlight=False)


@inbound_app.command("unsubscribe")
def unsubscribe_command(
    token: Annotated[str, typer.Argument(help="The t= value of the message's unsubscribe link.")],
    database: DatabaseOption = None,
    at: AtOption = None,
    everything: Annotated[bool, typer.Option("--everything", help="Revoke marketing on every channel, not only the message's.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Honour an unsubscribe link: verify its signed token and revoke marketing on that message's channel.

    What `legato serve`'s /v1/unsubscribe does (the page and the RFC 8058 one-click POST); a
    link used again changes nothing. Example: `legato inbound unsubscribe mfrgg.q3kx... --json`
    """
    from legato.store.db import connect
    from legato.trust.inbound import unsubscribe

    try:
        done = unsubscribe(connect(database), token, _now(at), every_channel=everything)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(done.to_dict())
        return
    where = "every channel" if everything else done.channel
    state = "revoked" if done.changed else "was revoked already; nothing changed"
    console.print(f"customer {done.customer_id}: marketing by {where} {state} (message {done.message_id})", highlight=False)


@inbound_app.command("returned-mail")
def returned_mail_command(
    file: Annotated[str, typer.Argument(help="The e-mail as it arrived (a bounce or a feedback-loop report); - reads standard input.")] = "-",
    database: DatabaseOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Record a bounce (RFC 3464) or a spam complaint (RFC 5965 feedback report) that came back by e-mail.

    A hard bounce makes the address undeliverable, a complaint revokes marketing and lists the
    address do-not-contact; each is an event of the message's decision, once. Pipe the
    bounce mailbox into it, e.g. a Postfix alias `bounces: "|legato inbound returned-mail -d URL"`.
    Example: `legato inbound returned-mail bounce.eml --json`
    """
    import sys

    from legato.service import deliveries
    from legato.store.db import connect

    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        fail(LegatoError(f"cannot read {file}: {exc.strerror or exc}", hint="give the e-mail's file, or - to read standard input"))
    try:
        done = deliveries.record_report_email(connect(database), raw, now=_now(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"recorded": [r.to_dict() for r in done]})
        return
    if not done:
        console.print("nothing to record (a delay notice, or no failure in it)", highlight=False)
    for r in done:
        console.print(f"message {r.message_id} (decision {r.decision_id}): {r.event_type}"
                      + ("" if r.new else ", recorded before; nothing changed"), highlight=False)


@inbound_app.command("pending")
def pending_command(
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Opt-outs the database could not take when they came: write them to it now, and list any still waiting.

    They are kept in a file beside the database (or at $LEGATO_PENDING_OPTOUTS); while any
    waits, `legato run` decides and sends nothing. Every command that opens the database
    writes them back when it can; this one says what happened.
    Example: `legato inbound pending`
    """
    from legato.store.db import unopened
    from legato.trust import pending_optouts

    engine = unopened(database)  # the file is found even when the database cannot be opened
    path = pending_optouts.path_for(engine)
    written: list[pending_optouts.PendingOptOut] = []
    problem: str | None = None
    if pending_optouts.pending(path):
        try:
            written = pending_optouts.replay(engine, path=path)
        except LegatoError as error:
            problem = str(error)
    waiting = pending_optouts.pending(path)
    if as_json:
        emit_json({"file": str(path), "written": [e.id for e in written], "waiting": [e.__dict__ for e in waiting], "problem": problem})
    else:
        for entry in written:
            console.print(f"written: {entry.describe()}", highlight=False)
        for entry in waiting:
            console.print(f"[bold red]waiting:[/] {entry.describe()}", highlight=False)
        if not written and not waiting:
            console.print(f"no opt-out waits ({path})", highlight=False)
    if waiting:
        fail(pending_optouts.OptOutsWaiting(f"{len(waiting)} opt-out(s) still wait in {path}" + (f": {problem}" if problem else ""),
                                            hint="make the database writable and run this again"))


@inbound_app.command("list")
def list_command(
    database: DatabaseOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replies waiting for a person: the review queue's conversations, highest priority first.

    They are review items like any other (`legato review list` shows them with the rest);
    answer the customer, then `legato review resolve ITEM --note "..." --reviewer NAME`.
    Example: `legato inbound list --json`
    """
    from legato.service import review
    from legato.store.db import connect
    from legato.store.status import ReviewKind

    try:
        items = review.queue(connect(database), kind=ReviewKind.CONVERSATION, limit=limit)
    except LegatoError as error:
        fail(error)
    # Replies are masked when stored; those stored before that, when read (trust.review.model).
    if as_json:
        emit_json({"items": [item.to_dict() for item in items]})
        return
    table = Table("item", "customer", "reason", "priority", "role", "due", "excerpt", title="Replies waiting for a person", title_justify="left")
    for item in items:
        excerpt = str((item.evidence or {}).get("excerpt", ""))
        table.add_row(
            str(item.id), item.customer_id or "", item.reason, str(item.priority), item.assigned_role or "",
            f"{item.due_at:%Y-%m-%d %H:%M}" if item.due_at else "", excerpt[:60],
        )
    console.print(table)
    if items:
        console.print("resolve one with: legato review resolve ITEM --note \"how it was answered\" --reviewer NAME", highlight=False)
