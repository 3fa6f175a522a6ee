"""The offline benchmarks run on the real data packaged with Legato and return their documented shapes.

Small settings keep this fast; the benchmarks' targets are judged by ``legato bench``, not
here. The data are the compressed copies in ``legato/data`` (see its PROVENANCE.md), so
these tests need nothing beside the repository.
"""

from __future__ import annotations

import json
import lzma
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.table import Table
from typer.testing import CliRunner

from legato.cli.app import app
from legato.datasets import OBD, shipped
from legato.errors import LegatoError
from legato.learn.bench import BENCHMARKS
from legato.learn.bench.hillstrom import run_hillstrom
from legato.learn.bench.obd import bts_action_distribution, run_obd
from legato.learn.bench.throughput import run_throughput

def finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value)


OBD_SETTINGS = {"n_simulations": 20_000, "n_bootstrap": 100}


@pytest.fixture(scope="module")
def packaged_obd() -> dict[str, object]:
    """The OBD benchmark on the packaged sample, computed once for the tests that compare with it."""
    return run_obd(None, "all", **OBD_SETTINGS)


def test_obd_shape_and_sane_estimates(packaged_obd: dict) -> None:
    result = packaged_obd
    json.dumps(result)
    assert result["campaign"] == "all"
    assert result["on_policy_ctr"] == pytest.approx(42 / 10_000)
    assert result["random_ctr"] == pytest.approx(38 / 10_000)
    assert set(result["estimates"]) == {"ips", "snips", "dr"}
    for estimate in result["estimates"].values():
        assert 0 < estimate["value"] < 0.05
        assert estimate["relative_error"] >= 0
        assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]
    assert isinstance(BENCHMARKS["obd"][1](result), Table)


def test_obd_names_the_missing_file(tmp_path: Path) -> None:
    shutil.copytree(shipped(OBD), tmp_path / "obd")
    (tmp_path / "obd" / "prior_bts.yaml").unlink()
    with pytest.raises(LegatoError, match="prior_bts.yaml") as caught:
        run_obd(tmp_path / "obd", "all", n_simulations=1000, n_bootstrap=10)
    assert caught.value.hint
    with pytest.raises(LegatoError, match="men.csv"):
        run_obd(None, "men", n_simulations=1000, n_bootstrap=10)


def test_obd_reads_the_folder_given_with_data_uncompressed(tmp_path: Path, packaged_obd: dict) -> None:
    """--data overrides the packaged sample and may hold plain CSV files.

    The copy has every file decompressed and BTS's logs cut to their first half: the
    estimates from the (unchanged) Random logs must equal the packaged run's, and BTS's
    own click rate must be the one of the half that is there.
    """
    plain = tmp_path / "obd"
    shutil.copytree(shipped(OBD), plain)
    for packed in plain.rglob("*.xz"):
        packed.with_suffix("").write_bytes(lzma.decompress(packed.read_bytes()))
        packed.unlink()
    bts = plain / "bts" / "all" / "all.csv"
    lines = bts.read_text().splitlines(keepends=True)
    half = lines[: 1 + (len(lines) - 1) // 2]  # the header and the first half of the rows
    bts.write_text("".join(half))
    clicks = sum(int(row.split(",")[4]) for row in half[1:])  # columns: index, timestamp, item_id, position, click
    result = run_obd(plain, "all", **OBD_SETTINGS)
    def from_random_logs(run: dict) -> dict:  # what does not depend on BTS's logs
        return {name: {k: v for k, v in e.items() if k != "relative_error"} for name, e in run["estimates"].items()}

    assert from_random_logs(result) == from_random_logs(packaged_obd)
    assert result["on_policy_ctr"] == pytest.approx(clicks / (len(half) - 1))
    assert result["on_policy_ctr"] != packaged_obd["on_policy_ctr"]


def test_bts_action_distribution_is_a_ranking() -> None:
    alpha, beta = np.array([50.0, 5.0, 5.0, 5.0, 1.0]), np.array([50.0, 50.0, 50.0, 50.0, 100.0])
    distribution = bts_action_distribution(alpha, beta, n_simulations=20_000, seed=0)
    np.testing.assert_allclose(distribution.sum(axis=0), 1.0)  # one item per position per draw
    assert np.all(distribution.sum(axis=1) <= 1.0 + 1e-12)  # an item takes at most one position
    assert distribution[0, 0] > 0.99  # by far the highest mean: almost always first


def test_hillstrom_shape_and_sane_ranges() -> None:
    result = run_hillstrom(shipped(), seed=0, n_splits=2, sample=6000)  # the folder: finds hillstrom.csv.gz
    json.dumps(result)
    names = {"learned", "no_email", "mens_all", "womens_all", "random"}
    for key in ("policies", "policies_with_cost"):
        assert set(result[key]) == names
        for summary in result[key].values():
            assert 0.0 <= summary["value"] <= 0.5 and summary["std"] >= 0
    # Not e-mailing costs nothing; e-mailing everybody costs exactly the contact cost.
    assert result["policies_with_cost"]["no_email"] == result["policies"]["no_email"]
    cost = result["settings"]["contact_cost"]
    assert result["policies_with_cost"]["mens_all"]["value"] == pytest.approx(
        result["policies"]["mens_all"]["value"] - cost
    )
    assert -1 <= result["uplift_at_30"] <= 1 and finite(result["uplift_at_30"])
    assert finite(result["qini"])
    assert isinstance(BENCHMARKS["hillstrom"][1](result), Table)


def test_hillstrom_default_data_is_packaged() -> None:
    result = run_hillstrom(None, seed=1, n_splits=1, sample=3000)
    assert result["settings"]["rows"] == 3000


def test_hillstrom_names_a_wrong_data_path(tmp_path: Path) -> None:
    with pytest.raises(LegatoError, match="hillstrom.csv"):
        run_hillstrom(tmp_path)


def test_cdnow_runs_from_the_command_line_on_the_packaged_data() -> None:
    outcome = CliRunner().invoke(app, ["bench", "cdnow", "--json"])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.stdout)
    assert set(result["auc"]) == {"legato", "recency_frequency", "bgnbd"}
    for name in ("legato", "recency_frequency"):
        assert 0.6 < result["auc"][name] < 0.95
        assert 0 < result["brier"][name] < 0.25
    assert result["auc"]["bgnbd"] is None or 0.5 < result["auc"]["bgnbd"] < 0.95
    assert result["settings"]["customers"] == 23_570
    assert isinstance(BENCHMARKS["cdnow"][1](result), Table)


def test_obd_from_the_command_line_needs_no_data_option_and_names_a_missing_campaign() -> None:
    outcome = CliRunner().invoke(app, ["bench", "obd", "--campaign", "men"])
    assert outcome.exit_code == 2
    # The packaged sample was searched (no "needs --data"), and it has only the campaign "all".
    assert "log is missing" in outcome.output and "men.csv" in outcome.output


def test_throughput_shape_without_peers() -> None:
    result = run_throughput(customers=20_000, actions=6, features=5, repeats=1, peers=False)
    json.dumps(result)
    assert result["customers"] == 20_000 and result["actions"] == 6
    assert result["decisions_per_s"]["legato"] > 0
    assert result["decisions_per_s"]["mabwiser"] is None and result["decisions_per_s"]["vw"] is None
    assert isinstance(BENCHMARKS["throughput"][1](result), Table)
