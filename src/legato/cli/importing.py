"""``legato import customers|events FILE``: load a file into the store and say what happened.

Exit codes let scripts react without parsing output: 0 when every row was imported, 1 when
some rows were rejected (the good ones are kept), 2 when the file as a whole could not be
imported (nothing was written).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from legato.cli.output import console, emit_json, errors, fail
from legato.errors import LegatoError
from legato.store.ingest import ImportReport
from legato.store.ingest.report import NOT_REGRANTED_SAMPLE

SHOWN_ERRORS = 20
SHOWN_NOT_REGRANTED = 10

import_app = typer.Typer(
    name="import",
    help="Import customers or events from CSV, JSONL or Parquet files.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

FileArgument = Annotated[
    Path, typer.Argument(help="The file: .csv, .tsv, .jsonl/.ndjson, .parquet (.csv.gz, .jsonl.gz too); other delimited text with --delimiter.")
]
FormatOption = Annotated[
    Optional[str],
    typer.Option("--format", help="csv, jsonl or parquet; default: from the file extension."),
]
MapOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--map",
        metavar="SOURCE=TARGET",
        help="Rename a column of the file, e.g. --map cust_no=id (repeatable).",
    ),
]
DelimiterOption = Annotated[
    Optional[str],
    typer.Option(
        "--delimiter",
        help="Field separator of delimited text: one character (';', '|'), tab, or whitespace for columns "
        "separated by runs of spaces (e.g. the raw CDNOW file); default comma (tab for .tsv). Any file name works with it.",
    ),
]
DatabaseOption = Annotated[
    Optional[str],
    typer.Option("--database", "-d", help="Database URL; default $LEGATO_DATABASE_URL, else sqlite:///legato.db"),
]
ErrorsOption = Annotated[
    Optional[Path],
    typer.Option("--errors", metavar="FILE", help="Write every rejected row (row, column, value, reason) to this CSV file."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")]


@import_app.command("customers")
def customers(
    file: FileArgument,
    format: FormatOption = None,
    map: MapOption = None,
    attribute_type: Annotated[
        Optional[list[str]],
        typer.Option(
            "--attribute-type",
            metavar="NAME=TYPE",
            help="Convert an attribute column to number, string, boolean or timestamp (repeatable).",
        ),
    ] = None,
    playbook: Annotated[
        Optional[Path],
        typer.Option("--playbook", help="Take attribute types from this playbook's `attributes` section."),
    ] = None,
    delimiter: DelimiterOption = None,
    database: DatabaseOption = None,
    errors_file: ErrorsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import customers: new ids are added, changed ones updated, identical ones left alone.

    Required column: **id**. Optional: email, phone, time_zone (IANA name such as
    Europe/Paris), country (2 letters), region, consent_CHANNEL_PURPOSE (express, implied,
    revoked, yes, no; empty = no statement) dated by consent_CHANNEL_PURPOSE_at or
    consent_at (when the customer said it). Every other column is kept as a customer
    attribute. An empty cell never erases a stored value. Phone numbers are stored in E.164
    (a number without country code is read in the row's country).

    A revoked consent is re-granted only by an express consent dated after the revocation;
    the grants that are not are listed (row and column), the rest of their rows imported.

    Row numbers in messages are spreadsheet rows for CSV (the header is row 1, so the
    first customer is row 2) and line numbers for JSONL.

    Declared attribute types (from `--playbook` or `--attribute-type`) are checked per row:
    `history=abc` for a number is a row error, and 1/0/yes/no become booleans. Dates are
    ISO-8601, extended (2024-03-01T09:00:00Z) or basic (20240301, 20240301T0900Z).

    A column named like one of these fields (timezone, mobile, email_consent, ...) is kept
    as an attribute, with a warning that gives the `--map` which makes it the field.

    Example: `legato import customers crm.csv --playbook playbook.yaml --map cust_no=id --errors rejected.csv`
    """
    from legato.service import imports

    mapping = _pairs(map, "--map")
    given = _pairs(attribute_type, "--attribute-type")
    declared = None
    if playbook is not None:
        from legato.validation import load_playbook

        try:
            declared = load_playbook(playbook)
        except LegatoError as error:
            fail(error)
    _run(
        "customers",
        file,
        database,
        errors_file,
        as_json,
        lambda engine, progress: imports.customers(
            engine, file, format=format, mapping=mapping, playbook=declared, types=given, progress=progress, delimiter=delimiter
        ),
    )


@import_app.command("events")
def events(
    file: FileArgument,
    format: FormatOption = None,
    map: MapOption = None,
    delimiter: DelimiterOption = None,
    event_type: Annotated[
        Optional[str],
        typer.Option("--type", metavar="TYPE", help="The type of every row, for a file without a type column (e.g. purchase)."),
    ] = None,
    ids_from_content: Annotated[
        bool,
        typer.Option(
            "--ids-from-content",
            help="For a file without an id column: each event's id is a hash of its cells (numbered where identical "
            "rows repeat), so importing the same file with the same options again changes nothing.",
        ),
    ] = False,
    database: DatabaseOption = None,
    errors_file: ErrorsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import events and update every customer's computed traits.

    Required columns: **id**, **customer_id** (an imported customer), **type** (one word,
    e.g. purchase) and **occurred_at** (ISO-8601, extended or basic such as 19970101; UTC
    unless an offset is given). Optional: revenue (a number, 0 or more; on a `refund`, the
    amount returned, which counts against revenue). Every other column is kept as an event
    property, with a warning when it is named like a field (amount, timestamp, ...) and the
    `--map` that fixes it. Events already stored (same id) are counted as duplicates, so a
    file can be imported again.

    unsubscribe and complaint revoke marketing consent on their channel (column channel;
    else the channel of their decision_id; else every channel); a hard bounce (bounce_type
    hard or empty) makes the customer's address on its channel undeliverable. docs/events.md
    lists every event type and what it does.

    Row numbers in messages are spreadsheet rows for CSV (the header is row 1, so the
    first event is row 2) and line numbers for JSONL.

    Example: `legato import events orders.jsonl --map order_id=id --map ts=occurred_at`

    The raw CDNOW file (whitespace-separated, no id or type): `legato import events
    CDNOW_master.txt --delimiter whitespace --type purchase --ids-from-content --map
    date=occurred_at --map dollar_value=revenue`
    """
    from legato.service import imports

    mapping = _pairs(map, "--map")
    _run(
        "events",
        file,
        database,
        errors_file,
        as_json,
        lambda engine, progress: imports.events(
            engine,
            file,
            format=format,
            mapping=mapping,
            progress=progress,
            delimiter=delimiter,
            event_type=event_type,
            ids_from_content=ids_from_content,
        ),
    )


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict; a malformed one is a usage error (exit 2)."""
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sign, target = value.partition("=")
        if not sign or not name.strip() or not target.strip():
            raise typer.BadParameter(f"'{value}' is not NAME=VALUE", param_hint=option)
        pairs[name.strip()] = target.strip()
    return pairs


def _run(
    kind: str,
    file: Path,
    database: str | None,
    errors_file: Path | None,
    as_json: bool,
    work: Callable[..., ImportReport],
) -> None:
    from legato.store.db import connect

    try:
        engine = connect(database)
        try:
            with _progress_bar(f"importing {kind} from {file.name}", quiet=as_json) as progress:
                report = work(engine, progress)
        finally:
            engine.dispose()
    except LegatoError as error:
        fail(error)
    if errors_file is not None:
        _write_errors(report, errors_file)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report, errors_file)
    raise typer.Exit(1 if report.rejected else 0)


@contextmanager
def _progress_bar(description: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr (so --json output stays clean); gone when done."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _write_errors(report: ImportReport, path: Path) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "column", "value", "reason"])
            for error in report.errors:
                writer.writerow([error.row, error.column or "", error.value or "", error.reason])
    except OSError as exc:
        fail(LegatoError(f"cannot write {path}: {exc.strerror}", hint="choose a writable path for --errors"))


def _print_report(report: ImportReport, errors_file: Path | None) -> None:
    console.print(f"[bold]{report.kind}[/] from {report.source_name}", highlight=False)
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("rows", justify="right")
    same = "unchanged" if report.kind == "customers" else "duplicates (already stored)"
    for label, count in (
        ("rows read", report.rows_read),
        ("inserted", report.inserted),
        ("updated", report.updated),
        (same, report.unchanged),
        ("rejected", report.rejected),
    ):
        style = "red" if label == "rejected" and count else None
        table.add_row(label, f"[{style}]{count:,}[/]" if style else f"{count:,}")
    if report.kind == "events":
        table.add_row("consents revoked (unsubscribes, complaints)", f"{report.consents_revoked:,}")
        table.add_row("addresses undeliverable (hard bounces)", f"{report.undeliverable:,}")
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for message in report.messages(SHOWN_ERRORS):
        console.print(message, markup=False, highlight=False, soft_wrap=True)
    hidden = len(report.errors) - SHOWN_ERRORS
    if hidden > 0:
        where = f"all are in {errors_file}" if errors_file else "--errors FILE saves them all"
        console.print(f"... and {hidden:,} more ({where})", highlight=False)
    if report.not_regranted:
        # Not errors: the rows were imported, but their grants do not undo a revocation.
        count = len(report.not_regranted)
        console.print(
            f"[yellow]consent not re-granted: {count:,} {'grant' if count == 1 else 'grants'} over a revocation "
            "(the customer's no stands)[/]",
            highlight=False,
        )
        for message in report.not_regranted_messages(SHOWN_NOT_REGRANTED):
            console.print(message, markup=False, highlight=False, soft_wrap=True)
        if count > SHOWN_NOT_REGRANTED:
            console.print(f"... and {count - SHOWN_NOT_REGRANTED:,} more (--json lists the first {NOT_REGRANTED_SAMPLE})", highlight=False)
