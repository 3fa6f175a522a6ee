"""Render creatives in Jinja2's sandbox: an undefined variable is an error, never a blank.

This module owns what a template sees (:func:`message_context`: the customer, the offer,
the brand and the per-message opt-out link), how a variant is identified before
personalization (:func:`variant_hash`) and what stops a template from rendering, as
``template`` findings (:func:`render_template`). Templates are compiled once per creative;
only the personal parts differ per customer.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from legato.deliver.sandbox import BoundedEnvironment
from legato.guard.findings import Finding
from legato.playbook.models import Creative, Offer, Playbook

# Bounded: what a template may build is limited (legato.deliver.sandbox).
ENVIRONMENT = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
PARTS = ("subject", "title", "body", "html")


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    title: str | None
    body: str
    html: str | None = None  # e-mail's HTML part, when the creative has one (the body stays the text part)


class RenderError(ValueError):
    """A creative that cannot be rendered for a customer; the message is never sent."""


class CreativeTemplate:
    def __init__(self, creative: Creative) -> None:
        self.creative = creative
        try:
            self._parts = {
                part: ENVIRONMENT.from_string(text)
                for part in PARTS
                if (text := getattr(creative, part)) is not None
            }
        except TemplateError as exc:
            raise RenderError(f"creative '{creative.id}' has a template error: {exc}") from exc

    def render(self, context: dict[str, Any]) -> Rendered:
        try:
            parts = {name: template.render(context) for name, template in self._parts.items()}
        except TemplateError as exc:
            raise RenderError(f"creative '{self.creative.id}': {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. {{ 1000 // customer.spend }} with spend 0: this copy fails, alone
            raise RenderError(f"creative '{self.creative.id}' cannot be rendered for this customer: {type(exc).__name__}: {exc}") from exc
        return Rendered(subject=parts.get("subject"), title=parts.get("title"), body=parts["body"], html=parts.get("html"))


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
    if creative.html is not None:  # only then: the hashes of creatives without HTML (decided before it existed) stay
        digest.update(b"html\x00" + creative.html.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def edited_creative(creative: Creative, override: Mapping[str, Any]) -> Creative:
    """The creative with a reviewer's edited parts (``decisions.content_override``) in place."""
    return creative.model_copy(update={part: override[part] for part in PARTS if part in override})


class SampleCustomer(dict[str, Any]):
    """Stands in for a customer when content is rendered before anyone is chosen: every
    attribute is its name in brackets; see :func:`sample_customer` for typed ones."""

    def __missing__(self, key: str) -> str:
        return f"[{key}]"


class SampleNumber(int):
    """A number attribute of the stand-in customer: 1 in arithmetic (so ``{{ 1000 //
    customer.spend }}`` renders for the variant, as it would for most customers), its name in
    brackets when shown."""

    def __new__(cls, name: str) -> SampleNumber:
        made = super().__new__(cls, 1)
        made.name = name
        return made

    name: str

    def __str__(self) -> str:
        return f"[{self.name}]"


def sample_customer(playbook: Playbook) -> SampleCustomer:
    """The stand-in customer of a playbook: its number attributes behave as numbers."""
    sample = SampleCustomer(id="[id]")
    for name, kind in playbook.attributes.items():
        if kind.value == "number":
            sample[name] = SampleNumber(name)
    return sample


SAMPLE_TOKEN = "sample"  # the unsubscribe token of a variant rendered for nobody in particular


def customer_context(customer_id: str, email: str | None, phone: str | None, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``{{ customer.* }}`` holds in a template: contact points and every attribute."""
    return {"id": customer_id, "email": email, "phone": phone, **(attributes or {})}


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$", "CHF": "CHF ", "INR": "₹"}


def offer_context(offer: Offer, currency: str) -> dict[str, Any]:
    """What ``{{ offer.* }}`` holds: the offer's fields, ``value`` as a whole number when it is one
    (10, not 10.0), and ``label``, the offer as a customer reads it in its own unit
    ("10% off", "$10 off", "free shipping")."""
    fields = offer.model_dump(mode="json")
    value = offer.value
    fields["value"] = int(value) if float(value).is_integer() else value
    number = f"{fields['value']:,}" if isinstance(fields["value"], int) else f"{value:,.2f}"
    fields["label"] = {
        "percent_off": f"{fields['value']}% off",
        "amount_off": f"{_SYMBOLS.get(currency, currency + ' ')}{number} off",
        "free_shipping": "free shipping",
        "gift": "a free gift",
        "content": "",
    }[offer.kind]
    return fields


def message_context(playbook: Playbook, customer: Mapping[str, Any], offer: Offer | None, token: str) -> dict[str, Any]:
    """What a creative's template can use: the customer, the offer, the brand and the opt-out link."""
    return {
        "customer": customer,
        "offer": offer_context(offer, playbook.brand.currency) if offer else None,
        "brand": {"name": playbook.brand.name, "currency": playbook.brand.currency, **playbook.brand.legal.model_dump()},
        "unsubscribe_url": unsubscribe_link(playbook, token),
    }


def unsubscribe_link(playbook: Playbook, token: str) -> str:
    """The one-click opt-out link of one message: the brand's ``unsubscribe_url`` (the public
    address of ``legato serve``'s ``/v1/unsubscribe``) with the message's signed token as ``t``,
    which that route reads (a GET shows the confirmation page, an RFC 8058 POST unsubscribes)."""
    base = playbook.brand.legal.unsubscribe_url
    return f"{base}{'&' if '?' in base else '?'}t={token}"


# --- opens and clicks: the rendered e-mail's links rewritten, when the brand turns them on ----

OPEN_PATH = "/v1/open"  # legato serve's open pixel
CLICK_PATH = "/v1/click"  # legato serve's click redirect
TRACKED_CHANNELS = ("email",)  # an SMS's length is counted in segments: its links stay as written
_TEXT_URL = re.compile(r"https?://[^\s<>\"'`]+")
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"  # punctuation that ends a sentence, not the address


def open_pixel_url(playbook: Playbook, token: str) -> str:
    """The open pixel's address for one message."""
    return f"{playbook.brand.tracking_base()}{OPEN_PATH}?t={token}"


def click_link(playbook: Playbook, token: str, target: str, signature: str) -> str:
    """The click redirect for one link of one message: its token, the target and the target's
    signature (:func:`legato.deliver.tokens.link_signature`), so the redirect goes only where
    the message pointed."""
    from urllib.parse import quote

    return f"{playbook.brand.tracking_base()}{CLICK_PATH}?t={token}&u={quote(target, safe='')}&s={signature}"


def tracked(playbook: Playbook, channel: str, rendered: Rendered, token: str, sign: Any) -> Rendered:
    """The rendered message with the brand's tracking in place (``brand.tracking``): with clicks on,
    every http(s) link of an e-mail goes through a signed click redirect (the unsubscribe link and
    Legato's own links excepted: RFC 8058 wants the opt-out reached directly); with opens on, an
    HTML part gets a 1x1 pixel before ``</body>``. ``sign(url)`` gives a link's signature. Off
    (the default), or on another channel, the message is returned as it is."""
    tracking = playbook.brand.tracking
    if channel not in TRACKED_CHANNELS or not tracking.on:
        return rendered
    unsubscribe = playbook.brand.legal.unsubscribe_url.split("?", 1)[0]
    own = f"{playbook.brand.tracking_base()}/v1/"

    def rewrite(url: str) -> str:
        if url.split("?", 1)[0] == unsubscribe or url.startswith(own):
            return url
        return click_link(playbook, token, url, sign(url))

    def in_text(match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(_TRAILING)
        return rewrite(stripped) + url[len(stripped):]

    changes: dict[str, Any] = {}
    if tracking.clicks:
        changes["body"] = _TEXT_URL.sub(in_text, rendered.body)
    html = getattr(rendered, "html", None)
    if html:
        from html import escape, unescape

        if tracking.clicks:
            html = _HREF.sub(lambda m: f"{m.group(1)}{m.group(2)}{escape(rewrite(unescape(m.group(3))))}{m.group(2)}", html)
        if tracking.opens:
            pixel = f'<img src="{escape(open_pixel_url(playbook, token))}" width="1" height="1" alt="" style="display:block;border:0">'
            at = html.lower().rfind("</body>")
            html = html[:at] + pixel + html[at:] if at >= 0 else html + pixel
        changes["html"] = html
    return replace(rendered, **changes) if changes else rendered


def check_template_access(playbook: Playbook, creative: Creative) -> str | None:
    """What the sandbox refuses when the creative is rendered (``{{ customer.__class__ }}``).

    The creative is rendered once with a stand-in customer whose every attribute exists, so
    only forbidden access (not a missing attribute) is reported here.
    """
    offer = playbook.offers[0] if playbook.offers else None
    try:
        CreativeTemplate(creative).render(message_context(playbook, sample_customer(playbook), offer, "check"))
    except RenderError as exc:
        if isinstance(exc.__cause__, SecurityError):
            return f"creative '{creative.id}' reaches for something the sandbox forbids: {exc.__cause__}"
    return None


@dataclass(frozen=True)
class UnknownName:
    """A name a template reads that the context never has (``{{ brand.sendr_name }}``)."""

    part: str  # subject, title or body
    offset: int  # character in that part where the name is written
    message: str
    hint: str


def unknown_names(playbook: Playbook, creative: Creative) -> list[UnknownName]:
    """Names a creative's templates read that :func:`message_context` never provides.

    Checked on the template's syntax tree, so a name inside a branch that the stand-in
    rendering does not take (``{% if offer %}{{ offer.valeu }}{% endif %}``) is found too.
    The customer's attributes are open-ended (imports keep every column), so only the
    top-level names, the brand's and the offer's fields are checked. A template with a
    syntax error is left to :func:`check_template`.
    """
    from difflib import get_close_matches

    from jinja2 import meta, nodes

    sample_offer = playbook.offers[0] if playbook.offers else Offer(id="sample", kind="gift", value=0, cost=0)
    context = message_context(playbook, SampleCustomer(id="[id]"), sample_offer, "check")
    fields = {name: sorted(value) for name, value in context.items() if isinstance(value, dict) and name != "customer"}
    found: list[UnknownName] = []
    for part in PARTS:
        source = getattr(creative, part)
        if source is None:
            continue
        try:
            tree = ENVIRONMENT.parse(source)
        except TemplateError:
            return []
        top = sorted(meta.find_undeclared_variables(tree) - set(context) - set(ENVIRONMENT.globals))
        for name in top:
            close = get_close_matches(name, list(context), n=1)
            hint = (f"did you mean '{close[0]}'? " if close else "") + f"a template can use {', '.join(context)}"
            found.append(UnknownName(part, _name_offset(source, None, rf"\b{re.escape(name)}\b"), f"template name '{name}' does not exist", hint))
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            target = node.node
            if not isinstance(target, nodes.Name) or target.name not in fields:
                continue
            if isinstance(node, nodes.Getattr):
                attribute = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                attribute = node.arg.value
            else:
                continue
            known = fields[target.name]
            if attribute in known:
                continue
            close = get_close_matches(attribute, known, n=1)
            hint = (f"did you mean '{target.name}.{close[0]}'? " if close else "") + f"{target.name} has {', '.join(known)}"
            pattern = rf"\b{re.escape(target.name)}\s*(?:\.\s*{re.escape(attribute)}\b|\[\s*['\"]{re.escape(attribute)}['\"])"
            found.append(
                UnknownName(part, _name_offset(source, node.lineno, pattern), f"template name '{target.name}.{attribute}' does not exist", hint)
            )
    return found


def _name_offset(source: str, lineno: int | None, pattern: str) -> int:
    """Where ``pattern`` is first written inside a ``{{ }}`` or ``{% %}`` (on ``lineno`` if given)."""
    for block in _BLOCK.finditer(source):
        if lineno is not None and not (
            source.count("\n", 0, block.start()) + 1 <= lineno <= source.count("\n", 0, block.end()) + 1
        ):
            continue
        match = re.search(pattern, block.group())
        if match:
            return block.start() + match.start()
    return 0


# --- template findings ----------------------------------------------------------------


@dataclass(frozen=True)
class TemplateCheck:
    """A rendered template, or the findings that stopped it. Spans index into the template."""

    text: str | None
    findings: tuple[Finding, ...]


_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def render_template(source: str, context: Mapping[str, Any]) -> TemplateCheck:
    """Render ``source`` in the delivery sandbox (StrictUndefined), reporting what stops it.

    An undefined variable, an unsafe attribute (``{{ customer.__class__ }}``) or a syntax
    error becomes a ``block`` finding spanning the ``{{ }}`` or ``{% %}`` it came from.
    """
    try:
        template = ENVIRONMENT.from_string(source)  # the very environment delivery renders with
    except TemplateSyntaxError as error:
        span = _unclosed_span(source) or _expression_span(source, error.lineno, _quoted(error.message or ""))
        finding = Finding("template.syntax_error", "template", "block", span, f"template syntax error: {error.message}")
        return TemplateCheck(None, (finding,))
    failure: BaseException
    try:
        return TemplateCheck(template.render(dict(context)), ())
    except SecurityError as error:
        rule, name, failure = "template.forbidden_access", _quoted(str(error)), error
        reason = f"the template reaches for something unsafe: {error}"
    except UndefinedError as error:
        rule, name, failure = "template.undefined_variable", _last_quoted(str(error)), error
        reason = f"the template uses something the context does not have: {error}"
    except TemplateError as error:
        rule, name, failure = "template.render_error", None, error
        reason = f"the template cannot be rendered: {error}"
    except Exception as error:  # noqa: BLE001 - arithmetic on a value the template gets, a method that raises
        rule, name, failure = "template.render_error", None, error
        reason = f"the template cannot be rendered: {type(error).__name__}: {error}"
    lineno = _template_line(failure)
    return TemplateCheck(None, (Finding(rule, "template", "block", _expression_span(source, lineno, name), reason),))


def _quoted(message: str) -> str | None:
    found = re.search(r"'([^']+)'", message)
    return found.group(1) if found else None


def _last_quoted(message: str) -> str | None:
    found = re.findall(r"'([^']+)'", message)
    return found[-1] if found else None


def _template_line(error: BaseException) -> int | None:
    """The template line being rendered when ``error`` was raised (Jinja rewrites tracebacks)."""
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


_OPENER = re.compile(r"\{\{|\{%")


def _unclosed_span(source: str) -> tuple[int, int] | None:
    """From the first ``{{`` or ``{%`` that is never closed to the end of its line."""
    for match in _OPENER.finditer(source):
        closer = source.find("}}" if match.group() == "{{" else "%}", match.end())
        following = _OPENER.search(source, match.end())
        if closer < 0 or (following is not None and following.start() < closer):
            line_end = source.find("\n", match.start())
            return (match.start(), len(source) if line_end < 0 else line_end)
    return None


def _line_span(source: str, lineno: int | None) -> tuple[int, int]:
    if not lineno:
        return (0, len(source))
    starts = [0] + [m.end() for m in re.finditer("\n", source)]
    if lineno > len(starts):
        return (0, len(source))
    start = starts[lineno - 1]
    end = source.find("\n", start)
    return (start, len(source) if end < 0 else end)


def _expression_span(source: str, lineno: int | None, name: str | None) -> tuple[int, int]:
    """The ``{{ }}`` or ``{% %}`` on ``lineno`` that mentions ``name`` (else the best guess)."""
    candidates = []
    for match in _BLOCK.finditer(source):
        first = source.count("\n", 0, match.start()) + 1
        last = first + match.group().count("\n")
        if lineno is None or first <= lineno <= last:
            candidates.append(match)
    if name:
        word = re.compile(r"(?<![\w])" + re.escape(name) + r"(?![\w])")
        for match in candidates:
            if word.search(match.group()):
                return match.span()
    if candidates:
        return candidates[0].span()
    return _line_span(source, lineno)
