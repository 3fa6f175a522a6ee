"""Contact-policy benchmark (issue 4): 1,000,000 candidate decisions through the suppression list, consent, three
frequency caps and quiet hours.

Run: ``.venv/bin/python bench/contact_policy.py``. Times reading the batch's contact facts
(:func:`legato.guard.contact.facts_from_columns`, which infers each customer's candidate time
zones) and applying the rules (:func:`legato.guard.contact.check_contacts`), as the engine
does per page, but for the whole million at once; the SQL that fetches the facts is part of
the cycle benchmark. Median of 5 runs; prints a table and writes
bench/results/contact_policy.json. Target ≤ 2 s.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import time as clock
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from legato.guard.contact import check_contacts, facts_from_columns
from legato.playbook.models import FrequencyCap, Guardrails, QuietHours

N = 1_000_000
RESULTS = Path(__file__).with_name("results") / "contact_policy.json"
ZONES = np.array(["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", None], dtype=object)


def main() -> int:
    rng = np.random.default_rng(0)
    guardrails = Guardrails(
        frequency_caps=[
            FrequencyCap(channel="sms", max=1, days=1),
            FrequencyCap(channel="sms", max=3, days=7, on_block="delay"),
            FrequencyCap(channel="any", max=5, days=14),
        ],
        quiet_hours=[
            QuietHours(channel="sms", start=clock(21), end=clock(8)),
            QuietHours(channel="sms", start=clock(20), end=clock(8), on_block="drop", region="US-FL"),
        ],
    )
    counts = [rng.integers(0, 3, N), rng.integers(0, 4, N), rng.integers(0, 6, N)]
    oldest = np.datetime64("2024-03-01T10:00", "us") + rng.integers(0, 3 * 86_400, N).astype("timedelta64[s]")
    columns = {
        "contact_suppressed": (rng.random(N) < 0.01).astype(np.int64),
        "contact_whatsapp_window": np.zeros(N, dtype=np.int64),
        "contact_zone": ZONES[rng.integers(0, len(ZONES), N)],
        "contact_phone": np.where(rng.random(N) < 0.5, "+12125550100", None).astype(object),
        "contact_country": np.full(N, "US", dtype=object),
        "contact_region": np.where(rng.random(N) < 0.06, "FL", None).astype(object),
        "reachable_sms": (rng.random(N) < 0.97).astype(np.int64),
        # The consent rule's verdict column (legato.guard.consent): 0 allows, 1 revoked, 2 no consent.
        "consent_sms": np.select([rng.random(N) < 0.02, rng.random(N) < 0.1], [1, 2], 0).astype(np.int64),
    }
    for i, count in enumerate(counts):
        columns[f"cap_count_{i}"] = count
        columns[f"cap_oldest_{i}"] = np.where(count > 0, oldest, np.datetime64("NaT", "us"))
        columns[f"cap_latest_{i}"] = np.where(count > 0, oldest, np.datetime64("NaT", "us"))
        columns[f"cap_times_{i}"] = np.full(N, None, dtype=object)  # rolling caps only here
    channels = np.full(N, "sms", dtype=object)
    send_at = np.datetime64("2024-03-04T01:30", "us") + rng.integers(0, 24, N).astype("timedelta64[h]")
    times, verdict = [], None
    for _ in range(5):
        start = time.perf_counter()
        facts = facts_from_columns(columns, guardrails, ["sms"])
        verdict = check_contacts(channels, send_at, facts, guardrails)
        times.append(time.perf_counter() - start)
    assert verdict is not None
    blocked = int((~verdict.allowed).sum())
    delayed = int(verdict.delayed.sum())
    seconds = statistics.median(times)
    table = Table("candidates", "rules", "median s", "blocked", "delayed", "target s", "met", title="Contact policy", title_justify="left")
    table.add_row(f"{N:,}", "suppression + consent + 3 caps + quiet hours", f"{seconds:.2f}", f"{blocked:,}", f"{delayed:,}", "2", "yes" if seconds <= 2 else "NO")
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"candidates": N, "seconds": seconds, "runs": times, "blocked": blocked, "delayed": delayed}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
