"""The labeled suite in bench/data/content_suite.yaml: every item gets its expected verdicts.

Each item is one test. For every rule family the item labels (voice, compliance,
personal_data, and template for template items; an unlabeled family means "ok"), and for
the overall verdict, the checker must reach exactly the labeled verdict.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "content_checks.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("legato_bench_content_checks", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


bench = _bench()
SUITE = bench.load_suite()


def test_the_suite_is_large_and_covers_every_channel_and_verdict() -> None:
    assert len(SUITE.items) >= 150
    assert len({item.id for item in SUITE.items}) == len(SUITE.items)
    assert {item.message.channel for item in SUITE.items} == {"email", "sms", "push", "whatsapp"}
    overall = {item.expect["overall"] for item in SUITE.items}
    assert overall == {"ok", "warn", "escalate", "block"}


@pytest.mark.parametrize("item", SUITE.items, ids=[item.id for item in SUITE.items])
def test_item(item: Any) -> None:
    findings = bench.run_item(SUITE, item)
    got = bench.outcome(item, findings)
    families = ["voice", "compliance", "personal_data", "overall"] + (["template"] if item.context is not None else [])
    expected = {family: item.expect.get(family, "ok") for family in families}
    actual = {family: got[family] for family in families}
    assert actual == expected, "\n".join(f"{f.rule} {f.severity} {f.span}: {f.reason}" for f in findings)
