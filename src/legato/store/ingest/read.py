"""Reading a source (CSV, JSON Lines, Parquet or an in-memory Arrow table) into one frame.

Row numbers are what a person looks up: for CSV the spreadsheet row (the header is row 1,
so the first data row is row 2); for JSONL the line number; for Parquet and in-memory
tables the 1-based record number.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from legato.store.ingest.columns import blank_to_null, contiguous, dumps, mask
from legato.store.ingest.report import ImportFileError

FORMATS = ("csv", "jsonl", "parquet")
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
WHITESPACE = "whitespace"  # the delimiter for columns lined up with runs of spaces or tabs
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " ", "whitespace": WHITESPACE}
_COMPRESSIONS = (".gz", ".bz2")  # pyarrow decompresses these by extension for CSV and JSONL

# One CSV cell of more than a megabyte is not customer data; it is reported by row and
# column, never echoed. Cells up to the block size are read and then refused.
_MAX_FIELD = 1_000_000  # characters
_CSV_BLOCK = 1 << 24  # bytes: the reader's block; a field must fit in one


@dataclass
class Frame:
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
        return contiguous(self.table.column(name))

    @property
    def names(self) -> list[str]:
        return list(self.table.column_names)


def delimiter_of(delimiter: str | None) -> str | None:
    """A ``--delimiter`` as the reader takes it: one character, or :data:`WHITESPACE`.

    Names work too: ``tab`` (or ``\\t``), ``comma``, ``semicolon``, ``pipe``, ``space``, and
    ``whitespace`` for columns separated by runs of spaces or tabs (leading and trailing
    ones ignored, no quoting), as in the raw CDNOW file.
    """
    if delimiter is None:
        return None
    chosen = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if chosen != WHITESPACE and (len(chosen) != 1 or chosen in "\"\r\n"):
        raise ImportFileError(
            f"'{delimiter}' is not a delimiter",
            hint="give one character (e.g. ';' or '|'), or tab, comma, semicolon, pipe, space or whitespace",
        )
    return chosen


def detect_format(path: Path, *, delimited: bool = False) -> str:
    """The format implied by a file name (``.csv``/``.tsv``, ``.jsonl``/``.ndjson``,
    ``.parquet``, optionally ``.gz``/``.bz2`` for the text formats). With a delimiter
    given (``delimited``), any other name is read as delimited text."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if delimited and not (suffixes and _EXTENSIONS.get(suffixes[-1]) in ("jsonl", "parquet")):
        return "csv"
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
        if suffixes and _EXTENSIONS.get(suffixes[-1]) in ("csv", "jsonl"):
            return _EXTENSIONS[suffixes[-1]]
    elif suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise ImportFileError(
        f"cannot tell the format of {path.name} from its name",
        hint="name it .csv, .tsv, .jsonl, .ndjson or .parquet (.csv.gz and .jsonl.gz work too), "
        "or give the format (--format csv|jsonl|parquet); delimited text such as .txt: --delimiter "
        "(e.g. --delimiter whitespace for columns separated by spaces)",
    )


def read_source(
    source: Path | str | pa.Table,
    format: str | None,
    mapping: Mapping[str, str] | None,
    instants: Iterable[str] = (),
    delimiter: str | None = None,
) -> Frame:
    """Read a source and apply the column mapping.

    ``instants`` names (after mapping) the columns that will be parsed as instants anyway,
    so a JSONL reader that already recognised them as timestamps may keep them that way.
    ``delimiter`` separates the fields of delimited text (see :func:`delimiter_of`); the
    default is a comma, or a tab for ``.tsv``.
    """
    separator = delimiter_of(delimiter)
    if isinstance(source, pa.Table):
        first = int((source.schema.metadata or {}).get(_FIRST_ROW, b"1"))
        frame = _typed_frame(source, "table", lambda: np.arange(first, source.num_rows + first))
    else:
        path = Path(source)
        if not path.is_file():
            raise ImportFileError(
                f"file not found: {path}",
                hint="check the path; it is relative to the current folder",
            )
        chosen = (format or detect_format(path, delimited=separator is not None)).lower()
        if chosen not in FORMATS:
            raise ImportFileError(
                f"unknown format '{format}'", hint="use one of: " + ", ".join(FORMATS)
            )
        if separator is not None and chosen != "csv":
            raise ImportFileError(
                f"--delimiter applies to delimited text, and {path.name} is read as {chosen.upper()}",
                hint="leave out --delimiter, or give --format csv",
            )
        if separator is None and ".tsv" in [suffix.lower() for suffix in path.suffixes]:
            separator = "\t"
        renames = {s.strip(): t.strip() for s, t in (mapping or {}).items()}
        wanted = set(instants)

        def parsed(name: str) -> bool:
            return renames.get(name, name) in wanted

        try:
            if chosen == "csv":
                frame = _read_csv(path, separator or ",")
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


def _whitespace_separated(path: Path) -> pa.BufferReader:
    """Text whose columns are separated by runs of spaces or tabs, as tab-separated text:
    line for line (blank lines kept, so row numbers stay the file's lines), no quoting."""
    data = pa.input_stream(str(path), compression="detect").read()
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"{path.name} line {line} is not UTF-8 text; nothing was imported",
            hint="save the file as UTF-8 (most spreadsheet programs offer it under 'Save as')",
        ) from None
    return pa.BufferReader("\n".join("\t".join(line.split()) for line in lines).encode("utf-8") + b"\n")


def _read_csv(path: Path, delimiter: str = ",") -> Frame:
    # Blank lines are kept as (empty) rows so that row numbers equal spreadsheet rows;
    # they are dropped below without counting as read.
    spaced = delimiter == WHITESPACE
    parse = pacsv.ParseOptions(
        ignore_empty_lines=False, delimiter="\t" if spaced else delimiter, quote_char=False if spaced else '"'
    )
    read = pacsv.ReadOptions(block_size=_CSV_BLOCK)

    def source() -> Any:
        return _whitespace_separated(path) if spaced else path

    try:
        reader = pacsv.open_csv(source(), read_options=read, parse_options=parse)  # only to learn the header
        names = reader.schema.names
        reader.close()
        _check_unique(path.name, [name.strip() for name in names])
        convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False
        )
        table = pacsv.read_csv(source(), read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc):
            raise ImportFileError(
                f"{path.name} line {_first_bad_line(path, delimiter)}: a field is longer than {_CSV_BLOCK:,} bytes; nothing was imported",
                hint="a cell holds far more than customer data; check the quoting (an unclosed quote joins many rows into one)",
            ) from None
        if "columns, got" in str(exc):
            raise ImportFileError(
                f"cannot read {path.name} as {'CSV' if delimiter == ',' else 'delimited text'}: line {_first_bad_line(path, delimiter)}: {_arrow_message(exc)}",
                hint=_delimited_hint(delimiter) + " (a value with a line break is not supported)",
            ) from None
        raise
    _refuse_huge_fields(table, path.name)
    table = table.rename_columns([name.strip() for name in table.column_names])
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= mask(pc.is_null(blank_to_null(contiguous(column))))
        if not blank.any():  # usually settled by the first column (the id)
            break
    kept = np.flatnonzero(~blank)
    if len(kept) < table.num_rows:
        table = table.take(pa.array(kept))
    numbers = kept + 2  # the header is row 1
    table = _drop_unnamed(table, path.name)
    return Frame(table, path.name, False, set(), lambda: numbers)


def _refuse_huge_fields(table: pa.Table, source: str) -> None:
    """Cells longer than :data:`_MAX_FIELD`, named by row and column, their text never shown."""
    found: list[str] = []
    for name, column in zip(table.column_names, table.columns):
        lengths = pc.utf8_length(contiguous(column))
        for index in np.flatnonzero(mask(pc.greater(lengths, _MAX_FIELD)))[:5].tolist():
            found.append(f"row {index + 2}, column {name}: {lengths[index].as_py():,} characters")
    if found:
        raise ImportFileError(
            f"{source}: a field is longer than {_MAX_FIELD:,} characters ({'; '.join(found)}); nothing was imported",
            hint="a cell holds far more than customer data; check the quoting (an unclosed quote joins many rows into one)",
        )


def _delimited_hint(delimiter: str) -> str:
    if delimiter == ",":
        return _READ_HINTS["csv"] + "; another delimiter: --delimiter (e.g. ';', tab or whitespace)"
    shown = "runs of spaces or tabs" if delimiter == WHITESPACE else repr(delimiter)
    return f"the file must be UTF-8 text with a header row and the same number of fields, separated by {shown}, on every row"


def _first_bad_line(path: Path, delimiter: str = ",") -> int:
    """The line (as an editor counts) of the first row with a line break, too many or too
    few fields, or a field too long for the reader: Python's csv, row by row."""
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(_CSV_BLOCK)
        with pa.input_stream(str(path), compression="detect") as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as handle:
            if delimiter == WHITESPACE:
                reader: Any = _SpacedReader(handle)
            else:
                reader = csv.reader(handle, delimiter=delimiter)
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


class _SpacedReader:
    """Rows of whitespace-separated text, with ``line_num`` like :func:`csv.reader`."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.line_num = 0

    def __iter__(self) -> _SpacedReader:
        return self

    def __next__(self) -> list[str]:
        line = next(self._handle)
        self.line_num += 1
        return line.split()


def _read_jsonl(path: Path, instants: Callable[[str], bool]) -> Frame:
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


def _read_jsonl_slowly(path: Path) -> Frame:
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
    table = table_from_records(records)
    found = np.array(numbers, dtype=np.int64)
    return Frame(table, path.name, True, _json_columns(table), lambda: found)


# A text column whose field carries this metadata holds JSON (an object or a list per cell),
# so a table built from records says so itself when it is imported (:func:`_typed_frame`).
JSON_FIELD = {b"legato.json": b"1"}


def table_from_records(records: Sequence[Mapping[str, Any]], *, first_row: int = 1) -> pa.Table:
    """Records (a JSON Lines file's objects, an HTTP body's) as a table the importers take.

    One column per key in the order keys are first seen, a missing key being an empty cell;
    each column typed as the slow JSON Lines reader types it: text, booleans, numbers,
    nested values as JSON text (flagged with :data:`JSON_FIELD`), and a column of mixed kinds
    as text, so that validation names the bad cells instead of the whole import failing.
    Row errors number the records from ``first_row`` (the HTTP API's batches count from 0).
    """
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    fields, arrays = [], []
    for key in keys:
        array, is_json = _array_from_values([record.get(key) for record in records])
        arrays.append(array)
        fields.append(pa.field(key, array.type, metadata=JSON_FIELD if is_json else None))
    schema = pa.schema(fields, metadata={_FIRST_ROW: str(first_row).encode()})
    return pa.Table.from_arrays(arrays, schema=schema) if keys else pa.table({}).replace_schema_metadata(schema.metadata)


_FIRST_ROW = b"legato.first_row"


def _json_columns(table: pa.Table) -> set[str]:
    return {field.name for field in table.schema if field.metadata and field.metadata.get(b"legato.json") == b"1"}


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
        return pa.array([None if v is None else dumps(v) for v in values], pa.string()), True
    # Mixed kinds: text keeps every value readable and lets validation name the bad ones.
    return (
        pa.array([v if v is None or isinstance(v, str) else dumps(v) for v in values], pa.string()),
        False,
    )


def _read_parquet(path: Path) -> Frame:
    table = pq.read_table(path)
    return _typed_frame(table, path.name, lambda: np.arange(1, table.num_rows + 1))


def _typed_frame(table: pa.Table, name: str, numbering: Callable[[], np.ndarray]) -> Frame:
    """A frame from typed columns (JSONL, Parquet, Arrow): nested values become JSON text."""
    names = [str(n).strip() for n in table.column_names]
    _check_unique(name, names)
    arrays, json_columns = [], {n.strip() for n in _json_columns(table)}
    for column_name, column in zip(names, table.columns):
        array = contiguous(column)
        kind = array.type
        if pa.types.is_dictionary(kind):
            array = array.dictionary_decode()
            kind = array.type
        if pa.types.is_large_string(kind):
            array = pc.cast(array, pa.string())
        elif pa.types.is_nested(kind):
            array = pa.array(
                [None if v is None else dumps(v) for v in array.to_pylist()], pa.string()
            )
            json_columns.add(column_name)
        arrays.append(array)
    return Frame(pa.table(arrays, names=names), name, True, json_columns, numbering)


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
        if pc.any(pc.is_valid(blank_to_null(contiguous(table.column(index))))).as_py():
            raise ImportFileError(
                f"{source}: column {index + 1} has values but no name in the header row",
                hint="give every column a name in the first row",
            )
        table = table.remove_column(index)
    return table


def _renamed(frame: Frame, mapping: Mapping[str, str]) -> Frame:
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


def require_columns(frame: Frame, required: Sequence[str], *, suggest: Callable[[str, list[str]], str | None] | None = None) -> None:
    """Refuse a frame without a required column; ``suggest`` names a column that looks like it."""
    names = frame.names
    for column in required:
        if column in names:
            continue
        similar = [n for n in names if n.lower() == column.lower()]
        example = similar[0] if similar else ((suggest(column, names) if suggest else None) or "SOURCE")
        raise ImportFileError(
            f"{frame.name} has no column '{column}'; columns found: {_listing(names)}",
            hint=f"name the column {column} in the file or map one to it, "
            f"e.g. --map {example}={column}",
        )
