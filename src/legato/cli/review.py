"""``legato review``: the review queue by hand — list, show, approve, edit, reject, escalate,
resolve, withdraw. Each command parses its options, calls :mod:`legato.service.review` and
prints the result; errors print the place and the fix, change nothing, and exit with the
error kind's code (see :mod:`legato.errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.cli.options import AtOption, DatabaseOption, JsonOption, ReviewerOption, engine_for, now_at, playbook_at
from legato.errors import LegatoError
from legato.service import review

review_app = typer.Typer(
    name="review",
    help="The review queue: approve, edit, reject, escalate or withdraw what agents propose; resolve customers' replies and findings.",
    no_args_is_help=True,
    add_completion=False,
)
ItemArgument = Annotated[int, typer.Argument(help="The review item's number (from `legato review list`).")]


@review_app.callback()
def _review() -> None:
    """The review queue: approve, edit, reject, escalate or withdraw what agents propose; resolve customers' replies and findings."""



@review_app.command("list")
def list_command(
    status: Annotated[str, typer.Option(help="open, audit, approved, rejected, expired, resolved or all.")] = "open",
    agent: Annotated[str | None, typer.Option(help="Only this agent's items.")] = None,
    role: Annotated[str | None, typer.Option(help="Only items escalated to this role.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only decision, conversation (customers' replies) or finding items.")] = None,
    limit: Annotated[int, typer.Option(help="How many items (1 to 1000).")] = 100,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List review items, highest priority first, then oldest first.

    One queue: proposed messages (kind decision), customers' replies that need a person
    (conversation) and findings about agents such as fairness breaches (finding).
    Example: `legato review list --agent winback --limit 20`
    """
    try:
        items = review.queue(engine_for(database), status=status, limit=limit, agent=agent, role=role, kind=kind)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"items": [item.to_dict() for item in items]})
        return
    table = Table(title=f"{len(items)} {status} review item(s)", title_justify="left")
    # The reason is what a reviewer sorts by in their head: it never shrinks; "what" does.
    widest = max((len(item.reason) for item in items), default=6)
    for column in ("item", "priority", "kind", "agent", "customer", "what", "reason", "due", "role", "status"):
        table.add_column(
            column,
            justify="right" if column in ("item", "priority") else "left",
            no_wrap=column == "reason",
            min_width=widest if column == "reason" else None,
        )
    for item in items:
        table.add_row(
            str(item.id), str(item.priority), item.kind, item.agent_id or "", item.customer_id or "", _what(item), item.reason,
            f"{item.due_at:%Y-%m-%d %H:%M}" if item.due_at else "", item.assigned_role or "", item.status,
        )
    console.print(table)


def _what(item: Any) -> str:
    """One line on what the item is about: the message proposed, the reply, the finding."""
    evidence = item.evidence or {}
    if item.kind == "conversation":
        return f"{item.channel or ''}: {evidence.get('excerpt', '')}"[:48]
    if item.kind == "finding":
        return f"{evidence.get('attribute', '')} {evidence.get('period', '')}".strip()
    return f"{item.channel or ''}:{item.creative_id or ''}" + (" (edited)" if item.edited else "")


@review_app.command("show")
def show_command(
    item: ItemArgument,
    playbook: Annotated[
        Path | None,
        typer.Option(
            help="Not needed: the message is rendered from the playbook version its decision was made with. "
            "Given, this file is compared with that version (a warning if its creative changed since), "
            "its rules judge the customer's standing, and it renders decisions made before versions were stored."
        ),
    ] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one item: the decision, the message as it would be sent, its content checks and hash.

    Example: `legato review show 42`
    """
    try:
        detail = review.show(engine_for(database), item, playbook=playbook_at(playbook), now=now_at(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(detail.to_dict())
        return
    it = detail.item
    console.print(f"[bold]review item {it.id}[/] ({it.kind}, {it.status}, priority {it.priority}, {it.reason})")
    if it.due_at:
        console.print(f"due {it.due_at:%Y-%m-%d %H:%M} UTC" + (f", assigned to {it.assigned_role}" if it.assigned_role else ""))
    if detail.decision is None:
        _show_case(detail)
        return
    console.print(f"agent {it.agent_id} → customer {it.customer_id} on {it.channel}, action {detail.decision['action']}")
    if detail.evidence:
        console.print(f"evidence: {detail.evidence}", markup=False, highlight=False)
    if detail.override:
        console.print(f"[yellow]edited by {detail.override.get('edited_by')} at {detail.override.get('edited_at')}[/]")
    if detail.matches_playbook is False:
        console.print(
            "[bold red]warning:[/] the playbook file's creative differs from the one the decision was made with; "
            "shown below is the decision's own, which is what will be sent"
        )
    if detail.content:
        for part in ("subject", "title"):
            if detail.content[part] is not None:
                console.print(f"{part}: {detail.content[part]}", markup=False, highlight=False)
        console.print(str(detail.content["body"]), markup=False, highlight=False)
    elif detail.render_error:
        console.print(f"[red]cannot render:[/] {detail.render_error}")
    else:
        console.print("(decided before playbook versions were stored: give --playbook to see the message)")
    for finding in detail.findings:
        console.print(f"  {finding['severity']}: {finding['rule']}: {finding['reason']}", markup=False, highlight=False)
    if detail.standing is not None:
        console.print(f"[bold red]cannot be sent now:[/] {detail.standing}", highlight=False)
    # Not wrapped, so the command can be copied whole.
    console.print(f"content hash: {detail.content_hash}", soft_wrap=True)
    where = f" --database {database}" if database else ""
    console.print(f"approve with: legato review approve {it.id} --hash {detail.content_hash} --reviewer NAME{where}", soft_wrap=True)


def _show_case(detail: Any) -> None:
    """A conversation or a finding: what happened, the evidence, how to close it."""
    it = detail.item
    if detail.message is not None:
        m = detail.message
        about = f", last message from agent {it.agent_id}" if it.agent_id else ""
        console.print(f"customer {it.customer_id} wrote on {m['channel']} at {m['received_at']:%Y-%m-%d %H:%M} UTC{about}:")
        console.print(f"  {m['text']}", markup=False, highlight=False)
    else:
        console.print(f"finding about agent {it.agent_id}")
    for key, value in (detail.evidence or {}).items():
        if key != "excerpt":
            console.print(f"  {key}: {value}", markup=False, highlight=False)
    for entry in detail.history:
        console.print(f"  {entry['at']:%Y-%m-%d %H:%M} {entry['actor']}: {entry['action']}", markup=False, highlight=False)
    if it.status == "open":
        console.print(f"when dealt with: legato review resolve {it.id} --note \"how\" --reviewer NAME", soft_wrap=True, highlight=False)


@review_app.command("approve")
def approve_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    content_hash: Annotated[str | None, typer.Option("--hash", help="The content hash you reviewed (from `show`).")] = None,
    self_approval: Annotated[
        Optional[bool],
        typer.Option(
            "--self-approval/--no-self-approval",
            help="May the person who edited the content approve it? Default: review.allow_self_approval "
            "of the playbook the decision was made with (and of --playbook, if given: both must allow it).",
        ),
    ] = None,
    playbook: Annotated[
        Optional[Path],
        typer.Option(
            "--playbook",
            help="Not needed. Given, the customer's standing is judged by its rules and its "
            "review.allow_self_approval must also allow self-approval; it never changes the content "
            "checked and approved, which is the decision's own (see `show`).",
        ),
    ] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve an item: its message is scheduled at the decision's send time (or now).

    Example: `legato review approve 42 --hash 3f1c... --reviewer ana`
    """
    try:
        done = review.approve(
            engine_for(database), item, reviewer, content_hash=content_hash, now=now_at(at),
            playbook=playbook_at(playbook), allow_self_approval=self_approval,
        )
    except LegatoError as error:
        fail(error)
    _done(done, f"approved review item {done.id}; its message is scheduled", as_json)


@review_app.command("edit")
def edit_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    playbook: Annotated[
        Path | None,
        typer.Option(
            help="Not needed: the edit is rendered and checked with the playbook version the decision was made with. "
            "Used only for decisions made before versions were stored."
        ),
    ] = None,
    subject: Annotated[str | None, typer.Option(help="New subject (e-mail), a template like the creatives.")] = None,
    body: Annotated[str | None, typer.Option(help="New body, a template like the creatives.")] = None,
    body_file: Annotated[Path | None, typer.Option("--body-file", help="Read the new body from this UTF-8 file.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Edit an item's message; the content guardrails run again and the item needs a new approval.

    Example: `legato review edit 42 --subject "A gift for you" --reviewer ana`
    """
    try:
        if body_file is not None:
            if body is not None:
                raise LegatoError("both --body and --body-file were given", hint="give one of them")
            try:
                body = body_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise LegatoError(f"cannot read {body_file}: {exc.strerror}", hint="check the path") from None
        done, findings = review.edit(engine_for(database), item, reviewer, playbook=playbook_at(playbook), subject=subject, body=body, now=now_at(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({**done.to_dict(), "findings": [{"rule": f.rule, "severity": f.severity, "reason": f.reason} for f in findings]})
        return
    console.print(f"[green]✓[/] edited review item {done.id}; new content hash {done.content_hash}; it needs approval again")
    for finding in findings:
        console.print(f"  {finding.severity}: {finding.rule}: {finding.reason}", markup=False, highlight=False)


@review_app.command("reject")
def reject_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    reason: Annotated[str, typer.Option(help="off_brand, wrong_audience, wrong_offer, compliance, timing or other.")],
    note: Annotated[str | None, typer.Option(help="A word for the agent's owner.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject an item: its message is never sent and the reason is kept for learning.

    Example: `legato review reject 42 --reason off_brand --note "too pushy" --reviewer ana`
    """
    try:
        done = review.reject(engine_for(database), item, reviewer, reason, note=note, now=now_at(at))
    except LegatoError as error:
        fail(error)
    _done(done, f"rejected review item {done.id} ({reason})", as_json)


@review_app.command("escalate")
def escalate_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    to_role: Annotated[str, typer.Option("--to-role", help="The role that should decide, e.g. legal.")],
    note: Annotated[str, typer.Option(help="What they should look at.")],
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Escalate an item to another role; it moves up the queue.

    Example: `legato review escalate 42 --to-role legal --note "health claim?" --reviewer ana`
    """
    try:
        done = review.escalate(engine_for(database), item, reviewer, to_role=to_role, note=note, now=now_at(at))
    except LegatoError as error:
        fail(error)
    _done(done, f"escalated review item {done.id} to {to_role} (priority {done.priority})", as_json)


@review_app.command("resolve")
def resolve_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    note: Annotated[str, typer.Option(help="How it was handled, e.g. how the customer was answered.")],
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close a customer's reply (conversation) or a finding once a person has dealt with it.

    Proposed messages are approved or rejected instead.
    Example: `legato review resolve 42 --note "called back, refund issued" --reviewer ana`
    """
    try:
        done = review.resolve(engine_for(database), item, reviewer, note=note, now=now_at(at))
    except LegatoError as error:
        fail(error)
    _done(done, f"resolved review item {done.id} ({done.kind}, {done.reason})", as_json)


@review_app.command("withdraw")
def withdraw_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw an approval before the message is sent; the item is open again.

    Example: `legato review withdraw 42 --reviewer ana`
    """
    try:
        done = review.withdraw(engine_for(database), item, reviewer, now=now_at(at))
    except LegatoError as error:
        fail(error)
    _done(done, f"withdrew the approval of review item {done.id}; its message is cancelled", as_json)


def _done(item: Any, message: str, as_json: bool) -> None:
    if as_json:
        emit_json(item.to_dict())
    else:
        console.print(f"[green]✓[/] {message}")
