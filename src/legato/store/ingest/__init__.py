"""Import customers and events from CSV, JSONL or Parquet files (or an in-memory table).

A million-row file has to load in seconds, so nothing loops over rows in Python on the
happy path:

1. the file is read with pyarrow (CSV as text throughout, so every cell can be checked):
   :mod:`.read`;
2. each column is validated with vectorized ``pyarrow.compute`` kernels that yield a mask
   of bad rows (:mod:`.columns`), and Python visits only the few bad rows to word their
   messages (:mod:`.rows`);
3. good rows go to a temporary staging table in bulk (``executemany`` on sqlite3, ``COPY``
   on PostgreSQL; :mod:`.stage`) and reach the real tables through a handful of set-based
   statements (:mod:`.customers`, :mod:`.consent`, :mod:`.events`).

Everything from step 3 on runs in one transaction, so an import keeps all of its good rows
or nothing; a file-level problem (missing file, unreadable format, missing column) is
raised as :class:`ImportFileError` before anything is written.

The names below are the public API; the modules behind them are the package's own.
"""

from legato.store.ingest.customers import import_customers
from legato.store.ingest.events import import_events
from legato.store.ingest.json_columns import ATTRIBUTE_TYPES
from legato.store.ingest.read import FORMATS, detect_format, table_from_records
from legato.store.ingest.report import ImportFileError, ImportReport, RowError
from legato.store.ingest.stage import Progress, transaction

__all__ = [
    "ATTRIBUTE_TYPES",
    "FORMATS",
    "ImportFileError",
    "ImportReport",
    "Progress",
    "RowError",
    "detect_format",
    "import_customers",
    "import_events",
    "table_from_records",
    "transaction",
]
