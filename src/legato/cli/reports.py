"""Reports on what the guardrails did and whether targeting was fair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from legato.cli.options import JsonOption
from legato.cli.output import console, emit_json, fail
from legato.clock import SystemClock, parse_instant
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
    from legato.service import reports
    from legato.store.db import connect

    try:
        counts = reports.guardrail_report(connect(database), agent_id=agent)
    except LegatoError as error:
        fail(error)
    rows = [count.to_dict() for count in counts]
    if as_json:
        emit_json({"rules": rows})
        return
    table = Table("agent", "day", "rule", "outcome", "decisions", title="Guardrail outcomes", title_justify="left")
    for count in counts:
        table.add_row(count.agent_id, count.day.isoformat(), count.rule, _OUTCOME_WORDS[count.outcome], f"{count.decisions:,}")
    console.print(table)


_OUTCOME_WORDS = {
    "blocked": "blocked",
    "delayed": "delayed",
    "escalated": "escalated",
    "gated": "not worth contacting",
    "unreachable_holdout": "held out; could not have been reached anyway",
}


SinceOption = Annotated[Optional[str], typer.Option("--since", "--from", help="Decisions made from this date or time on (ISO-8601, UTC).")]
UntilOption = Annotated[
    Optional[str], typer.Option("--until", "--to", help="Decisions made before this time; a date alone includes that whole day.")
]
PlaybookOption = Annotated[Optional[Path], typer.Option("--playbook", help="The playbook whose segments --by segment uses.")]


def _metric_text(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric.endswith("_rate") else f"{value:,.3f}"


@report_app.command("lift")
def lift_report(
    database: DatabaseOption = None,
    agent: Annotated[Optional[str], typer.Option(help="Only this agent.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    by: Annotated[Optional[str], typer.Option("--by", help="segment: one comparison per segment of --playbook.")] = None,
    playbook: PlaybookOption = None,
    at: Annotated[Optional[str], typer.Option("--at", help="Evaluate segments at this time (default --until, else now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What each agent adds, per customer: every KPI against its holdout and against the global
    control group, with 95% intervals.

    Intent to treat over the period: a customer is treated (any decision outside the holdout)
    or held out, their outcomes over the period's settled decisions added up; n counts
    customers. Opens and clicks are in it; `legato report outcomes` breaks every outcome down.
    Example: `legato report lift --since 2024-03-01 --until 2024-03-31 --database sqlite:///legato-demo/legato.db`
    """
    from legato.service import reports
    from legato.store.db import connect
    from legato.validation import load_playbook

    try:
        if by not in (None, "segment"):
            raise LegatoError(f"cannot break lift down by {by}", hint="use --by segment (creatives, offers and channels: legato report outcomes --by)")
        start, end = reports.period(since, until)
        loaded = load_playbook(playbook) if playbook else None
        now = parse_instant(at) if at else SystemClock().now()
        rows = reports.lift_report(connect(database), now=now, agent_id=agent, since=start, until=end, by_segment=by == "segment", playbook=loaded)
    except LegatoError as error:
        fail(error)
    if as_json:
        flat = [
            {"agent": row.report.agent_id, "against": row.report.against, "segment": row.segment, **item.to_dict()}
            for row in rows
            for item in row.report.lifts
        ]
        groups = [{k: v for k, v in row.to_dict().items() if k != "lifts"} for row in rows]
        emit_json({"since": start.isoformat() if start else None, "until": end.isoformat() if end else None, "lift": flat, "groups": groups})
        return
    # One block per agent and comparison, so every table fits 80 columns.
    shown = False
    for row in rows:
        report = row.report
        name = report.agent_id if row.segment is None else f"{report.agent_id} · {row.segment}"
        vs = "its holdout" if report.against == "holdout" else "the global control"
        if report.nothing_yet:
            console.print(f"{name} vs {vs}: nothing to measure yet: {report.nothing_yet}", markup=False, highlight=False)
            continue
        title = f"{name} vs {vs}: {report.customers_treated:,} treated / {report.customers_control:,} held-out customers"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        for column in ("metric", "treated", "control", "lift", "95% interval"):
            table.add_column(column, justify="left" if column == "metric" else "right", overflow="fold")
        for item in report.lifts:
            interval = item.note or f"[{_metric_text(item.metric, item.low or 0.0)}, {_metric_text(item.metric, item.high or 0.0)}]"
            difference = f"{item.difference * 100:+.2f} pp" if item.metric.endswith("_rate") else f"{item.difference:+,.3f}"
            if item.low is None and item.note and item.note.startswith("no "):
                difference = "—"  # no data is not a lift of zero
            table.add_row(item.metric, _metric_text(item.metric, item.treated), _metric_text(item.metric, item.control), difference, interval)
        console.print(table)
        shown = True
        if report.switched:
            console.print(f"  {report.switched:,} customers were in both groups within the period (the holdout share changed) and are left out", highlight=False)
    if shown:
        console.print("Per customer, intent to treat: rates are the share of customers with at least one; revenue and reward are summed per customer.", highlight=False)


@report_app.command("outcomes")
def outcomes_report(
    database: DatabaseOption = None,
    agent: Annotated[Optional[str], typer.Option(help="Only this agent.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    by: Annotated[Optional[list[str]], typer.Option("--by", help="creative, offer, channel or segment (repeat for several).")] = None,
    playbook: PlaybookOption = None,
    at: Annotated[Optional[str], typer.Option("--at", help="Evaluate segments at this time (default --until, else now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Every outcome imported (opens, clicks, visits, purchases, revenue, unsubscribes,
    complaints), counted over each agent's settled decisions in their windows.

    Example: `legato report outcomes --by creative --by channel --since 2024-03-04 --database sqlite:///legato-demo/legato.db`
    """
    from legato.service import reports
    from legato.store.db import connect
    from legato.validation import load_playbook

    keys = tuple(by or ())
    try:
        start, end = reports.period(since, until)
        loaded = load_playbook(playbook) if playbook else None
        now = parse_instant(at) if at else SystemClock().now()
        rows = reports.outcome_report(connect(database), now=now, agent_id=agent, since=start, until=end, by=keys, playbook=loaded)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"since": start.isoformat() if start else None, "until": end.isoformat() if end else None, "by": list(keys), "outcomes": [row.to_dict() for row in rows]})
        return
    # One block per row (two lines of counts), so it fits 80 columns whatever the breakdown.
    title = "Outcomes of settled decisions" + (f" by {', '.join(keys)}" if keys else "")
    if rows:
        console.print(f"[bold]{title}[/]")
    for row in rows:
        label = " · ".join([row.agent_id, *(str(row.group.get(k) or "—") for k in keys)])
        console.print(f"[bold]{label}[/]", soft_wrap=False)
        console.print(
            f"  decisions {row.decisions:,}  settled {row.settled:,}  sent {row.sent:,}  opens {row.opened:,}  clicks {row.clicked:,}",
            highlight=False,
        )
        console.print(
            f"  visits {row.visited:,}  purchases {row.purchased:,}  revenue {row.revenue:,.2f}  "
            f"unsubscribes {row.unsubscribed:,}  complaints {row.complained:,}",
            highlight=False,
        )
    if rows:
        console.print(
            "— no message (held out, do nothing, or nothing chosen). Each outcome counts the settled decisions "
            "that had it in their window.",
            highlight=False,
        )
    else:
        console.print("no decisions in this period")


@report_app.command("kpis")
def kpis_report(
    database: DatabaseOption = None,
    agent: Annotated[Optional[str], typer.Option(help="Only this agent.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    by: Annotated[Optional[str], typer.Option("--by", help="creative, offer, channel or segment (the lifecycle stage when decided).")] = None,
    playbook: Annotated[Optional[Path], typer.Option("--playbook", help="Whose targets to compare with (default: the playbook the newest cycle ran).")] = None,
    html_file: Annotated[Optional[Path], typer.Option("--html", help="Also write a report with charts and tables to this HTML file.")] = None,
    png_file: Annotated[Optional[Path], typer.Option("--png", help="Also write the charts to this PNG file.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="First recount every kept metric from history (a store older than them).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Each agent's KPIs, primary first, against their targets, with lift vs holdout, from the
    metrics kept as things happen (no rescan of history).

    Whole UTC days by the day a decision was made; rates are per settled send (— while none has
    settled); lift vs holdout is per settled decision, intent to treat, with a 95% interval.
    --html and --png need the charts extra (pip install 'legato[charts]').
    Example: `legato report kpis --from 2024-03-01 --to 2024-03-31 --by creative --html kpis.html --database sqlite:///legato-demo/legato.db`
    """
    from legato.cli.kpis_output import print_kpis
    from legato.monitor import charts
    from legato.service import reports
    from legato.store.db import connect
    from legato.validation import load_playbook

    try:
        start, end = reports.period(since, until)
        loaded = load_playbook(playbook) if playbook else None
        engine = connect(database)
        rebuilt = reports.rebuild_metrics(engine) if rebuild else None
        found = reports.kpis(engine, loaded, agent_id=agent, since=start, until=end, by=by)
        if html_file is not None:
            charts.write_html(found, html_file)
        if png_file is not None:
            charts.write_png(found, png_file)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({**found.to_dict(), "rebuilt_keys": rebuilt})
        return
    if rebuilt is not None:
        console.print(f"recounted from history: {rebuilt:,} kept metric keys", highlight=False)
    print_kpis(found)
    for name, file in (("HTML report", html_file), ("charts", png_file)):
        if file is not None:
            console.print(f"{name} written to {file}", markup=False, highlight=False)


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
    from legato.service import reports
    from legato.validation import load_playbook
    from legato.store.db import connect

    try:
        loaded = load_playbook(playbook)
        audits = reports.fairness_report(connect(database), loaded, now=parse_instant(at) if at else SystemClock().now())
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


EmailOption = Annotated[Optional[str], typer.Option(help="An e-mail address.")]
PhoneOption = Annotated[Optional[str], typer.Option(help="A phone number in any usual form, with its country code (+1 415 555 0100) or --country.")]
CustomerOption = Annotated[Optional[str], typer.Option(help="A customer id.")]
CountryOption = Annotated[Optional[str], typer.Option(help="The country (2 letters) a --phone without country code is read in.")]


def _one_entry(email: str | None, phone: str | None, customer: str | None) -> tuple[str, str]:
    given = [(kind, value) for kind, value in (("email", email), ("phone", phone), ("customer", customer)) if value]
    if len(given) != 1:
        raise LegatoError("give exactly one of --email, --phone or --customer")
    return given[0]


@suppress_app.command("add")
def suppress_add(
    reason: Annotated[str, typer.Option(help="Why, e.g. 'national do-not-call registry' or 'legal hold'.")],
    email: EmailOption = None,
    phone: PhoneOption = None,
    customer: CustomerOption = None,
    country: CountryOption = None,
    by: Annotated[str, typer.Option("--by", help="Who adds it (audited).")] = "cli",
    database: DatabaseOption = None,
) -> None:
    """Put an address, number or customer on the list; agents and the dispatcher honour it at once.

    Numbers are listed in E.164 and addresses lower-cased, the form imports store, so any
    way of writing a number stops it.

    Example: `legato suppress add --email someone@example.com --reason "asked by phone" --by ana`
    """
    from legato.service import suppressions
    from legato.store.db import connect

    try:
        kind, value = _one_entry(email, phone, customer)
        listed = suppressions.add(connect(database), kind, value, reason, by=by, now=SystemClock().now(), country=country)
    except LegatoError as error:
        fail(error)
    console.print(f"suppressed {kind} {listed}", markup=False, highlight=False)


@suppress_app.command("remove")
def suppress_remove(
    by: Annotated[str, typer.Option("--by", help="Who takes it off the list (audited).")],
    reason: Annotated[str, typer.Option(help="Why, e.g. 'added by mistake, ticket 123' (audited).")],
    email: EmailOption = None,
    phone: PhoneOption = None,
    customer: CustomerOption = None,
    country: CountryOption = None,
    database: DatabaseOption = None,
) -> None:
    """Take an address, number or customer off the list, recording who and why.

    This grants nothing: marketing reaches them again only as their consent allows.
    Example: `legato suppress remove --email someone@example.com --by ana --reason "added by mistake"`
    """
    from legato.service import suppressions
    from legato.store.db import connect

    try:
        kind, value = _one_entry(email, phone, customer)
        removed = suppressions.remove(connect(database), kind, value, reason, by=by, now=SystemClock().now(), country=country)
    except LegatoError as error:
        fail(error)
    console.print(f"removed {removed.kind} {removed.value} from the suppression list (listed {removed.added_at:%Y-%m-%d}: {removed.reason})",
                  markup=False, highlight=False)


@suppress_app.command("list")
def suppress_list(
    kind: Annotated[Optional[str], typer.Option(help="Only customer, email or phone entries.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 100,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """The do-not-contact list, newest first, with how many entries there are in all.

    Example: `legato suppress list --kind phone`
    """
    from legato.service import suppressions
    from legato.store.db import connect

    try:
        entries, total = suppressions.listing(connect(database), kind=kind, limit=limit)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"total": total, "entries": [e.to_dict() for e in entries]})
        return
    table = Table(title=f"{len(entries):,} of {total:,} suppression(s)" if total != len(entries) else f"{total:,} suppression(s)", title_justify="left")
    for column in ("kind", "value", "reason", "added"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e.kind, e.value, e.reason, f"{e.added_at:%Y-%m-%d %H:%M}")
    console.print(table)
