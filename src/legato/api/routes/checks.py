"""The check of one message, as ``legato check message``: a text on a channel, or a creative.

Both against the playbook in force (its brand voice, legal identity and offers); a text can
be checked without one (the built-in rules), a creative cannot. Checking writes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.service import checks

router = APIRouter(prefix="/v1/checks", tags=["checks"])

Channel = StrEnum("Channel", {name: name for name in checks.CHANNELS})  # type: ignore[misc]


class Purpose(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"  # an order update: no opt-out needed


class Severity(StrEnum):
    WARN = "warn"
    ESCALATE = "escalate"  # a person must look before it goes
    BLOCK = "block"  # it does not go


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    ESCALATE = "escalate"
    BLOCK = "block"


class MessageCheck(BaseModel):
    """A text with its channel, or a creative of the playbook in force (which has its own text, channel and purpose)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, min_length=1, max_length=100_000,
                             description="The message; an e-mail starts 'Subject: ...', a blank line, then the body")
    channel: Channel | None = Field(None, description="The channel the text goes out on")  # type: ignore[valid-type]
    purpose: Purpose = Field(Purpose.MARKETING, description="For a text; a creative has its own")
    creative: str | None = Field(None, min_length=1, max_length=128, description="Check this creative of the playbook in force, as the cycle does")
    offer: str | None = Field(None, min_length=1, max_length=128, description="The playbook offer the message carries (its deadline counts)")
    first_sms: bool = Field(True, description="The first SMS to this number (needs the brand and STOP wording)")

    @model_validator(mode="after")
    def _one_message(self) -> MessageCheck:
        if self.creative is not None:
            if self.text is not None or self.channel is not None:
                raise ValueError("a creative has its own text and channel: give creative alone, or text and channel without it")
        elif self.text is None or self.channel is None:
            raise ValueError("give text and channel, or creative (a creative of the playbook in force)")
        return self


class Finding(BaseModel):
    rule: str
    family: str
    severity: Severity
    start: int = Field(description="where it starts in checked_text")
    end: int
    excerpt: str = Field(description="checked_text[start:end]")
    reason: str


class MessageVerdict(BaseModel):
    verdict: Verdict
    channel: str
    purpose: Purpose
    checked_text: str = Field(description="the text as the checks read it: the subject or title line, then the body")
    findings: list[Finding]


@router.post("/message", response_model=MessageVerdict, responses=documented(409),
             summary="Check one message against the brand voice, marketing law and personal-data rules")
def check_message(body: MessageCheck, caller: Caller = Depends(allow(Ability.READ)), ctx: ApiContext = Depends(context)) -> MessageVerdict:
    if body.creative is not None:
        done = checks.check_creative(ctx.playbook(), body.creative, offer=body.offer)
    else:
        assert body.text is not None and body.channel is not None
        done = checks.check_text(ctx.playbook_or_none(), str(body.channel), body.text, purpose=body.purpose.value, offer=body.offer,
                                 first_sms=body.first_sms)
    text = done.text
    findings = [
        Finding(rule=f.rule, family=f.family, severity=Severity(f.severity), start=f.span[0], end=f.span[1], excerpt=text[f.span[0]:f.span[1]], reason=f.reason)
        for f in done.findings
    ]
    return MessageVerdict(verdict=Verdict(done.verdict), channel=done.message.channel, purpose=Purpose(done.message.purpose),
                          checked_text=text, findings=findings)
