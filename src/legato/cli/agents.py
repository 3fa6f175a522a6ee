"""``legato agents``: the trust ladder by hand — list, show, promote, demote, pause, resume,
and the versions of what a policy learned. Each command parses its options, calls
:mod:`legato.service.agents` and prints the result.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.cli.options import AtOption, DatabaseOption, JsonOption, ReviewerOption, engine_for, now_at
from legato.errors import LegatoError
from legato.service import agents

agents_app = typer.Typer(
    name="agents",
    help="Agents on the trust ladder: track records, promotion, demotion, pause and resume.",
    no_args_is_help=True,
    add_completion=False,
)
AgentArgument = Annotated[str, typer.Argument(help="The agent's id from the playbook.")]


@agents_app.callback()
def _agents() -> None:
    """Agents on the trust ladder: track records, promotion, demotion, pause and resume."""


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
    try:
        found = agents.list_agents(engine_for(database))
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
    try:
        report = agents.show(engine_for(database), agent, now=now_at(at), criteria=_criteria(window_days, min_reviewed, min_unedited_rate))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(report.to_dict())
        return
    record, ok, unmet = report.record, report.qualifies, report.unmet
    rate = lambda value: "n/a" if value is None else f"{value:.1%}"  # noqa: E731
    console.print(f"[bold]{record.agent_id}[/]: stage {record.stage}, {record.status}, last {window_days:g} days")
    console.print(
        f"reviewed {record.reviewed:,}: approved {rate(record.approval_rate)}, unedited {rate(record.unedited_approval_rate)}, "
        f"edited {rate(record.edit_rate)}; {record.escalations} escalations, {record.expired} expired, {record.open} open"
    )
    if record.rejection_reasons:
        console.print("rejections: " + ", ".join(f"{k} {v}" for k, v in record.rejection_reasons.items()))
    console.print(f"guardrail findings: {record.guardrail_findings:,} in {record.decisions:,} decisions")
    if record.lift_nothing_yet:
        console.print(f"lift: nothing to measure yet: {record.lift_nothing_yet}", markup=False, highlight=False)
    for measured in record.lift:
        customers = f"{measured.n_treated:,} treated / {measured.n_control:,} held-out customers"
        if measured.low is not None:
            text = f"{measured.difference:+.4g} (95% CI {measured.low:+.4g} to {measured.high:+.4g})"
        elif measured.note and measured.note.startswith("no "):
            text = f"nothing to measure yet ({measured.note})"  # not a lift of +0
        else:
            text = f"{measured.difference:+.4g} ({measured.note})"
        console.print(f"lift {measured.metric}: {text}, {customers}", markup=False, highlight=False)
    if ok:
        console.print(f"[green]qualifies for stage {record.stage + 1}[/]" if record.stage < 3 else "[green]at the top stage[/]")
    for problem in unmet:
        console.print(f"  not yet: {problem}")


@agents_app.command("promote")
def promote_command(
    agent: AgentArgument,
    to: StageOption,
    by: ReviewerOption,
    override: Annotated[str | None, typer.Option(help="Promote one stage although the record's criteria are unmet, for this (audited) reason; never skips a stage.")] = None,
    window_days: WindowOption = 90.0,
    min_reviewed: MinReviewedOption = 200,
    min_unedited_rate: MinRateOption = 0.95,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Promote an agent one stage when its track record qualifies (or with --override REASON).

    One stage at a time: --to must be the next stage, with or without --override.

    Example: `legato agents promote winback --to 1 --by ana`
    """
    try:
        change = agents.promote(engine_for(database), agent, to, by, override_reason=override,
                                criteria=_criteria(window_days, min_reviewed, min_unedited_rate), now=now_at(at))
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
    try:
        change = agents.demote(engine_for(database), agent, to, by, reason, now=now_at(at))
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
    try:
        state = agents.pause(engine_for(database), agent, by, reason, now=now_at(at))
    except LegatoError as error:
        fail(error)
    _agent_done(state, f"paused {agent}", as_json)


@agents_app.command("resume")
def resume_command(
    agent: AgentArgument,
    by: ReviewerOption,
    reason: Annotated[Optional[str], typer.Option(help="Why; it goes to the audit log. Needed when the stop-loss paused the agent.")] = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused agent at its stage.

    Example: `legato agents resume winback --by ana --reason "list cleaned, complaint source fixed"`
    """
    try:
        state = agents.resume(engine_for(database), agent, by, now=now_at(at), reason=reason)
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
    try:
        versions = agents.policy_versions(engine_for(database), agent)
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
    try:
        version = agents.roll_back(engine_for(database), agent, to, by, reason, now=now_at(at))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(version.to_dict())
        return
    console.print(f"[green]✓[/] {agent} continues from version {to} (saved as version {version.version})")
    console.print(
        f"what versions {to + 1}-{version.version - 1} learned is set aside (still stored; roll forward with --to {version.version - 1})"
    )
