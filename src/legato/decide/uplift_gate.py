"""The uplift gate: "is contacting this customer better than doing nothing?"

Before the policy picks an offer, creative, channel and time, the gate keeps only the
customers whose predicted uplift — the change in the objective's primary outcome (a visit,
or a purchase for conversion and revenue objectives) that a message causes — is above the
playbook's ``min_uplift``, optionally only the top ``top_share`` of them. The others get
"do nothing" with reason ``uplift_gate`` and the budget goes to customers the agent moves.

The model is refit each cycle from the agent's own settled decisions: customers it sent to
(treated) against its random holdout (control) less the held-out customers no message could
have reached, each described by the features the policy saw. The holdout makes the control
arm a randomized sample; the treated arm is the policy's
choice, which depends on those same features (and on consent), so comparing them given the
features is the usual "no unmeasured confounders" assumption of the two-model approach
(Hansotia & Rukstales, 2002; Künzel et al., 2019) or of the class-transformation approach
(Jaskowski & Jaroszewicz, 2012). Until both arms have ``min_samples`` settled decisions with
both outcomes present, the gate is open and says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.decide.features import decode_context
from legato.learn.uplift import ClassTransformationUplift, TwoModelUplift
from legato.playbook.models import Agent, Metric, Objective, UpliftGateSettings
from legato.store.schema import decisions
from legato.store.status import DecisionStatus

FloatArray = npt.NDArray[np.float64]
MAX_TRAINING_ROWS = 200_000  # the most recent ones; older behaviour matters less and the fit stays fast


@dataclass
class UpliftGate:
    settings: UpliftGateSettings
    model: TwoModelUplift | ClassTransformationUplift | None
    treated: int
    control: int
    reason: str | None  # why the gate is open (no model), else None

    @property
    def is_open(self) -> bool:
        return self.model is None

    def passes(self, features: FloatArray) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """Per customer: whether contacting is worth it, and the predicted uplift (NaN when open)."""
        n = features.shape[0]
        if self.model is None or n == 0:
            return np.ones(n, dtype=bool), np.full(n, np.nan)
        uplift = np.asarray(self.model.predict_uplift(features), dtype=np.float64)
        passes = uplift > self.settings.min_uplift
        if self.settings.top_share is not None:
            # The top share of this batch by predicted uplift (ties broken by position).
            keep = int(np.floor(self.settings.top_share * n))
            ranked = np.argsort(-uplift, kind="stable")[:keep]
            top = np.zeros(n, dtype=bool)
            top[ranked] = True
            passes &= top
        return passes, uplift


HOLDOUT_UNREACHABLE = "holdout_unreachable"  # the engine's finding on such holdout decisions


def _findings(value: Any) -> list[str]:
    """A decision's findings, whether the driver returns the JSON parsed or as text."""
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value or [])


def outcome_column(objective: Objective) -> sa.ColumnElement[bool]:
    """The binary outcome the gate predicts: a purchase for conversion and revenue objectives, else a visit."""
    primary = objective.kpis[0].metric
    if primary in (Metric.conversion_rate, Metric.revenue, Metric.revenue_per_send):
        return decisions.c.purchased
    return decisions.c.visited


def fit_gate(connection: Connection, agent: Agent, objective: Objective, now: datetime, settings: UpliftGateSettings) -> UpliftGate:
    """The gate from the agent's settled decisions of the last ``settings.history_days``."""
    outcome = outcome_column(objective)
    treated = decisions.c.status == DecisionStatus.SENT
    rows = connection.execute(
        sa.select(decisions.c.context, decisions.c.holdout, outcome, decisions.c.findings)
        .where(
            decisions.c.agent_id == agent.id,
            decisions.c.settled_at.is_not(None),
            decisions.c.decided_at >= now - timedelta(days=settings.history_days),
            decisions.c.context.is_not(None),
            sa.or_(decisions.c.holdout, treated),
        )
        .order_by(decisions.c.id.desc())
        .limit(MAX_TRAINING_ROWS)
    ).all()
    width = 4 * (len(agent.features) + 1)
    # Decisions made with other features cannot teach this gate; held-out customers no message
    # could have reached are not the control of those who were sent one.
    rows = [r for r in rows if len(r[0]) == width and not (r[1] and HOLDOUT_UNREACHABLE in _findings(r[3]))]
    arm = np.array([0 if r[1] else 1 for r in rows], dtype=np.int64)
    y = np.array([bool(r[2]) for r in rows], dtype=np.int64)
    n_treated, n_control = int(arm.sum()), int(len(arm) - arm.sum())
    short = [
        f"{label} has {count:,} settled decisions ({settings.min_samples:,} needed)"
        for label, count in (("the treated arm", n_treated), ("the holdout", n_control))
        if count < settings.min_samples
    ]
    if short:
        return UpliftGate(settings, None, n_treated, n_control, "; ".join(short))
    for label, value in (("holdout", 0), ("treated", 1)):
        outcomes = y[arm == value]
        if outcomes.min() == outcomes.max():
            return UpliftGate(settings, None, n_treated, n_control, f"every {label} customer had the same outcome")
    features = decode_context([r[0] for r in rows], len(agent.features) + 1)
    model_type = TwoModelUplift if settings.model == "two_model" else ClassTransformationUplift
    model = model_type(min_samples_leaf=max(20, settings.min_samples // 10)).fit(features, arm, y)
    return UpliftGate(settings, model, n_treated, n_control, None)
