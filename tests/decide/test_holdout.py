"""Holdout membership is stable, close to the configured share, and independent across agents."""

from __future__ import annotations

import numpy as np

from legato.decide.holdout import in_holdout, unit_hash

IDS = np.array([f"C{i:06d}" for i in range(200_000)])


def test_same_ids_same_membership() -> None:
    assert np.array_equal(in_holdout(IDS, "agent", 0.1), in_holdout(IDS.copy(), "agent", 0.1))
    # order of the batch does not matter: membership belongs to the customer
    shuffled = np.random.default_rng(1).permutation(len(IDS))
    assert np.array_equal(in_holdout(IDS[shuffled], "agent", 0.1), in_holdout(IDS, "agent", 0.1)[shuffled])


def test_share_matches_fraction() -> None:
    share = in_holdout(IDS, "agent", 0.1).mean()
    assert abs(share - 0.1) < 0.003  # 4.5 standard errors at n=200k


def test_agents_are_independent() -> None:
    both = (in_holdout(IDS, "a", 0.2) & in_holdout(IDS, "b", 0.2)).mean()
    assert abs(both - 0.04) < 0.003


def test_neighbouring_ids_spread_out() -> None:
    values = unit_hash(IDS[:1000], "x")
    counts, _ = np.histogram(values, bins=10, range=(0, 1))
    assert counts.min() > 60  # uniform would be 100 per bin


def test_zero_fraction_holds_out_nobody() -> None:
    assert not in_holdout(IDS[:10], "agent", 0.0).any()


def test_unicode_ids() -> None:
    ids = np.array(["ü-1", "ü-2", "日本"])
    assert len(set(unit_hash(ids, "s").tolist())) == 3
