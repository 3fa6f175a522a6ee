"""The ``legato`` command line: one sub-command for each thing a marketer or operator does.

Every command that reports results takes ``--json``; every error a user can cause is
printed with its place and fix and exits with its kind's code (`legato.errors`: 2 invalid,
3 not found, 4 conflict, 5 forbidden, 6 database unreachable).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from legato.cli.output import LegatoGroup, console, emit_json, fail
from legato.clock import FixedClock, SystemClock, parse_instant
from legato.errors import LegatoError

app = typer.Typer(
    cls=LegatoGroup,
    pretty_exceptions_show_locals=False,
    name="legato",
    help="Legato: a marketer orchestrates autonomous AI marketing agents.\n\nStart with `legato demo`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

DatabaseOption = Annotated[
    Optional[str],
    typer.Option("--database", "-d", help="Database URL; default $LEGATO_DATABASE_URL, else sqlite:///legato.db"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _register_sub_apps() -> None:
    from legato.cli.check import check_app
    from legato.cli.importing import import_app
    from legato.cli.inbound import inbound_app
    from legato.cli.learning import bench, evaluate, score, simulate
    from legato.cli.reports import report_app, suppress_app
    from legato.cli.agents import agents_app
    from legato.cli.alerts import alerts_app
    from legato.cli.review import review_app
    from legato.cli.preview import preview
    from legato.cli.secret import secret_app
    from legato.cli.keys import keys_app
    from legato.cli.outbox import outbox_app
    from legato.cli.serve import serve
    from legato.cli.worker import worker

    app.add_typer(import_app, name="import")
    app.add_typer(check_app, name="check")
    app.add_typer(report_app, name="report")
    app.add_typer(review_app, name="review")
    app.add_typer(agents_app, name="agents")
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(inbound_app, name="inbound")
    app.add_typer(suppress_app, name="suppress")
    app.add_typer(secret_app, name="secret")
    app.add_typer(keys_app, name="keys")
    app.add_typer(outbox_app, name="outbox")
    app.command()(serve)
    app.command()(worker)
    app.command()(preview)
    app.command()(simulate)
    app.command()(bench)
    app.command()(evaluate)
    app.command()(score)


@app.command()
def validate(
    playbook: Annotated[Path, typer.Argument(help="The playbook YAML file.")],
    database: Annotated[
        Optional[str],
        typer.Option("--database", "-d", help="Also count each agent's audience on this database and warn about empty ones."),
    ] = None,
    at: Annotated[Optional[str], typer.Option("--at", help="Count audiences at this time (ISO-8601), default now.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a playbook and report every problem at once, each as FILE:LINE:COL.

    Schema errors, references between sections (an unknown policy, creative or offer),
    expressions (a lifecycle stage that does not exist), template names
    (`{{ brand.sendr_name }}`) and the content check of each creative (what it would block
    on every send) are all reported in one round. With `--database`, agents whose audience
    holds nobody on the current data are noted.

    Example: `legato validate playbook.yaml --database sqlite:///legato.db`
    """
    from legato.validation import validate as check

    try:
        engine = None
        if database is not None:
            from sqlalchemy.engine import make_url

            from legato.store.db import connect

            target = make_url(database)
            if target.get_backend_name() == "sqlite" and target.database and not Path(target.database).exists():
                raise LegatoError(
                    f"--database {database}: there is no database at {target.database}; nothing was created",
                    hint="check the path, or import customers into it first (legato import customers FILE --database URL)",
                )
            engine = connect(database)
        result = check(playbook, engine=engine, at=parse_instant(at) if at else None)
    except LegatoError as error:
        fail(error)
    loaded = result.playbook
    if not result.valid or loaded is None:
        if as_json:
            emit_json({"valid": False, "problems": result.problems, "notes": result.notes})
            raise typer.Exit(2)
        for note in result.notes:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        from legato.validation import PlaybookError

        fail(PlaybookError(str(playbook), result.problems))
    summary = {
        "valid": True,
        "notes": result.notes,
        "objectives": len(loaded.objectives),
        "segments": len(loaded.segments),
        "creatives": len(loaded.creatives),
        "agents": len(loaded.agents),
    }
    if as_json:
        emit_json(summary)
        return
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"[green]✓[/] {playbook} is valid: {summary['objectives']} objectives, {summary['segments']} segments, "
        f"{summary['creatives']} creatives, {summary['agents']} agents"
    )


@app.command()
def schema() -> None:
    """Print the playbook's JSON Schema, for editor autocompletion.

    Example: `legato schema > playbook.schema.json`
    """
    from legato.playbook.models import Playbook

    emit_json(Playbook.model_json_schema())


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
) -> None:
    """Write a working example project: a playbook and a pointer to sample data.

    Example: `legato init my-campaigns && legato validate my-campaigns/playbook.yaml`
    """
    target = directory / "playbook.yaml"
    if target.exists():
        fail(LegatoError(f"{target} already exists", hint="choose an empty folder; nothing was changed"))
    directory.mkdir(parents=True, exist_ok=True)
    example = files("legato.playbook").joinpath("example/playbook.yaml")
    target.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "README.md").write_text(_INIT_README, encoding="utf-8")
    console.print(f"[green]✓[/] wrote {target} and {directory / 'README.md'}")
    console.print("next: `legato demo` loads the bundled Hillstrom customers, or import your own with `legato import customers FILE`")


_INIT_README = """# A Legato project

- `playbook.yaml`: the strategy (brand, objectives, segments, offers, creatives, agents, guardrails).
  Check it with `legato validate playbook.yaml`.
- Sample data: Legato ships the Hillstrom e-mail experiment (64,000 real customers);
  `legato demo` loads it into a fresh database. To use your own customers:
  `legato import customers customers.csv` and `legato import events events.jsonl`.
- One cycle: `legato run playbook.yaml` (add `--at 2024-03-04T09:00` to simulate a time).
"""


@app.command()
def segment(
    playbook: Annotated[Path, typer.Argument(help="The playbook YAML file.")],
    name: Annotated[str, typer.Argument(help="A segment or lifecycle stage name from the playbook.")],
    database: DatabaseOption = None,
    at: Annotated[Optional[str], typer.Option(help="Evaluate at this time (ISO-8601), default now.")] = None,
    limit: Annotated[int, typer.Option(help="How many sample customers to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Print a segment's size and a sample of its customers.

    A lifecycle stage counts its members: stages are ordered and a customer is in the first
    whose condition holds, so the output also says which earlier stages took the others.
    Example: `legato segment playbook.yaml big_spenders --limit 5`
    """
    from legato.service.reports import segment as segment_of
    from legato.validation import load_playbook
    from legato.store.db import connect

    try:
        loaded = load_playbook(playbook)
        engine = connect(database)
        result = segment_of(engine, loaded, name, at=parse_instant(at) if at else SystemClock().now(), limit=limit)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(result.to_dict())
        return
    share = result.size / result.total if result.total else 0.0
    kind = "lifecycle stage " if result.stage else ""
    console.print(f"[bold]{kind}{result.name}[/]: {result.size:,} of {result.total:,} customers ({share:.1%})")
    if result.taken_by_earlier:
        taken = ", ".join(f"{stage} {n:,}" for stage, n in result.taken_by_earlier.items())
        console.print(f"its condition holds for {result.when_holds:,}; earlier stages took {taken} (the first stage that holds wins)", highlight=False)
    table = Table("customer", "country", "lifecycle stage", "attributes")
    for row in result.sample:
        table.add_row(str(row["id"]), str(row["country"] or ""), str(row["lifecycle_stage"] or ""), json.dumps(row["attributes"])[:80])
    console.print(table)


@app.command()
def run(
    playbook: Annotated[Path, typer.Argument(help="The playbook YAML file.")],
    database: DatabaseOption = None,
    at: Annotated[Optional[str], typer.Option(help="Run the cycle at this simulated time (ISO-8601, UTC unless an offset is given).")] = None,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="If another cycle is running on this database, wait up to this many seconds for it (default: refuse at once).")
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Run one orchestration cycle for every active agent, then send what is due.

    One cycle runs at a time on a database: while another holds the cycle's lease, this one
    waits (`--wait`) or exits with code 4 naming the holder. If the last cycle did not finish
    (its process was killed, or it failed), this run finishes that cycle, at its own time,
    and does nothing else; run again for a new cycle.

    Example: `legato run playbook.yaml --at 2024-03-04T09:00`
    """
    from legato.service import cycles
    from legato.validation import load_playbook
    from legato.store.db import connect

    try:
        loaded = load_playbook(playbook)
        clock = FixedClock(parse_instant(at)) if at else SystemClock()
        engine = connect(database)
        with _progress(as_json) as progress:
            tasks: dict[str, int] = {}

            def advance(agent_id: str, count: int) -> None:
                if agent_id not in tasks:
                    tasks[agent_id] = progress.add_task(agent_id, total=None)
                progress.advance(tasks[agent_id], count)

            report = cycles.run(engine, loaded, clock, cycles.transports_for(loaded, playbook.parent), progress=advance, wait=wait)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(report.to_dict())
        return
    if report.resumed is not None:
        resumed = report.resumed
        console.print(
            f"[yellow]resumed cycle {report.cycle_id}[/] (at {report.at:%Y-%m-%d %H:%M} UTC, left {resumed.status}): {resumed.partitions_kept:,} partitions were already written and kept; the rest are done now. "
            "No new cycle was run: run again for one."
        )
        if resumed.playbook_changed:
            console.print("[yellow]the playbook file changed since the cycle started; the cycle finished with the playbook it started with[/]")
    console.print(cycle_table(f"cycle {report.cycle_id} at {report.at:%Y-%m-%d %H:%M} UTC", report))
    for score in report.scores:
        quality = "" if score.auc is None else f", held-out AUC {score.auc:.3f}"
        console.print(f"{score.name}: " + (f"not fitted ({score.skipped})" if score.skipped else f"{score.scored:,} customers scored{quality}"))
    for agent in report.agents.values():
        if agent.global_control:
            console.print(f"{agent.agent_id}: {agent.global_control:,} customers in the global control group left alone")
        gate = agent.uplift_gate
        if gate is not None:
            state = f"open ({gate['reason']})" if gate["open"] else f"{gate['gated']:,} customers not worth contacting"
            console.print(f"{agent.agent_id}: uplift gate {state}")
    print_dispatch(report.dispatch)


def print_dispatch(report: object) -> None:
    """What a dispatch did: sent, waiting to be retried, dead (never sent), and why."""
    from rich.markup import escape

    from legato.deliver.dispatch import DispatchReport

    assert isinstance(report, DispatchReport)
    totals = report.totals()
    console.print(f"dispatch: {totals['sent']:,} sent, {totals['retry']:,} to retry, {totals['dead']:,} dead")
    moved, dropped = sum(report.late_moved.values()), sum(report.late_dropped.values())
    if moved or dropped:
        console.print(
            f"late: {moved:,} moved to their agent's next send window, {dropped:,} dropped (their window had passed)", highlight=False
        )
    if report.in_doubt:
        held = report.in_doubt_held
        console.print(
            f"[yellow]in doubt:[/] {len(report.in_doubt):,} handed to a provider whose answer was lost "
            f"({len(report.in_doubt) - held:,} sent again, {held:,} held for a person)", highlight=False
        )
        for problem in report.in_doubt[:10]:
            console.print(f"[yellow]in doubt:[/] {escape(problem)}", highlight=False)
    if report.bounced:
        console.print(f"hard bounces: {report.bounced:,} (dead; the addresses are listed undeliverable)", highlight=False)
    for problem in report.errors[:10]:
        console.print(f"[yellow]dead (not sent):[/] {escape(problem)}", highlight=False)
    if len(report.errors) > 10:
        console.print(f"... and {len(report.errors) - 10:,} more dead messages (--json lists them all)")
    for problem in report.retry_errors[:5]:
        console.print(f"[yellow]to retry:[/] {escape(problem)}", highlight=False)
    if len(report.retry_errors) > 5:
        console.print(f"... and {len(report.retry_errors) - 5:,} more to retry (--json lists them all)")


@app.command()
def dispatch(
    playbook: Annotated[Optional[Path], typer.Argument(help="The playbook YAML file (or --playbook).")] = None,
    database: DatabaseOption = None,
    playbook_option: Annotated[
        Optional[Path], typer.Option("--playbook", help="The playbook YAML file; without it or the argument, the newest uploaded to the store.")
    ] = None,
    at: Annotated[Optional[str], typer.Option(help="Send what is due at this time (ISO-8601, UTC unless an offset is given).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Send what is due now without running a cycle, once, then exit (for cron): due messages
    and retries whose wait is over. `legato worker` does this continuously.

    Example: `legato dispatch --playbook playbook.yaml` (`--at 2024-03-04T10:00` for a simulated time)
    """
    from legato.service import cycles, delivery
    from legato.service.playbook_source import StoreSource
    from legato.validation import load_playbook
    from legato.store.db import connect

    try:
        if playbook is not None and playbook_option is not None and playbook != playbook_option:
            raise LegatoError(f"two playbooks given: {playbook} and --playbook {playbook_option}", hint="give one of them")
        given = playbook or playbook_option
        loaded = load_playbook(given) if given is not None else None  # a broken playbook is named before the store is opened
        clock = FixedClock(parse_instant(at)) if at else SystemClock()
        engine = connect(database)
        if loaded is not None and given is not None:
            folder = given.parent
        else:
            newest = StoreSource(engine, Path.cwd()).first()  # the newest upload; its file channels write here
            loaded, folder = newest.playbook, newest.folder
        report = delivery.dispatch(engine, loaded, clock, cycles.transports_for(loaded, folder))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(report.to_dict())
        return
    print_dispatch(report)


def cycle_table(title: str, report: object) -> Table:
    from legato.cycle import CycleReport

    assert isinstance(report, CycleReport)
    table = Table(title=title, title_justify="left")
    for column in ("agent", "stage", "audience", "holdout", "do nothing", "suppressed", "queued", "scheduled", "sent"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent in report.agents.values():
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in agent.suppressed.most_common(3))
        table.add_row(
            agent.agent_id,
            str(agent.stage),
            f"{agent.audience:,}",
            f"{agent.holdout:,}",
            f"{agent.nothing:,}",
            f"{agent.suppressed_total:,}" + (f" ({reasons})" if reasons else ""),
            f"{agent.queued:,}",
            f"{agent.scheduled:,}",
            f"{agent.sent:,}",
        )
    return table


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
    )


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(help="Folder for the demo's database, playbook and outbox.")] = Path("legato-demo"),
    days: Annotated[int, typer.Option(min=1, max=60, help="Simulated days to run.")] = 6,
    smtp: Annotated[
        Optional[str], typer.Option(metavar="HOST:PORT", help="Send the demo's e-mails to this SMTP server (e.g. a local one on 127.0.0.1:2525) instead of a file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load 64,000 real customers (the Hillstrom e-mail experiment) and run the example agents
    over simulated days: no network, no services (unless --smtp names a server to send to).

    Example: `legato demo --days 5`; watch the e-mails arrive: `python -m aiosmtpd -n -l 127.0.0.1:2525`
    in another terminal, then `legato demo --smtp 127.0.0.1:2525`
    """
    from legato.demo import run_demo

    try:
        run_demo(folder, days=days, as_json=as_json, smtp=smtp)
    except LegatoError as error:
        fail(error)


def main() -> None:
    app()


_register_sub_apps()
