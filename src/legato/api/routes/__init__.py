"""One router per resource; ``legato.api.app`` includes every router listed here."""

from __future__ import annotations

from fastapi import APIRouter

from legato.api.routes import agents, ops
from legato.api.routes import checks, reports
from legato.api.routes import decisions, review
from legato.api.routes import ingest, segment
from legato.api.routes import stream
from legato.api.routes import consent, suppressions
from legato.api.routes import playbooks
from legato.api.routes import cycles
from legato.api.routes import deliveries, links
from legato.api.routes import twilio
from legato.api.routes import alerts

ROUTERS: list[APIRouter] = [ops.router, agents.router]
ROUTERS += [reports.router, checks.router]
ROUTERS += [review.router, decisions.router]
ROUTERS += [ingest.router, segment.router]
ROUTERS += [stream.router]
ROUTERS += [suppressions.router, consent.router]
ROUTERS += [playbooks.router]
ROUTERS += [cycles.router]
ROUTERS += [deliveries.router, links.router]
ROUTERS += [twilio.router]
ROUTERS += [alerts.router]
