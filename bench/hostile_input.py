"""Hostile input (issue 10, item 10): how fast and how small the refusals are.

Run: ``.venv/bin/python bench/hostile_input.py``. Prints a table and writes
``bench/results/hostile_input.json``.

Each case runs ``legato validate`` (or ``legato import events``) in a fresh process and
reads that process's resource usage (``getrusage(RUSAGE_CHILDREN)`` of a fresh
intermediate interpreter, so nothing else is counted): CPU seconds (user + system), peak
resident memory, and wall time. The floor is ``legato validate`` on the example playbook
(the command's start-up and a real playbook's checks); each case is shown as a multiple of
it. Targets: the "billion laughs" playbook refused in under 2 s and within 200 MB (the
unbounded loader took 75 s and 5.7 GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).with_name("results") / "hostile_input.json"
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run([sys.executable, "-c", "from legato.cli.app import main; main()", *sys.argv[1:]], capture_output=True, text=True)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": done.returncode, "out": (done.stdout + done.stderr)[:300], "wall": wall,
                  "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}))
"""


def bomb() -> str:
    lines = [f'a: &a [{", ".join(["lol"] * 9)}]']
    lines += [f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]" for prev, name in zip("abcdefgh", "bcdefghi")]
    return "\n".join(lines) + "\n"


def run(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> int:
    example = str(files("legato.playbook").joinpath("example/playbook.yaml"))
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        (base / "bomb.yaml").write_text(bomb(), encoding="utf-8")
        (base / "deep.yaml").write_text("x: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
        (base / "parens.yaml").write_text(
            Path(example).read_text(encoding="utf-8").replace("audience: ", "audience: " + "(" * 200 + "true" + ")" * 200 + " and ", 1),
            encoding="utf-8",
        )
        (base / "events.csv").write_text(
            "id,customer_id,type,occurred_at,revenue\n" + f'e1,c1,purchase,2024-03-01T09:00:00Z,"{"9" * 50_000_000}"\n', encoding="utf-8"
        )
        cases = {
            "floor: validate the example playbook": ("validate", example),
            "billion laughs playbook": ("validate", str(base / "bomb.yaml")),
            "100,000 nested YAML lists": ("validate", str(base / "deep.yaml")),
            "200 nested parentheses in an audience": ("validate", str(base / "parens.yaml")),
            "a 50 MB CSV cell (import events)": ("import", "events", str(base / "events.csv"), "-d", f"sqlite:///{base / 'x.db'}"),
        }
        results = {name: run(*args) for name, args in cases.items()}
    floor = results["floor: validate the example playbook"]
    table = Table("case", "exit", "CPU s", "× floor", "peak MB", "wall s", "first line", title="Hostile input, one process each", title_justify="left")
    for name, got in results.items():
        got["cpu_ratio"] = round(got["cpu"] / floor["cpu"], 2) if floor["cpu"] else None
        first = next((line for line in got["out"].splitlines() if line.strip()), "")
        table.add_row(name, str(got["code"]), f"{got['cpu']:.2f}", f"{got['cpu_ratio']:.2f}", f"{got['rss_mb']:.0f}", f"{got['wall']:.2f}", first[:70])
    Console(width=170).print(table)
    verdict = results["billion laughs playbook"]
    ok = verdict["code"] == 2 and verdict["cpu"] < 2 and verdict["rss_mb"] < 200
    print(f"billion laughs: {'within' if ok else 'OUTSIDE'} the target (< 2 s CPU, < 200 MB)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
