"""Sending what is due, without a cycle: the messages whose time came, and those due again
after a transient error (their backoff ran out). ``legato run`` does the same at the end of
each cycle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from legato.clock import Clock
from legato.playbook.models import Playbook


def dispatch(engine: Engine, playbook: Playbook, clock: Clock, transports: Mapping[str, Any]) -> Any:
    """Send every due message at ``clock.now()``; returns the
    :class:`~legato.deliver.dispatch.DispatchReport` (sent, retry and dead per agent)."""
    from legato.deliver.dispatch import dispatch_due

    return dispatch_due(engine, playbook, clock, dict(transports))
