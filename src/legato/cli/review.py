"""``legato review``: the review queue by hand — list, show, approve, edit, reject, escalate,
resolve, withdraw. Each command parses its options, calls :mod:`legato.service.review` and
prints the result; errors print the place and the fix, change nothing, and exit with the
error kind's code (see :mod:`legato.errors`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.cli.options import AtOption, DatabaseOption, JsonOption, ReviewerOption, engine_for, now_at, playbook_at
from legato.errors import Conflict, LegatoError
from legato.service import review
from legato.trust.review.model import QueueFilter

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



StatusOption = Annotated[str, typer.Option(help="open, audit, approved, rejected, expired, resolved or all.")]
AgentFilter = Annotated[str | None, typer.Option(help="Only this agent's items.")]
RoleFilter = Annotated[str | None, typer.Option(help="Only items escalated to this role.")]
KindFilter = Annotated[str | None, typer.Option(help="Only decision, conversation (customers' replies) or finding items.")]
ReasonFilter = Annotated[str | None, typer.Option(help="Only this reason, or its family (escalate matches escalate:high_value).")]
PriorityFilter = Annotated[int | None, typer.Option("--min-priority", help="Only items of at least this priority (0 to 100).")]
AgeFilter = Annotated[float | None, typer.Option("--older-than", help="Only items created at least this many hours ago.")]
VariantFilter = Annotated[str | None, typer.Option("--variant", help="Only decisions proposing this message: its content hash, from `show`.")]


def _filter(status: str, agent: str | None, role: str | None, kind: str | None, reason: str | None,
            min_priority: int | None, older_than: float | None, variant: str | None, at: str | None) -> QueueFilter:
    return QueueFilter(
        status=status, agent=agent, role=role, kind=kind, reason=reason, min_priority=min_priority,
        older_than=timedelta(hours=older_than) if older_than is not None else None, now=now_at(at), variant=variant,
    )


def _flags(database: str | None, at: str | None) -> str:
    """The flags a printed hint needs to act on the same store at the same time."""
    return (f" --database {database}" if database else "") + (f" --at {at}" if at else "")


@review_app.command("list")
def list_command(
    status: StatusOption = "open",
    agent: AgentFilter = None,
    role: RoleFilter = None,
    kind: KindFilter = None,
    reason: ReasonFilter = None,
    min_priority: PriorityFilter = None,
    older_than: AgeFilter = None,
    variant: VariantFilter = None,
    limit: Annotated[int, typer.Option(help="How many items per page (1 to 1000).")] = 100,
    after: Annotated[str | None, typer.Option("--after", help="The next page: the cursor the previous page printed.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List review items, highest priority first, then oldest first, a page at a time.

    One queue: proposed messages (kind decision), customers' replies that need a person
    (conversation) and findings about agents such as fairness breaches (finding).
    Example: `legato review list --agent winback --reason trust_stage_0 --limit 20`
    """
    where = _filter(status, agent, role, kind, reason, min_priority, older_than, variant, at)
    try:
        page = review.page(engine_for(database), where, limit=limit, after=after)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(page.to_dict())
        return
    items = page.items
    shown = f"{len(items):,} of {page.total:,}" if page.total != len(items) or after else f"{page.total:,}"
    title = f"{shown} {status} review item(s)" + (f" ({where.described()})" if where.described().replace(f"--status {status}", "").strip() else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    # Fits 80 columns: no header is ever cut (each column is at least as wide as its name) and
    # long cells wrap instead; "pri" is the priority, "due" the SLA's deadline (UTC).
    widest = max((len(item.reason) for item in items), default=6)
    # One status in the title: the status column is only for --status all.
    columns = ("item", "pri", "kind", "agent", "customer", "what", "reason", "due") + (("status",) if status == "all" else ())
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("item", "pri") else "left", overflow="fold",
            # A reviewer sorts by reason in their head: it keeps its width (up to 20) and "what" gives way.
            min_width=min(widest, 20) if column == "reason" else len(column),
            no_wrap=column in ("item", "pri", "kind", "due", "status"), ratio=1 if column in ("what", "reason") else None,
        )
    for item in items:
        table.add_row(
            str(item.id), str(item.priority), _KIND.get(item.kind, item.kind), item.agent_id or "", item.customer_id or "", _what(item),
            item.reason + (f" → {item.assigned_role}" if item.assigned_role else ""),
            f"{item.due_at:%m-%d %H:%M}" if item.due_at else "", *((item.status,) if status == "all" else ()),
        )
    console.print(table)
    if page.next_cursor:
        console.print(
            f"next page: legato review list {where.described()} --limit {limit} --after {page.next_cursor}{_flags(database, at)}".replace("  ", " "),
            soft_wrap=True, highlight=False, markup=False,
        )


_KIND = {"decision": "msg", "conversation": "reply", "finding": "find"}  # short for the table; --kind takes the full names


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
    if detail.why:
        _say_why(detail.why)
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
    console.print(
        f"approve with: legato review approve {it.id} --hash {detail.content_hash} --reviewer NAME{_flags(database, at)}", soft_wrap=True, highlight=False
    )


def _say_why(why: dict[str, Any]) -> None:
    """Why this customer: the audience and the values it read; the escalation rule and its values."""
    def facts(values: dict[str, Any]) -> str:
        return ", ".join(f"{k} = {v}" for k, v in values.items()) or "no customer fields"

    console.print(f"why this customer: in the audience {why['audience']!r} ({facts(why['facts'])})", markup=False, highlight=False)
    if "escalation" in why:
        e = why["escalation"]
        console.print(f"  sent to a person by rule {e['rule']}: {e['when']!r} ({facts(e['facts'])})", markup=False, highlight=False)


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
    content_hash: Annotated[str, typer.Option("--hash", help="The content hash you reviewed (from `show`); required.")],
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
        approval = review.approve(
            engine_for(database), item, reviewer, content_hash=content_hash, now=now_at(at),
            playbook=playbook_at(playbook), allow_self_approval=self_approval,
        )
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({**approval.item.to_dict(), "unlocked": approval.unlocked.to_dict() if approval.unlocked else None})
        return
    _done(approval.item, f"approved review item {approval.item.id}; its message is scheduled", False)
    if approval.unlocked:
        _say_unlocked(approval.unlocked)


def _say_unlocked(u: Any) -> None:
    """Stage 1 remembers an approved variant: say how far one approval reaches."""
    what = f"{u.creative_id}" + (f" with {u.offer_id}" if u.offer_id else "")
    console.print(
        f"  stage 1: agent {u.agent_id} may now send {what} without review from its next cycle on; "
        f"its last cycle proposed it to {u.last_cycle:,} customer(s)"
        + (f", {u.still_open:,} of whom still wait in the queue (each needs its own decision)" if u.still_open else ""),
        highlight=False, markup=False,
    )


@review_app.command("approve-all")
def approve_all_command(
    reviewer: ReviewerOption,
    agent: AgentFilter = None,
    reason: ReasonFilter = None,
    variant: VariantFilter = None,
    min_priority: PriorityFilter = None,
    older_than: AgeFilter = None,
    role: RoleFilter = None,
    limit: Annotated[int, typer.Option(help="At most this many items (1 to 1000).")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be approved; change nothing.")] = False,
    self_approval: Annotated[Optional[bool], typer.Option("--self-approval/--no-self-approval", help="As for `approve`.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve every open proposed message a filter matches, each on its own.

    Each item is approved with the content hash it had when the filter was read and passes
    every check of `approve`, with its own audit entry; an item that fails is listed with
    why and the others go on. Needs --agent, --reason or --variant. Example:
    `legato review approve-all --agent winback --variant 3f1c... --reviewer ana`
    """
    where = _filter("open", agent, role, "decision", reason, min_priority, older_than, variant, at)
    try:
        engine = engine_for(database)
        if dry_run:
            _dry_run(review.preview_matching(engine, where, limit=limit), "approve", as_json)
            return
        bulk = review.approve_matching(engine, where, reviewer, now=now_at(at), limit=limit, allow_self_approval=self_approval)
    except LegatoError as error:
        fail(error)
    _bulk_done(bulk, "approved", as_json)


@review_app.command("reject-all")
def reject_all_command(
    reviewer: ReviewerOption,
    reason_code: Annotated[str, typer.Option("--because", help="off_brand, wrong_audience, wrong_offer, compliance, timing or other.")],
    agent: AgentFilter = None,
    reason: ReasonFilter = None,
    variant: VariantFilter = None,
    min_priority: PriorityFilter = None,
    older_than: AgeFilter = None,
    role: RoleFilter = None,
    note: Annotated[str | None, typer.Option(help="A word for the agent's owner.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many items (1 to 1000).")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be rejected; change nothing.")] = False,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject every open proposed message a filter matches, each on its own audit entry.

    Needs --agent, --reason or --variant. Example:
    `legato review reject-all --variant 3f1c... --because off_brand --reviewer ana`
    """
    where = _filter("open", agent, role, "decision", reason, min_priority, older_than, variant, at)
    try:
        engine = engine_for(database)
        if dry_run:
            _dry_run(review.preview_matching(engine, where, limit=limit), "reject", as_json)
            return
        bulk = review.reject_matching(engine, where, reviewer, reason_code, now=now_at(at), note=note, limit=limit)
    except LegatoError as error:
        fail(error)
    _bulk_done(bulk, "rejected", as_json)


def _dry_run(items: list[Any], verb: str, as_json: bool) -> None:
    if as_json:
        emit_json({"would_" + verb: [item.to_dict() for item in items]})
        return
    console.print(f"would {verb} {len(items):,} item(s); nothing changed", highlight=False)
    for variant in review.variants(items):
        console.print(f"  {variant.items:,} × {variant.creative_id}" + (f" with {variant.offer_id}" if variant.offer_id else ""), highlight=False, markup=False)


def _bulk_done(bulk: Any, verb: str, as_json: bool) -> None:
    if as_json:
        emit_json(bulk.to_dict())
        return
    if not bulk.done and not bulk.refused:
        console.print("no open proposed message matches the filter; nothing changed", highlight=False)
        return
    console.print(f"[green]✓[/] {verb} {len(bulk.done):,} item(s), each with its own audit entry", highlight=False)
    for item, why in bulk.refused:
        console.print(f"  [yellow]not {verb}:[/] item {item}: {why}", highlight=False)
    for unlocked in bulk.unlocked:
        _say_unlocked(unlocked)
    if bulk.refused:
        # Some items were not acted on: say so to a script too (the Conflict code; the others stand).
        raise typer.Exit(code=Conflict.exit_code)


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
