"""``legato preview``: who would get what if the cycle ran now, writing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from legato.cli.options import DatabaseOption, JsonOption
from legato.cli.output import console, emit_json, fail
from legato.clock import SystemClock, parse_instant
from legato.errors import LegatoError


def preview(
    playbook: Annotated[Path, typer.Argument(help="The playbook YAML file.")],
    agent: Annotated[Optional[str], typer.Option("--agent", help="Only this agent (the agents before it still count toward its caps).")] = None,
    at: Annotated[Optional[str], typer.Option(help="Preview the cycle at this simulated time (ISO-8601, UTC unless an offset is given).")] = None,
    samples: Annotated[int, typer.Option("--samples", min=0, help="Messages to render per agent.")] = 3,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show who would get what if the cycle ran now, writing nothing.

    Counts by route (scheduled, queued for review, suppressed, holdout, control, gated,
    nothing) and by reason, and a few of the messages rendered and checked as a reviewer
    sees them. The cycle's own steps run in a transaction that is rolled back: no
    decisions, messages, review items, policy versions or budget are kept, and nothing is
    sent.

    Example: `legato preview playbook.yaml --agent winback --at 2024-03-04T09:00`
    """
    from legato.service.preview import preview as run_preview
    from legato.store.db import connect
    from legato.validation import load_playbook

    try:
        loaded = load_playbook(playbook)
        now = parse_instant(at) if at else SystemClock().now()
        engine = connect(database)
        result = run_preview(engine, loaded, now, agent=agent, sample_count=samples)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"preview of a cycle at {result.at:%Y-%m-%d %H:%M} UTC [dim](nothing was written or sent)[/]")
    for shown in result.agents:
        if not shown.runs:
            console.print(f"\n[bold]{shown.agent_id}[/]: not run ({shown.why_not})")
            continue
        report = shown.report
        assert report is not None
        console.print(f"\n[bold]{shown.agent_id}[/] (trust stage {report.stage}): {report.audience:,} customers in the audience")
        routes = Table(show_edge=False, box=None, pad_edge=False)
        routes.add_column("route")
        routes.add_column("count", justify="right")
        for route, count in shown.routes.items():
            routes.add_row(route, f"{count:,}")
        console.print(routes)
        for title, counted in (("suppressed", report.suppressed), ("queued for", report.queued_by), ("delayed by", report.delayed_by)):
            if counted:
                reasons = Table(show_edge=False, box=None, pad_edge=False)
                reasons.add_column(title, overflow="fold")
                reasons.add_column("count", justify="right")
                for reason, count in counted.most_common():
                    reasons.add_row(str(reason), f"{count:,}")
                console.print(reasons)
        for sample in shown.samples:
            why = f" ({sample.review_reason})" if sample.review_reason else ""
            when = f", {sample.send_at:%Y-%m-%d %H:%M}" if sample.send_at else ""
            console.print(f"[cyan]{sample.customer_id}[/]: {sample.route}{why}, {sample.channel} {sample.creative_id}{'/' + sample.offer_id if sample.offer_id else ''}{when}", highlight=False)
            if sample.render_error:
                console.print(f"  [red]cannot render:[/] {sample.render_error}", highlight=False)
            for part in ("subject", "title", "body"):
                text = (sample.content or {}).get(part)
                if text:
                    console.print(f"  {part}: {text}", highlight=False, markup=False)
            console.print(f"  check: {sample.verdict}" + (f" ({', '.join(sample.findings)})" if sample.findings else ""), highlight=False)
