"""A dispatcher process for test_rate_limit: dispatch until nothing is left, then print what it sent.

Usage: python pace_child.py DATABASE_URL PLAYBOOK_FILE READY_FILE GO_FILE START_ISO
It builds its transports, writes READY_FILE, waits for GO_FILE, then dispatches in small
batches with a clock that starts at START_ISO and advances with real time (so messages it
handed back to wait for the rate limit come due again), until no message is pending.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from legato.deliver.dispatch import dispatch_due, transports
from legato.store.db import connect
from legato.store.schema import outbox
from legato.validation import parse_playbook


class Running:
    def __init__(self, start: datetime) -> None:
        self.start, self.t0 = start, time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


def main() -> None:
    url, playbook_file, ready, go, start = sys.argv[1:6]
    engine = connect(url, migrate=False)
    pb = parse_playbook(Path(playbook_file).read_text())
    sinks = transports(pb, Path(playbook_file).parent)
    Path(ready).write_text("ready")
    deadline = time.monotonic() + 60
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    clock = Running(datetime.fromisoformat(start))
    sent = 0
    while time.monotonic() < deadline:
        sent += sum(dispatch_due(engine, pb, clock, sinks, chunk=10).sent.values())
        with engine.connect() as c:
            left = c.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status.in_(["pending", "claimed", "retry"]))).scalar_one()
        if not left:
            break
        time.sleep(0.02)
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
