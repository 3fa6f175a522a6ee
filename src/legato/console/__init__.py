"""The web console: a marketer conducts the agents from a browser, served by ``legato serve`` at ``/``.

Server-rendered pages (Jinja2) on the same service layer as the CLI and the API: a page parses
its request, calls :mod:`legato.service` (reads and changes, each change under the signed-in
key's name, so it is checked and audited by its owner) and renders a template. No rule is
written twice: whatever the API refuses, the console refuses for the same reason.

Modules (the conventions every page follows):

- ``app``: :func:`~legato.console.app.install` (called by ``legato.api.app.create_app``) includes
  each module of ``pages/`` listed in ``app.PAGES`` that exists (each an ``APIRouter`` named
  ``router``), serves ``static/`` at ``/static``, adds the headers, and answers errors as pages.
- ``auth``: sign-in with an API key into a signed session cookie (HttpOnly, SameSite=Strict,
  Secure over https; idle and absolute limits). A page depends on ``signed_in(Ability.X)``
  (``from legato.api.security import Ability``): not signed in → 303 to ``/sign-in``, a role
  without the ability → a 403 page. The ``Session`` it returns has ``name`` (the audit log's
  actor: pass it as ``by``/``reviewer``), ``role``, ``csrf`` and ``may(ability)``.
- ``csrf``: a POST route depends on ``checked(Ability.X)`` instead: signed in with the ability
  AND the session's CSRF token (form field ``csrf``: ``{{ csrf_field() }}`` in the form; or the
  ``X-CSRF-Token`` header for fetch posts: ``legato.post(url, fields)`` in ``console.js``).
  Read the form with ``await form_of(request)`` (URL-encoded; ``form_lists`` for repeated names).
- ``headers``: CSP (no inline script or style, ``frame-ancestors 'none'``), nosniff,
  ``Referrer-Policy``, ``no-store`` on every console answer. No ``<script>`` bodies, no
  ``on...=`` attributes, no ``style=`` attributes in templates: put code in ``static/*.js``
  (loaded with ``<script src=... defer>`` in a ``{% block scripts %}``) and styles in
  ``static/console.css`` (or another ``static/*.css``).
- ``render``: ``page(request, "x.html", session=session, **context)`` renders with the one
  environment (autoescape, ``StrictUndefined``: pass every name a template uses). Filters:
  ``percent``, ``number``, ``money``, ``signed``, ``when``, ``ago``, ``kpi_of(metric)``. Macros in
  ``templates/_macros.html``: ``status_badge``, ``kpi_table``, ``lift_text``, ``met_text``.
- ``charts``: ``line_chart(title, [Series(label, [(day, value)])], fmt=..., target=...)`` and
  ``bar_chart(title, [Bar(label, value, low, high)], fmt=...)``: SVG markup with a title, a
  description in words, labelled axes.
- ``pages/``: ``sign_in`` (``/sign-in``, ``/sign-out``), ``live`` (``/stream``: the API's
  server-sent events for the session), ``overview`` (``/``, ``/overview/lift``), ``agents``
  (``/agents``, ``/agents/{id}``); ``review``, ``decisions`` (with ``/audit``) and ``playbook``.
- ``templates/base.html``: the layout; a page ``{% extends "base.html" %}`` and fills
  ``{% block title %}`` and ``{% block main %}`` (and ``{% block scripts %}`` for its own JS).
  Live parts: an element ``data-live-region`` with an ``id`` is swapped in from a fresh fetch of
  the page whenever ``/stream`` says something changed; ``data-load="/path"`` with an ``id``
  loads a slow part after the page. ``console.js`` hooks: ``legato.onChange(fn)``,
  ``legato.shortcut(key, fn, help)``, ``legato.post(url, fields)``, ``legato.refresh()``.
  Forms with ``data-confirm="text"`` ask before sending.
"""
