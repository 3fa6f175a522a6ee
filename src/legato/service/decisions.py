"""What agents decided and why: search every decision a page at a time, and explain one.

The reading is :mod:`legato.monitor.decisions`'s; every face (the API's ``/v1/decisions``)
calls these.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.monitor import decisions
from legato.monitor.decisions import DecisionDetail, DecisionFilter, DecisionPage
from legato.playbook.models import Playbook

MAX_LIMIT = decisions.MAX_LIMIT


def search(engine: Engine, where: DecisionFilter, *, limit: int = 100, after: str | None = None) -> DecisionPage:
    return decisions.search(engine, where, limit=limit, after=after)


def explain(engine: Engine, decision_id: int, *, now: datetime, playbook: Playbook | None = None) -> DecisionDetail:
    return decisions.explain(engine, decision_id, now=now, playbook=playbook)
