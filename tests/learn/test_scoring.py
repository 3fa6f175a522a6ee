"""Customer scores: trained from the store's own history, written to traits, used by segments and cycles."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.audience.segments import segment_sample
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.learn.propensity import PurchasePropensity
from legato.learn.scoring import FEATURES, PRODUCT_SIZE, ModelSize, refresh_if_due, refresh_scores, scores_in_use, snapshot
from legato.validation import parse_playbook
from legato.playbook.models import ScoringSettings
from legato.store.ingest import import_customers, import_events
from legato.store.schema import score_models, traits
from tests.world import AT, PLAYBOOK

N = 1_200
# A small model: the fits are what take time, and these tests judge ranking, not polish.
SMALL = ModelSize(rounds=30, folds=2)


def store_with_habits(engine: Engine) -> np.ndarray:
    """Customers whose chance to buy in any 30 days grows with how often they bought before.

    Returns the per-customer habit (purchases per 30 days) the events were drawn from.
    """
    rng = np.random.default_rng(3)
    ids = [f"k{i:04d}" for i in range(N)]
    start = AT - timedelta(days=240)
    import_customers(
        engine,
        pa.table({"id": ids, "email": [f"{c}@test.example" for c in ids], "time_zone": ["UTC"] * N, "tier": ["gold"] * N}),
        attribute_types={"tier": "string"},
        clock=FixedClock(start),
    )
    habit = rng.choice([0.02, 0.1, 0.6], size=N)
    rows: dict[str, list] = {"id": [], "customer_id": [], "type": [], "occurred_at": [], "revenue": []}
    for i, rate in enumerate(habit):
        count = rng.poisson(rate * 8)  # 240 days = 8 periods of 30 days
        for j, day in enumerate(np.sort(rng.uniform(0, 240, size=count))):
            rows["id"].append(f"e{i}-{j}")
            rows["customer_id"].append(ids[i])
            rows["type"].append("purchase")
            rows["occurred_at"].append((start + timedelta(days=float(day))).isoformat())
            rows["revenue"].append(float(rng.uniform(10, 90)))
    import_events(engine, pa.table(rows), clock=FixedClock(AT))
    return habit


def test_snapshot_sees_only_events_before_its_instant(engine: Engine) -> None:
    store_with_habits(engine)
    with engine.connect() as c:
        ids_now, now_x = snapshot(c, AT)
        ids_then, then_x = snapshot(c, AT - timedelta(days=100))
    assert now_x.shape == (N, len(FEATURES)) and list(ids_now) == list(ids_then)
    purchases = FEATURES.index("purchases")
    assert (now_x[:, purchases] >= then_x[:, purchases]).all()
    assert now_x[:, purchases].sum() > then_x[:, purchases].sum()
    never = now_x[:, purchases] == 0
    assert np.isnan(now_x[never, FEATURES.index("days_since_last_purchase")]).all()


def test_purchase_propensity_ranks_frequent_buyers_first_and_is_a_field(engine: Engine) -> None:
    habit = store_with_habits(engine)
    [report] = refresh_scores(engine, AT, ScoringSettings(horizon_days=30), {"purchase_propensity"}, size=SMALL)
    assert report.skipped is None and report.scored == N
    assert report.auc is not None and report.auc > 0.65
    with engine.connect() as c:
        stored = dict(c.execute(sa.select(traits.c.customer_id, traits.c.purchase_propensity)).all())
        model = c.execute(sa.select(score_models)).one()
    scores = np.array([stored[f"k{i:04d}"] for i in range(N)])
    assert ((scores >= 0) & (scores <= 1)).all()
    # The true 30-day purchase chance is 1 - exp(-rate): frequent buyers must score far higher.
    assert scores[habit == 0.6].mean() > 2 * scores[habit == 0.02].mean()
    assert model.name == "purchase_propensity" and model.metrics["auc"] == report.auc

    pb = parse_playbook(PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
        "objectives:", 'segments: {likely_buyers: "purchase_propensity > 0.3"}\nobjectives:'
    ))
    assert segment_sample(engine, pb, "likely_buyers", AT).size == int((scores > 0.3).sum()) > 0


def test_scoring_as_of_a_past_instant_measures_and_never_replaces_the_live_scores(engine: Engine) -> None:
    """`score --at` in the past once overwrote the scores the cycle used with older ones."""
    store_with_habits(engine)
    refresh_scores(engine, AT, ScoringSettings(horizon_days=30), {"purchase_propensity"}, size=SMALL)
    with engine.connect() as c:
        live = dict(c.execute(sa.select(traits.c.customer_id, traits.c.purchase_propensity)).all())
    [past] = refresh_scores(engine, AT - timedelta(days=60), ScoringSettings(horizon_days=30), {"purchase_propensity"}, size=SMALL)
    assert past.kept_live_from == AT and past.scored == 0 and past.auc is not None  # measured, not written
    with engine.connect() as c:
        assert dict(c.execute(sa.select(traits.c.customer_id, traits.c.purchase_propensity)).all()) == live
        assert c.execute(sa.select(sa.func.count()).select_from(score_models)).scalar_one() == 1


def test_too_little_history_is_reported_and_nothing_is_written(engine: Engine) -> None:
    ids = [f"k{i}" for i in range(30)]
    import_customers(engine, pa.table({"id": ids, "tier": ["gold"] * 30}), attribute_types={"tier": "string"}, clock=FixedClock(AT - timedelta(days=90)))
    [report] = refresh_scores(engine, AT, ScoringSettings(), {"visit_propensity"})
    assert report.scored == 0 and "at least 50 of each are needed" in (report.skipped or "")
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(score_models)).scalar_one() == 0
        assert c.execute(sa.select(sa.func.count()).where(traits.c.visit_propensity.is_not(None))).scalar_one() == 0


def test_scores_refit_only_those_the_playbook_uses_and_only_when_stale(engine: Engine) -> None:
    store_with_habits(engine)
    plain = parse_playbook(PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}"))
    assert scores_in_use(plain) == set()
    assert refresh_if_due(engine, plain, AT, size=SMALL) == []
    using = parse_playbook(
        PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
        .replace("'tier = \"gold\"', ", "'tier = \"gold\"', \"purchase_propensity\", ")
    )
    assert scores_in_use(using) == {"purchase_propensity"}
    first = refresh_if_due(engine, using, AT, size=SMALL)
    assert [s.name for s in first] == ["purchase_propensity"] and first[0].skipped is None
    assert refresh_if_due(engine, using, AT + timedelta(days=1), size=SMALL) == []  # a day old; refit weekly
    later = refresh_if_due(engine, using, AT + timedelta(days=8), size=SMALL)
    assert [s.name for s in later] == ["purchase_propensity"]
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(score_models)).scalar_one() == 2


def test_the_model_has_the_size_asked_for_and_the_product_size_by_default(engine: Engine) -> None:
    store_with_habits(engine)
    refresh_scores(engine, AT, ScoringSettings(), {"purchase_propensity"}, size=ModelSize(rounds=7, folds=2, max_training_rows=500))
    with engine.connect() as c:
        row = c.execute(sa.select(score_models)).one()
    assert row.rows == 500  # the training sample was capped
    stored = PurchasePropensity.from_state(row.state)
    assert (stored.max_iter, stored.cv) == (7, 2)
    assert len(stored.model_.calibrated_classifiers_) == 2  # one calibrated booster per fold
    booster = stored.model_.calibrated_classifiers_[0].estimator
    assert booster.n_iter_ == 7
    # The product's size when nobody says otherwise: what the cycle gets.
    assert (PRODUCT_SIZE.rounds, PRODUCT_SIZE.folds, PRODUCT_SIZE.max_training_rows) == (200, 3, 200_000)
    assert refresh_scores.__kwdefaults__["size"] is PRODUCT_SIZE and refresh_if_due.__kwdefaults__["size"] is PRODUCT_SIZE
    with pytest.raises(ValueError, match="folds >= 2"):
        ModelSize(folds=1)


def test_a_customer_imported_late_counts_from_their_history_a_new_one_does_not(engine: Engine) -> None:
    ids = ["late_with_history", "new_signup"]
    import_customers(engine, pa.table({"id": ids, "tier": ["gold", "gold"]}), attribute_types={"tier": "string"}, clock=FixedClock(AT))
    import_events(
        engine,
        pa.table({"id": ["old", "recent"], "customer_id": ids, "type": ["purchase", "purchase"],
                  "occurred_at": [(AT - timedelta(days=200)).isoformat(), (AT - timedelta(days=5)).isoformat()], "revenue": [10.0, 20.0]}),
        clock=FixedClock(AT),
    )
    with engine.connect() as c:
        then_ids, then_x = snapshot(c, AT - timedelta(days=30))
        now_ids, _ = snapshot(c, AT)
    assert then_ids.tolist() == ["late_with_history"] and then_x[0, FEATURES.index("purchases")] == 1
    assert now_ids.tolist() == ids


def test_a_cycle_does_not_retry_a_score_without_enough_history_until_it_is_due(engine: Engine, tmp_path: Path) -> None:
    ids = [f"k{i}" for i in range(30)]
    import_customers(engine, pa.table({"id": ids, "tier": ["gold"] * 30}), attribute_types={"tier": "string"}, clock=FixedClock(AT - timedelta(days=90)))
    using = parse_playbook(
        PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
        .replace("'tier = \"gold\"', ", "'tier = \"gold\"', \"purchase_propensity\", ")
    )
    first = run_cycle(engine, using, FixedClock(AT), {})
    assert [s.skipped is not None for s in first.scores] == [True]
    assert run_cycle(engine, using, FixedClock(AT + timedelta(hours=20)), {}).scores == []
    assert len(run_cycle(engine, using, FixedClock(AT + timedelta(days=1)), {}).scores) == 1  # tried again daily
