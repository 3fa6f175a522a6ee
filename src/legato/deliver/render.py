"""Render creatives in Jinja2's sandbox: an undefined variable is an error, never a blank.

Templates are compiled once per creative; only the personal parts differ per customer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from legato.playbook.models import Creative

ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    title: str | None
    body: str


class RenderError(ValueError):
    """A creative that cannot be rendered for a customer; the message is never sent."""


class CreativeTemplate:
    def __init__(self, creative: Creative) -> None:
        self.creative = creative
        try:
            self._parts = {
                part: ENVIRONMENT.from_string(text)
                for part in ("subject", "title", "body")
                if (text := getattr(creative, part)) is not None
            }
        except TemplateError as exc:
            raise RenderError(f"creative '{creative.id}' has a template error: {exc}") from exc

    def render(self, context: dict[str, Any]) -> Rendered:
        try:
            parts = {name: template.render(context) for name, template in self._parts.items()}
        except TemplateError as exc:
            raise RenderError(f"creative '{self.creative.id}': {exc}") from exc
        return Rendered(subject=parts.get("subject"), title=parts.get("title"), body=parts["body"])


def check_template(creative: Creative) -> str | None:
    """The syntax error in a creative's templates, if any (for ``legato validate``)."""
    try:
        CreativeTemplate(creative)
    except RenderError as exc:
        return str(exc)
    return None


def variant_hash(creative: Creative, offer_id: str | None) -> str:
    """Identifies the content variant (templates and offer) a decision chose, before personalization."""
    digest = hashlib.sha256()
    for part in (creative.id, creative.channel.value, creative.subject or "", creative.title or "", creative.body, offer_id or ""):
        digest.update(part.encode("utf-8") + b"\x00")
    return digest.hexdigest()


class SampleCustomer(dict[str, str]):
    """Stands in for a customer when content is rendered before anyone is chosen."""

    def __missing__(self, key: str) -> str:
        return f"[{key}]"


def check_template_access(playbook: Any, creative: Creative) -> str | None:
    """What the sandbox refuses when the creative is rendered (``{{ customer.__class__ }}``).

    The creative is rendered once with a stand-in customer whose every attribute exists, so
    only forbidden access (not a missing attribute) is reported here.
    """
    from jinja2.exceptions import SecurityError

    from legato.deliver.dispatch import message_context

    offer = playbook.offers[0] if playbook.offers else None
    try:
        CreativeTemplate(creative).render(message_context(playbook, SampleCustomer(id="[id]"), offer, "check"))
    except RenderError as exc:
        if isinstance(exc.__cause__, SecurityError):
            return f"creative '{creative.id}' reaches for something the sandbox forbids: {exc.__cause__}"
    return None
