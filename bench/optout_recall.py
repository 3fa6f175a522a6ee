"""Opt-out recall and precision (issue 10, item 5) on a labeled set kept apart from development.

Run: ``.venv/bin/python bench/optout_recall.py``. Prints a table and writes
``bench/results/optout_recall.json``.

**The set.** ``bench/data/optout_eval.jsonl``: replies written for evaluation only, each
labeled ``opt_out`` (a person reading it would stop marketing), ``not`` (an ordinary reply,
many using the same words: "cancel my order", "I'll stop by") or ``unclear`` (a careful
person would not act on it alone: "too many emails", "wrong number"), with its language and,
where it names channels or everything, its scope. The patterns of
:mod:`legato.trust.optout` were developed against ``tests/trust/optout_dev.jsonl``; no text
appears in both (checked below). The set was written in two rounds, each measured once
before the patterns were corrected on what it showed (the corrections were then written as
new, differently worded development examples, never by copying evaluation texts):

- round 1 (478 replies), first measurement: recall (revoked) 97.6%, recall (stopped) 98.3%,
  precision 98.6% (3 ordinary replies revoked);
- round 2 (195 replies, written after round 1's corrections), first measurement: recall
  (revoked) 85.6%, recall (stopped) 86.4%, precision 100%. Its misses were mostly short
  "no emails", "no texts" forms and a few typos;
- round 3 (99 replies, written after round 2's corrections), first measurement: recall
  (revoked) 90.3%, recall (stopped) 93.5%, precision 100%, no ordinary reply sent to a
  person: the held-out figure for the patterns before its own corrections ("No me
  contacten", "Don't want these", "no further contact please", "cancelar mensajes").

The figures this script prints today include the corrections, so they are no longer held out.

**Disguised variants.** Every opt-out of at most three words is also checked in six
disguises a person would still read as the same words: upper case, letters spaced out (for
replies of one or two words: nobody spells a sentence out letter by letter), full-width
forms, a zero-width space and a soft hyphen inside, and Latin letters swapped for Cyrillic
look-alikes.

**Measures.** :func:`legato.trust.optout.detect` answers revoke, unclear (a person decides;
marketing pauses meanwhile) or none.

- recall (revoked) = opt-outs revoked at once / opt-outs;
- recall (stopped) = opt-outs revoked or sent to a person / opt-outs: the share after which
  no more marketing goes out without a person's decision;
- precision = true opt-outs among the replies revoked (ordinary and unclear replies count
  against it when revoked);
- ordinary replies sent to a person = the review load the reader adds on ordinary replies;
- scope accuracy = of the opt-outs with a scope label, those revoked with exactly that scope.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from legato.trust.optout import Verdict, detect

DATA = Path(__file__).with_name("data") / "optout_eval.jsonl"
DEV = Path(__file__).resolve().parents[1] / "tests" / "trust" / "optout_dev.jsonl"
RESULTS = Path(__file__).with_name("results") / "optout_recall.json"
# Latin letters and the Cyrillic letter drawn the same (written here, not taken from the table
# the reader uses, so the bench does not grade the table against itself).
_CYRILLIC = str.maketrans("aeopcxyASEOPCTXHKMBi", "аеорсхуАЅЕОРСТХНКМВі")


def disguises(text: str) -> dict[str, str]:
    """The same words as a person reads them, written six ways a keyword match would miss."""
    middle = max(1, len(text) // 2)
    spaced = {"spaced": " ".join(text.replace(" ", ""))} if len(text.split()) <= 2 else {}
    return {
        "upper": text.upper(),
        **spaced,
        "full_width": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text),
        "zero_width": text[:middle] + "\u200b" + text[middle:],
        "soft_hyphen": text[:middle] + "\u00ad" + text[middle:],
        "cyrillic": text.translate(_CYRILLIC),
    }


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def measure(items: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    misses: list[str] = []
    false_revokes: list[str] = []
    for item in items:
        got = detect(item["text"])
        label = item["label"]
        counts[f"{label}_total"] += 1
        counts[f"{label}_{got.verdict.value}"] += 1
        if label == "opt_out" and got.verdict is Verdict.none:
            misses.append(item["text"])
        if label != "opt_out" and got.verdict is Verdict.revoke:
            false_revokes.append(item["text"])
        if label == "opt_out" and ("channels" in item or item.get("every")) and got.verdict is Verdict.revoke:
            counts["scoped_total"] += 1
            exact = got.every_channel if item.get("every") else (set(got.channels) == set(item["channels"]) and not got.every_channel)
            counts["scoped_right"] += int(exact)
    opt_outs = counts["opt_out_total"]
    revoked = counts["opt_out_revoke"] + counts["not_revoke"] + counts["unclear_revoke"]

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "opt_outs": opt_outs,
        "ordinary": counts["not_total"],
        "unclear": counts["unclear_total"],
        "recall_revoked": share(counts["opt_out_revoke"], opt_outs),
        "recall_stopped": share(counts["opt_out_revoke"] + counts["opt_out_unclear"], opt_outs),
        "precision": share(counts["opt_out_revoke"], revoked),
        "ordinary_revoked": counts["not_revoke"],
        "ordinary_to_a_person": share(counts["not_unclear"], counts["not_total"]),
        "unclear_to_a_person": share(counts["unclear_unclear"], counts["unclear_total"]),
        "unclear_revoked": counts["unclear_revoke"],
        "scope_accuracy": share(counts["scoped_right"], counts["scoped_total"]),
        "missed": misses,
        "false_revocations": false_revokes,
    }


def main() -> int:
    items = load(DATA)
    overlap = {item["text"] for item in items} & {item["text"] for item in load(DEV)}
    if overlap:
        print(f"the evaluation set shares {len(overlap)} texts with the development set: {sorted(overlap)[:5]}", file=sys.stderr)
        return 1
    results: dict[str, Any] = {"set": str(DATA.relative_to(DATA.parents[2])), "all": measure(items)}
    for round_ in sorted({item["round"] for item in items}):
        results[f"round {round_}"] = measure([item for item in items if item["round"] == round_])
    for language in sorted({item["lang"] for item in items}):
        results[language] = measure([item for item in items if item["lang"] == language])
    variants = [
        {"text": text, "lang": item["lang"], "label": "opt_out", "disguise": name}
        for item in items
        if item["label"] == "opt_out" and len(item["text"].split()) <= 3
        for name, text in disguises(item["text"]).items()
    ]
    results["disguised"] = measure(variants)
    results["disguised"]["variants"] = len(variants)

    table = Table("set", "opt-outs", "recall (revoked)", "recall (stopped)", "precision", "ordinary", "ordinary revoked",
                  "ordinary to a person", "unclear to a person", "scope", title="Opt-out reading on the labeled set", title_justify="left")
    for name, row in results.items():
        if not isinstance(row, dict):
            continue
        table.add_row(
            name, str(row["opt_outs"]), _pct(row["recall_revoked"]), _pct(row["recall_stopped"]), _pct(row["precision"]),
            str(row["ordinary"]), str(row["ordinary_revoked"]), _pct(row["ordinary_to_a_person"]), _pct(row["unclear_to_a_person"]),
            _pct(row["scope_accuracy"]),
        )
    console = Console(width=160)
    console.print(table)
    for name in ("missed", "false_revocations"):
        shown = results["all"][name] + (results["disguised"][name] if name == "missed" else [])
        console.print(f"{name} ({len(shown)}): {shown[:40]}", highlight=False)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {RESULTS}", highlight=False)
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    raise SystemExit(main())
