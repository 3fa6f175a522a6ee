"""The one check of a message: render a variant and check its content, bound to its hash.

Every caller that needs to know whether a message may go asks :class:`MessageChecker`: the
cycle (each variant of an agent's action space, once per cycle), ``legato review
show|edit|approve`` (the message one customer would get), the dispatcher (each message
as it leaves), ``legato check message`` (a text a person typed) and ``legato validate``
(each creative of a playbook). Purpose and channel come from the creative, the brand and
offers from the playbook it belongs to, so no caller can check a receipt as marketing.

**What is checked.** A *variant* is a creative (with a reviewer's edit, if any) and an
offer, identified by its content hash (:func:`legato.deliver.render.variant_hash`). It is
rendered once for nobody in particular (a stand-in customer whose every attribute is a
placeholder; a number attribute counts as 1, :func:`legato.deliver.render.sample_customer`) and checked whole: voice, compliance, personal data, and whether its templates
render at all. A first text on a channel with first-message rules is the strictest case,
so a variant must be fit to be one. The message one customer gets is that variant plus what
filling in their details can add, which is personal data (someone else's address or a card
number in an attribute) and a template that cannot be rendered for them: both are checked
on the personalized copy. The verdict is the worst finding of the two.

**Bound to the hash.** A caller that holds the hash a decision or a reviewer saw passes it
as ``expected_hash``; content whose hash differs now is refused with
:class:`ContentChanged` rather than checked and sent as something nobody decided on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from legato.channels import REGISTRY
from legato.deliver.render import (
    PARTS,
    SAMPLE_TOKEN,
    CreativeTemplate,
    Rendered,
    RenderError,
    sample_customer,
    customer_context,
    edited_creative,
    message_context,
    render_template,
    variant_hash,
)
from legato.errors import Conflict, LegatoError, NotFound
from legato.guard.content import ContentChecker
from legato.guard.findings import Finding, Message, verdict
from legato.playbook.models import Creative, Offer, Playbook


class ContentChanged(Conflict):
    """The content is no longer the one a decision or a reviewer saw (its hash differs)."""


class UnknownContent(NotFound):
    """A decision names a creative or an offer the playbook does not hold."""


@dataclass(frozen=True)
class Variant:
    """A creative (with a reviewer's edit in place) and an offer: what a content hash names."""

    creative: Creative
    offer: Offer | None
    content_hash: str

    @property
    def channel(self) -> str:
        return self.creative.channel.value

    @property
    def purpose(self) -> str:
        return self.creative.purpose


@dataclass(frozen=True)
class Recipient:
    """Who a personalized copy is for: what the template reads and which contact points are theirs."""

    customer_id: str
    email: str | None = None
    phone: str | None = None
    attributes: Mapping[str, Any] | None = None

    @property
    def own(self) -> list[str]:
        return [v for v in (self.email, self.phone) if v]


@dataclass(frozen=True)
class MessageCheck:
    """The outcome of the one check. ``rendered`` is the copy for the recipient (the stand-in
    rendering without one), None when it could not be rendered (``render_error`` says why).
    ``variant_findings`` index into the variant's checked text, ``copy_findings`` into the
    copy's."""

    content_hash: str
    channel: str
    purpose: str
    rendered: Rendered | None
    variant_findings: tuple[Finding, ...]
    copy_findings: tuple[Finding, ...] = ()
    render_error: str | None = None
    variant_text: Rendered | None = field(default=None, repr=False)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.variant_findings + self.copy_findings

    @property
    def verdict(self) -> str:
        return verdict(self.findings)

    @property
    def worst_rule(self) -> str | None:
        outcome = self.verdict
        return next((f.rule for f in self.findings if f.severity == outcome), None)

    @property
    def blocking_rules(self) -> list[str]:
        return sorted({f.rule for f in self.findings if f.severity == "block"})

    def message(self) -> Message | None:
        """The personalized copy as the content checks see it."""
        if self.rendered is None:
            return None
        return as_message(self.channel, self.purpose, self.rendered)


def as_message(channel: str, purpose: str, rendered: Rendered) -> Message:
    """The :class:`Message` of a rendered creative: channel and purpose are the creative's."""
    spec = REGISTRY[channel]
    return Message(
        channel=channel,
        body=rendered.body,
        subject=rendered.subject if spec.heading == "subject" else None,
        title=rendered.title if spec.heading == "title" else None,
        purpose=purpose,
    )


def first_message(channel: str) -> bool:
    """Check a variant as the first message to an address when its channel has rules for that."""
    return bool(REGISTRY[channel].first_message)


class MessageChecker:
    """The one check, for one playbook. Variant checks are cached by content hash."""

    def __init__(self, playbook: Playbook | None) -> None:
        """``None``: no playbook, so only texts can be checked, against the generic rules."""
        self._playbook = playbook
        self.content = ContentChecker.for_playbook(playbook) if playbook is not None else ContentChecker()
        self._creatives = {c.id: c for c in playbook.creatives} if playbook is not None else {}
        self._offers = {o.id: o for o in playbook.offers} if playbook is not None else {}
        self._variants: dict[str, tuple[tuple[Finding, ...], Rendered | None]] = {}
        self._templates: dict[str, CreativeTemplate] = {}

    @property
    def playbook(self) -> Playbook:
        if self._playbook is None:
            raise LegatoError("rendering a creative needs its playbook", hint="give --playbook")
        return self._playbook

    @property
    def offers(self) -> dict[str, Offer]:
        return self._offers

    # --- naming the content ----------------------------------------------------------------

    def variant(self, creative: str | Creative, offer_id: str | None, override: Mapping[str, Any] | None = None) -> Variant:
        """The variant a decision names: its creative from the playbook, a reviewer's edit in place."""
        if isinstance(creative, str):
            found = self._creatives.get(creative)
            if found is None:
                raise UnknownContent(
                    f"creative '{creative}' is no longer in the playbook",
                    hint="use the playbook the agent ran on, or reject the decision and let the agent decide again",
                )
            creative = found
        if override:
            creative = edited_creative(creative, override)
        offer = None
        if offer_id is not None:
            offer = self._offers.get(offer_id)
            if offer is None:
                raise UnknownContent(f"offer '{offer_id}' is no longer in the playbook", hint="use the playbook the agent ran on")
        return Variant(creative, offer, variant_hash(creative, offer_id))

    # --- checking it -------------------------------------------------------------------------

    def check(
        self,
        variant: Variant,
        *,
        expected_hash: str | None = None,
        recipient: Recipient | None = None,
        token: str = SAMPLE_TOKEN,
    ) -> MessageCheck:
        """The variant checked whole, and with a recipient their copy too (see the module docstring)."""
        if expected_hash is not None and expected_hash != variant.content_hash:
            raise ContentChanged(
                f"the content of creative '{variant.creative.id}' changed after it was decided on or reviewed; not checked",
                hint="the agent decides again in a later cycle; a queued item is reviewed again",
            )
        findings, sample = self._check_variant(variant)
        if recipient is None:
            return MessageCheck(variant.content_hash, variant.channel, variant.purpose, sample, findings, variant_text=sample)
        context = message_context(
            self.playbook,
            customer_context(recipient.customer_id, recipient.email, recipient.phone, recipient.attributes),
            variant.offer,
            token,
        )
        try:
            rendered = self._template(variant).render(context)
        except RenderError as exc:
            failure = Finding("template.render_error", "template", "block", (0, len(variant.creative.body)), str(exc))
            return MessageCheck(
                variant.content_hash, variant.channel, variant.purpose, None, findings, (failure,), str(exc), variant_text=sample
            )
        copy = self.content.check_personalized(as_message(variant.channel, variant.purpose, rendered), allowed_personal=recipient.own)
        return MessageCheck(variant.content_hash, variant.channel, variant.purpose, rendered, findings, tuple(copy), variant_text=sample)

    def check_text(self, message: Message, *, offer_id: str | None = None, first: bool = True) -> list[Finding]:
        """A text a person typed (``legato check message``): the content checks alone, nothing to render."""
        return self.content.check(message, offer_id=offer_id, first_sms=first)

    def _template(self, variant: Variant) -> CreativeTemplate:
        template = self._templates.get(variant.content_hash)
        if template is None:
            template = self._templates[variant.content_hash] = CreativeTemplate(variant.creative)
        return template

    def _check_variant(self, variant: Variant) -> tuple[tuple[Finding, ...], Rendered | None]:
        cached = self._variants.get(variant.content_hash)
        if cached is not None:
            return cached
        context = message_context(self.playbook, sample_customer(self.playbook), variant.offer, SAMPLE_TOKEN)
        parts: dict[str, str | None] = {}
        template_findings: list[Finding] = []
        for part in PARTS:
            source = getattr(variant.creative, part)
            if source is None:
                parts[part] = None
                continue
            result = render_template(source, context)
            parts[part] = result.text
            template_findings += result.findings
        if template_findings or parts["body"] is None:
            outcome: tuple[tuple[Finding, ...], Rendered | None] = (tuple(template_findings), None)
        else:
            sample = Rendered(subject=parts["subject"], title=parts["title"], body=parts["body"], html=parts["html"])
            found = self.content.check(
                as_message(variant.channel, variant.purpose, sample),
                offer_id=variant.offer.id if variant.offer else None,
                first_sms=first_message(variant.channel),
            )
            outcome = (tuple(found), sample)
        self._variants[variant.content_hash] = outcome
        return outcome
