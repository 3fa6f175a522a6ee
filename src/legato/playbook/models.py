"""The playbook's shape, validated with Pydantic v2.

Every model forbids unknown keys, so a misspelled key is an error rather than a silently
ignored setting. Checks that need more than one section (an agent naming an objective, a
creative on an undeclared channel, a segment using a protected attribute) live in
``legato.playbook.references`` so that they can report every problem at once.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from enum import Enum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from legato.playbook.alerts import AlertSettings
from legato.playbook.channels import CARRIES, ChannelTransport
from legato.playbook.schedule import Schedule, parse_schedule, zone_named

Identifier = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="lower_snake_case identifier"),
]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- brand ---------------------------------------------------------------------------


class EmojiPolicy(str, Enum):
    none = "none"
    sparing = "sparing"
    allowed = "allowed"


class Voice(Strict):
    tone: list[str] = Field(default_factory=list, description="Words that describe the voice.")
    avoid: list[str] = Field(default_factory=list, description="Words and phrases never to use.")
    required_phrases: list[str] = Field(default_factory=list)
    max_exclamation_marks: int = Field(1, ge=0)
    emoji: EmojiPolicy = EmojiPolicy.sparing
    max_reading_grade: float | None = Field(None, gt=0, le=20)
    examples: list[str] = Field(default_factory=list, description="On-brand example messages.")


class LegalIdentity(Strict):
    sender_name: str = Field(min_length=1)
    postal_address: str = Field(min_length=1, description="Required in marketing e-mail (CAN-SPAM, CASL).")
    support_contact: str = Field(min_length=1)
    unsubscribe_url: str = Field(
        min_length=1, description="Base of the one-click unsubscribe link; Legato appends a per-message token."
    )


TRACKING_PATH = "/v1/unsubscribe"  # the path of legato serve's unsubscribe route: a base for tracked links


class Tracking(Strict):
    """Opens and clicks of the brand's e-mail, recorded by ``legato serve`` (both off unless the
    playbook turns them on: an open pixel tells the sender when and where someone reads, which
    many readers have not agreed to; rewriting a marketer's links is the marketer's choice)."""

    opens: bool = Field(False, description="Add a 1x1 open pixel to HTML e-mail (off by default: a privacy choice).")
    clicks: bool = Field(False, description="Rewrite links in e-mail through signed click redirects.")
    base_url: str | None = Field(
        None, pattern=r"^https?://[^\s?#]+$",
        description="Public address of legato serve (https://legato.example); by default unsubscribe_url without its /v1/unsubscribe.",
    )

    @property
    def on(self) -> bool:
        return self.opens or self.clicks


class Brand(Strict):
    name: str = Field(min_length=1)
    voice: Voice = Field(default_factory=Voice)
    legal: LegalIdentity
    tracking: Tracking = Field(default_factory=Tracking, description="Opens and clicks, recorded by legato serve.")
    ai_disclosure: bool = Field(
        False, description="Every message must say it was written with AI (EU AI Act Art. 50 transparency)."
    )
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code amounts are shown in, e.g. in {{ offer.label }}.")
    time_zone: str = Field(
        "UTC", min_length=1, description="The brand's IANA time zone, e.g. Europe/Paris: agents' `daily` and `weekly` schedules are in it."
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone_named(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return zone_named(self.time_zone)

    @model_validator(mode="after")
    def _tracking_has_an_address(self) -> Brand:
        if self.tracking.on and self.tracking_base() is None:
            raise ValueError(
                "brand.tracking is on but Legato cannot tell where legato serve is reached: give brand.tracking.base_url "
                f"(e.g. https://legato.example), or make brand.legal.unsubscribe_url end in {TRACKING_PATH}"
            )
        return self

    def tracking_base(self) -> str | None:
        """Where legato serve is reached from outside: ``tracking.base_url``, else ``unsubscribe_url``
        without its ``/v1/unsubscribe``; None when neither says."""
        if self.tracking.base_url:
            return self.tracking.base_url.rstrip("/")
        url = self.legal.unsubscribe_url.split("?", 1)[0].rstrip("/")
        return url[: -len(TRACKING_PATH)] if url.endswith(TRACKING_PATH) else None


# --- objectives, lifecycle, segments ---------------------------------------------------


class GoalType(str, Enum):
    acquisition = "acquisition"
    retention = "retention"
    upsell = "upsell"
    engagement = "engagement"
    lifetime_value = "lifetime_value"


class Metric(str, Enum):
    """KPIs Legato measures per agent and day (rates are per decision that was sent)."""

    sends = "sends"
    visit_rate = "visit_rate"
    conversion_rate = "conversion_rate"
    revenue_per_send = "revenue_per_send"
    revenue = "revenue"
    unsubscribe_rate = "unsubscribe_rate"
    complaint_rate = "complaint_rate"


class Kpi(Strict):
    metric: Metric
    target: float


class GuardrailKpi(Strict):
    metric: Metric
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> GuardrailKpi:
        if self.max is None and self.min is None:
            raise ValueError("give a limit: max or min")
        return self


class Reward(Strict):
    """How an outcome becomes the number an agent maximizes, in units of the primary KPI."""

    contact_cost: float = Field(0.0, ge=0, description="Cost of sending one message.")
    unsubscribe_penalty: float = Field(1.0, ge=0)
    complaint_penalty: float = Field(5.0, ge=0)
    rejection_penalty: float = Field(
        1.0, ge=0, description="What a reviewer's rejection costs the agent: a proposal a person turned down teaches it."
    )


class Objective(Strict):
    id: Identifier
    goal: GoalType
    why: str = Field(min_length=1, description="The reason, in the marketer's words.")
    stages: list[Identifier] = Field(min_length=1, description="Lifecycle stages it targets.")
    kpis: list[Kpi] = Field(min_length=1, description="In priority order: the primary KPI first.")
    guardrail_kpis: list[GuardrailKpi] = Field(default_factory=list)
    attribution_days: int = Field(7, ge=1, le=90, description="Outcome window after a send.")
    reward: Reward = Field(default_factory=Reward)


class LifecycleStage(Strict):
    stage: Identifier
    when: str = Field(min_length=1, description="Segment expression; stages are tried in order.")


class AttributeType(str, Enum):
    number = "number"
    string = "string"
    boolean = "boolean"
    timestamp = "timestamp"


# --- offers, channels, creatives -------------------------------------------------------


class Offer(Strict):
    id: Identifier
    kind: Literal["percent_off", "amount_off", "free_shipping", "gift", "content"]
    value: float = Field(ge=0)
    cost: float = Field(ge=0, description="Expected cost to the business per redemption.")
    deadline: datetime | None = Field(None, description="A real deadline, if the offer has one.")


class ChannelKind(str, Enum):
    email = "email"
    sms = "sms"
    push = "push"
    whatsapp = "whatsapp"
    webhook = "webhook"


class Creative(Strict):
    id: Identifier
    channel: ChannelKind
    tags: list[Identifier] = Field(default_factory=list, description="Labels frequency caps can count by, e.g. promo.")
    approved_template: bool = Field(
        False, description="WhatsApp: a template Meta approved, the only kind allowed outside the 24-hour service window."
    )
    purpose: Literal["marketing", "transactional"] = Field(
        "marketing", description="Transactional messages (order and account updates) skip marketing consent, caps and quiet hours."
    )
    subject: str | None = None
    title: str | None = None
    body: str = Field(min_length=1)
    html: str | None = Field(
        None, min_length=1, description="E-mail: an HTML template sent beside the text body (multipart/alternative); the body stays the text part."
    )


# --- agents ----------------------------------------------------------------------------

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class SendWindow(Strict):
    """A daily window in the customer's local time, written ``HH:MM-HH:MM``."""

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _WINDOW.match(value.strip())
            if not match:
                raise ValueError(f"'{value}' is not a send window; write it as HH:MM-HH:MM, e.g. 09:00-11:00")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            return {"start": time(h1, m1), "end": time(h2, m2)}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.end <= self.start:
            raise ValueError("a send window must end after it starts on the same day")
        return self

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class ActionSpace(Strict):
    offers: list[Identifier] = Field(default_factory=list, description="Offer ids; none means no offer.")
    creatives: list[Identifier] = Field(min_length=1)
    send_windows: list[SendWindow] = Field(default_factory=lambda: [SendWindow.model_validate("09:00-17:00")], min_length=1)
    do_nothing: bool = Field(True, description="'Do nothing' is an explicit action the policy can choose.")
    when_late: Literal["next_window", "drop"] = Field(
        "next_window",
        description="A message whose send window has passed when it is dispatched (the run came late, an approval "
        "came after the window): moved to the agent's next window in the customer's local time, or dropped.",
    )


class PolicySpec(Strict):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class Budget(Strict):
    daily_sends: int | None = Field(None, ge=0)
    daily_offer_cost: float | None = Field(None, ge=0)


class StopLossMetric(str, Enum):
    """What a stop-loss rule may watch: the KPIs, and what only a stop-loss watches (bounces, offer cost)."""

    visit_rate = "visit_rate"
    conversion_rate = "conversion_rate"
    revenue_per_send = "revenue_per_send"
    unsubscribe_rate = "unsubscribe_rate"
    complaint_rate = "complaint_rate"
    bounce_rate = "bounce_rate"
    offer_cost = "offer_cost"  # of a day's sends, against a daily amount


# What each kind of rule can judge (legato.monitor.stop_loss says how).
TRIPWIRE_METRICS = frozenset(
    {StopLossMetric.visit_rate, StopLossMetric.conversion_rate, StopLossMetric.unsubscribe_rate, StopLossMetric.complaint_rate,
     StopLossMetric.bounce_rate, StopLossMetric.offer_cost}
)
HOLDOUT_METRICS = frozenset(
    {StopLossMetric.visit_rate, StopLossMetric.conversion_rate, StopLossMetric.revenue_per_send, StopLossMetric.unsubscribe_rate,
     StopLossMetric.complaint_rate}
)


class StopLoss(Strict):
    """A limit that pauses and demotes the agent when its sends credibly cross it.

    Without ``against``, an absolute tripwire on the agent's own sends (a rate's ``max`` or
    ``min``; offer cost per day). With ``against: holdout``, a guardrail: ``max``/``min``
    bound the difference treated − holdout. Rates are judged by always-valid sequential
    tests at level ``alpha`` (legato.monitor.sequential), so daily looks do not add false alarms.
    """

    metric: StopLossMetric
    max: float | None = None
    min: float | None = None
    against: Literal["holdout"] | None = Field(None, description="Compare with the agent's holdout instead of an absolute limit.")
    min_sends: int = Field(100, ge=1, description="Do not judge before this many sends.")
    min_holdout: int = Field(100, ge=1, description="With against: holdout, nor before this many holdout decisions.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Chance of a false alarm the rule accepts (see legato.monitor.sequential).")
    demote_to: int = Field(0, ge=0, le=3)

    @model_validator(mode="after")
    def _one_limit(self) -> StopLoss:
        if self.max is None and self.min is None:
            raise ValueError("give a limit: max or min")
        if self.against is None and self.metric not in TRIPWIRE_METRICS:
            raise ValueError(f"{self.metric.value} has no absolute limit: compare it with the holdout (against: holdout)")
        if self.against is not None and self.metric not in HOLDOUT_METRICS:
            raise ValueError(f"{self.metric.value} is not compared with the holdout: give it an absolute max instead (no against)")
        if self.against is None and self.metric != StopLossMetric.offer_cost:
            for limit in (self.max, self.min):
                if limit is not None and not 0.0 <= limit <= 1.0:
                    raise ValueError(f"{self.metric.value} is a rate: its limit {limit} must be between 0 and 1 (0.003 is 0.3%)")
        return self


class EscalationRule(Strict):
    when: str = Field(min_length=1, description="Expression over customer and decision fields.")
    reason: Identifier
    priority: int = Field(50, ge=0, le=100)


class RiskLimits(Strict):
    """What a stage-1 (Assisted) agent may do alone, beyond combinations a person approved."""

    max_offer_value: float | None = Field(None, ge=0)
    max_customer_value: float | None = Field(None, ge=0, description="Lifetime spend above which a person decides.")


class UpliftGateSettings(Strict):
    """Contact only customers whose predicted uplift pays: see legato.decide.uplift_gate."""

    model: Literal["two_model", "class_transformation"] = "two_model"
    min_uplift: float = Field(
        0.0, ge=-1.0, le=1.0, description="Predicted change in the primary outcome's probability a contact must exceed."
    )
    top_share: Fraction | None = Field(None, description="Of those, contact only this share with the highest uplift.")
    min_samples: int = Field(500, ge=50, description="Settled sends and holdout decisions each, before the gate closes.")
    history_days: int = Field(90, ge=1, le=730, description="Learn from the decisions of the last N days.")



class SendTimeSettings(Strict):
    """When in the send window a message goes: the window's start, or each customer's best hour."""

    mode: Literal["window_start", "learned"] = "window_start"
    min_events: int = Field(
        5, ge=1, description="Engagements a customer needs before their own hours count; fewer: the population's."
    )
    history_days: int = Field(90, ge=7, le=730, description="Engagement history to learn from.")


class Agent(Strict):
    id: Identifier
    objective: Identifier
    audience: str = Field(min_length=1, description="Segment expression choosing who is eligible.")
    actions: ActionSpace
    policy: PolicySpec = Field(default_factory=lambda: PolicySpec(name="uniform_random"))
    features: list[str] = Field(
        default_factory=lambda: ["lifetime_spend / 100", "purchase_count", "days_since_last_purchase / 30", "purchases_90d"],
        description="What the policy sees per customer: numeric or boolean expressions over fields "
        "(scale them to small ranges, e.g. 'history / 1000').",
    )
    holdout: Fraction = 0.1
    budget: Budget = Field(default_factory=Budget)
    trust_stage: int = Field(0, ge=0, le=3)
    active: bool = True
    stop_loss: list[StopLoss] = Field(default_factory=list)
    escalation: list[EscalationRule] = Field(default_factory=list)
    risk_limits: RiskLimits = Field(default_factory=RiskLimits)
    audit_sample: Fraction = Field(0.05, description="Stage 2: share of executed actions queued for an after-the-fact audit.")
    uplift_gate: UpliftGateSettings | None = Field(None, description="Contact only customers a message is predicted to move.")
    send_time: SendTimeSettings = Field(default_factory=SendTimeSettings)
    schedule: str | None = Field(
        None,
        description="When `legato worker` runs this agent's cycle: `every 6h`, `every 30m`, `daily 08:00` (the brand's "
        "time zone), `daily 08:00, 18:00` or `weekly mon,thu 08:00`. Without one the worker leaves the agent to `legato run`.",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value

    @property
    def parsed_schedule(self) -> Schedule | None:
        return None if self.schedule is None else parse_schedule(self.schedule)


# --- guardrails ------------------------------------------------------------------------


class Purpose(str, Enum):
    marketing = "marketing"
    transactional = "transactional"


class ConsentRule(Strict):
    channel: ChannelKind
    purpose: Purpose = Purpose.marketing
    require: Literal["express", "express_or_implied"] = "express_or_implied"
    existing_customer_exception: bool = Field(
        False,
        description="Customers who bought before may receive marketing of similar products without a "
        "consent on file (ePrivacy Art. 13(2) 'soft opt-in'); an objection still always wins.",
    )
    implied_lifetime_days: int | None = Field(
        None,
        ge=1,
        le=3650,
        description="How long an implied consent holds from when it was given; default 730 days "
        "(CASL's two years). The consent rule (legato.guard.consent) applies it.",
    )


RULE_ID = Field(None, description="The rule's name in reasons and reports; default: a readable form of the rule.")


def _days(days: float) -> str:
    return "day" if days == 1 else f"{days:g} days"


class FrequencyCap(Strict):
    """At most ``max`` messages in any rolling ``days``; ``max: 1`` is a minimum gap of ``days``."""

    id: Identifier | None = RULE_ID
    channel: ChannelKind | Literal["any"] = "any"
    tag: Identifier | None = Field(None, description="Count only messages whose creative carries this tag.")
    max: int = Field(ge=0)
    days: float | None = Field(None, gt=0, description="Rolling window length in days.")
    calendar: Literal["day", "week"] | None = Field(
        None, description="Instead of a rolling window: the customer's local calendar day or week (from Monday)."
    )
    on_block: Literal["drop", "delay"] = "drop"
    region: str | None = Field(
        None, pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$", description="Only customers in this country or region, e.g. US-FL."
    )

    @model_validator(mode="after")
    def _one_window(self) -> Any:
        if (self.days is None) == (self.calendar is None):
            raise ValueError("give either days (a rolling window) or calendar: day | week")
        return self

    @property
    def label(self) -> str:
        """The rule's name: its ``id``, else what it says, e.g. ``email 1 per 3 days``, ``sms 3 per day in US-FL``."""
        if self.id is not None:
            return self.id
        channel = "any channel" if self.channel == "any" else ChannelKind(self.channel).value
        window = _days(self.days) if self.days is not None else f"calendar {self.calendar}"
        return " ".join(
            part for part in (channel, f"tagged {self.tag}" if self.tag else "", f"{self.max} per {window}", f"in {self.region}" if self.region else "") if part
        )

    @property
    def lookback_days(self) -> float:
        """How far back sends can matter: the rolling window, or a calendar week and a day of zones."""
        return self.days if self.days is not None else 8.0


class QuietHours(Strict):
    id: Identifier | None = RULE_ID
    channel: ChannelKind
    start: time = Field(description="Local time from which sending stops, e.g. 21:00.")
    end: time = Field(description="Local time from which sending may resume, e.g. 08:00.")
    on_block: Literal["drop", "delay"] = "delay"
    region: str | None = Field(
        None, pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$", description="Only customers in this country or region, e.g. US-FL."
    )

    @property
    def label(self) -> str:
        """The rule's name: its ``id``, else what it says, e.g. ``sms 21:00-08:00 in US``."""
        if self.id is not None:
            return self.id
        where = f" in {self.region}" if self.region else ""
        return f"{self.channel.value} {self.start:%H:%M}-{self.end:%H:%M}{where}"


class ReviewSettings(Strict):
    sla_hours: dict[Identifier, float] = Field(
        default_factory=dict, description="Hours before an item of this reason expires unsent (default 48)."
    )
    allow_self_approval: bool = Field(False, description="May a reviewer approve their own edit?")


class ScoringSettings(Strict):
    """Customer scores (purchase_propensity, visit_propensity): how they are trained and kept fresh."""

    horizon_days: int = Field(30, ge=1, le=365, description="Predict a purchase (visit) within this many days.")
    refit_days: float = Field(7.0, gt=0, description="Refit and rescore when the latest model is this old.")
    min_examples: int = Field(
        50, ge=10, description="Customers with and without the outcome needed before a model is trusted."
    )


class Guardrails(Strict):
    consent: list[ConsentRule] = Field(default_factory=list)
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    protected_attributes: list[Identifier] = Field(
        default_factory=list, description="Never usable for targeting; only for fairness audits."
    )

    @model_validator(mode="after")
    def _rules_named_once(self) -> Any:
        # A reason names its rule; two rules with one name would be counted as one in every report.
        for section, rules in (("frequency_caps", self.frequency_caps), ("quiet_hours", self.quiet_hours)):
            seen: set[str] = set()
            for rule in rules:
                if rule.label in seen:
                    raise ValueError(f"two {section} rules are both named '{rule.label}': give one of them an id")
                seen.add(rule.label)
        return self


# --- inbound conversations and company values -------------------------------------------


class InboundRule(Strict):
    """A reason to hand a customer's reply to a person, beyond the built-in ones."""

    when: str = Field(
        min_length=1,
        description="Expression over customer fields and the message: sentiment (-1..1), intent (the primary "
        "intent), intent_complaint, intent_legal_threat, intent_distress, intent_human_request...",
    )
    reason: Identifier
    priority: int = Field(50, ge=0, le=100)
    role: Identifier | None = Field(None, description="The role that should answer, e.g. support or legal.")


class InboundSettings(Strict):
    escalation: list[InboundRule] = Field(
        default_factory=list,
        description="Rules on replies; STOP and HELP are handled first, and legal threats, distress, requests "
        "for a person, complaints and strongly negative replies always reach a person.",
    )


class CompanyValue(Strict):
    """A value the company declares; a decision that conflicts with it goes to a person."""

    # 58 so that the review reason "value:<id>" fits its 64 characters.
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=58)]
    statement: str = Field(min_length=1, description="The value in words, shown to the reviewer.")
    conflicts_when: str = Field(min_length=1, description="Expression over customer and decision fields, as escalation rules.")
    # Below the built-in reasons a customer who wrote in gives (70-95): a proposal can wait
    # (it expires unsent), a person who asked for help should not.
    priority: int = Field(60, ge=0, le=100)


# --- the playbook ----------------------------------------------------------------------


class Playbook(Strict):
    """A marketer's strategy: brand, objectives, audiences, offers, creatives, agents, guardrails."""

    version: Literal[1] = 1
    brand: Brand
    attributes: dict[Identifier, AttributeType] = Field(
        default_factory=dict, description="Customer attributes imported from files, with their types."
    )
    objectives: list[Objective] = Field(min_length=1)
    lifecycle: list[LifecycleStage] = Field(default_factory=list)
    segments: dict[Identifier, str] = Field(default_factory=dict)
    offers: list[Offer] = Field(default_factory=list)
    channels: dict[ChannelKind, ChannelTransport] = Field(min_length=1)
    creatives: list[Creative] = Field(min_length=1)
    agents: list[Agent] = Field(min_length=1)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="Where the monitors' alerts go (legato.playbook.alerts).")
    values: list[CompanyValue] = Field(default_factory=list, description="Declared company values decisions must not conflict with.")
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    global_control: Fraction = Field(
        0.0,
        description="Share of customers no agent contacts with marketing, to measure the whole program's "
        "lift (stable per customer, independent of each agent's own holdout).",
    )
    # The YAML text this playbook was parsed from and the JSON of what it parsed to, so the
    # store can keep the marketer's own text when recording the version a cycle ran (see
    # legato.playbook.loader.playbook_text); a copy with changes no longer matches the JSON.
    _source: tuple[str, str] | None = PrivateAttr(default=None)

    @field_validator("channels")
    @classmethod
    def _kind_carries_channel(cls, value: dict[ChannelKind, Any]) -> dict[ChannelKind, Any]:
        for channel, spec in value.items():
            carried = CARRIES.get(spec.kind)
            if carried is not None and channel.value not in carried:
                raise ValueError(f"{channel.value}: kind {spec.kind} carries {' and '.join(carried)} only; give {channel.value} another kind")
        return value

    @field_validator("segments")
    @classmethod
    def _segment_text(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not text.strip():
                raise ValueError(f"segment '{name}' has an empty expression")
        return value

    def objective(self, objective_id: str) -> Objective:
        return next(o for o in self.objectives if o.id == objective_id)

    def creative(self, creative_id: str) -> Creative:
        return next(c for c in self.creatives if c.id == creative_id)

    def offer(self, offer_id: str) -> Offer:
        return next(o for o in self.offers if o.id == offer_id)
