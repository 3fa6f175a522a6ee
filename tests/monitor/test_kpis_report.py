"""`legato report kpis`: the kept counts against the playbook's targets, with lift vs holdout, and its charts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.store.schema import metric_totals, metrics
from tests.world import AT, PLAYBOOK

runner = CliRunner()
Write = Callable[..., None]


def _playbook(tmp_path: Path) -> Path:
    path = tmp_path / "playbook.yaml"
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0.1").replace("BUDGET", "{}")
    text = text.replace("kpis: [{metric: visit_rate, target: 0.1}]}", "kpis: [{metric: visit_rate, target: 0.1}, {metric: conversion_rate, target: 0.5}], guardrail_kpis: [{metric: unsubscribe_rate, max: 0.01}]}")
    path.write_text(text, encoding="utf-8")
    return path


def _history(write: Write) -> None:
    # Day 1: 100 sends, 40 visits, 10 purchases of 20.0, 2 unsubscribes; 100 held out, 10 visits.
    write("sent", 100, visited=[i < 40 for i in range(100)], purchased=[i < 10 for i in range(100)],
          revenue=[20.0 if i < 10 else 0.0 for i in range(100)], unsubscribed=[i < 2 for i in range(100)])
    write("holdout", 100, visited=[i < 10 for i in range(100)])
    write("suppressed", 7, findings=["frequency_cap:email 1 per 3 days"])
    # Day 2: 50 sends, none settled yet.
    write("sent", 50, decided_at=AT + timedelta(days=1), settled_at=None, visited=None)


def _run(*args: str) -> Any:
    result = runner.invoke(app, ["report", "kpis", *args])
    return result


def test_kpis_against_targets_primary_first_with_lift(database_url: str, write_decisions: Write, tmp_path: Path) -> None:
    _history(write_decisions)
    playbook = _playbook(tmp_path)
    result = _run("--database", database_url, "--playbook", str(playbook), "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    (group,) = body["groups"]
    assert group["agent"] == "mailer" and group["objective"] == "grow"
    kpis = {(k["metric"], k["kind"]): k for k in group["kpis"]}
    assert [k["metric"] for k in group["kpis"]] == ["visit_rate", "conversion_rate", "unsubscribe_rate"]
    visit = kpis[("visit_rate", "kpi")]
    assert visit["primary"] and visit["value"] == pytest.approx(0.4) and visit["met"] is True
    conversion = kpis[("conversion_rate", "kpi")]
    assert conversion["value"] == pytest.approx(0.1) and conversion["met"] is False and not conversion["primary"]
    unsub = kpis[("unsubscribe_rate", "guardrail")]
    assert unsub["value"] == pytest.approx(0.02) and unsub["met"] is False and unsub["limit"] == "max"
    # Lift per settled decision: 40/100 treated (the suppressed 7 count as treated, unsent) vs 10/100 held out.
    lift = visit["lift"]
    assert lift["treated"] == pytest.approx(40 / 107) and lift["control"] == pytest.approx(0.1)
    assert lift["low"] < lift["difference"] < lift["high"] and lift["low"] > 0
    assert group["counts"]["sent"] == 150 and group["counts"]["audience"] == 257 and group["counts"]["held_out"] == 100
    assert group["suppressed"] == {"frequency_cap:email 1 per 3 days": 7}
    days = {d["day"]: d for d in group["days"]}
    assert days["2024-03-04"]["primary"] == pytest.approx(0.4) and days["2024-03-04"]["holdout"] == pytest.approx(0.1)
    assert days["2024-03-05"]["sent"] == 50 and days["2024-03-05"]["primary"] is None  # no data is not zero

    # The period is whole days decided; only the second day: nothing settled, no rates.
    later = json.loads(_run("--database", database_url, "--playbook", str(playbook), "--from", "2024-03-05", "--json").stdout)
    (second,) = later["groups"]
    assert second["counts"]["sent"] == 50 and all(k["value"] is None for k in second["kpis"])

    printed = _run("--database", database_url, "--playbook", str(playbook))
    assert printed.exit_code == 0, printed.output
    said = printed.output
    assert "mailer (grow)" in said and "visit_rate *" in said and "40.00%" in said and "missed" in said and "+27.38 ±" in said
    assert max(len(line) for line in said.splitlines()) <= 80


def test_by_creative_and_the_targets_of_the_playbook_the_newest_cycle_ran(database_url: str, write_decisions: Write, tmp_path: Path) -> None:
    _history(write_decisions)
    result = _run("--database", database_url, "--playbook", str(_playbook(tmp_path)), "--by", "creative", "--json")
    assert result.exit_code == 0, result.output
    groups = {g["group"]: g for g in json.loads(result.stdout)["groups"]}
    assert set(groups) == {"hello", "(none)"}
    assert groups["hello"]["counts"]["sent"] == 150
    # The creative's decisions against the agent's whole holdout (held-out customers get no creative).
    assert groups["hello"]["kpis"][0]["lift"]["control"] == pytest.approx(0.1)
    bad = _run("--database", database_url, "--by", "colour")
    assert bad.exit_code == 2 and "cannot break the KPIs down by colour" in bad.output and "creative | offer | channel | segment" in bad.output


def test_html_and_png_charts(database_url: str, write_decisions: Write, tmp_path: Path) -> None:
    _history(write_decisions)
    page, picture = tmp_path / "kpis.html", tmp_path / "kpis.png"
    result = _run("--database", database_url, "--playbook", str(_playbook(tmp_path)), "--html", str(page), "--png", str(picture))
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 1 and "<table>" in text and "visit_rate (primary)" in text and "messages per day" in text
    assert "day decided (UTC)" in text  # the axes are labelled
    nowhere = _run("--database", database_url, "--png", str(tmp_path / "no" / "such" / "dir" / "k.png"))
    assert nowhere.exit_code == 2 and "cannot write" in nowhere.output and "Traceback" not in nowhere.output


def test_charts_without_matplotlib_name_the_extra(database_url: str, write_decisions: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _history(write_decisions)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra meets: ImportError
    picture = tmp_path / "kpis.png"
    result = _run("--database", database_url, "--png", str(picture))
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "charts need matplotlib" in said and "pip install 'legato[charts]'" in said and not picture.exists()


def test_a_store_older_than_the_metrics_is_told_to_rebuild(database_url: str, engine: Engine, write_decisions: Write) -> None:
    _history(write_decisions)
    with engine.begin() as connection:
        connection.execute(sa.delete(metrics))  # as a store migrated from before 0027 holds them
        connection.execute(sa.delete(metric_totals))
    told = _run("--database", database_url)
    assert told.exit_code == 2 and "legato report kpis --rebuild" in " ".join(told.output.split())
    rebuilt = _run("--database", database_url, "--rebuild", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    body = json.loads(rebuilt.stdout)
    assert body["rebuilt_keys"] > 0 and body["groups"][0]["counts"]["sent"] == 150
