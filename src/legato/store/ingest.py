"""Import customers and events from CSV, JSONL or Parquet files (or an in-memory table).

A million-row file has to load in seconds, so nothing loops over rows in Python on the
happy path:

1. the file is read with pyarrow (CSV as text throughout, so every cell can be checked);
2. each column is validated with vectorized ``pyarrow.compute`` kernels that yield a mask
   of bad rows, and Python visits only the few bad rows to word their messages;
3. good rows go to a temporary staging table in bulk (``executemany`` on sqlite3, ``COPY``
   on PostgreSQL) and reach the real tables through a handful of set-based statements.

Everything from step 3 on runs in one transaction, so an import keeps all of its good rows
or nothing; a file-level problem (missing file, unreadable format, missing column) is
raised as :class:`ImportFileError` before anything is written.

Row numbers in messages are what a person looks up: for CSV the spreadsheet row (the header
is row 1, so the first data row is row 2); for JSONL the line number; for Parquet and
in-memory tables the 1-based record number.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, bindparam, text

from legato.clock import Clock, SystemClock, as_utc
from legato.errors import LegatoError
from legato.store import traits
from legato.store.types import UTCDateTime

Progress = Callable[[int, int], None]

FORMATS = ("csv", "jsonl", "parquet")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_COMPRESSIONS = (".gz", ".bz2")  # pyarrow decompresses these by extension for CSV and JSONL

CHANNELS = ("email", "sms", "push", "whatsapp", "webhook")
PURPOSES = ("marketing", "transactional")
ATTRIBUTE_TYPES = ("number", "string", "boolean", "timestamp")

# CASL treats implied consent (an existing business relationship) as valid for two years
# from the purchase or inquiry that created it; 730 days is that period without leap days.
IMPLIED_CONSENT_LIFETIME = timedelta(days=730)

# Column lengths from the schema: checking them here turns what would be a PostgreSQL
# error aborting the whole import (SQLite does not enforce them) into a row error.
_ID_LENGTH = 128
_CUSTOMER_FIELDS = {"email": 320, "phone": 32, "time_zone": 64, "country": 2, "region": 16}
_TYPE_LENGTH = 32
# Numbers the models can do arithmetic on: squares and sums of features stay finite. A
# revenue of 1e200 made lin_ucb's matrices overflow and write NULL propensities. Beyond 1e15
# a float no longer holds every integer; no single event brings in a billion.
_MAX_NUMBER = 1e15
_MAX_REVENUE = 1e9
# One CSV cell of more than a megabyte is not customer data; it is reported by row and
# column, never echoed. Cells up to the block size are read and then refused.
_MAX_FIELD = 1_000_000  # characters
_CSV_BLOCK = 1 << 24  # bytes: the reader's block; a field must fit in one

_DATE_HINT = "use ISO-8601, e.g. 2024-03-01T09:00:00Z"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
_ISO_ZONE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
# Lenient number syntax for validation; strict JSON syntax for keeping undeclared CSV
# columns as numbers (it excludes leading zeros, so zip codes like 02139 stay text).
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_JSON_NUMBER = r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$"
_EVENT_TYPE = r"^[a-z][a-z0-9_]*$"
_EMAIL = r"^[^@\s]+@[^@\s]+$"
_TRUE = ["true", "1", "yes"]
_FALSE = ["false", "0", "no"]
# consent cell -> (status, kind); an empty cell means "no statement", so no row
_CONSENT_VALUES = {
    "express": ("granted", "express"),
    "implied": ("granted", "implied"),
    "yes": ("granted", "express"),
    "true": ("granted", "express"),
    "revoked": ("revoked", "express"),
    "no": ("revoked", "express"),
    "false": ("revoked", "express"),
}

_CUSTOMER_STAGE = "legato_stage_customers"
_CONSENT_STAGE = "legato_stage_consents"
_EVENT_STAGE = "legato_stage_events"
_CHUNK = 100_000  # rows per bulk call, so progress moves and memory stays bounded


# --- what an import reports ------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """One problem with one cell (or a whole row, when ``column`` is None)."""

    row: int
    column: str | None
    value: str | None
    reason: str

    def describe(self, source: str) -> str:
        """``customers.csv row 17, column occurred_at: 'yesterday' is not a date (...)``."""
        where = f"{source} row {self.row}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


@dataclass
class ImportReport:
    """What one import did. ``rejected`` counts rows; a row may have several errors."""

    kind: str
    source: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def source_name(self) -> str:
        return Path(self.source).name

    def messages(self, limit: int | None = None) -> list[str]:
        chosen = self.errors if limit is None else self.errors[:limit]
        return [error.describe(self.source_name) for error in chosen]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [
                {"row": e.row, "column": e.column, "value": e.value, "reason": e.reason}
                for e in self.errors
            ],
        }


class ImportFileError(LegatoError):
    """The file as a whole cannot be imported; nothing was written."""

    exit_code = 2


# --- reading ---------------------------------------------------------------------------


@dataclass
class _Frame:
    """A source read into one table, with what is needed to talk about its rows."""

    table: pa.Table
    name: str  # file name for messages and consent sources
    typed: bool  # False for CSV: every cell is text and numbers must be recognised
    json_columns: set[str]  # text columns that already hold JSON (nested values)
    numbering: Callable[[], np.ndarray]  # row number of every table row, built on demand
    _numbers: np.ndarray | None = None

    def row_numbers(self, indices: Sequence[int] | np.ndarray) -> list[int]:
        # Built lazily: JSONL line numbers need a second pass over the file, and only
        # imports with errors ever ask for them.
        if self._numbers is None:
            self._numbers = self.numbering()
        return [int(n) for n in self._numbers[np.asarray(indices, dtype=np.int64)]]

    def column(self, name: str) -> pa.Array:
        return _contiguous(self.table.column(name))

    @property
    def names(self) -> list[str]:
        return list(self.table.column_names)


def detect_format(path: Path) -> str:
    """The format implied by a file name (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``,
    optionally ``.gz``/``.bz2`` for the text formats)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
        if suffixes and _EXTENSIONS.get(suffixes[-1]) in ("csv", "jsonl"):
            return _EXTENSIONS[suffixes[-1]]
    elif suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise ImportFileError(
        f"cannot tell the format of {path.name} from its name",
        hint="name it .csv, .jsonl, .ndjson or .parquet (.csv.gz and .jsonl.gz work too), "
        "or give the format (--format csv|jsonl|parquet)",
    )


def _read(
    source: Path | str | pa.Table,
    format: str | None,
    mapping: Mapping[str, str] | None,
    instants: Iterable[str] = (),
) -> _Frame:
    """Read a source and apply the column mapping.

    ``instants`` names (after mapping) the columns that will be parsed as instants anyway,
    so a JSONL reader that already recognised them as timestamps may keep them that way.
    """
    if isinstance(source, pa.Table):
        frame = _typed_frame(source, "table", lambda: np.arange(1, source.num_rows + 1))
    else:
        path = Path(source)
        if not path.is_file():
            raise ImportFileError(
                f"file not found: {path}",
                hint="check the path; it is relative to the current folder",
            )
        chosen = (format or detect_format(path)).lower()
        if chosen not in FORMATS:
            raise ImportFileError(
                f"unknown format '{format}'", hint="use one of: " + ", ".join(FORMATS)
            )
        renames = {s.strip(): t.strip() for s, t in (mapping or {}).items()}
        wanted = set(instants)

        def parsed(name: str) -> bool:
            return renames.get(name, name) in wanted

        try:
            if chosen == "csv":
                frame = _read_csv(path)
            elif chosen == "jsonl":
                frame = _read_jsonl(path, parsed)
            else:
                frame = _read_parquet(path)
        except (pa.ArrowException, OSError) as exc:
            raise ImportFileError(
                f"cannot read {path.name} as {chosen.upper()}: {_arrow_message(exc)}",
                hint=_READ_HINTS[chosen],
            ) from exc
    return _renamed(frame, mapping or {})


_READ_HINTS = {
    "csv": "the file must be UTF-8 text with a header row and the same number of "
    "comma-separated fields on every row",
    "jsonl": "the file must hold one JSON object per line",
    "parquet": "the file must be a Parquet file",
}


def _arrow_message(exc: Exception) -> str:
    # pyarrow quotes the offending row ("Expected 5 columns, got 1: <the row>"): that is the
    # customer's data, possibly megabytes of it, and is never echoed.
    first = str(exc).strip().splitlines()[0]
    first = re.sub(r"(Expected \d+ columns, got \d+):.*", r"\1", first)
    return first if len(first) <= 200 else first[:197] + "..."


def _read_csv(path: Path) -> _Frame:
    # Blank lines are kept as (empty) rows so that row numbers equal spreadsheet rows;
    # they are dropped below without counting as read.
    parse = pacsv.ParseOptions(ignore_empty_lines=False)
    read = pacsv.ReadOptions(block_size=_CSV_BLOCK)
    try:
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse)  # only to learn the header
        names = reader.schema.names
        reader.close()
        _check_unique(path.name, [name.strip() for name in names])
        convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False
        )
        table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc):
            raise ImportFileError(
                f"{path.name} line {_first_bad_line(path)}: a field is longer than {_CSV_BLOCK:,} bytes; nothing was imported",
                hint="a cell holds far more than customer data; check the quoting (an unclosed quote joins many rows into one)",
            ) from None
        if "columns, got" in str(exc):
            raise ImportFileError(
                f"cannot read {path.name} as CSV: line {_first_bad_line(path)}: {_arrow_message(exc)}",
                hint=_READ_HINTS["csv"] + " (a value with a line break is not supported)",
            ) from None
        raise
    _refuse_huge_fields(table, path.name)
    table = table.rename_columns([name.strip() for name in table.column_names])
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= _mask(pc.is_null(_blank_to_null(_contiguous(column))))
        if not blank.any():  # usually settled by the first column (the id)
            break
    kept = np.flatnonzero(~blank)
    if len(kept) < table.num_rows:
        table = table.take(pa.array(kept))
    numbers = kept + 2  # the header is row 1
    table = _drop_unnamed(table, path.name)
    return _Frame(table, path.name, False, set(), lambda: numbers)


def _refuse_huge_fields(table: pa.Table, source: str) -> None:
    """Cells longer than :data:`_MAX_FIELD`, named by row and column, their text never shown."""
    found: list[str] = []
    for name, column in zip(table.column_names, table.columns):
        lengths = pc.utf8_length(_contiguous(column))
        for index in np.flatnonzero(_mask(pc.greater(lengths, _MAX_FIELD)))[:5].tolist():
            found.append(f"row {index + 2}, column {name}: {lengths[index].as_py():,} characters")
    if found:
        raise ImportFileError(
            f"{source}: a field is longer than {_MAX_FIELD:,} characters ({'; '.join(found)}); nothing was imported",
            hint="a cell holds far more than customer data; check the quoting (an unclosed quote joins many rows into one)",
        )


def _first_bad_line(path: Path) -> int:
    """The line (as an editor counts) of the first row with a line break, too many or too
    few fields, or a field too long for the reader: Python's csv, row by row."""
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(_CSV_BLOCK)
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            width = len(next(reader, []))
            start = reader.line_num + 1  # where the next row begins
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return start
                except csv.Error:
                    return start
                if (row and len(row) != width) or any("\n" in value or "\r" in value for value in row):
                    return start
                start = reader.line_num + 1
    finally:
        csv.field_size_limit(limit)


def _read_jsonl(path: Path, instants: Callable[[str], bool]) -> _Frame:
    try:
        table = pajson.read_json(path)
    except pa.ArrowInvalid:
        # pyarrow needs one JSON type per field (and objects that fit its block size);
        # real files mix them, e.g. revenue 12.5 on one line and "n/a" on another, which
        # must become a row error, not a failed import. The slower reader handles that.
        return _read_jsonl_slowly(path)
    stamps = [
        f.name for f in table.schema if pa.types.is_timestamp(f.type) and not instants(f.name)
    ]
    if stamps:
        # pyarrow turns ISO-looking strings into timestamps (converting offsets to UTC,
        # which is what instant columns want). Other fields are read again as text so that
        # a property keeps the form it had in the file.
        schema = pa.schema([(name, pa.string()) for name in stamps])
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        table = pajson.read_json(path, parse_options=options)
    return _typed_frame(table, path.name, lambda: _jsonl_line_numbers(path))


def _jsonl_lines(path: Path) -> list[bytes]:
    return pa.input_stream(str(path), compression="detect").read().split(b"\n")


def _jsonl_line_numbers(path: Path) -> np.ndarray:
    """Line numbers of the non-blank lines, which are the records pyarrow read."""
    lines = _jsonl_lines(path)
    return np.array([n for n, line in enumerate(lines, 1) if line.strip()], dtype=np.int64)


def _read_jsonl_slowly(path: Path) -> _Frame:
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, line in enumerate(_jsonl_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ImportFileError(
                f"{path.name} line {number} is not valid JSON: {exc}",
                hint=_READ_HINTS["jsonl"],
            ) from exc
        if not isinstance(record, dict):
            raise ImportFileError(
                f"{path.name} line {number} is not a JSON object", hint=_READ_HINTS["jsonl"]
            )
        records.append(record)
        numbers.append(number)
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    arrays, json_columns = [], set()
    for key in keys:
        array, is_json = _array_from_values([record.get(key) for record in records])
        arrays.append(array)
        if is_json:
            json_columns.add(key)
    table = pa.table(arrays, names=list(keys)) if keys else pa.table({})
    found = np.array(numbers, dtype=np.int64)
    return _Frame(table, path.name, True, json_columns, lambda: found)


def _array_from_values(values: list[Any]) -> tuple[pa.Array, bool]:
    """One column from Python values; returns the array and whether it holds JSON text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {str} or not kinds:
        return pa.array(values, pa.string()), False
    if kinds == {bool}:
        return pa.array(values, pa.bool_()), False
    if kinds <= {int, float}:
        try:
            return pa.array(values, pa.float64() if float in kinds else pa.int64()), False
        except (pa.ArrowInvalid, OverflowError):
            pass  # integers beyond 64 bits: keep their digits as text
    if kinds <= {dict, list}:
        return pa.array([None if v is None else _dumps(v) for v in values], pa.string()), True
    # Mixed kinds: text keeps every value readable and lets validation name the bad ones.
    return (
        pa.array([v if v is None or isinstance(v, str) else _dumps(v) for v in values], pa.string()),
        False,
    )


def _dumps(value: Any) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _read_parquet(path: Path) -> _Frame:
    table = pq.read_table(path)
    return _typed_frame(table, path.name, lambda: np.arange(1, table.num_rows + 1))


def _typed_frame(table: pa.Table, name: str, numbering: Callable[[], np.ndarray]) -> _Frame:
    """A frame from typed columns (JSONL, Parquet, Arrow): nested values become JSON text."""
    names = [str(n).strip() for n in table.column_names]
    _check_unique(name, names)
    arrays, json_columns = [], set()
    for column_name, column in zip(names, table.columns):
        array = _contiguous(column)
        kind = array.type
        if pa.types.is_dictionary(kind):
            array = array.dictionary_decode()
            kind = array.type
        if pa.types.is_large_string(kind):
            array = pc.cast(array, pa.string())
        elif pa.types.is_nested(kind):
            array = pa.array(
                [None if v is None else _dumps(v) for v in array.to_pylist()], pa.string()
            )
            json_columns.add(column_name)
        arrays.append(array)
    return _Frame(pa.table(arrays, names=names), name, True, json_columns, numbering)


def _contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _check_unique(source: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise ImportFileError(
                f"{source} has two columns named '{name}'",
                hint="rename one of them in the file or map it to another name with --map",
            )
        seen.add(name)


def _drop_unnamed(table: pa.Table, source: str) -> pa.Table:
    """Drop columns without a name (a trailing comma in the header) if they are empty."""
    for index in reversed(range(table.num_columns)):
        if table.column_names[index]:
            continue
        if pc.any(pc.is_valid(_blank_to_null(_contiguous(table.column(index))))).as_py():
            raise ImportFileError(
                f"{source}: column {index + 1} has values but no name in the header row",
                hint="give every column a name in the first row",
            )
        table = table.remove_column(index)
    return table


def _renamed(frame: _Frame, mapping: Mapping[str, str]) -> _Frame:
    """Apply ``--map SOURCE=TARGET`` renames; mapping a column that is not there is an error."""
    if not mapping:
        return frame
    names = frame.names
    renamed = list(names)
    for source_name, target in mapping.items():
        source_name, target = source_name.strip(), target.strip()
        if source_name not in names:
            raise ImportFileError(
                f"cannot map '{source_name}' to '{target}': {frame.name} has no column "
                f"'{source_name}'; columns found: {_listing(names)}",
                hint="the left side of --map SOURCE=TARGET is a column name in the file",
            )
        renamed[names.index(source_name)] = target
    _check_unique(frame.name, renamed)
    frame.table = frame.table.rename_columns(renamed)
    frame.json_columns = {renamed[names.index(n)] for n in frame.json_columns}
    return frame


def _listing(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _require(frame: _Frame, required: Sequence[str]) -> None:
    names = frame.names
    for column in required:
        if column in names:
            continue
        similar = [n for n in names if n.lower() == column.lower()]
        example = similar[0] if similar else "SOURCE"
        raise ImportFileError(
            f"{frame.name} has no column '{column}'; columns found: {_listing(names)}",
            hint=f"name the column {column} in the file or map one to it, "
            f"e.g. --map {example}={column}",
        )


# --- vectorized checks ---------------------------------------------------------------


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean pyarrow result as a numpy mask, null counting as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _blank_to_null(values: pa.Array, *, trim: bool = True) -> pa.Array:
    """Empty or all-blank cells as null; other text trimmed unless ``trim`` is False."""
    if not pa.types.is_string(values.type):
        return values
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed if trim else values)


def _text(values: pa.Array, column: str) -> pa.Array:
    """A column as trimmed text, an empty cell being null ("no value")."""
    if pa.types.is_nested(values.type):
        raise ImportFileError(
            f"column {column} holds nested values", hint=f"{column} must hold plain values"
        )
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        return _iso_text(_instant_values(values))
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return _blank_to_null(values)


def _too_long(values: pa.Array, limit: int) -> np.ndarray:
    return _mask(pc.greater(pc.utf8_length(values), limit))


def _instant_values(values: pa.Array) -> pa.Array:
    """Typed timestamps/dates as timestamp[us, UTC]; naive ones are taken to be UTC."""
    kind = values.type
    if pa.types.is_date(kind):
        values = pc.cast(values, pa.timestamp("us"))
        kind = values.type
    if kind.tz is None:
        return pc.cast(pc.cast(values, pa.timestamp("us"), safe=False), pa.timestamp("us", "UTC"))
    return pc.cast(values, pa.timestamp("us", "UTC"), safe=False)


def _instants(values: pa.Array, column: str) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Parse ISO-8601 instants; returns (timestamp[us, UTC], bad-row mask, shown text).

    Zoned values (``Z``, ``+02:00``) are converted to UTC and naive ones are taken to be
    UTC, both with Arrow's ISO parser; a group that Arrow refuses (an impossible date such
    as 2024-02-30 inside an otherwise valid shape) is retried value by value in Python so
    only the bad cells are rejected.
    """
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        parsed = _instant_values(values)
        # Typed values cannot be malformed; text is only for messages about other columns.
        return parsed, np.zeros(len(values), dtype=bool), pc.cast(values, pa.string())
    shown = _text(values, column)
    result = pa.nulls(len(shown), pa.timestamp("us", "UTC"))
    zoned = _mask(pc.match_substring_regex(shown, f"^{_ISO_DATE}{_ISO_ZONE}$"))
    naive = _mask(pc.match_substring_regex(shown, f"^{_ISO_DATE}$"))
    for group, zone in ((zoned, "UTC"), (naive, None)):
        if not group.any():
            continue
        subset = shown.filter(pa.array(group))
        try:
            parsed = pc.cast(subset, pa.timestamp("ns", zone))
            parsed = pc.cast(parsed, pa.timestamp("us", zone), safe=False)
            if zone is None:
                parsed = pc.cast(parsed, pa.timestamp("us", "UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pa.array(
                [_parse_instant(v) for v in subset.to_pylist()], pa.timestamp("us", "UTC")
            )
        result = pc.replace_with_mask(result, pa.array(group), parsed)
    bad = _mask(pc.is_valid(shown)) & ~_mask(pc.is_valid(result))
    return result, bad, shown


def _parse_instant(value: str) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return None


def _iso_text(stamps: pa.Array) -> pa.Array:
    """UTC instants as ISO-8601 text with ``Z``; sub-second digits only if any are set."""
    seconds = pc.cast(stamps, pa.timestamp("s", "UTC"), safe=False)
    whole = pc.all(pc.equal(pc.cast(seconds, stamps.type), stamps)).as_py() in (True, None)
    if not whole:
        seconds = pc.cast(stamps, pa.timestamp("us", "UTC"))
    # A naive timestamp cast to text reads 'YYYY-MM-DD HH:MM:SS[.ffffff]', much faster
    # than pc.strftime.
    texts = pc.cast(seconds.cast(pa.timestamp(seconds.type.unit)), pa.string())
    texts = pc.replace_substring(texts, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(texts, "Z", "")


def _numbers(values: pa.Array, column: str) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Parse numbers; returns (float64, bad-row mask, shown text). NaN and infinity are bad."""
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        parsed = pc.cast(values, pa.float64())
        shown = pc.cast(values, pa.string())
    else:
        shown = _text(values, column)
        syntax = pc.match_substring_regex(shown, _NUMBER)
        parsed = pc.cast(pc.if_else(syntax, shown, pa.scalar(None, pa.string())), pa.float64())
    finite = pc.is_finite(parsed)
    bad = _mask(pc.is_valid(shown)) & ~_mask(finite)
    parsed = pc.if_else(finite, parsed, pa.scalar(None, pa.float64()))
    return parsed, bad, shown


def _too_large(parsed: pa.Array, limit: float) -> np.ndarray:
    """Numbers beyond ``limit`` in size: finite, but they overflow the models' arithmetic."""
    return _mask(pc.greater(pc.abs(parsed), limit))


def _first_seen(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """For repeated ids: a mask of the later rows and, per row, the index of the first.

    Dictionary-encoding hashes every id once; when the dictionary is as long as the
    column has values there is nothing more to do, which is the usual case.
    """
    encoded = pc.dictionary_encode(ids)
    rows = len(ids)
    if len(encoded.dictionary) == rows - ids.null_count:
        return np.zeros(rows, dtype=bool), np.full(rows, -1, dtype=np.int64)
    codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False))
    present = codes >= 0
    first_of_code = np.full(len(encoded.dictionary), rows, dtype=np.int64)
    np.minimum.at(first_of_code, codes[present], np.flatnonzero(present))
    first_index = np.where(present, first_of_code[np.maximum(codes, 0)], -1)
    later = present & (first_index != np.arange(rows))
    return later, first_index


def _q(value: object) -> str:
    """A cell value quoted for a message, shortened so one cell cannot flood a report."""
    shown = str(value)
    return "'" + (shown if len(shown) <= 60 else shown[:57] + "...") + "'"


class _Problems:
    """Row errors found so far and the mask of rejected rows."""

    def __init__(self, frame: _Frame) -> None:
        self.frame = frame
        self.bad = np.zeros(frame.table.num_rows, dtype=bool)
        self._found: list[tuple[int, int, str | None, str | None, str]] = []

    def add(
        self,
        mask: np.ndarray,
        column: str | None,
        shown: pa.Array | None,
        reason: Callable[[Any], str],
    ) -> None:
        """Record ``reason(value)`` for every row in ``mask`` (a loop over bad rows only)."""
        indices = np.flatnonzero(mask)
        if not len(indices):
            return
        self.bad[indices] = True
        values = shown.take(pa.array(indices)).to_pylist() if shown is not None else [None] * len(indices)
        for index, value in zip(indices.tolist(), values):
            self._add(index, column, value, reason(value))

    def _add(self, index: int, column: str | None, value: Any, reason: str) -> None:
        shown = None if value is None else str(value)
        self._found.append((index, len(self._found), column, shown, reason))

    def add_rows(self, rows: Iterable[tuple[int, Any, str]], column: str) -> None:
        """Record errors given as (table index, value, reason), e.g. found in the database."""
        for index, value, reason in rows:
            self.bad[index] = True
            self._add(index, column, value, reason)

    @property
    def rejected(self) -> int:
        return int(self.bad.sum())

    def errors(self) -> list[RowError]:
        found = sorted(self._found)
        numbers = self.frame.row_numbers([f[0] for f in found]) if found else []
        return [
            RowError(row=number, column=column, value=value, reason=reason)
            for number, (_, _, column, value, reason) in zip(numbers, found)
        ]


def _check_ids(frame: _Frame, problems: _Problems, column: str, what: str) -> pa.Array:
    ids = _text(frame.column(column), column)
    problems.add(_mask(pc.is_null(ids)), column, None, lambda _: f"missing {what}")
    problems.add(
        _too_long(ids, _ID_LENGTH), column, ids, lambda v: f"{_q(v)} is longer than {_ID_LENGTH} characters"
    )
    return ids


def _check_unique_ids(frame: _Frame, problems: _Problems, ids: pa.Array) -> None:
    later, first_index = _first_seen(ids)
    indices = np.flatnonzero(later)
    if not len(indices):
        return
    firsts = frame.row_numbers(first_index[indices])
    values = ids.take(pa.array(indices)).to_pylist()
    problems.add_rows(
        (
            (index, value, f"duplicate id, first seen at row {first}")
            for index, value, first in zip(indices.tolist(), values, firsts)
        ),
        "id",
    )


# --- JSON built column by column -----------------------------------------------------


def _json_strings(texts: pa.Array) -> pa.Array:
    """Text as JSON string literals, escaped without a Python loop."""
    escaped = pc.replace_substring(texts, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if pc.any(pc.match_substring_regex(texts, r"[\x00-\x1f]")).as_py():
        # NUL is dropped: PostgreSQL cannot store it in text or jsonb at all.
        escaped = pc.replace_substring(escaped, "\x00", "")
        for code in range(1, 32):
            escaped = pc.replace_substring(escaped, chr(code), f"\\u{code:04x}")
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _json_literals(values: pa.Array, column: str, *, typed: bool, is_json: bool) -> pa.Array:
    """One column as JSON literals (null where the cell is empty and the key is left out).

    Typed sources keep their types. CSV cells are text; a CSV column becomes numbers only
    if every non-empty cell is a JSON number, so a column of ids with leading zeros, or one
    stray word, keeps the whole column as text rather than mixing types.
    """
    kind = values.type
    if is_json:
        return _blank_to_null(values)
    if pa.types.is_string(kind):
        texts = _blank_to_null(values, trim=False)  # kept as written, spaces included
        if not typed and pc.all(pc.match_substring_regex(texts, _JSON_NUMBER)).as_py() in (True, None):
            return texts
        return _json_strings(texts)
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return pc.cast(values, pa.string())
    if pa.types.is_floating(kind):
        finite = pc.is_finite(values)
        return pc.if_else(finite, pc.cast(values, pa.string()), pa.scalar(None, pa.string()))
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _json_strings(_iso_text(_instant_values(values)))
    return pa.array([None if v is None else _dumps(v) for v in values.to_pylist()], pa.string())


def _declared_literals(
    values: pa.Array, column: str, declared: str, problems: _Problems
) -> pa.Array:
    """A declared attribute converted to its type; a cell that does not convert is a row error."""
    if declared == "string":
        return _json_strings(_text(values, column))
    if declared == "number":
        parsed, bad, shown = _numbers(values, column)
        problems.add(bad, column, shown, lambda v: f"{_q(v)} is not a number")
        huge = _too_large(parsed, _MAX_NUMBER)
        problems.add(huge, column, shown, lambda v: f"{_q(v)} is too large (at most {_MAX_NUMBER:.0e} in size)")
        return pc.cast(pc.if_else(pa.array(huge), pa.scalar(None, pa.float64()), parsed), pa.string())
    if declared == "boolean":
        shown = _text(values, column)
        lowered = pc.utf8_lower(shown)
        yes = _mask(pc.is_in(lowered, pa.array(_TRUE)))
        no = _mask(pc.is_in(lowered, pa.array(_FALSE)))
        bad = _mask(pc.is_valid(shown)) & ~(yes | no)
        problems.add(
            bad, column, shown, lambda v: f"{_q(v)} is not a boolean (use true/false, yes/no or 1/0)"
        )
        nothing = pa.scalar(None, pa.string())
        return pc.if_else(pa.array(yes), "true", pc.if_else(pa.array(no), "false", nothing))
    parsed, bad, shown = _instants(values, column)
    problems.add(bad, column, shown, lambda v: f"{_q(v)} is not a date ({_DATE_HINT})")
    return _json_strings(_iso_text(parsed))


def _json_objects(fragments: list[pa.Array], rows: int) -> pa.Array:
    """Join ``"key":literal`` fragments into one JSON object per row; nulls are skipped."""
    if not fragments:
        return pa.array(["{}"] * rows, pa.string())
    # Folded pairwise: binary_join_element_wise(null_handling="skip") drops trailing
    # all-null rows in pyarrow 26, so nulls are skipped by hand with coalesce.
    body = fragments[0]
    for fragment in fragments[1:]:
        body = pc.coalesce(pc.binary_join_element_wise(body, fragment, ","), body, fragment)
    return pc.binary_join_element_wise("{", pc.fill_null(body, ""), "}", "")


def _object_fragments(
    frame: _Frame,
    columns: Sequence[str],
    spread: str,
    declared: Mapping[str, str],
    problems: _Problems,
) -> list[pa.Array]:
    """Fragments for the JSON column (attributes or properties) from the leftover columns.

    A column named like the JSON column itself that holds objects (``"properties": {...}``
    in JSONL) is spread into it rather than nested under its own name.
    """
    fragments = []
    for column in columns:
        values = frame.column(column)
        is_json = column in frame.json_columns
        if column == spread and is_json:
            texts = _blank_to_null(values)
            if pc.all(pc.starts_with(texts, "{")).as_py() in (True, None):
                inner = _blank_to_null(pc.utf8_slice_codeunits(texts, 1, -1))
                fragments.append(inner)
                continue
        if column in declared:
            literals = _declared_literals(values, column, declared[column], problems)
        else:
            literals = _json_literals(values, column, typed=frame.typed, is_json=is_json)
        key = json.dumps(column, ensure_ascii=False) + ":"
        fragments.append(pc.binary_join_element_wise(key, literals, ""))
    return fragments


# --- staging -------------------------------------------------------------------------

_STAGE_TYPES = {
    "sqlite": {"int": "INTEGER", "text": "TEXT", "real": "REAL", "time": "TEXT", "json": "TEXT", "jsonb": "TEXT"},
    "postgresql": {
        "int": "BIGINT",
        "text": "TEXT",
        "real": "DOUBLE PRECISION",
        "time": "TIMESTAMPTZ",
        "json": "JSON",
        "jsonb": "JSONB",
    },
}


def _stage_name(connection: Connection, name: str) -> str:
    # Qualified with the temporary schema so DROP can never reach a permanent table.
    return f"temp.{name}" if connection.dialect.name == "sqlite" else f"pg_temp.{name}"


def _db_time(stamps: pa.Array, dialect: str) -> pa.Array:
    """Instants as the text the database expects from a bulk load.

    SQLite gets exactly SQLAlchemy's storage format for DateTime ('YYYY-MM-DD HH:MM:SS.ffffff',
    naive UTC), so UTCDateTime reads the values back and text comparison is chronological;
    PostgreSQL gets the same with an explicit +00 offset for timestamptz.
    """
    # Casting a naive timestamp[us] to text gives exactly that layout and is ten times
    # faster than pc.strftime.
    texts = pc.cast(pc.cast(stamps, pa.timestamp("us", "UTC")).cast(pa.timestamp("us")), pa.string())
    if dialect == "postgresql":
        texts = pc.binary_join_element_wise(texts, "+00", "")
    return texts


def _stage(
    connection: Connection,
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: pa.Table,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Create a temporary table and bulk-load ``rows`` into it; returns its qualified name.

    ``columns`` pairs each column of ``rows`` with a kind (int, text, real, time, json,
    jsonb). Loading uses the driver directly on the transaction's own connection: one
    ``executemany`` per chunk on sqlite3 and ``COPY`` on psycopg, instead of a
    round trip per row.
    """
    dialect = connection.dialect.name
    qualified = _stage_name(connection, name)
    kinds = _STAGE_TYPES[dialect]
    definition = ", ".join(f"{column} {kinds[kind]}" for column, kind in columns)
    connection.execute(text(f"DROP TABLE IF EXISTS {qualified}"))
    on_commit = " ON COMMIT DROP" if dialect == "postgresql" else ""
    connection.execute(text(f"CREATE TEMPORARY TABLE {name} ({definition}){on_commit}"))
    arrays = []
    for (column, kind), array in zip(columns, rows.columns):
        array = _contiguous(array)
        arrays.append(_db_time(array, dialect) if kind == "time" else array)
    rows = pa.table(arrays, names=[column for column, _ in columns])
    names = ", ".join(column for column, _ in columns)
    driver = connection.connection.driver_connection
    if dialect == "sqlite":
        cursor = driver.cursor()
        insert = f"INSERT INTO {qualified} ({names}) VALUES ({', '.join('?' * len(columns))})"
        for start in range(0, rows.num_rows, _CHUNK):
            chunk = rows.slice(start, _CHUNK)
            cursor.executemany(insert, zip(*(column.to_pylist() for column in chunk.columns)))
            if progress:
                progress(start + chunk.num_rows)
        cursor.close()
    else:
        options = pacsv.WriteOptions(include_header=False)
        with driver.cursor() as cursor:
            with cursor.copy(f"COPY {qualified} ({names}) FROM STDIN (FORMAT csv)") as copy:
                for start in range(0, rows.num_rows, _CHUNK):
                    chunk = rows.slice(start, _CHUNK)
                    buffer = pa.BufferOutputStream()
                    pacsv.write_csv(chunk, buffer, write_options=options)
                    copy.write(memoryview(buffer.getvalue()))
                    if progress:
                        progress(start + chunk.num_rows)
        # Temporary tables have no statistics; without them the planner guesses badly.
        connection.execute(text(f"ANALYZE {qualified}"))
    return qualified


def _drop(connection: Connection, qualified: str) -> None:
    connection.execute(text(f"DROP TABLE IF EXISTS {qualified}"))


def _timed(statement: str, *names: str) -> Any:
    """A text statement whose named parameters are instants bound as UTCDateTime."""
    return text(statement).bindparams(*(bindparam(n, type_=UTCDateTime()) for n in names))


class _Steps:
    """Reports progress across reading, loading and the final statements as one bar."""

    def __init__(self, progress: Progress | None, rows: int) -> None:
        self.progress = progress
        # Loading is most of the work; the set-based statements after it get a share too.
        self.total = max(rows, 1) * 2

    def at(self, done: int) -> None:
        if self.progress:
            self.progress(min(done, self.total), self.total)

    def loaded(self, rows: int) -> None:
        self.at(rows)

    def finish(self) -> None:
        self.at(self.total)


# --- customers -----------------------------------------------------------------------

_CONSENT_COLUMN = re.compile(r"^consent_([a-z]+)_([a-z]+)$")


def _consent_columns(frame: _Frame) -> list[tuple[str, str, str]]:
    """(column, channel, purpose) for every ``consent_<channel>_<purpose>`` column."""
    found = []
    for name in frame.names:
        if not name.startswith("consent_") or name == "consent_at":
            continue
        match = _CONSENT_COLUMN.match(name)
        if not match or match.group(1) not in CHANNELS or match.group(2) not in PURPOSES:
            raise ImportFileError(
                f"{frame.name}: column {name} looks like a consent column but is not "
                "consent_<channel>_<purpose>",
                hint=f"channel is one of {', '.join(CHANNELS)}; purpose is one of "
                f"{', '.join(PURPOSES)}, e.g. consent_email_marketing",
            )
        found.append((name, match.group(1), match.group(2)))
    return found


def import_customers(
    engine: Engine,
    source: Path | str | pa.Table,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    attribute_types: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Insert new customers and update changed ones, with their consents.

    A customer is written only if something differs from the store, so re-importing a
    file changes nothing (not even ``updated_at``). An empty cell means "no value": it
    never erases what the store holds. Attributes are merged key by key.
    """
    now = as_utc((clock or SystemClock()).now())
    declared = dict(attribute_types or {})
    for name, kind in declared.items():
        if kind not in ATTRIBUTE_TYPES:
            raise LegatoError(
                f"attribute {name} has type '{kind}'", hint="use one of: " + ", ".join(ATTRIBUTE_TYPES)
            )
    frame = _read(source, format, mapping, ["consent_at", *(n for n, t in declared.items() if t == "timestamp")])
    _require(frame, ["id"])
    consent_columns = _consent_columns(frame)
    rows = frame.table.num_rows
    steps = _Steps(progress, rows)
    steps.at(0)
    report = ImportReport("customers", _source_text(source), rows_read=rows)
    problems = _Problems(frame)

    ids = _check_ids(frame, problems, "id", "id (every customer needs one)")
    _check_unique_ids(frame, problems, ids)
    fields = {name: _customer_field(frame, problems, name) for name in _CUSTOMER_FIELDS}

    consent_at: pa.Array | None = None
    if "consent_at" in frame.names:
        consent_at, bad, shown = _instants(frame.column("consent_at"), "consent_at")
        problems.add(bad, "consent_at", shown, lambda v: f"{_q(v)} is not a date ({_DATE_HINT})")
    consents = [
        (channel, purpose, *_consent_values(frame, problems, column))
        for column, channel, purpose in consent_columns
    ]

    reserved = {"id", "consent_at", *_CUSTOMER_FIELDS, *(c for c, _, _ in consent_columns)}
    others = [name for name in frame.names if name not in reserved]
    fragments = _object_fragments(frame, others, "attributes", declared, problems)
    attributes = _json_objects(fragments, rows)

    good = pa.array(~problems.bad)
    order = pa.array(np.arange(rows, dtype=np.int64))
    staged = pa.table(
        [order, ids, *(fields[n] for n in _CUSTOMER_FIELDS), attributes],
        names=["row_no", "id", *_CUSTOMER_FIELDS, "attributes"],
    ).filter(good)
    consent_rows = _consent_rows(ids, consents, consent_at, now, good)

    with engine.begin() as connection:
        customers_stage = _stage(
            connection,
            _CUSTOMER_STAGE,
            [("row_no", "int"), ("id", "text"), *((n, "text") for n in _CUSTOMER_FIELDS), ("attributes", "jsonb")],
            staged,
            steps.loaded,
        )
        consent_stage = _stage(
            connection,
            _CONSENT_STAGE,
            [
                ("customer_id", "text"),
                ("channel", "text"),
                ("purpose", "text"),
                ("status", "text"),
                ("kind", "text"),
                ("recorded_at", "time"),
                ("expires_at", "time"),
                ("explicit", "int"),
            ],
            consent_rows,
        )
        counts = _upsert_customers(
            connection, customers_stage, consent_stage, now, f"import:{frame.name}"[:128]
        )
        _drop(connection, customers_stage)
        _drop(connection, consent_stage)
    steps.finish()
    report.inserted = counts.get("new", 0)
    report.updated = counts.get("changed", 0)
    report.unchanged = counts.get("same", 0)
    report.rejected = problems.rejected
    report.errors = problems.errors()
    return report


def _source_text(source: Path | str | pa.Table) -> str:
    return "table" if isinstance(source, pa.Table) else str(source)


def _customer_field(frame: _Frame, problems: _Problems, name: str) -> pa.Array:
    """email, phone, time_zone, country or region, checked; null where absent or empty."""
    if name not in frame.names:
        return pa.nulls(frame.table.num_rows, pa.string())
    values = _text(frame.column(name), name)
    if name == "country":
        values = pc.utf8_upper(values)
        bad = _mask(pc.is_valid(values)) & ~_mask(pc.match_substring_regex(values, r"^[A-Z]{2}$"))
        problems.add(bad, name, values, lambda v: f"{_q(v)} is not a 2-letter country code (ISO 3166-1, e.g. US)")
        return values
    if name == "time_zone":
        known = [zone for zone in pc.unique(values).to_pylist() if zone and _is_zone(zone)]
        bad = _mask(pc.is_valid(values)) & ~_mask(pc.is_in(values, pa.array(known, pa.string())))
        problems.add(
            bad, name, values, lambda v: f"{_q(v)} is not a time zone (use an IANA name, e.g. Europe/Paris)"
        )
        return values
    limit = _CUSTOMER_FIELDS[name]
    if name == "email":
        bad = _mask(pc.is_valid(values)) & ~_mask(pc.match_substring_regex(values, _EMAIL))
        problems.add(bad, name, values, lambda v: f"{_q(v)} is not an email address")
    problems.add(_too_long(values, limit), name, values, lambda v: f"{_q(v)} is longer than {limit} characters")
    return values


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def _consent_values(frame: _Frame, problems: _Problems, column: str) -> tuple[pa.Array, pa.Array]:
    """A consent column as (status, kind) arrays; null where the cell is empty."""
    shown = _text(frame.column(column), column)
    choices = list(_CONSENT_VALUES)
    position = pc.index_in(pc.utf8_lower(shown), value_set=pa.array(choices))
    bad = _mask(pc.is_valid(shown)) & _mask(pc.is_null(position))
    problems.add(
        bad,
        column,
        shown,
        lambda v: f"{_q(v)} is not a consent value (use express, implied, revoked, yes or no, "
        "or leave it empty)",
    )
    statuses = pa.array([_CONSENT_VALUES[c][0] for c in choices])
    kinds = pa.array([_CONSENT_VALUES[c][1] for c in choices])
    return pc.take(statuses, position), pc.take(kinds, position)


def _consent_rows(
    ids: pa.Array,
    consents: list[tuple[str, str, pa.Array, pa.Array]],
    consent_at: pa.Array | None,
    now: datetime,
    good: pa.Array,
) -> pa.Table:
    """One row per non-empty consent cell of a good row, ready for the consent stage."""
    rows = len(ids)
    now_scalar = pa.scalar(now, pa.timestamp("us", "UTC"))
    if consent_at is None:
        recorded = pa.array(np.full(rows, now_scalar.value, dtype=np.int64), pa.timestamp("us", "UTC"))
        explicit = pa.array(np.zeros(rows, dtype=np.int64))
    else:
        recorded = pc.fill_null(consent_at, now_scalar)
        explicit = pc.cast(pc.is_valid(consent_at), pa.int64())
    lifetime = pa.scalar(IMPLIED_CONSENT_LIFETIME, pa.duration("us"))
    parts = []
    for channel, purpose, statuses, kinds in consents:
        expires = pc.if_else(
            pc.equal(kinds, "implied"), pc.add(recorded, lifetime), pa.scalar(None, recorded.type)
        )
        part = pa.table(
            {
                "customer_id": ids,
                "channel": pa.array([channel] * rows, pa.string()),
                "purpose": pa.array([purpose] * rows, pa.string()),
                "status": statuses,
                "kind": kinds,
                "recorded_at": recorded,
                "expires_at": expires,
                "explicit": explicit,
            }
        )
        parts.append(part.filter(pc.and_(good, pc.is_valid(statuses))))
    if not parts:
        empty = {
            "customer_id": pa.string(), "channel": pa.string(), "purpose": pa.string(),
            "status": pa.string(), "kind": pa.string(), "recorded_at": pa.timestamp("us", "UTC"),
            "expires_at": pa.timestamp("us", "UTC"), "explicit": pa.int64(),
        }
        return pa.schema(empty).empty_table()
    return pa.concat_tables(parts)


def _upsert_customers(
    connection: Connection, stage: str, consent_stage: str, now: datetime, source: str
) -> dict[str, int]:
    """Classify staged customers as new/changed/same, then write only what differs."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        merged = "(customers.attributes::jsonb || s.attributes)::json"
        attributes_differ = "(c.attributes::jsonb || s.attributes) <> c.attributes::jsonb"
        new_attributes = "s.attributes::json"
    else:
        # json_patch merges key by key; json() puts the stored text in the same minified
        # form so that equal documents compare equal as text.
        merged = "json_patch(customers.attributes, s.attributes)"
        attributes_differ = "json_patch(c.attributes, s.attributes) <> json(c.attributes)"
        new_attributes = "s.attributes"
    field_differs = " OR ".join(
        f"(s.{n} IS NOT NULL AND (c.{n} IS NULL OR s.{n} <> c.{n}))" for n in _CUSTOMER_FIELDS
    )
    consent_differs = (
        "c.customer_id IS NULL OR c.status <> k.status OR c.kind <> k.kind "
        "OR (k.explicit = 1 AND c.recorded_at <> k.recorded_at)"
    )
    consent_join = (
        f"{consent_stage} AS k LEFT JOIN consents AS c ON c.customer_id = k.customer_id "
        "AND c.channel = k.channel AND c.purpose = k.purpose"
    )
    connection.execute(text(f"ALTER TABLE {stage} ADD COLUMN state TEXT DEFAULT 'same'"))
    statements = [
        f"UPDATE {stage} AS s SET state = 'new' "
        "WHERE NOT EXISTS (SELECT 1 FROM customers AS c WHERE c.id = s.id)",
        f"UPDATE {stage} AS s SET state = 'changed' WHERE s.state = 'same' AND EXISTS ("
        f"SELECT 1 FROM customers AS c WHERE c.id = s.id AND ({field_differs} OR {attributes_differ}))",
        f"UPDATE {stage} AS s SET state = 'changed' WHERE s.state = 'same' AND s.id IN ("
        f"SELECT k.customer_id FROM {consent_join} WHERE {consent_differs})",
    ]
    for statement in statements:
        connection.execute(text(statement))
    columns = ", ".join(_CUSTOMER_FIELDS)
    connection.execute(
        _timed(
            f"INSERT INTO customers (id, {columns}, attributes, created_at, updated_at) "
            f"SELECT s.id, {', '.join('s.' + n for n in _CUSTOMER_FIELDS)}, {new_attributes}, :now, :now "
            f"FROM {stage} AS s WHERE s.state = 'new'",
            "now",
        ),
        {"now": now},
    )
    assignments = ", ".join(f"{n} = COALESCE(s.{n}, customers.{n})" for n in _CUSTOMER_FIELDS)
    connection.execute(
        _timed(
            f"UPDATE customers SET {assignments}, attributes = {merged}, updated_at = :now "
            f"FROM {stage} AS s WHERE s.id = customers.id AND s.state = 'changed'",
            "now",
        ),
        {"now": now},
    )
    connection.execute(
        text(
            "INSERT INTO consents (customer_id, channel, purpose, status, kind, source, "
            "recorded_at, expires_at) "
            "SELECT k.customer_id, k.channel, k.purpose, k.status, k.kind, :source, "
            f"k.recorded_at, k.expires_at FROM {consent_join} WHERE {consent_differs} "
            "ON CONFLICT (customer_id, channel, purpose) DO UPDATE SET status = excluded.status, "
            "kind = excluded.kind, source = excluded.source, recorded_at = excluded.recorded_at, "
            "expires_at = excluded.expires_at"
        ),
        {"source": source},
    )
    traits.add_empty_rows(
        connection, f"SELECT s.id AS customer_id FROM {stage} AS s WHERE s.state = 'new'"
    )
    counted = connection.execute(text(f"SELECT state, COUNT(*) FROM {stage} GROUP BY state"))
    return {state: int(count) for state, count in counted}


# --- events --------------------------------------------------------------------------

_EVENT_FIELDS = ("id", "customer_id", "type", "occurred_at", "revenue")


def import_events(
    engine: Engine,
    source: Path | str | pa.Table,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Insert events that are not in the store yet and fold them into traits.

    An event whose id is already stored counts as ``unchanged`` (a duplicate delivery),
    so a file can be imported again safely. ``clock`` is accepted for symmetry with
    :func:`import_customers`; events carry their own time.
    """
    del clock  # events are timed by occurred_at, not by the import
    frame = _read(source, format, mapping, ["occurred_at"])
    _require(frame, ["id", "customer_id", "type", "occurred_at"])
    rows = frame.table.num_rows
    steps = _Steps(progress, rows)
    steps.at(0)
    report = ImportReport("events", _source_text(source), rows_read=rows)
    problems = _Problems(frame)

    ids = _check_ids(frame, problems, "id", "event id")
    customer_ids = _check_ids(frame, problems, "customer_id", "customer_id")
    types = _event_types(frame, problems)
    occurred, bad, shown = _instants(frame.column("occurred_at"), "occurred_at")
    problems.add(_mask(pc.is_null(shown)), "occurred_at", None, lambda _: "missing occurred_at")
    problems.add(bad, "occurred_at", shown, lambda v: f"{_q(v)} is not a date ({_DATE_HINT})")
    revenue = _revenue(frame, problems)
    _check_unique_ids(frame, problems, ids)
    others = [name for name in frame.names if name not in _EVENT_FIELDS]
    if others:
        properties = _json_objects(_object_fragments(frame, others, "properties", {}, problems), rows)
    else:
        properties = pa.nulls(rows, pa.string())

    order = pa.array(np.arange(rows, dtype=np.int64))
    staged = pa.table(
        [order, ids, customer_ids, types, occurred, revenue, properties],
        names=["row_no", "id", "customer_id", "type", "occurred_at", "revenue", "properties"],
    ).filter(pa.array(~problems.bad))

    with engine.begin() as connection:
        stage = _stage(
            connection,
            _EVENT_STAGE,
            [
                ("row_no", "int"),
                ("id", "text"),
                ("customer_id", "text"),
                ("type", "text"),
                ("occurred_at", "time"),
                ("revenue", "real"),
                ("properties", "json"),
            ],
            staged,
            steps.loaded,
        )
        already = connection.execute(
            text(f"DELETE FROM {stage} AS s WHERE EXISTS (SELECT 1 FROM events AS e WHERE e.id = s.id)")
        ).rowcount
        unknown = connection.execute(
            text(
                f"DELETE FROM {stage} AS s WHERE NOT EXISTS "
                "(SELECT 1 FROM customers AS c WHERE c.id = s.customer_id) "
                "RETURNING row_no, customer_id"
            )
        ).all()
        problems.add_rows(
            (
                (int(row), customer, f"unknown customer {_q(customer)}; import customers first")
                for row, customer in unknown
            ),
            "customer_id",
        )
        # An outcome that names the decision it answers (a tracked click carries the message's
        # decision_id) must name one Legato made for that customer, or it would credit nothing.
        def reference(table: str) -> str:
            if connection.dialect.name == "sqlite":
                return f"json_extract({table}properties, '$.decision_id')"
            return f"({table}properties::jsonb ->> 'decision_id')"

        orphaned = connection.execute(
            text(
                f"DELETE FROM {stage} AS s WHERE {reference('s.')} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM decisions AS d WHERE CAST(d.id AS TEXT) = CAST({reference('s.')} AS TEXT) "
                "AND d.customer_id = s.customer_id) "
                # SQLite's RETURNING does not see the table's alias.
                f"RETURNING row_no, CAST({reference('')} AS TEXT), customer_id"
            )
        ).all()
        problems.add_rows(
            (
                (
                    int(row),
                    decision,
                    f"decision_id {_q(decision)} is not a decision Legato made for customer {_q(customer)}; "
                    "send the decision_id the message carried, or leave it out to attribute by time window",
                )
                for row, decision, customer in orphaned
            ),
            "decision_id",
        )
        inserted = connection.execute(
            text(
                "INSERT INTO events (id, customer_id, type, occurred_at, revenue, properties) "
                f"SELECT s.id, s.customer_id, s.type, s.occurred_at, s.revenue, s.properties FROM {stage} AS s"
            )
        ).rowcount
        steps.at(rows + rows // 2)
        traits.merge_events(connection, stage)
        _drop(connection, stage)
    steps.finish()
    report.inserted = inserted
    report.unchanged = already
    report.rejected = problems.rejected
    report.errors = problems.errors()
    return report


def _event_types(frame: _Frame, problems: _Problems) -> pa.Array:
    """Event types, lower-cased; one word of letters, digits and underscores."""
    shown = _text(frame.column("type"), "type")
    problems.add(_mask(pc.is_null(shown)), "type", None, lambda _: "missing type")
    types = pc.utf8_lower(shown)
    bad = _mask(pc.is_valid(types)) & ~_mask(pc.match_substring_regex(types, _EVENT_TYPE))
    problems.add(
        bad, "type", shown, lambda v: f"{_q(v)} is not an event type (use one lower-case word, e.g. purchase or add_to_cart)"
    )
    problems.add(
        _too_long(types, _TYPE_LENGTH), "type", shown, lambda v: f"{_q(v)} is longer than {_TYPE_LENGTH} characters"
    )
    return types


def _revenue(frame: _Frame, problems: _Problems) -> pa.Array:
    if "revenue" not in frame.names:
        return pa.nulls(frame.table.num_rows, pa.float64())
    revenue, bad, shown = _numbers(frame.column("revenue"), "revenue")
    problems.add(bad, "revenue", shown, lambda v: f"{_q(v)} is not a number")
    negative = _mask(pc.less(revenue, 0))
    problems.add(negative, "revenue", shown, lambda v: f"{_q(v)} is negative (revenue must be 0 or more)")
    huge = _too_large(revenue, _MAX_REVENUE)
    problems.add(huge, "revenue", shown, lambda v: f"{_q(v)} is more than {_MAX_REVENUE:,.0f} for one event; check the unit and the decimal separator")
    return revenue
