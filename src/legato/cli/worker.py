"""`legato worker`: run each agent's cycle when its schedule says, and send what is due, until stopped.

The command is a thin face over :class:`legato.service.worker.Worker`: it loads the playbook,
builds the transports, installs the SIGTERM and SIGINT handlers (the first asks the worker to
stop; a second SIGINT ends it at once), writes JSON log lines on stderr, and optionally shows
a live status (``--progress``) and serves Prometheus metrics (``--metrics-port``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from legato.cli.options import DatabaseOption
from legato.cli.output import console, fail
from legato.errors import LegatoError


def worker(
    database: DatabaseOption = None,
    playbook: Annotated[
        Path | None,
        typer.Option("--playbook", help="The playbook file, watched: an edit that validates is taken between two cycles. "
                     "Without it, the newest playbook uploaded to the store (POST /v1/playbooks), a newer upload taken the same way."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress", help="Show a live status: schedules, last cycle, messages by channel, backlog.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port (GET /metrics).")
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address the metrics listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
    poll: Annotated[float, typer.Option("--poll", min=0.05, max=3600, help="Seconds between looks for due cycles and messages.")] = 1.0,
    batch: Annotated[int, typer.Option("--batch", min=1, max=50_000, help="Messages claimed at a time (a stop waits for one batch at most).")] = 1_000,
) -> None:
    """Run each agent's cycle when its `schedule:` says (`every 6h`, `daily 08:00` in the
    brand's time zone) and send what is due, continuously, until SIGTERM or Ctrl-C.

    Several workers may run on one PostgreSQL store: a schedule slot runs once, a message
    is sent by one worker. Retries back off exponentially with jitter until the channel's
    `give_up_after` (default 24h), then the message is dead with the reason. On SIGTERM the
    worker stops claiming, finishes the batch in flight (a cycle in flight stops between two
    partitions and is resumed by the next run), releases its leases and exits 0. Logs are
    JSON lines on stderr.

    A newer playbook (an upload, or an edit of the --playbook file) is taken between two
    cycles, and by the sending after the batch in flight; one line names the version now
    running. One that cannot be used (an edit that does not validate, a channel's secret
    missing) is named in a warning and the worker keeps the playbook it runs.

    Example: `legato worker --playbook playbook.yaml --progress --metrics-port 9464`
    """
    from legato.api.observe import WorkerMetrics, configure_logging
    from legato.service import cycles
    from legato.service.playbook_source import FileSource, StoreSource
    from legato.service.worker import Worker
    from legato.store.db import connect

    try:
        engine = connect(database)
        # An uploaded playbook's file channels write in the folder the worker was started in.
        source = FileSource(playbook) if playbook is not None else StoreSource(engine, Path.cwd())
        loaded = source.first()
        transports = cycles.transports_for(loaded.playbook, loaded.folder)  # the dispatch loop's (the worker's cycles do not send)
    except LegatoError as error:
        fail(error)
    configure_logging()
    metrics = WorkerMetrics(engine) if metrics_port is not None else None
    server = None
    if metrics is not None:
        try:
            server = metrics.serve(metrics_port, metrics_host)  # type: ignore[arg-type]
        except OSError as error:
            fail(LegatoError(f"cannot serve metrics on {metrics_host}:{metrics_port}: {error.strerror or error}",
                             hint="choose another --metrics-port, or stop what listens there"))
    running = Worker(engine, loaded.playbook, transports, poll=poll, chunk=batch, metrics=metrics, source=source, running=loaded)

    def on_signal(number: int, _frame: Any) -> None:
        running.stop()
        if number == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if progress:
            from rich.live import Live

            with Live(_Status(running), console=console, refresh_per_second=2, redirect_stderr=console.is_terminal, transient=False):
                running.run()
        else:
            running.run()
    finally:
        if server is not None:
            server.shutdown()
        engine.dispose()


class _Status:
    """The live status ``--progress`` shows, read from the worker's figures (the backlog from
    the store, at most every 2 seconds)."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self._backlog: dict[str, int] = {}
        self._read_at = 0.0

    def _read_backlog(self) -> dict[str, int]:
        if time.monotonic() - self._read_at >= 2.0:
            from legato.deliver.outbox import backlog

            try:
                with self.running.engine.connect() as connection:
                    self._backlog = backlog(connection)
            except Exception:  # noqa: BLE001 - the status shows what it last read
                pass
            self._read_at = time.monotonic()
        return self._backlog

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        figures = self.running.figures.snapshot()
        head = Table.grid(padding=(0, 2))
        head.add_row("[bold]legato worker[/]", figures["state"], f"since {figures['started_at'][:19]} UTC")
        if self.running.running is not None:
            head.add_row("playbook", self.running.running.name, "")
        backlog = self._read_backlog()
        if backlog:
            head.add_row("backlog", ", ".join(f"{status} {n:,}" for status, n in backlog.items()), "")
        last = figures["last_cycle"]
        if last is not None:
            head.add_row("last cycle", f"{last['cycle_id']} at {last['at'][:16]}", f"agents {', '.join(last['agents']) or '-'}")
        if figures["last_error"]:
            head.add_row("[yellow]last error[/]", figures["last_error"][:100], "")
        schedules = Table("agent", "schedule", "next slot (UTC)", title="schedules", title_justify="left")
        for agent in self.running.playbook.agents:
            if agent.active:
                slot = self.running.next_slots().get(agent.id)
                schedules.add_row(agent.id, agent.schedule or "[dim]none (legato run)[/]", f"{slot:%Y-%m-%d %H:%M}" if slot else "")
        messages = Table("channel", "sent", "retried", "dead", title="messages since start", title_justify="left")
        channels = sorted({key.split(":")[0] for key in figures["messages"]})
        for channel in channels:
            counts = [figures["messages"].get(f"{channel}:{result}", 0) for result in ("sent", "retry", "dead")]
            messages.add_row(channel, *(f"{n:,}" for n in counts))
        return Group(head, schedules, messages)
