"""``legato review`` and ``legato agents``: the review queue and the trust ladder by hand.

Every command that changes something needs the name of the person doing it (``--reviewer``
or ``--by``, either spelling works), because each change is written to the audit log under
that name. ``--at`` acts at a simulated time, like ``legato run --at``. Errors print the
place and the fix, change nothing, and exit with the error kind's code (see `legato.errors`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.clock import SystemClock, parse_instant
from legato.errors import LegatoError

review_app = typer.Typer(
    name="review",
    help="The review queue: approve, edit, reject, escalate or withdraw what agents propose; resolve customers' replies and findings.",
    no_args_is_help=True,
    add_completion=False,
)
agents_app = typer.Typer(
    name="agents",
    help="Agents on the trust ladder: track records, promotion, demotion, pause and resume.",
    no_args_is_help=True,
    add_completion=False,
)


@review_app.callback()
def _review() -> None:
    """The review queue: approve, edit, reject, escalate or withdraw what agents propose; resolve customers' replies and findings."""


@agents_app.callback()
def _agents() -> None:
    """Agents on the trust ladder: track records, promotion, demotion, pause and resume."""


DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", "-d", help="Database URL; default $LEGATO_DATABASE_URL, else sqlite:///legato.db"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
ReviewerOption = Annotated[str, typer.Option("--reviewer", "--by", help="Your name, as it goes into the audit log.")]
AtOption = Annotated[str | None, typer.Option("--at", help="Act at this time (ISO-8601, UTC unless an offset is given); default now.")]
ItemArgument = Annotated[int, typer.Argument(help="The review item's number (from `legato review list`).")]
AgentArgument = Annotated[str, typer.Argument(help="The agent's id from the playbook.")]


def _engine(database: str | None) -> Any:
    from legato.store.db import connect

    return connect(database)


def _now(at: str | None) -> datetime:
    return parse_instant(at) if at else SystemClock().now()


def _playbook(path: Path | None) -> Any:
    if path is None:
        return None
    from legato.validation import load_playbook

    return load_playbook(path)


# --- review --------------------------------------------------------------------------------


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
    from legato.trust.review import list_items

    try:
        items = list_items(_engine(database), status=status, limit=limit, agent=agent, role=role, kind=kind)
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
    playbook: Annotated[Path | None, typer.Option(help="The playbook the agent ran on, to render the message.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one item: the decision, the message as it would be sent, its content checks and hash.

    Example: `legato review show 42 --playbook playbook.yaml`
    """
    from legato.trust.review import show_item

    try:
        detail = show_item(_engine(database), item, playbook=_playbook(playbook), now=_now(at))
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
        console.print("[bold red]warning:[/] this playbook's creative differs from the one the decision was made with")
    if detail.content:
        for part in ("subject", "title"):
            if detail.content[part] is not None:
                console.print(f"{part}: {detail.content[part]}", markup=False, highlight=False)
        console.print(str(detail.content["body"]), markup=False, highlight=False)
    elif detail.render_error:
        console.print(f"[red]cannot render:[/] {detail.render_error}")
    else:
        console.print("(give --playbook to see the message)")
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
            help="May the person who edited the content approve it? Default: the playbook's review.allow_self_approval with --playbook, else allowed.",
        ),
    ] = None,
    playbook: Annotated[
        Optional[Path], typer.Option("--playbook", help="Check the message with this playbook and take its review settings.")
    ] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve an item: its message is scheduled at the decision's send time (or now).

    Example: `legato review approve 42 --hash 3f1c... --reviewer ana --playbook playbook.yaml`
    """
    from legato.validation import load_playbook
    from legato.trust.review import approve

    try:
        loaded = load_playbook(playbook) if playbook is not None else None
        if self_approval is None:
            self_approval = loaded.review.allow_self_approval if loaded is not None else True
        done = approve(
            _engine(database), item, reviewer, content_hash=content_hash, now=_now(at), allow_self_approval=self_approval, playbook=loaded
        )
    except LegatoError as error:
        fail(error)
    _done(done, f"approved review item {done.id}; its message is scheduled", as_json)


@review_app.command("edit")
def edit_command(
    item: ItemArgument,
    reviewer: ReviewerOption,
    playbook: Annotated[Path, typer.Option(help="The playbook the agent ran on (brand, creatives, offers).")],
    subject: Annotated[str | None, typer.Option(help="New subject (e-mail), a template like the creatives.")] = None,
    body: Annotated[str | None, typer.Option(help="New body, a template like the creatives.")] = None,
    body_file: Annotated[Path | None, typer.Option("--body-file", help="Read the new body from this UTF-8 file.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Edit an item's message; the content guardrails run again and the item needs a new approval.

    Example: `legato review edit 42 --playbook playbook.yaml --subject "A gift for you" --reviewer ana`
    """
    from legato.trust.review import edit

    try:
        if body_file is not None:
            if body is not None:
                raise LegatoError("both --body and --body-file were given", hint="give one of them")
            try:
                body = body_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise LegatoError(f"cannot read {body_file}: {exc.strerror}", hint="check the path") from None
        done, findings = edit(_engine(database), item, reviewer, playbook=_playbook(playbook), subject=subject, body=body, now=_now(at))
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
    from legato.trust.review import reject

    try:
        done = reject(_engine(database), item, reviewer, reason, note=note, now=_now(at))
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
    from legato.trust.review import escalate

    try:
        done = escalate(_engine(database), item, reviewer, to_role=to_role, note=note, now=_now(at))
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
    from legato.trust.review import resolve

    try:
        done = resolve(_engine(database), item, reviewer, note=note, now=_now(at))
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
    from legato.trust.review import withdraw

    try:
        done = withdraw(_engine(database), item, reviewer, _now(at))
    except LegatoError as error:
        fail(error)
    _done(done, f"withdrew the approval of review item {done.id}; its message is cancelled", as_json)


def _done(item: Any, message: str, as_json: bool) -> None:
    if as_json:
        emit_json(item.to_dict())
    else:
        console.print(f"[green]✓[/] {message}")


# --- agents --------------------------------------------------------------------------------

StageOption = Annotated[int, typer.Option("--to", min=0, max=3, help="The stage: 0 manual, 1 assisted, 2 supervised, 3 autonomous.")]
WindowOption = Annotated[float, typer.Option("--window-days", help="How far back the track record reaches.")]


def _criteria(window_days: float, min_reviewed: int, min_unedited_rate: float) -> Any:
    from legato.trust.track_record import PromotionCriteria

    return PromotionCriteria(min_reviewed=min_reviewed, min_unedited_approval_rate=min_unedited_rate, window_days=window_days)


MinReviewedOption = Annotated[int, typer.Option("--min-reviewed", help="Reviewed items needed for promotion.")]
MinRateOption = Annotated[float, typer.Option("--min-unedited-rate", help="Share approved without edits needed for promotion.")]


@agents_app.command("list")
def agents_list_command(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List agents with their trust stage, status and open review items.

    Example: `legato agents list`
    """
    from legato.trust.track_record import list_agents

    try:
        found = list_agents(_engine(database))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"agents": [a.to_dict() for a in found]})
        return
    table = Table("agent", "stage", "status", "open review items", "updated", title=f"{len(found)} agent(s)", title_justify="left")
    for a in found:
        table.add_row(a.id, f"{a.trust_stage} {a.to_dict()['stage_name']}", a.status, f"{a.open_items:,}", f"{a.updated_at:%Y-%m-%d %H:%M}")
    console.print(table)


@agents_app.command("show")
def agents_show_command(
    agent: AgentArgument,
    window_days: WindowOption = 90.0,
    min_reviewed: MinReviewedOption = 200,
    min_unedited_rate: MinRateOption = 0.95,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show an agent's track record and whether it qualifies for the next stage.

    Example: `legato agents show winback --window-days 30`
    """
    from legato.trust.track_record import promotion_check, track_record

    try:
        record = track_record(_engine(database), agent, now=_now(at), window_days=window_days)
    except LegatoError as error:
        fail(error)
    ok, unmet = promotion_check(record, _criteria(window_days, min_reviewed, min_unedited_rate))
    if as_json:
        emit_json({**record.to_dict(), "promotion": {"qualifies": ok, "unmet": unmet}})
        return
    rate = lambda value: "n/a" if value is None else f"{value:.1%}"  # noqa: E731
    console.print(f"[bold]{record.agent_id}[/]: stage {record.stage}, {record.status}, last {window_days:g} days")
    console.print(
        f"reviewed {record.reviewed:,}: approved {rate(record.approval_rate)}, unedited {rate(record.unedited_approval_rate)}, "
        f"edited {rate(record.edit_rate)}; {record.escalations} escalations, {record.expired} expired, {record.open} open"
    )
    if record.rejection_reasons:
        console.print("rejections: " + ", ".join(f"{k} {v}" for k, v in record.rejection_reasons.items()))
    console.print(f"guardrail findings: {record.guardrail_findings:,} in {record.decisions:,} decisions")
    for measured in record.lift:
        interval = f" (95% CI {measured.low:+.4g} to {measured.high:+.4g})" if measured.low is not None else ""
        console.print(f"lift {measured.metric}: {measured.difference:+.4g}{interval}")
    if ok:
        console.print(f"[green]qualifies for stage {record.stage + 1}[/]" if record.stage < 3 else "[green]at the top stage[/]")
    for problem in unmet:
        console.print(f"  not yet: {problem}")


@agents_app.command("promote")
def promote_command(
    agent: AgentArgument,
    to: StageOption,
    by: ReviewerOption,
    override: Annotated[str | None, typer.Option(help="Promote although criteria are unmet, for this (audited) reason.")] = None,
    window_days: WindowOption = 90.0,
    min_reviewed: MinReviewedOption = 200,
    min_unedited_rate: MinRateOption = 0.95,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Promote an agent one stage when its track record qualifies (or with --override REASON).

    Example: `legato agents promote winback --to 1 --by ana`
    """
    from legato.trust.track_record import promote

    try:
        change = promote(_engine(database), agent, to, by, override_reason=override,
                         criteria=_criteria(window_days, min_reviewed, min_unedited_rate), now=_now(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(change.to_dict())
        return
    console.print(f"[green]✓[/] promoted {agent} from stage {change.from_stage} to {change.to_stage}")
    if change.override_reason:
        console.print(f"  override ({change.override_reason}) of: " + "; ".join(change.unmet))


@agents_app.command("demote")
def demote_command(
    agent: AgentArgument,
    to: StageOption,
    by: ReviewerOption,
    reason: Annotated[str, typer.Option(help="Why; it goes to the audit log.")],
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Demote an agent to a lower stage.

    Example: `legato agents demote winback --to 0 --reason "complaints" --by ana`
    """
    from legato.trust.track_record import demote

    try:
        change = demote(_engine(database), agent, to, by, reason, _now(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(change.to_dict())
        return
    console.print(f"[green]✓[/] demoted {agent} from stage {change.from_stage} to {change.to_stage}")


@agents_app.command("pause")
def pause_command(
    agent: AgentArgument,
    by: ReviewerOption,
    reason: Annotated[str, typer.Option(help="Why; it goes to the audit log.")],
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pause an agent: it makes no decisions until resumed.

    Example: `legato agents pause winback --reason "holiday freeze" --by ana`
    """
    from legato.trust.track_record import pause

    try:
        state = pause(_engine(database), agent, by, reason, _now(at))
    except LegatoError as error:
        fail(error)
    _agent_done(state, f"paused {agent}", as_json)


@agents_app.command("resume")
def resume_command(
    agent: AgentArgument,
    by: ReviewerOption,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused agent at its stage.

    Example: `legato agents resume winback --by ana`
    """
    from legato.trust.track_record import resume

    try:
        state = resume(_engine(database), agent, by, _now(at))
    except LegatoError as error:
        fail(error)
    _agent_done(state, f"resumed {agent}", as_json)


def _agent_done(state: Any, message: str, as_json: bool) -> None:
    if as_json:
        emit_json(state.to_dict())
    else:
        console.print(f"[green]✓[/] {message} (stage {state.trust_stage}, {state.status})")


@agents_app.command("versions")
def versions_command(agent: AgentArgument, database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List the agent's saved policy versions, newest first (each learning step saves one).

    Example: `legato agents versions winback_email`
    """
    from legato.decide.versions import list_versions

    try:
        versions = list_versions(_engine(database), agent)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"agent": agent, "versions": [v.to_dict() for v in versions]})
        return
    table = Table("version", "policy", "saved at (UTC)", "learned updates", "note", title=f"policy versions of {agent}", title_justify="left")
    for v in versions:
        note = f"rollback to {v.restored_from}" if v.restored_from else ""
        table.add_row(str(v.version), v.policy, f"{v.created_at:%Y-%m-%d %H:%M}", "-" if v.updates is None else f"{v.updates:,}", note)
    console.print(table)


@agents_app.command("rollback")
def rollback_command(
    agent: AgentArgument,
    to: Annotated[int, typer.Option("--to", help="The version to go back to (see `legato agents versions`).")],
    by: ReviewerOption,
    reason: Annotated[str, typer.Option(help="Why; it goes to the audit log.")],
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Continue from an earlier policy version: its state is saved again as the newest version.

    Example: `legato agents rollback winback_email --to 12 --by ana --reason "learned from a broken tracking feed"`
    """
    from legato.decide.versions import roll_back

    try:
        version = roll_back(_engine(database), agent, to, by, reason, _now(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(version.to_dict())
        return
    console.print(f"[green]✓[/] {agent} continues from version {to} (saved as version {version.version})")
    console.print(
        f"what versions {to + 1}-{version.version - 1} learned is set aside (still stored; roll forward with --to {version.version - 1})"
    )
