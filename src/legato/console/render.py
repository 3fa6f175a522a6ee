"""One Jinja2 environment for every console page (autoescape on), and :func:`page`.

Every template extends ``base.html`` and gets, besides what its page passes:

- ``session`` (the :class:`~legato.console.auth.Session` or None), ``may(ability)`` (whether
  its role has an :class:`~legato.api.security.Ability`: ``may("review")``), ``Ability``;
- ``csrf_field()``: the hidden field every POST form carries, ``csrf_token`` itself
  (``console.js`` reads it from ``<meta name="csrf-token">`` for its fetch posts);
- ``nav``: the menu, ``path``: the request's path (the current item is marked);
- filters: ``percent`` (0.0123 → 1.23%), ``number`` (12345 → 12,345), ``money``, ``signed``
  (+1.20 pp for a rate's difference), ``when`` (an instant as ``2024-03-04 08:00 UTC``),
  ``ago`` (an instant as "3 h ago", against ``now`` passed by the page), ``kpi_of(metric)`` (a
  KPI's value in its unit, as ``legato report kpis`` prints it: ``line.value | kpi_of(line.metric)``).
- macros in ``_macros.html`` (``{% from "_macros.html" import status_badge, kpi_table %}``).

Values are escaped unless marked safe; the only markup a page may pass as safe is an SVG
chart from :mod:`legato.console.charts`, which escapes every text it writes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from legato.api.security import Ability
from legato.console.csrf import FIELD

# (path, label, ability needed to see the item)
NAV: tuple[tuple[str, str, Ability], ...] = (
    ("/", "Overview", Ability.READ),
    ("/agents", "Agents", Ability.READ),
    ("/review", "Review", Ability.READ),
    ("/decisions", "Decisions", Ability.READ),
    ("/audit", "Audit log", Ability.READ),
    ("/playbook", "Playbook", Ability.READ),
)


def percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def signed(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}{(' ' + unit) if unit else ''}".replace("-", "−")


def when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    seconds = max(0.0, (now - value).total_seconds())
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def kpi(metric: str, value: float | None) -> str:
    """A KPI's value in its unit: rates as percentages, sends as a count, money with cents."""
    if value is None:
        return "—"
    if metric.endswith("_rate"):
        return f"{value * 100:.2f}%"
    if metric == "sends":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("legato.console", "templates"),
        autoescape=select_autoescape(("html", "xml", "svg"), default=True),
        undefined=StrictUndefined,  # a name a template misspells is an error in the tests, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=percent, number=number, money=money, signed=signed, when=when, ago=ago, kpi=kpi,
                       kpi_of=lambda value, metric: kpi(metric, value))
    env.globals.update(Ability=Ability, NAV=NAV)
    return env


ENVIRONMENT = _environment()


def page(request: Request, template: str, *, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """The template rendered for this request, as an HTML answer."""
    from legato.console.auth import optional

    session = context.pop("session", None) or optional(request)
    given = context.pop("csrf_token", None)  # the sign-in form's own token (it has no session yet)
    token = given if given is not None else (session.csrf if session is not None else "")

    def may(ability: Ability | str) -> bool:
        return session is not None and session.may(Ability(ability))

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, escape(token))

    nav = [(path, label) for path, label, ability in NAV if may(ability)]
    html = ENVIRONMENT.get_template(template).render(
        request=request, session=session, may=may, csrf_field=csrf_field, csrf_token=token, nav=nav, path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=headers)
