"""The JSON columns (customer attributes, event properties), built column by column without a row loop."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from legato.store.ingest.columns import (
    DATE_HINT,
    JSON_NUMBER,
    blank_to_null,
    dumps,
    instant_values,
    parse_instants,
    iso_text,
    mask,
    parse_numbers,
    too_large,
    quoted,
    cell_text,
)
from legato.store.ingest.read import Frame
from legato.store.ingest.rows import Problems

ATTRIBUTE_TYPES = ("number", "string", "boolean", "timestamp")
# Numbers the models can do arithmetic on: squares and sums of features stay finite. A
# revenue of 1e200 made lin_ucb's matrices overflow and write NULL propensities. Beyond 1e15
# a float no longer holds every integer.
_MAX_NUMBER = 1e15
_TRUE = ["true", "1", "yes"]
_FALSE = ["false", "0", "no"]


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
        return blank_to_null(values)
    if pa.types.is_string(kind):
        texts = blank_to_null(values, trim=False)  # kept as written, spaces included
        if not typed and pc.all(pc.match_substring_regex(texts, JSON_NUMBER)).as_py() in (True, None):
            return texts
        return _json_strings(texts)
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return pc.cast(values, pa.string())
    if pa.types.is_floating(kind):
        finite = pc.is_finite(values)
        return pc.if_else(finite, pc.cast(values, pa.string()), pa.scalar(None, pa.string()))
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _json_strings(iso_text(instant_values(values)))
    return pa.array([None if v is None else dumps(v) for v in values.to_pylist()], pa.string())


def _declared_literals(
    values: pa.Array, column: str, declared: str, problems: Problems
) -> pa.Array:
    """A declared attribute converted to its type; a cell that does not convert is a row error."""
    if declared == "string":
        return _json_strings(cell_text(values, column))
    if declared == "number":
        parsed, bad, shown = parse_numbers(values, column)
        problems.add(bad, column, shown, lambda v: f"{quoted(v)} is not a number")
        huge = too_large(parsed, _MAX_NUMBER)
        problems.add(huge, column, shown, lambda v: f"{quoted(v)} is too large (at most {_MAX_NUMBER:.0e} in size)")
        return pc.cast(pc.if_else(pa.array(huge), pa.scalar(None, pa.float64()), parsed), pa.string())
    if declared == "boolean":
        shown = cell_text(values, column)
        lowered = pc.utf8_lower(shown)
        yes = mask(pc.is_in(lowered, pa.array(_TRUE)))
        no = mask(pc.is_in(lowered, pa.array(_FALSE)))
        bad = mask(pc.is_valid(shown)) & ~(yes | no)
        problems.add(
            bad, column, shown, lambda v: f"{quoted(v)} is not a boolean (use true/false, yes/no or 1/0)"
        )
        nothing = pa.scalar(None, pa.string())
        return pc.if_else(pa.array(yes), "true", pc.if_else(pa.array(no), "false", nothing))
    parsed, bad, shown = parse_instants(values, column)
    problems.add(bad, column, shown, lambda v: f"{quoted(v)} is not a date ({DATE_HINT})")
    return _json_strings(iso_text(parsed))


def json_objects(fragments: list[pa.Array], rows: int) -> pa.Array:
    """Join ``"key":literal`` fragments into one JSON object per row; nulls are skipped."""
    if not fragments:
        return pa.array(["{}"] * rows, pa.string())
    # Folded pairwise: binary_join_element_wise(null_handling="skip") drops trailing
    # all-null rows in pyarrow 26, so nulls are skipped by hand with coalesce.
    body = fragments[0]
    for fragment in fragments[1:]:
        body = pc.coalesce(pc.binary_join_element_wise(body, fragment, ","), body, fragment)
    return pc.binary_join_element_wise("{", pc.fill_null(body, ""), "}", "")


def object_fragments(
    frame: Frame,
    columns: Sequence[str],
    spread: str,
    declared: Mapping[str, str],
    problems: Problems,
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
            texts = blank_to_null(values)
            if pc.all(pc.starts_with(texts, "{")).as_py() in (True, None):
                inner = blank_to_null(pc.utf8_slice_codeunits(texts, 1, -1))
                fragments.append(inner)
                continue
        if column in declared:
            literals = _declared_literals(values, column, declared[column], problems)
        else:
            literals = _json_literals(values, column, typed=frame.typed, is_json=is_json)
        key = json.dumps(column, ensure_ascii=False) + ":"
        fragments.append(pc.binary_join_element_wise(key, literals, ""))
    return fragments
