"""Row validation: the errors found so far, the mask of rejected rows, and the checks of ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from legato.store.ingest.columns import cell_text, first_seen, mask, quoted, too_long
from legato.store.ingest.read import Frame
from legato.store.ingest.report import RowError

# Column lengths from the schema: checking them here turns what would be a PostgreSQL
# error aborting the whole import (SQLite does not enforce them) into a row error.
_ID_LENGTH = 128


class Problems:
    """Row errors found so far and the mask of rejected rows."""

    def __init__(self, frame: Frame) -> None:
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


def check_ids(frame: Frame, problems: Problems, column: str, what: str) -> pa.Array:
    ids = cell_text(frame.column(column), column)
    problems.add(mask(pc.is_null(ids)), column, None, lambda _: f"missing {what}")
    problems.add(
        too_long(ids, _ID_LENGTH), column, ids, lambda v: f"{quoted(v)} is longer than {_ID_LENGTH} characters"
    )
    return ids


def check_unique_ids(frame: Frame, problems: Problems, ids: pa.Array) -> None:
    later, first_index = first_seen(ids)
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
