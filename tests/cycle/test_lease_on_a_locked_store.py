"""The cycle's lease waits out a SQLite database another process holds, now that a locked
store is a StoreBusy (legato.store.db) rather than the driver's OperationalError."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from legato.cycle.lease import acquire
from legato.errors import StoreBusy
from legato.store.db import connect

HOLD = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline()"


def test_taking_the_lease_waits_for_a_locked_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_BUSY_TIMEOUT", "0.2")
    engine = connect(f"sqlite:///{tmp_path / 'legato.db'}")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "legato.db")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    assert holder.stdin is not None
    with pytest.raises(StoreBusy, match="is locked by another process .*, so this run could not take the cycle.s lease"):
        acquire(engine, wait=0.0)  # no wait: the database and the fix are named, not a traceback
    threading.Timer(1.0, holder.stdin.close).start()
    lease = acquire(engine, wait=20.0)  # waits until the other process lets go
    holder.wait(timeout=30)
    lease.release()
    engine.dispose()
