"""What an import reports: row errors, the report, and the error for a file that cannot be imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from legato.errors import LegatoError
from legato.store.ingest.known import ColumnWarning


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


NOT_REGRANTED_SAMPLE = 100  # rows named in the JSON report; the count is always whole


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
    # What the import did not understand but kept (a column named like a field, stored as
    # an attribute or property), each with the fix; nothing was rejected for it.
    warnings: list[str] = field(default_factory=list)
    column_warnings: list[ColumnWarning] = field(default_factory=list)  # the same, as data: column and field
    # Grants the consent history did not write (the customer revoked since, or the grant cannot
    # be shown to be newer): the row's other fields were imported, its consent stays revoked.
    not_regranted: list[RowError] = field(default_factory=list)
    # Events: consents their unsubscribes and complaints revoked, addresses their hard bounces listed.
    consents_revoked: int = 0
    undeliverable: int = 0
    suppressed: int = 0  # addresses complaints put on the do-not-contact list
    customers_created: int = 0  # events for customers the store did not know, with create_customers

    @property
    def source_name(self) -> str:
        return Path(self.source).name

    def messages(self, limit: int | None = None) -> list[str]:
        chosen = self.errors if limit is None else self.errors[:limit]
        return [error.describe(self.source_name) for error in chosen]

    def not_regranted_messages(self, limit: int | None = None) -> list[str]:
        chosen = self.not_regranted if limit is None else self.not_regranted[:limit]
        return [note.describe(self.source_name) for note in chosen]

    def to_dict(self) -> dict[str, Any]:
        rows = lambda found: [{"row": e.row, "column": e.column, "value": e.value, "reason": e.reason} for e in found]  # noqa: E731
        common = {
            "kind": self.kind,
            "source": self.source,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "warnings": list(self.warnings),
            "errors": rows(self.errors),
        }
        if self.kind == "events":
            return common | {"consents_revoked": self.consents_revoked, "undeliverable": self.undeliverable, "suppressed": self.suppressed}
        return common | {"not_regranted": len(self.not_regranted), "not_regranted_rows": rows(self.not_regranted[:NOT_REGRANTED_SAMPLE])}


class ImportFileError(LegatoError):
    """The file as a whole cannot be imported; nothing was written."""

    exit_code = 2


def source_text(source: Path | str | pa.Table) -> str:
    """How a report names its source: the path as given, or "table" for an in-memory table."""
    return "table" if isinstance(source, pa.Table) else str(source)
