"""The review queue: what a person approves, edits, rejects, escalates, withdraws or resolves.

One queue holds three kinds of item (``review_items.kind``):

- ``decision``: a message an agent proposes (or sent, for an after-the-fact audit sample).
  It is approved, edited, rejected, escalated or withdrawn.
- ``conversation``: a customer's reply that needs a person (:mod:`legato.trust.inbound`).
  There is no message of ours to approve: a person answers the customer and *resolves* the
  item with a note; agents leave the customer alone while it is open.
- ``finding``: something about an agent a person must look at, such as a fairness audit
  breach (:mod:`legato.monitor.fairness`). It is resolved with a note too.

All kinds share priority, due dates (the SLA per reason; an item not handled in time
expires and that is recorded), assignment by role and escalation.

Each function is one transaction over an :class:`~sqlalchemy.Engine` and writes one
append-only ``audit_log`` row (entity ``review_item``) whose ``before_hash``/``after_hash``
are the content hashes, so the log shows which content each person acted on.

**The content hash** of a decision is :func:`legato.deliver.render.variant_hash` of its
creative and offer, before personalization; a reviewer's edit replaces the creative's
subject/title/body with templates kept in ``decisions.content_override`` and the hash is
recomputed over them. An approval names the hash the reviewer saw, so content that changed
in between (an edit by someone else) is never approved unseen.

**State changes are compare-and-set**: each one updates the item only if it is still in
the state that was read, and fails as a whole otherwise, so two reviewers acting on the same
item at once cannot both win. Every error is a :class:`ReviewError` naming the item and
leaves nothing changed.

Modules: ``model`` (statuses, kinds, the item views), ``queue`` (reading), ``message``
(rendering and checking what a reviewer sees), ``actions`` (what a person does), ``due``
(SLA due dates and expiry). This package's names are re-exported here.
"""

from __future__ import annotations

from legato.trust.review.actions import (
    approve,
    edit,
    escalate,
    reject,
    resolve,
    withdraw,
)
from legato.trust.review.due import (
    assign_due_dates,
    due_at_for,
    expire_overdue,
)
from legato.trust.review.message import (
    PREVIEW_TOKEN,
)
from legato.trust.review.model import (
    APPROVED,
    AUDIT,
    CONVERSATION,
    CONVERSATION_SLA_HOURS,
    DECISION,
    DEFAULT_SLA_HOURS,
    EXPIRED,
    FINDING,
    KINDS,
    OPEN,
    REASON_CODES,
    REJECTED,
    RESOLVED,
    STATUSES,
    UNDECIDED,
    ItemDetail,
    QueueItem,
    ReviewConflict,
    ReviewError,
    ReviewForbidden,
    ReviewInvalid,
    ReviewNotFound,
)
from legato.trust.review.queue import (
    list_items,
    queue_query,
    show_item,
)

__all__ = ["APPROVED", "AUDIT", "CONVERSATION", "CONVERSATION_SLA_HOURS", "DECISION", "DEFAULT_SLA_HOURS", "EXPIRED", "FINDING", "ItemDetail", "KINDS", "OPEN", "PREVIEW_TOKEN", "QueueItem", "REASON_CODES", "REJECTED", "RESOLVED", "ReviewConflict", "ReviewError", "ReviewForbidden", "ReviewInvalid", "ReviewNotFound", "STATUSES", "UNDECIDED", "approve", "assign_due_dates", "due_at_for", "edit", "escalate", "expire_overdue", "list_items", "queue_query", "reject", "resolve", "show_item", "withdraw"]
