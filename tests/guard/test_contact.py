"""Contact rules over a batch: consent, contact points and frequency caps, each with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from legato.guard.contact import ContactFacts, check_contacts
from legato.playbook.models import FrequencyCap, Guardrails

NAT = np.datetime64("NaT", "us")


def facts(n: int, **overrides: object) -> ContactFacts:
    base = dict(
        reachable={"email": np.ones(n, bool), "sms": np.ones(n, bool)},
        consented={"email": np.ones(n, bool), "sms": np.ones(n, bool)},
        revoked={"email": np.zeros(n, bool), "sms": np.zeros(n, bool)},
        cap_counts=[],
        cap_oldest=[],
    )
    base.update(overrides)
    return ContactFacts(**base)  # type: ignore[arg-type]


def test_consent_contact_point_and_revocation_block_with_reasons() -> None:
    channels = np.array(["email", "email", "email", "sms", None], dtype=object)
    send_at = np.full(5, np.datetime64("2024-03-04T14:00", "us"))
    f = facts(
        5,
        reachable={"email": np.array([True, False, True, True, True]), "sms": np.ones(5, bool)},
        consented={"email": np.array([True, True, True, True, True]), "sms": np.array([True, True, True, False, True])},
        revoked={"email": np.array([False, False, True, False, False]), "sms": np.zeros(5, bool)},
    )
    verdict = check_contacts(channels, send_at, f, Guardrails())
    assert verdict.allowed.tolist() == [True, False, False, False, True]
    assert verdict.reasons.tolist() == [None, "no_contact_point:email", "consent_revoked:email", "no_consent:sms", None]


def test_cap_drops_or_delays_by_rule() -> None:
    guard = Guardrails(
        frequency_caps=[
            FrequencyCap(channel="email", max=1, days=3, on_block="delay"),
            FrequencyCap(channel="any", max=2, days=7, on_block="drop"),
        ]
    )
    channels = np.array(["email", "email", "sms", "sms"], dtype=object)
    send_at = np.full(4, np.datetime64("2024-03-04T14:00", "us"))
    f = facts(
        4,
        cap_counts=[np.array([0, 1, 1, 0]), np.array([1, 1, 2, 0])],
        cap_oldest=[
            np.array([NAT, np.datetime64("2024-03-02T10:00", "us"), np.datetime64("2024-03-03T10:00", "us"), NAT]),
            np.array([NAT] * 4),
        ],
    )
    verdict = check_contacts(channels, send_at, f, guard)
    assert verdict.allowed.tolist() == [True, True, False, True]
    # customer 1 already had an e-mail on 03-02 10:00: the 3-day cap delays to 03-05 10:00
    assert verdict.delayed.tolist() == [False, True, False, False]
    assert verdict.send_at[1] == np.datetime64("2024-03-05T10:00", "us")
    assert verdict.reasons.tolist() == [None, "delayed:frequency_cap:email 1 per 3 days", "frequency_cap:any channel 2 per 7 days", None]


def test_a_reason_names_its_rule_not_its_position() -> None:
    """`frequency_cap:0` told a marketer nothing; a rule's id, else a readable form, names it."""
    named = FrequencyCap(id="weekly_promo_cap", channel="email", max=2, days=7)
    assert named.label == "weekly_promo_cap"
    assert FrequencyCap(channel="sms", max=3, days=1, region="US-FL").label == "sms 3 per day in US-FL"
    assert FrequencyCap(max=1, calendar="week", tag="promo").label == "any channel tagged promo 1 per calendar week"


def test_two_rules_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="both named 'email 1 per 3 days': give one of them an id"):
        Guardrails(frequency_caps=[FrequencyCap(channel="email", max=1, days=3), FrequencyCap(channel="email", max=1, days=3, on_block="delay")])
