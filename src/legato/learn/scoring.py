"""Customer scores: how likely each customer is to buy (or visit) within the next horizon.

Each score is a :class:`~legato.learn.propensity.PurchasePropensity` model (calibrated
gradient boosting) trained from the store alone, in the usual "snapshot" design of churn and
buy-again models (e.g. Fader, Hardie & Lee, 2005, calibration/holdout periods):

- features describe each customer as of ``now - horizon`` from the events before it
  (purchase count and spend, recency and tenure, purchases, visits and engagement in the last
  30 and 90 days);
- the label is whether the customer bought (visited) in ``[now - horizon, now)``;
- the fitted model then scores every customer from the same features as of ``now``.

Scores are written to ``traits.purchase_propensity`` and ``traits.visit_propensity``, so
segments, escalation rules and agent features use them like any trait
(``purchase_propensity > 0.3``). The fitted model, its training size and its held-out
quality (AUC, Brier score, base rate) are kept in ``score_models``; the cycle refits when the
latest model is older than the playbook's ``scoring.refit_days`` and only when something in
the playbook uses a score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sklearn.metrics import brier_score_loss, roc_auc_score
from sqlalchemy import Connection, Engine

from legato.audience.expr import ExpressionError, identifiers, parse
from legato.errors import LegatoError
from legato.learn.propensity import PurchasePropensity
from legato.playbook.models import Playbook, ScoringSettings
from legato.store.bulk import insert_many
from legato.clock import as_utc
from legato.store.schema import customers, events, score_models, settings, traits
from legato.store.traits import REFUND

FloatArray = npt.NDArray[np.float64]

# score name → event types that count as the outcome
SCORES: dict[str, tuple[str, ...]] = {
    "purchase_propensity": ("purchase",),
    "visit_propensity": ("visit", "purchase"),  # a purchase implies a visit
}
ENGAGEMENT = ("open", "click", "visit")
FEATURES = (
    "purchases",
    "spend",
    "days_since_last_purchase",
    "days_since_first_event",
    "days_since_last_event",
    "purchases_30d",
    "purchases_90d",
    "spend_90d",
    "visits_30d",
    "visits_90d",
    "engagements_90d",
)
SECONDS_PER_DAY = 86_400.0
_ATTEMPT_KEY = "scores.{}.attempted_at"  # settings key: when a fit last found too little history
RETRY_WITHOUT_MODEL = timedelta(days=1)


@dataclass(frozen=True)
class ModelSize:
    """How large each score's model is, which is what a fit's time is made of.

    A fit trains ``folds`` calibration boosters of ``rounds`` rounds each on at most
    ``max_training_rows`` customers, then as many again for the held-out quality check. The
    defaults are the product's; tests pass a small size, since the fits, not the store,
    are what take time.
    """

    rounds: int = 200  # boosting rounds, at PurchasePropensity's learning rate of 0.05
    folds: int = 3  # calibration folds (at least 2)
    max_training_rows: int = 200_000  # a random sample beyond this: the model does not improve, the fit slows down

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.folds < 2 or self.max_training_rows < 1:
            raise ValueError(f"a model needs rounds >= 1, folds >= 2 and max_training_rows >= 1, got {self}")

    def model(self, positives: int) -> PurchasePropensity:
        # Isotonic calibration overfits with few positives (Niculescu-Mizil & Caruana, 2005).
        method = "isotonic" if positives >= 1_000 else "sigmoid"
        return PurchasePropensity(method=method, cv=self.folds, max_iter=self.rounds)


PRODUCT_SIZE = ModelSize()


@dataclass(frozen=True)
class ScoreReport:
    name: str
    scored: int
    training_rows: int
    positives: int
    auc: float | None
    brier: float | None
    skipped: str | None = None
    # Not written: a later fit's scores are live (a fit as of a past instant is measured, never written over them).
    kept_live_from: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["kept_live_from"] = self.kept_live_from.isoformat() if self.kept_live_from else None
        return values


def scores_in_use(playbook: Playbook) -> set[str]:
    """The score names the playbook's segments, stages, audiences, features or rules mention."""
    texts = [*playbook.segments.values(), *(stage.when for stage in playbook.lifecycle)]
    for agent in playbook.agents:
        texts += [agent.audience, *agent.features, *(rule.when for rule in agent.escalation)]
    texts += [rule.when for rule in playbook.inbound.escalation]
    texts += [value.conflicts_when for value in playbook.values]
    used: set[str] = set()
    for source in texts:
        try:
            used |= identifiers(parse(source)) & SCORES.keys()
        except ExpressionError:
            continue  # `legato validate` reports it; there is nothing to score for a broken expression
    return used


def snapshot(connection: Connection, as_of: datetime) -> tuple[npt.NDArray[np.str_], FloatArray]:
    """Every customer's id and feature row (columns :data:`FEATURES`) from events before ``as_of``.

    Missing recencies (never bought, no event yet) stay NaN: gradient boosting learns a
    branch for "never" instead of confusing it with a made-up number of days.
    """
    before = events.c.occurred_at < as_of

    def window(days: int) -> sa.ColumnElement[bool]:
        return events.c.occurred_at >= as_of - timedelta(days=days)

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    purchase = events.c.type == "purchase"
    visit = events.c.type.in_(("visit", "purchase"))
    # Spend is net of refunds (stored as negative revenue), as lifetime_spend is.
    money = events.c.type.in_(("purchase", REFUND))
    spend = sa.func.coalesce(events.c.revenue, 0.0)
    per_customer = (
        sa.select(
            events.c.customer_id,
            count(purchase).label("purchases"),
            sa.func.sum(sa.case((money, spend), else_=0.0)).label("spend"),
            sa.func.max(sa.case((purchase, events.c.occurred_at))).label("last_purchase"),
            sa.func.min(events.c.occurred_at).label("first_event"),
            sa.func.max(events.c.occurred_at).label("last_event"),
            count(purchase & window(30)).label("purchases_30d"),
            count(purchase & window(90)).label("purchases_90d"),
            sa.func.sum(sa.case((money & window(90), spend), else_=0.0)).label("spend_90d"),
            count(visit & window(30)).label("visits_30d"),
            count(visit & window(90)).label("visits_90d"),
            count(events.c.type.in_(ENGAGEMENT) & window(90)).label("engagements_90d"),
        )
        .where(before)
        .group_by(events.c.customer_id)
        .subquery()
    )
    c = per_customer.c
    rows = connection.execute(
        sa.select(
            customers.c.id,
            c.purchases,
            c.spend,
            c.last_purchase,
            c.first_event,
            c.last_event,
            c.purchases_30d,
            c.purchases_90d,
            c.spend_90d,
            c.visits_30d,
            c.visits_90d,
            c.engagements_90d,
        )
        .select_from(customers.outerjoin(per_customer, per_customer.c.customer_id == customers.c.id))
        # Whoever was a customer then: created by that instant, or with history before it (a
        # store often imports customers long after their first purchase).
        .where(sa.or_(customers.c.created_at <= as_of, per_customer.c.customer_id.is_not(None)))
        .order_by(customers.c.id)
    ).all()
    if not rows:
        return np.array([], dtype=str), np.empty((0, len(FEATURES)))
    columns = list(zip(*rows, strict=True))
    ids = np.array(columns[0], dtype=str)

    def numbers(values: tuple[Any, ...]) -> FloatArray:
        return np.array([0.0 if v is None else float(v) for v in values])

    def days_since(values: tuple[Any, ...]) -> FloatArray:
        return np.array([np.nan if v is None else (as_of - v).total_seconds() / SECONDS_PER_DAY for v in values])

    matrix = np.column_stack(
        [
            numbers(columns[1]),
            numbers(columns[2]),
            days_since(columns[3]),
            days_since(columns[4]),
            days_since(columns[5]),
            *(numbers(columns[i]) for i in range(6, 12)),
        ]
    )
    return ids, matrix


def outcomes(connection: Connection, kinds: tuple[str, ...], start: datetime, end: datetime) -> set[str]:
    """Customers with an event of one of ``kinds`` in ``[start, end)``."""
    return set(
        connection.execute(
            sa.select(events.c.customer_id)
            .where(events.c.type.in_(kinds), events.c.occurred_at >= start, events.c.occurred_at < end)
            .distinct()
        ).scalars()
    )


def refresh_scores(
    engine: Engine,
    now: datetime,
    settings: ScoringSettings,
    names: set[str] | None = None,
    *,
    seed: int = 0,
    size: ModelSize = PRODUCT_SIZE,
) -> list[ScoreReport]:
    """Fit each score's model (of ``size``) on the last horizon and score every customer as of ``now``."""
    horizon = timedelta(days=settings.horizon_days)
    with engine.connect() as connection:
        train_ids, train_x = snapshot(connection, now - horizon)
        score_ids, score_x = snapshot(connection, now)
    rng = np.random.default_rng(seed)
    reports: list[ScoreReport] = []
    for name in sorted(names if names is not None else SCORES):
        with engine.connect() as connection:
            positive = outcomes(connection, SCORES[name], now - horizon, now)
        y = np.fromiter((i in positive for i in train_ids.tolist()), dtype=bool, count=len(train_ids)).astype(np.int64)
        report = _fit_and_score(engine, name, now, settings, size, train_x, y, score_ids, score_x, rng)
        reports.append(report)
    return reports


def _fit_and_score(
    engine: Engine,
    name: str,
    now: datetime,
    settings: ScoringSettings,
    size: ModelSize,
    train_x: FloatArray,
    y: npt.NDArray[np.int64],
    score_ids: npt.NDArray[np.str_],
    score_x: FloatArray,
    rng: np.random.Generator,
) -> ScoreReport:
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < settings.min_examples:
        why = (
            f"{positives} customers with the outcome and {negatives} without in the last {settings.horizon_days} days; "
            f"at least {settings.min_examples} of each are needed"
        )
        return ScoreReport(name, 0, len(y), positives, None, None, skipped=why)
    if len(y) > size.max_training_rows:
        keep = rng.choice(len(y), size=size.max_training_rows, replace=False)
        train_x, y = train_x[keep], y[keep]
        positives = int(y.sum())
    # A quarter is held out to report the model's quality; the model that scores is refit on all.
    held_out = rng.random(len(y)) < 0.25
    auc = brier = None
    if len(np.unique(y[held_out])) == 2 and len(np.unique(y[~held_out])) == 2:
        check = size.model(positives).fit(train_x[~held_out], y[~held_out])
        p = check.predict_proba(train_x[held_out])[:, 1]
        auc, brier = float(roc_auc_score(y[held_out], p)), float(brier_score_loss(y[held_out], p))
    model = size.model(positives).fit(train_x, y)
    scores = model.predict_proba(score_x)[:, 1] if len(score_x) else np.empty(0)
    with engine.begin() as connection:
        live = latest_model(connection, name)
        if live is not None and _aware(live.trained_at) > now:
            # Scoring "as of" an earlier instant (a backtest) must not replace what the cycle uses now.
            return ScoreReport(name, 0, len(y), positives, auc, brier, kept_live_from=_aware(live.trained_at))
        _write_scores(connection, name, score_ids, scores)
        connection.execute(
            sa.insert(score_models).values(
                name=name,
                trained_at=now,
                rows=len(y),
                metrics={"auc": auc, "brier": brier, "base_rate": float(y.mean()), "horizon_days": settings.horizon_days, "features": list(FEATURES)},
                state=model.state(),
            )
        )
    return ScoreReport(name, len(score_ids), len(y), positives, auc, brier)


def _write_scores(connection: Connection, name: str, ids: npt.NDArray[np.str_], scores: FloatArray) -> None:
    """One UPDATE … FROM a temporary table: a million single-row updates would take minutes."""
    staging = sa.Table(
        "score_staging",
        sa.MetaData(),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("score", sa.Float),
        prefixes=["TEMPORARY"],
    )
    # Created inside the caller's transaction: if anything fails, the rollback removes it too.
    staging.create(connection)
    insert_many(connection, staging, ["customer_id", "score"], list(zip(ids.tolist(), scores.tolist(), strict=True)))
    connection.execute(sa.update(traits).values({name: staging.c.score}).where(traits.c.customer_id == staging.c.customer_id))
    staging.drop(connection)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def latest_model(connection: Connection, name: str) -> Any:
    """The newest ``score_models`` row for ``name``, or None."""
    return connection.execute(
        sa.select(score_models).where(score_models.c.name == name).order_by(score_models.c.trained_at.desc(), score_models.c.id.desc()).limit(1)
    ).first()


def refresh_if_due(
    engine: Engine, playbook: Playbook, now: datetime, *, size: ModelSize = PRODUCT_SIZE
) -> list[ScoreReport]:
    """Refit the scores the playbook uses when their model is older than ``refit_days``.

    An attempt that found too little history is retried a day later, not every cycle: the
    snapshots it builds read the whole events table.
    """
    used = scores_in_use(playbook)
    if not used:
        return []
    every = timedelta(days=playbook.scoring.refit_days)
    with engine.connect() as connection:
        due = {name for name in used if _due(connection, name, now, every)}
    if not due:
        return []
    try:
        reports = refresh_scores(engine, now, playbook.scoring, due, size=size)
    except ValueError as exc:
        raise LegatoError(f"scoring failed: {exc}", hint="check the events imported (types, timestamps)") from exc
    with engine.begin() as connection:
        for report in reports:
            if report.skipped:
                key = _ATTEMPT_KEY.format(report.name)
                connection.execute(sa.delete(settings).where(settings.c.key == key))
                connection.execute(sa.insert(settings).values(key=key, value=now.isoformat()))
    return reports


def _due(connection: Connection, name: str, now: datetime, every: timedelta) -> bool:
    """A fitted model is refit every ``every``; without one, a fit is tried again daily (new
    history may have been imported since the last attempt found too little)."""
    row = latest_model(connection, name)
    if row is not None:
        return now - row.trained_at >= every
    attempted = connection.execute(sa.select(settings.c.value).where(settings.c.key == _ATTEMPT_KEY.format(name))).scalar()
    return attempted is None or now - as_utc(datetime.fromisoformat(attempted)) >= min(every, RETRY_WITHOUT_MODEL)
