"""Set-ups the trust tests share."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.store.ingest import import_customers, import_events

from tests.world import AT, PLAYBOOK, load_customers

B2B_AND_UPSELL_RULES = (
    "    escalation:\n"
    '      - {when: \'account_type = "business" and renewal_days <= 30\', reason: b2b_renewal, priority: 90}\n'
    "      - {when: 'offer_value >= 100 and lifetime_spend >= 1000', reason: high_value_upsell, priority: 80}\n"
)


@pytest.fixture
def b2b_and_upsell_playbook(engine: Engine) -> str:
    """40 customers, c001 a business account due for renewal and c002 a big spender, and the
    playbook text (still with STAGE, HOLDOUT and BUDGET placeholders) offering a $200 offer,
    with escalation rules for both cases."""
    load_customers(engine, n=40)
    import_customers(
        engine,
        pa.table({"id": ["c001", "c002"], "account_type": ["business", "consumer"], "renewal_days": [20.0, None]}),
        attribute_types={"account_type": "string", "renewal_days": "number"},
        clock=FixedClock(AT),
    )
    import_events(engine, pa.table({"id": ["big"], "customer_id": ["c002"], "type": ["purchase"], "occurred_at": ["2024-02-01T00:00:00Z"], "revenue": [5000.0]}), clock=FixedClock(AT))
    text = PLAYBOOK.replace("attributes: {tier: string}", "attributes: {tier: string, account_type: string, renewal_days: number}")
    text = text.replace("channels:\n", "offers:\n  - {id: vip, kind: amount_off, value: 200, cost: 200}\nchannels:\n")
    text = text.replace("actions: {creatives: [hello],", "actions: {creatives: [hello], offers: [vip],")
    return text.replace("    trust_stage:", B2B_AND_UPSELL_RULES + "    trust_stage:", 1)
