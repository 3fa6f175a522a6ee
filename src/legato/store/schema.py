"""The database schema: one SQLAlchemy ``MetaData`` that Alembic migrations follow.

Tables are grouped by the step that writes them. Timestamps are :class:`UTCDateTime`;
free-form customer attributes live in a JSON column whose keys the playbook declares with
types, so segment expressions are type-checked before they reach SQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from legato.store.status import check
from legato.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}
metadata = MetaData(naming_convention=NAMING)

ID = String(128)

# --- customers and what they did -------------------------------------------------------

customers = Table(
    "customers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("time_zone", String(64)),
    Column("country", String(2)),
    Column("region", String(16)),
    Column("attributes", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("customer_id", ID, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("status", String(16), nullable=False),  # granted | revoked
    Column("kind", String(16), nullable=False),  # express | implied
    Column("source", String(128), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),  # when Legato recorded it
    Column("expires_at", UTCDateTime),  # an expiry its source stated (an implied consent's lifetime is the consent rule's)
    # When the customer gave or revoked it, per its source (the file's consent date, the reply's
    # or event's time); NULL when the source did not say. Which statement stands: guard.consent.change.
    Column("stated_at", UTCDateTime),
)

# Every consent statement that was written to ``consents``, in order: what stands now is the
# last row per (customer, channel, purpose). Append-only; its one writer is legato.guard.consent,
# in the same statement's transaction. Rows before migration 0022 are the statements then on
# file (what they replaced was not kept).
consent_history = Table(
    "consent_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", ID, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source", String(128), nullable=False),
    Column("stated_at", UTCDateTime),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("recorded_by", String(128)),  # the person (an API key's name) who recorded it; NULL for imports, replies and links
    Index("ix_consent_history_customer", "customer_id", "channel", "purpose", "id"),
)

# Global suppression and do-not-contact lists: a listed customer id, e-mail address or phone
# number receives no marketing on any channel, whatever its consents say.
suppressions = Table(
    "suppressions",
    metadata,
    # customer | email | phone: no marketing on any channel (the do-not-contact list);
    # undeliverable: an address or number that hard-bounced, which no message reaches
    Column("kind", String(16), primary_key=True),
    Column("value", String(320), primary_key=True),  # in the one form of legato.channels (E.164, lower-cased e-mail)
    Column("reason", String(256), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False),
    Column("type", String(32), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("revenue", Float),
    Column("properties", JSON),
    # The import that brought the event (the ``event_batch`` counter in ``settings``, one per
    # import, in commit order): the learning step credits outcomes that arrived after their
    # decision settled (legato.learn.attribution.credit_late). NULL before migration 0014.
    Column("batch", Integer),
    Index("ix_events_customer_time", "customer_id", "occurred_at"),
    Index("ix_events_type_time", "type", "occurred_at"),
    Index("ix_events_batch", "batch"),
)

traits = Table(
    "traits",
    metadata,
    Column("customer_id", ID, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("first_purchase_at", UTCDateTime),
    Column("last_purchase_at", UTCDateTime),
    Column("last_event_at", UTCDateTime),
    Column("purchase_count", Integer, nullable=False, default=0),
    Column("lifetime_spend", Float, nullable=False, default=0.0),
    Column("purchases_30d", Integer, nullable=False, default=0),
    Column("revenue_30d", Float, nullable=False, default=0.0),
    Column("purchases_90d", Integer, nullable=False, default=0),
    Column("revenue_90d", Float, nullable=False, default=0.0),
    # Model scores (legato.learn.scoring): probability of a purchase / a visit in the next
    # horizon, written by the latest fitted model; NULL until a model has scored the customer.
    Column("purchase_propensity", Float),
    Column("visit_propensity", Float),
    Index("ix_traits_last_purchase", "last_purchase_at"),
)

# Engine-wide values such as the instant the windowed traits were last rolled forward.
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# --- agents, decisions and delivery ----------------------------------------------------

agents = Table(
    "agents",
    metadata,
    Column("id", ID, primary_key=True),
    Column("trust_stage", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # store.status.AgentStatus
    Column("updated_at", UTCDateTime, nullable=False),
    check("agents", "status"),
)

# Fitted customer-score models (purchase and visit propensity), one row per fit.
score_models = Table(
    "score_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("trained_at", UTCDateTime, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("state", JSON, nullable=False),
    Index("ix_score_models_name_trained", "name", "trained_at"),
)

policy_states = Table(
    "policy_states",
    metadata,
    Column("agent_id", ID, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("policy", String(64), nullable=False),
    Column("state", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Every playbook a cycle ran, once per distinct text (legato.store.playbook_versions): what
# review and dispatch render a decision's message from, whatever the file says later.
playbook_versions = Table(
    "playbook_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hash", String(64), nullable=False, unique=True),  # SHA-256 of text
    Column("text", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

# Each playbook a person uploaded over the HTTP API: which version (the text is stored once per
# distinct text in playbook_versions), who (the key's name) and when. The newest upload is the
# playbook in force of a server started without --playbook. Its one writer is
# legato.store.playbook_versions.
playbook_uploads = Table(
    "playbook_uploads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("playbook_versions.id"), nullable=False),
    Column("uploaded_by", String(128), nullable=False),
    Column("uploaded_at", UTCDateTime, nullable=False),
    Index("ix_playbook_uploads_version", "version_id"),
)

cycles = Table(
    "cycles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(16), nullable=False),  # store.status.CycleStatus
    Column("playbook_version_id", Integer, ForeignKey("playbook_versions.id")),  # NULL before migration 0010
    check("cycles", "status"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", Integer, ForeignKey("cycles.id"), nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("customer_id", ID, nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("action", String(256), nullable=False),
    Column("offer_id", ID),
    Column("creative_id", ID),
    Column("channel", String(32)),
    Column("send_at", UTCDateTime),
    Column("propensity", Float, nullable=False),
    Column("expected_value", Float),
    Column("holdout", Boolean, nullable=False),
    Column("findings", JSON, nullable=False),
    # What the cycle decided (store.status.Route) and never changes; ``status`` starts equal to it
    # and moves on (queued → scheduled → sent). CHECKs from store.status (migration 0011).
    Column("route", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("content_hash", String(64)),
    Column("approved_by", String(128)),
    # A reviewer's edit of this decision's message: {"subject", "title", "body"} templates
    # rendered in place of the creative's, plus who edited it (see legato.trust.review).
    Column("content_override", JSON),
    check("decisions", "status"),
    check("decisions", "route"),
    # The playbook the decision was made with (its cycle's): its message is rendered from this
    # version's creative, offer and brand. NULL for decisions made before migration 0010.
    Column("playbook_version_id", Integer, ForeignKey("playbook_versions.id")),
    # What the policy saw (float32 features) and, once the attribution window has closed,
    # what came of it: the learning loop reads these instead of recomputing stale features.
    Column("context", LargeBinary),
    Column("action_index", Integer),
    # The actions the policy could choose from for this customer (bit k = action k, packed
    # little-endian), NULL when it could choose any: off-policy evaluation asks a candidate
    # the same question.
    Column("allowed_actions", LargeBinary),
    Column("reward", Float),
    Column("visited", Boolean),
    Column("purchased", Boolean),
    Column("revenue", Float),
    Column("unsubscribed", Boolean),
    Column("complained", Boolean),
    Column("opened", Boolean),
    Column("clicked", Boolean),
    Column("settled_at", UTCDateTime),
    # What the metrics are keyed by besides the columns above (legato.monitor.metrics): the
    # agent's objective and the customer's lifecycle stage when decided. NULL before migration 0027.
    Column("objective", ID),
    Column("segment", ID),
    # The decision search reads newest first by (decided_at, id) off these (migration 0018: id
    # last, or PostgreSQL sorts a whole cycle, decided at one instant, for every page).
    Index("ix_decisions_agent_time", "agent_id", "decided_at", "id"),
    Index("ix_decisions_agent_settled", "agent_id", "settled_at"),
    Index("ix_decisions_customer_time", "customer_id", "decided_at", "id"),
    Index("ix_decisions_time", "decided_at", "id"),
    # One decision per customer, agent and cycle: a partition finds its own rows by this key
    # (not by ids read before inserting), and a partition run twice cannot decide twice.
    Index("ux_decisions_cycle_agent_customer", "cycle_id", "agent_id", "customer_id", unique=True),
)

# A cycle's work per agent, in customer-id ranges (low exclusive, high inclusive) that can
# run independently; a partition is "done" in the same transaction that writes its decisions.
cycle_partitions = Table(
    "cycle_partitions",
    metadata,
    Column("cycle_id", Integer, ForeignKey("cycles.id"), primary_key=True),
    Column("agent_id", ID, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("low", ID, nullable=False),
    Column("high", ID, nullable=False),
    Column("status", String(16), nullable=False),  # pending | done (legato.cycle.partitions.PartitionStatus)
    Column("decisions", Integer),
    Column("finished_at", UTCDateTime),
    CheckConstraint("status IN ('pending', 'done')", name="status"),
)

# What an agent's plan step of a cycle decided, written in the plan's own transaction: a
# cycle resumed after a crash continues with this stage and policy version and this budget
# cut (written with the reservation) instead of learning, stop-lossing or reserving again.
cycle_agents = Table(
    "cycle_agents",
    metadata,
    Column("cycle_id", Integer, ForeignKey("cycles.id"), primary_key=True),
    Column("agent_id", ID, primary_key=True),
    Column("stage", Integer, nullable=False),  # after the stop-loss
    Column("policy_version", Integer, nullable=False),  # the version the partitions decide with
    Column("budget_cut", JSON),  # legato.cycle.budget.BudgetCut; NULL until the budget is allocated
    Column("planned_at", UTCDateTime, nullable=False),
)

# Leases: one named lease (the cycle's) held by one process at a time (legato.cycle.lease).
# ``token`` is NULL when nobody holds it; a holder renews ``expires_at`` while it works.
# Times are the wall clock's, never a simulated cycle time.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token", String(36)),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("acquired_at", UTCDateTime),
    Column("renewed_at", UTCDateTime),
    Column("expires_at", UTCDateTime),
    Column("cycle_id", Integer),  # the cycle its holder runs, once it knows
)

# The schedule slots cycles ran (legato.cycle.slots): an agent's slot is recorded once, with
# the cycle that started for it, in that cycle's first transaction; a second worker that saw
# the same slot due cannot record it again, so the slot runs once.
cycle_slots = Table(
    "cycle_slots",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("slot_at", UTCDateTime, primary_key=True),  # the slot's instant (UTC), legato.playbook.schedule
    Column("cycle_id", Integer, ForeignKey("cycles.id"), nullable=False),
    Index("ix_cycle_slots_cycle_id", "cycle_id"),
)

# What a cycle took from an agent's daily budget, taken before any of its sends is written so
# that two cycles of the same day cannot both spend what is left.
budget_reservations = Table(
    "budget_reservations",
    metadata,
    Column("cycle_id", Integer, ForeignKey("cycles.id"), primary_key=True),
    Column("agent_id", ID, primary_key=True),
    Column("day", UTCDateTime, nullable=False),  # the UTC day start the budget is for
    Column("sends", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_budget_reservations_agent_day", "agent_id", "day"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The message's own id, a random UUID unique across databases: what transports and
    # providers see and the provider's idempotency key (legato.deliver.outbox writes it).
    Column("message_id", String(36), nullable=False, unique=True),
    Column("decision_id", Integer, ForeignKey("decisions.id"), nullable=False, unique=True),
    Column("customer_id", ID, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("send_at", UTCDateTime, nullable=False),
    # store.status.OutboxStatus: pending | claimed | sent | retry | dead | cancelled | in_doubt
    Column("status", String(16), nullable=False),
    Column("payload", JSON),
    Column("attempts", Integer, nullable=False, default=0),  # attempts begun (counted when claimed)
    Column("sent_at", UTCDateTime),
    Column("error", Text),  # the last attempt's error (retry) or why the message is dead
    # The lease of the dispatcher that claimed the message (status claimed): its worker id and
    # when the claim lapses, after which another dispatcher may claim it again.
    Column("claimed_by", String(128)),
    Column("lease_expires_at", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),  # status retry: when it is due again (backoff)
    Column("provider_id", String(255)),  # the id the transport or provider gave the sent message
    # The hand-over protocol (legato.deliver.outbox.hand_over): set, durably, just before a
    # message is handed to a provider that does not deduplicate, cleared with its result. A
    # claim whose holder died with this set is in doubt: the provider may have it.
    Column("handed_over_at", UTCDateTime),
    Column("in_doubt_at", UTCDateTime),  # when it was found in doubt (kept after a resend: the record)
    # store.status.DeliveryStatus: what the provider reported after it took the message
    # (delivered | opened | failed; NULL until a report comes), never taken back.
    Column("delivery", String(16)),
    Index("ix_outbox_customer_send", "customer_id", "send_at"),
    Index("ix_outbox_status_send", "status", "send_at"),
    Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
    check("outbox", "status"),
    check("outbox", "delivery"),
)

# The requests a provider sent that Legato acted on, by the provider's own id of each (Twilio's
# MessageSid of an incoming text), once per subject (the customer it was handled for; '' for a
# number no customer has): a provider retrying a webhook it thinks unanswered finds its receipt
# and changes nothing. Written only by legato.store.receipts, in the transaction of the effect.
provider_receipts = Table(
    "provider_receipts",
    metadata,
    Column("provider", String(16), primary_key=True),
    Column("receipt", String(128), primary_key=True),
    Column("subject", ID, primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("inbound_message_id", Integer),  # the inbound message it became, if one was recorded
)

# What customers write back (replies or unprompted): classified, acted on at once where the
# law says so (STOP, HELP), and waiting for a person where it needs one (``status`` open).
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", ID, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("text", Text, nullable=False),
    Column("sentiment", Float, nullable=False),
    Column("intents", JSON, nullable=False),
    Column("action", String(32), nullable=False),  # opted_out | helped | escalated | recorded
    Column("reason", String(64)),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # store.status.InboundStatus
    Column("due_at", UTCDateTime),
    Column("handled_by", String(128)),
    Column("handled_at", UTCDateTime),
    Column("note", Text),
    Index("ix_inbound_messages_queue", "status", "priority", "received_at"),
    Index("ix_inbound_messages_customer", "customer_id", "received_at"),
    check("inbound_messages", "status"),
)

review_items = Table(
    "review_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # What a person reviews: a proposed decision, an inbound conversation, or (with neither)
    # an agent-level finding such as a fairness audit breach; ``kind`` says which.
    Column("kind", String(16), nullable=False, server_default="decision"),  # store.status.ReviewKind
    Column("decision_id", Integer, ForeignKey("decisions.id"), unique=True),
    Column("inbound_message_id", Integer, ForeignKey("inbound_messages.id"), unique=True),
    Column("agent_id", ID),
    Column("evidence", JSON),
    Column("reason", String(64), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # store.status.ReviewStatus
    Column("created_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime),
    Column("assigned_role", String(64)),
    Column("decided_by", String(128)),
    Column("decided_at", UTCDateTime),
    Column("content_hash", String(64)),
    Index("ix_review_items_agent_decided", "agent_id", "decided_at"),
    check("review_items", "status"),
    check("review_items", "kind"),
)
# The queue is read "highest priority first, oldest first": the index has to say DESC on
# priority alone, or the database sorts every open item of the top priority to find 100.
Index(
    "ix_review_items_queue",
    review_items.c.status,
    review_items.c.priority.desc(),
    review_items.c.created_at,
    review_items.c.id,
)

# How many review items there are per (status, kind, agent, role, reason, priority), as deltas
# the queue's writers append in their own transactions (legato.trust.review.counts; migration
# 0019): a million open items have their totals without being counted.
review_counts = Table(
    "review_counts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("agent_id", ID),
    Column("assigned_role", String(64)),
    Column("reason", String(64), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("n", Integer, nullable=False),  # items that entered this key (negative: left it)
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("before_hash", String(64)),
    Column("after_hash", String(64)),
    Index("ix_audit_log_entity", "entity", "entity_id"),
    # Track records count review actions (rejections, escalations) and stop-loss breaches
    # over a window without reading the whole log.
    Index("ix_audit_log_action_at", "action", "at"),
)

# --- the HTTP API -----------------------------------------------------------------------

# API keys (legato.store.api_keys is the one writer): only the SHA-256 of a key is kept, so
# the table leaks nothing a caller could use; ``prefix`` is what lists show to tell keys apart.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),  # store.status.KeyRole
    Column("prefix", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("revoked_at", UTCDateTime),
    check("api_keys", "role"),
)
# One live key per name: a reviewer's name is the identity the audit log records.
Index("uq_api_keys_live_name", api_keys.c.name, unique=True, sqlite_where=api_keys.c.revoked_at.is_(None), postgresql_where=api_keys.c.revoked_at.is_(None))

# What a state-changing request answered, by (key, Idempotency-Key): the same request sent
# again gets the same answer without doing the work twice (legato.api.idempotency).
idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("key_id", Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),  # SHA-256 of method, path and body
    Column("status_code", Integer),  # NULL while the first request is still being answered
    Column("response", Text),
    Column("created_at", UTCDateTime, nullable=False),
)

# Segment's identities (legato.store.tracking is the one writer): an id that an alias call, or a
# call carrying both a userId and an anonymousId, linked to the customer it stands for.
identity_links = Table(
    "identity_links",
    metadata,
    Column("alias", ID, primary_key=True),  # a previousId or an anonymousId
    Column("customer_id", ID, nullable=False),
    Column("linked_at", UTCDateTime, nullable=False),
    Column("source", String(16), nullable=False),  # alias (an alias call) or call (a call with both ids)
    Index("ix_identity_links_customer_id", "customer_id"),
)

# The messageIds of Segment calls applied that have no row of their own to tell a repeat by
# (identify, group, alias; a track's messageId is its event's id): a repeated call changes nothing.
seen_messages = Table(
    "seen_messages",
    metadata,
    Column("message_id", String(128), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

# Alerts the monitors raised (legato.monitor.alerts is the one writer): one row per incident
# (``incident`` names it, e.g. ``stop_loss:winback``), open until it clears. Delivering them
# (webhook, e-mail, log; issue 14 part 4) reads the rows and stamps ``delivered_at`` and
# ``cleared_delivered_at``; a repeat of an open incident only counts in ``repeats``.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # store.status.AlertKind
    Column("agent_id", ID),
    Column("status", String(16), nullable=False),  # store.status.AlertStatus
    Column("summary", Text, nullable=False),
    Column("detail", JSON, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("repeats", Integer, nullable=False, server_default="0"),
    Column("cleared_at", UTCDateTime),
    Column("cleared_by", String(128)),
    Column("delivered_at", UTCDateTime),
    Column("cleared_delivered_at", UTCDateTime),
    check("alerts", "status"),
    check("alerts", "kind"),
)
# One open alert per incident: the database refuses a second, whoever raises it.
Index("uq_alerts_open_incident", alerts.c.incident, unique=True, sqlite_where=alerts.c.status == "open", postgresql_where=alerts.c.status == "open")

# Each alert's (and follow-up's) delivery to each destination (legato.monitor.alert_delivery is
# the one writer): claimed before it is sent, stamped sent once the destination accepted it, so
# a rerun or a killed deliverer never sends it there twice and never drops it.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False),
    Column("phase", String(16), nullable=False),  # store.status.AlertPhase
    Column("destination", String(320), nullable=False),  # "log", "slack", "email:ops@shop.example"
    Column("status", String(16), nullable=False),  # store.status.AlertDeliveryStatus
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_until", UTCDateTime),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("alert_id", "phase", "destination"),
    check("alert_deliveries", "status"),
    check("alert_deliveries", "phase"),
)
Index("ix_alert_deliveries_status_due_at", alert_deliveries.c.status, alert_deliveries.c.due_at)

# Each anomaly a KPI series showed (legato.monitor.anomaly is the one writer): the series, the
# day, what was observed and the range expected, once per (agent, series, day).
anomalies = Table(
    "anomalies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", ID, nullable=False),
    Column("series", String(64), nullable=False),
    Column("day", String(10), nullable=False),
    Column("observed", Float, nullable=False),
    Column("expected", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("sample", Float, nullable=False),  # the day's denominator (sends), or 0 for a count
    Column("found_at", UTCDateTime, nullable=False),
    Column("review_item_id", Integer),
    UniqueConstraint("agent_id", "series", "day"),
)

# The KPI counts, kept as they happen (legato.monitor.metrics is the one writer): each state change
# adds to its key in its own transaction (an upsert, value += n), so a report reads these rows
# instead of rescanning decisions. Every count is keyed by its decision: the UTC day the decision
# was made, its agent, objective, channel, creative, offer and segment (the customer's lifecycle
# stage then), '' where the decision has none. ``arm`` splits what settled decisions brought
# (sent | holdout | control | unsent); ``reason`` splits the suppressed. The primary key starts
# (agent, name, day): a series is one index range (migration 0027).
metrics = Table(
    "metrics",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("name", String(32), primary_key=True),  # monitor.metrics.Measure
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("objective", ID, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("creative", ID, primary_key=True),
    Column("offer", ID, primary_key=True),
    Column("segment", ID, primary_key=True),
    Column("arm", String(8), primary_key=True),
    Column("reason", String(128), primary_key=True),
    Column("value", Float, nullable=False),
)

# The same counts summed over the breakdown (per agent, name, day, arm, reason), kept by the same
# writer in the same transactions (migration 0030): a report without a breakdown and a series
# read these, about 30 rows per agent and day, instead of every key.
metric_totals = Table(
    "metric_totals",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("arm", String(8), primary_key=True),
    Column("reason", String(128), primary_key=True),
    Column("value", Float, nullable=False),
)

# The same counts summed per breakdown member (a creative, offer, channel or segment) and day,
# kept by the same writer in the same transactions (migration 0031): ``legato report kpis --by``
# reads these (a few hundred rows per agent and day) instead of grouping every key. The key
# starts (dimension, agent, member, name, arm, reason) so a period's totals per member are one
# index-ordered aggregate, with no sort.
metric_groups = Table(
    "metric_groups",
    metadata,
    Column("dimension", String(16), primary_key=True),  # creative | offer | channel | segment (monitor.kpis.BY)
    Column("agent_id", ID, primary_key=True),
    Column("grp", ID, primary_key=True),  # the member: '' for decisions without one
    Column("name", String(32), primary_key=True),
    Column("arm", String(8), primary_key=True),
    Column("reason", String(128), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,  # the key is the table: a read in its order touches no second b-tree
)

# Each channel's token bucket (its playbook rate_limit), shared by every worker through the
# store: written only by legato.store.rate_buckets. Times are seconds since the epoch by the
# workers' clocks (a rate is wall-clock time, whatever time a dispatch simulates).
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),  # messages that may go now (fractional: refilled continuously)
    Column("refilled_at", Float, nullable=False),  # when tokens was last brought up to date
    Column("hold_until", Float, nullable=True),  # the provider asked every sender to wait until then (a 429)
)
