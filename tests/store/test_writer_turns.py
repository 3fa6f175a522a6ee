"""SQLite imports take turns to write: first come, first served within the process, and one
process at a time on the same file (``legato serve --workers``, an import beside the server)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from legato.store.db import connect
from legato.store.ingest import import_customers, import_events
from legato.store.ingest.stage import _writer, transaction, writer_lock_file


def _queued(turns: object, waiting: int) -> bool:
    return turns._tickets - turns._serving - 1 >= waiting  # type: ignore[attr-defined]


def test_writers_in_one_process_write_in_the_order_they_asked(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'turns.db'}")
    turns = _writer(engine)
    order: list[str] = []
    threads = []
    with transaction(engine):  # this thread writes; the others queue behind it, one after another
        for name in "abcde":
            thread = threading.Thread(target=lambda n=name: _write(engine, order, n))
            thread.start()
            threads.append(thread)
            deadline = time.monotonic() + 60
            while not _queued(turns, len(threads)):  # each waits in line before the next one comes
                assert time.monotonic() < deadline, "a writer did not queue"
                time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=60)
    assert order == list("abcde")


def _write(engine: object, order: list[str], name: str) -> None:
    with transaction(engine) as connection:  # type: ignore[arg-type]
        order.append(name)
        connection.exec_driver_sql("SELECT 1")


def test_an_import_holds_the_stores_lock_file_against_other_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    engine = connect(url)
    import_customers(engine, pa.table({"id": ["c1"]}))
    lock_file = writer_lock_file(engine)
    assert lock_file == tmp_path / "locked.db-writer.lock"
    probe = [sys.executable, "-c", f"import fcntl, os; fd = os.open({str(lock_file)!r}, os.O_RDWR); "
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"]
    with transaction(engine):
        held = subprocess.run(probe, capture_output=True, text=True)
    assert held.returncode != 0 and "BlockingIOError" in held.stderr  # another process may not write meanwhile
    assert subprocess.run(probe, capture_output=True).returncode == 0  # and may once the import is done
    # Nested in one thread (a caller's transaction around an import's own) is not a deadlock.
    with transaction(engine):
        with _writer(engine):
            pass
    report = import_events(engine, pa.table({"id": ["e1"], "customer_id": ["c1"], "type": ["visit"], "occurred_at": ["2024-03-01T00:00:00Z"]}))
    assert report.inserted == 1


def test_another_process_waits_for_its_turn_and_then_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = connect(url)
    import_customers(engine, pa.table({"id": ["c1"]}))
    script = (
        "import pyarrow as pa\n"
        "from legato.store.db import connect\n"
        "from legato.store.ingest import import_events\n"
        f"engine = connect({url!r})\n"
        "print('started', flush=True)\n"
        "r = import_events(engine, pa.table({'id': ['e2'], 'customer_id': ['c1'], 'type': ['visit'], 'occurred_at': ['2024-03-01T00:00:00Z']}))\n"
        "print('inserted', r.inserted, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with transaction(engine) as connection:
        connection.exec_driver_sql("INSERT INTO settings (key, value) VALUES ('turn', 'first')")
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
        assert other.stdout is not None and other.stdout.readline().strip() == "started"
        fd = os.open(writer_lock_file(engine), os.O_RDWR)
        try:
            # Still ours while the other process waits for it (it cannot take it either).
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken = True
            except BlockingIOError:
                taken = False
        finally:
            os.close(fd)
        assert not taken
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0 and out.strip() == "inserted 1"


def test_small_imports_checkpoint_after_their_turn_and_leave_the_connection_as_it_was(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'wal.db'}")
    import_customers(engine, pa.table({"id": ["c1"]}))
    for n in range(12):
        import_events(engine, pa.table({"id": [f"e{n}"], "customer_id": ["c1"], "type": ["visit"], "occurred_at": ["2024-03-01T00:00:00Z"]}))
    with engine.connect() as connection:
        # Every pooled connection checkpoints by itself again once an import is done with it.
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
        busy, logged, checkpointed = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        assert busy == 0 and checkpointed == logged
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one() == 12
