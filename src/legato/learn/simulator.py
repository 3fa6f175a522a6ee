"""A world to run agents against: customer responses fitted on the Hillstrom experiment.

The Hillstrom rows are a randomized experiment (each customer got the Mens e-mail, the
Womens e-mail or none, with probability 1/3), so a model of "visit within two weeks" fitted
on each arm's rows estimates every customer's response to every arm without confounding.
That part is real: one logistic regression per arm for visits and one for conversions, on
the customer columns of the file (scikit-learn), and each arm's mean spend of converters.

What the experiment does not measure is synthetic and stated here so nobody mistakes it for
data: how responses spread over time (baseline visits at a constant daily rate over the
two-week window; the e-mail's extra visits follow the send after an exponential delay with a
three-hour mean), a send-window effect (Web buyers respond 20% more in the evening, Phone
buyers 20% more in the morning), an offer effect (free shipping raises conversion after a
visit by 25%), fatigue (an e-mail within 7 days of the previous one has 30% less extra
effect) and list hygiene (0.2% of e-mails lead to an unsubscribe, 0.03% to a complaint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sklearn.linear_model import LogisticRegression

ARMS = ("none", "mens", "womens")
_ARM_OF_SEGMENT = {"No E-Mail": 0, "Mens E-Mail": 1, "Womens E-Mail": 2}
WINDOW_DAYS = 14  # Hillstrom tracked outcomes for two weeks after the e-mail
EVENING_HOUR = 17
UNSUBSCRIBE_RATE = 0.002
COMPLAINT_RATE = 0.0003
FATIGUE_DAYS = 7


@dataclass(frozen=True)
class Fault:
    """Trouble injected into the world: from ``start`` on, sends cause ``factor`` times the usual rate.

    ``unsubscribe_spike`` multiplies unsubscribes, ``complaint_spike`` complaints (what a
    broken template or a bought list does), so that monitors can be tested against a known fault.
    """

    kind: Literal["unsubscribe_spike", "complaint_spike"]
    start: datetime
    factor: float

    def applies(self, kind: str, at: datetime) -> bool:
        return self.kind == kind and at >= self.start


@dataclass(frozen=True)
class Sent:
    """Messages that went out, as arrays (one row a message)."""

    customer_id: npt.NDArray[np.str_]
    arm: npt.NDArray[np.int64]  # index into ARMS
    sent_at: npt.NDArray[np.datetime64]
    evening: npt.NDArray[np.bool_]
    offer: npt.NDArray[np.bool_]


def customer_features(rows: pa.Table) -> npt.NDArray[np.float64]:
    """The model's inputs from the Hillstrom customer columns (not the arm or outcomes)."""
    zip_code = rows.column("zip_code").to_numpy(zero_copy_only=False).astype(str)
    channel = rows.column("channel").to_numpy(zero_copy_only=False).astype(str)
    return np.column_stack(
        [
            rows.column("recency").to_numpy() / 12.0,
            np.log1p(rows.column("history").to_numpy()),
            rows.column("mens").to_numpy(),
            rows.column("womens").to_numpy(),
            rows.column("newbie").to_numpy(),
            zip_code == "Urban",
            zip_code == "Rural",
            channel == "Web",
            channel == "Phone",
        ]
    ).astype(np.float64)


@dataclass
class HillstromWorld:
    """Per-customer two-week response probabilities per arm, plus the synthetic dynamics above."""

    ids: npt.NDArray[np.str_]
    p_visit: npt.NDArray[np.float64]  # customers × arms
    p_convert: npt.NDArray[np.float64]  # customers × arms
    spend: npt.NDArray[np.float64]  # mean spend of a conversion, per arm
    web: npt.NDArray[np.bool_]
    phone: npt.NDArray[np.bool_]
    rng: np.random.Generator
    faults: list[Fault] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _last_sent: dict[str, datetime] = field(default_factory=dict)
    _pending: list[tuple[str, str, datetime, float | None]] = field(default_factory=list)

    @classmethod
    def fit(cls, rows: pa.Table, ids: npt.NDArray[np.str_], *, seed: int = 0) -> HillstromWorld:
        x = customer_features(rows)
        arm = np.array([_ARM_OF_SEGMENT[s] for s in rows.column("segment").to_pylist()])
        visit = rows.column("visit").to_numpy()
        conversion = rows.column("conversion").to_numpy()
        spend_all = rows.column("spend").to_numpy()
        p_visit = np.zeros((len(x), len(ARMS)))
        p_convert = np.zeros((len(x), len(ARMS)))
        spend = np.zeros(len(ARMS))
        for a in range(len(ARMS)):
            mine = arm == a
            for target, out in ((visit, p_visit), (conversion, p_convert)):
                model = LogisticRegression(C=1.0, max_iter=1000).fit(x[mine], target[mine])
                out[:, a] = model.predict_proba(x)[:, 1]
            spend[a] = spend_all[mine & (conversion == 1)].mean()
        channel = rows.column("channel").to_numpy(zero_copy_only=False).astype(str)
        world = cls(
            ids=ids,
            p_visit=p_visit,
            p_convert=np.minimum(p_convert, p_visit),
            spend=spend,
            web=channel == "Web",
            phone=channel == "Phone",
            rng=np.random.default_rng(seed),
        )
        world._index = {customer: i for i, customer in enumerate(ids.tolist())}
        return world

    def uplift(self, arm: int) -> npt.NDArray[np.float64]:
        """Each customer's two-week visit uplift of an arm over no e-mail."""
        return self.p_visit[:, arm] - self.p_visit[:, 0]

    def step(self, start: datetime, end: datetime, sent: Sent) -> pa.Table:
        """Outcome events that happen in [start, end): baseline behaviour plus responses to ``sent``."""
        days = (end - start).total_seconds() / 86_400
        self._baseline(start, end, days)
        self._responses(sent)
        due = [e for e in self._pending if e[2] < end]
        self._pending = [e for e in self._pending if e[2] >= end]
        return _events_table(due, start)

    def _baseline(self, start: datetime, end: datetime, days: float) -> None:
        n = len(self.ids)
        visits = self.rng.random(n) < self.p_visit[:, 0] * days / WINDOW_DAYS
        who = np.flatnonzero(visits)
        at = [start + (end - start) * u for u in self.rng.random(len(who))]
        converts = self.rng.random(len(who)) < self.p_convert[who, 0] / np.maximum(self.p_visit[who, 0], 1e-9)
        for i, when, bought in zip(who, at, converts, strict=True):
            self._visit(int(i), when, bought, 0)

    def _responses(self, sent: Sent) -> None:
        for customer, arm, at, evening, offer in zip(
            sent.customer_id.tolist(),
            sent.arm.tolist(),
            sent.sent_at.tolist(),
            sent.evening.tolist(),
            sent.offer.tolist(),
            strict=True,
        ):
            i = self._index.get(customer)
            if i is None:
                continue

            when = at.replace(tzinfo=UTC)
            extra = max(self.p_visit[i, arm] - self.p_visit[i, 0], 0.0)
            if (evening and self.web[i]) or (not evening and self.phone[i]):
                extra *= 1.2
            previous = self._last_sent.get(customer)
            if previous is not None and when - previous < timedelta(days=FATIGUE_DAYS):
                extra *= 0.7
            self._last_sent[customer] = when
            if self.rng.random() < extra:
                delay = timedelta(hours=float(min(self.rng.exponential(3.0), 48.0)))
                convert_given_visit = (
                    self.p_convert[i, arm] / max(self.p_visit[i, arm], 1e-9) * (1.25 if offer else 1.0)
                )
                self._visit(i, when + delay, self.rng.random() < min(convert_given_visit, 1.0), arm)
            if self.rng.random() < UNSUBSCRIBE_RATE * self._factor("unsubscribe_spike", when):
                self._pending.append((customer, "unsubscribe", when + timedelta(hours=1), None))
            if self.rng.random() < COMPLAINT_RATE * self._factor("complaint_spike", when):
                self._pending.append((customer, "complaint", when + timedelta(hours=1), None))

    def _factor(self, kind: str, at: datetime) -> float:
        return float(np.prod([f.factor for f in self.faults if f.applies(kind, at)]))

    def _visit(self, i: int, when: datetime, bought: bool, arm: int) -> None:
        customer = str(self.ids[i])
        self._pending.append((customer, "visit", when, None))
        if bought:
            amount = float(np.round(self.rng.gamma(2.0, self.spend[arm] / 2.0), 2))
            self._pending.append((customer, "purchase", when + timedelta(minutes=20), amount))


def _events_table(rows: list[tuple[str, str, datetime, float | None]], start: datetime) -> pa.Table:
    stamp = start.strftime("%Y%m%d%H")
    return pa.table(
        {
            "id": [f"sim-{stamp}-{n}" for n in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "type": [r[1] for r in rows],
            "occurred_at": [r[2].isoformat() for r in rows],
            "revenue": pa.array([r[3] for r in rows], type=pa.float64()),
        }
    )
