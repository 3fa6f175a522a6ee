"""Content-check benchmark (issue 4): quality on a labeled suite, and throughput.

Run: ``.venv/bin/python bench/content_checks.py`` (``--quick`` for one timing run). Prints
a table and writes ``bench/results/content_checks.json``.

**Quality.** Each item of ``bench/data/content_suite.yaml`` says, per rule family, what
verdict the checker should reach (block, escalate, warn or ok). For every item and family:

- expected = the item's label for the family (``ok`` when the family is not listed);
- the family *fires* when it has a finding at a severity at least as high as the expected
  one, or, where ``ok`` is expected, any finding at all;
- a true positive is an expected non-ok verdict where the family fires; a false negative
  is one where it does not; a false positive is an expected ``ok`` where it fires.

Precision = TP / (TP + FP) and recall = TP / (TP + FN) per family. Because "fires" only
asks for *at least* the expected severity, the table also shows exact agreement: the share
of items whose family verdict equals the label exactly (tests/guard/test_content_suite.py
requires 100%).

**Throughput.** Every suite message is varied (first names swapped, numbers shifted) into
at least 5,000 distinct messages, then checked with a fresh checker (empty cache) in one
process, pinned to one CPU where the platform allows. Distinct messages per second is
the median of 5 runs, timed with ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from legato.deliver.render import render_template
from legato.guard.content import FAMILIES, ContentChecker, Finding, Message, family_verdicts, verdict
from legato.validation import parse_playbook
from legato.playbook.models import Brand, Offer

SUITE = Path(__file__).with_name("data") / "content_suite.yaml"
RESULTS = Path(__file__).with_name("results") / "content_checks.json"
VERDICTS = ("ok", "warn", "escalate", "block")
RANK = {name: index for index, name in enumerate(VERDICTS)}
MIN_VARIANTS = 5000

console = Console()


@dataclass(frozen=True)
class Item:
    id: str
    message: Message
    expect: dict[str, str]
    offer: str | None = None
    first_sms: bool = False
    allowed_personal: tuple[str, ...] = ()
    brand: bool = True
    require_ai_disclosure: bool = False
    context: Mapping[str, Any] | None = None


@dataclass
class Suite:
    brand: Brand
    offers: dict[str, Offer]
    items: list[Item]
    _checkers: dict[tuple[bool, bool], ContentChecker] = field(default_factory=dict)

    def checker(self, item: Item) -> ContentChecker:
        key = (item.brand, item.require_ai_disclosure)
        if key not in self._checkers:
            self._checkers[key] = ContentChecker(
                self.brand if item.brand else None,
                offers=self.offers,
                require_ai_disclosure=item.require_ai_disclosure,
            )
        return self._checkers[key]


def load_suite(path: Path = SUITE) -> Suite:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    example = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    brand = parse_playbook(example).brand
    offers = {o["id"]: Offer.model_validate(o) for o in data["offers"]}
    items = []
    for raw in data["items"]:
        expect = dict(raw["expect"])
        unknown = set(expect) - set(FAMILIES) - {"overall"}
        if unknown or any(v not in VERDICTS for v in expect.values()):
            raise ValueError(f"{raw['id']}: bad expect {expect}")
        items.append(
            Item(
                id=raw["id"],
                message=Message(
                    channel=raw["channel"],
                    body=raw["body"],
                    subject=raw.get("subject"),
                    title=raw.get("title"),
                    purpose=raw.get("purpose", "marketing"),
                ),
                expect=expect,
                offer=raw.get("offer"),
                first_sms=bool(raw.get("first_sms", False)),
                allowed_personal=tuple(raw.get("allowed_personal", ())),
                brand=raw.get("brand", "example") != "none",
                require_ai_disclosure=bool(raw.get("require_ai_disclosure", False)),
                context=raw.get("context"),
            )
        )
    return Suite(brand, offers, items)


def run_item(suite: Suite, item: Item) -> list[Finding]:
    """The findings for one item; a template item is rendered first, and only checked if it renders."""
    message = item.message
    if item.context is not None:
        findings: list[Finding] = []
        parts: dict[str, str | None] = {}
        for name in ("subject", "title", "body"):
            source = getattr(message, name)
            if source is None:
                parts[name] = None
                continue
            rendered = render_template(source, item.context)
            findings += rendered.findings
            parts[name] = rendered.text
        if findings:
            return findings
        message = Message(message.channel, parts["body"] or "", parts["subject"], parts["title"], message.purpose)
    return suite.checker(item).check(
        message, offer_id=item.offer, first_sms=item.first_sms, allowed_personal=item.allowed_personal
    )


def outcome(item: Item, findings: list[Finding]) -> dict[str, str]:
    """The verdict per family and overall, as labeled in the suite."""
    result = family_verdicts(findings)
    result["overall"] = verdict(findings)
    return result


def quality(suite: Suite) -> dict[str, dict[str, float | int]]:
    counts = {family: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "exact": 0, "n": 0} for family in (*FAMILIES, "overall")}
    for item in suite.items:
        got = outcome(item, run_item(suite, item))
        for family, tally in counts.items():
            if family == "template" and item.context is None:
                continue
            expected = item.expect.get(family, "ok")
            threshold = max(RANK[expected], RANK["warn"])
            fires = RANK[got[family]] >= threshold
            positive = expected != "ok"
            tally["n"] += 1
            tally["exact"] += got[family] == expected
            key = ("tp" if fires else "fn") if positive else ("fp" if fires else "tn")
            tally[key] += 1
    report: dict[str, dict[str, float | int]] = {}
    for family, t in counts.items():
        report[family] = {
            **t,
            "precision": t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else 1.0,
            "recall": t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else 1.0,
            "exact_agreement": t["exact"] / t["n"] if t["n"] else 1.0,
        }
    return report


# --- throughput ------------------------------------------------------------------------

NAMES = ("Sam", "Alex", "Priya", "Jordan", "Maria", "Kim", "Chris", "Dana", "Lee", "Noor", "Tomás", "Aiko", "Ben", "Zara")
_NAME = re.compile(r"\b(?:Sam|Alex|Priya|Jordan|Maria|Kim|Chris|Dana|Lee)\b")
_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}(?![\d.,:])")


def variants(suite: Suite, minimum: int = MIN_VARIANTS) -> list[tuple[Item, Message]]:
    """At least ``minimum`` distinct (item, message) pairs made by varying names and numbers."""
    plain = [item for item in suite.items if item.context is None]
    seen: set[Message] = set()
    out: list[tuple[Item, Message]] = []
    round_ = 0
    while len(out) < minimum:
        round_ += 1
        name = NAMES[round_ % len(NAMES)]
        for item in plain:
            m = item.message

            def vary(text: str | None, shift: int = round_, name: str = name) -> str | None:
                if text is None:
                    return None
                text = _NAME.sub(name, text)
                text = _NUMBER.sub(lambda n: str(int(n.group()) + shift), text)
                return text if _NAME.search(text) or _NUMBER.search(text) else f"{text} ({name} {shift})"

            varied = Message(m.channel, vary(m.body) or "", vary(m.subject), vary(m.title), m.purpose)
            if varied not in seen:
                seen.add(varied)
                out.append((item, varied))
    return out


def throughput(suite: Suite, runs: int) -> dict[str, Any]:
    work = variants(suite)
    rates = []
    for _ in range(runs):
        checkers = {
            key: ContentChecker(suite.brand if key[0] else None, offers=suite.offers, require_ai_disclosure=key[1])
            for key in ((True, False), (True, True), (False, False), (False, True))
        }
        for checker in checkers.values():  # load VADER and textstat outside the timing
            checker.check(Message("email", "Warm up, please. " * 8, subject="Warm up"))
        start = time.perf_counter()
        for item, message in work:
            checkers[(item.brand, item.require_ai_disclosure)].check(
                message, offer_id=item.offer, first_sms=item.first_sms, allowed_personal=item.allowed_personal
            )
        rates.append(len(work) / (time.perf_counter() - start))
    return {"messages": len(work), "runs": runs, "per_second_median": statistics.median(rates), "per_second_runs": rates}


def pin_one_cpu() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing run instead of five")
    args = parser.parse_args(argv)
    pinned = pin_one_cpu()
    suite = load_suite()
    report = quality(suite)
    table = Table(title=f"content checks on {len(suite.items)} labeled messages", title_justify="left")
    for column in ("family", "items", "TP", "FP", "FN", "precision", "recall", "exact agreement"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for family, r in report.items():
        table.add_row(
            family, str(r["n"]), str(r["tp"]), str(r["fp"]), str(r["fn"]),
            f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['exact_agreement']:.3f}",
        )
    console.print(table)
    speed = throughput(suite, runs=1 if args.quick else 5)
    console.print(
        f"throughput: [bold]{speed['per_second_median']:,.0f}[/] distinct messages/s "
        f"(median of {speed['runs']} runs over {speed['messages']:,} messages, one core, {pinned}; target ≥ 1,000)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "suite": {"items": len(suite.items), "file": str(SUITE.relative_to(Path(__file__).parent.parent))},
                "quality": report,
                "throughput": {**speed, "cpu": pinned, "python": sys.version.split()[0]},
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
