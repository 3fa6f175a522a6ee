"""The online benchmark returns its documented shape, and Legato's policies learn in it.

Small settings keep this fast; the target (regret no worse than MABWiser and VW) is judged
by ``legato bench online``, not here.
"""

from __future__ import annotations

import json

import pytest
from rich.table import Table

from legato.learn.bench import BENCHMARKS
from legato.learn.bench.online import CONTENDERS, PEERS, render_table, run_online


def test_shape_and_signs() -> None:
    result = run_online(days=3, customers_per_day=300, replications=1)
    json.dumps(result)
    assert result["days"] == 3
    assert set(result["regret"]) == {"legato", *PEERS}
    assert result["legato_policy"] == "lin_ts"
    assert result["regret"]["legato"] == result["contenders"]["legato_lin_ts"]["regret"]
    assert set(result["contenders"]) == set(CONTENDERS)
    for name, detail in result["contenders"].items():
        if detail["regret"] is None:
            # Only a peer may be missing, and then it says why.
            assert name in PEERS and detail["reason"]
            continue
        assert detail["regret"] >= 0
        assert len(detail["daily_regret"]) == 3
        assert all(day >= 0 for day in detail["daily_regret"])
        assert detail["cumulative_regret"][-1] == pytest.approx(detail["regret"])
    oracle = result["contenders"]["oracle"]
    assert oracle["regret"] == 0.0
    for name in ("legato_lin_ts", "legato_lin_ucb", "uniform_random"):
        # Nobody beats the oracle in expectation.
        assert result["contenders"][name]["expected_reward"] <= oracle["expected_reward"] + 1e-9
    assert isinstance(render_table(result), Table)
    assert BENCHMARKS["online"] == (run_online, render_table)


def test_peers_skipped_are_null_with_a_reason() -> None:
    result = run_online(days=1, customers_per_day=100, replications=1, peers=False)
    for name in PEERS:
        assert result["regret"][name] is None
        assert "peers=False" in result["contenders"][name]["reason"]
    assert result["target"]["met"] is None


def test_legato_learns_faster_than_random() -> None:
    # 1,000 customers a day: at 300 the default exploration scale (α = 1, wide for a
    # visit reward whose noise sd is about 0.3) leaves lin_ts only a thin margin.
    result = run_online(days=10, seed=0, customers_per_day=1000, replications=1, peers=False)
    contenders = result["contenders"]
    random_regret = contenders["uniform_random"]["regret"]
    assert contenders["legato_lin_ts"]["regret"] < 0.85 * random_regret
    assert contenders["legato_lin_ucb"]["regret"] < 0.85 * random_regret
    # Learning shows in the curve: the last days cost less than the first.
    daily = contenders["legato_lin_ts"]["daily_regret"]
    assert sum(daily[-3:]) < sum(daily[:3])
