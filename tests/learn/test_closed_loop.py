"""`legato simulate` and `legato evaluate` on the Hillstrom world, as a user runs them."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from typer.testing import CliRunner

from legato.cli.app import app

runner = CliRunner()


def test_simulate_then_evaluate(tmp_path: Path) -> None:
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    folder = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", str(playbook), "--days", "4", "--seed", "11", "--folder", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["seed"] == 11 and report["simulated_days"] == 4 and [d["day"] for d in report["days"]] == [1, 2, 3, 4]
    assert report["sent"]["winback_email"] > 0 and report["sent"]["welcome_email"] == 0
    # Simulated messages stay in the simulation's folder, never in the project's outbox.
    sent_lines = (folder / "outbox/email.jsonl").read_text().splitlines()
    assert len(sent_lines) == report["sent"]["winback_email"] and not (tmp_path / "outbox").exists()
    visit = next(x for x in report["lift"]["winback_email"] if x["metric"] == "visit_rate")
    assert visit["low"] is not None and visit["low"] > 0  # e-mail raises visits in the fitted world

    database = f"sqlite:///{folder.resolve() / 'legato.db'}"
    evaluated = runner.invoke(app, ["evaluate", str(playbook), "winback_email", "-d", database, "--policy", "lin_ucb", "--param", "alpha=0.2", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.stdout)
    assert scores["n_evaluated"] > 1000
    for estimate in scores["estimates"].values():
        assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]

    bad = runner.invoke(app, ["evaluate", str(playbook), "winback_email", "-d", database, "--policy", "thompson"])
    assert bad.exit_code == 2 and "unknown policy 'thompson'" in bad.output
    nobody = runner.invoke(app, ["evaluate", str(playbook), "nobody", "-d", database])
    assert nobody.exit_code == 3 and "no agent named 'nobody'" in nobody.output


def test_an_unknown_benchmark_is_named() -> None:
    # `legato bench obd` needs no --data any more: tests/learn/test_bench_offline.py runs it.
    missing = runner.invoke(app, ["bench", "nope"])
    assert missing.exit_code == 2 and "no benchmark named 'nope'" in missing.output


def _example(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_simulate_never_cites_an_arm_that_was_not_given(tmp_path: Path) -> None:
    """Creatives named otherwise than the example's were refused with "--arm names creatives ..."."""
    playbook = _example(tmp_path, ("womens_collection", "boots_for_her"), ("mens_collection", "boots_for_him"))
    result = runner.invoke(app, ["simulate", str(playbook), "--days", "1", "--folder", str(tmp_path / "sim")])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "none of the playbook's creatives is mapped to a Hillstrom arm" in said and "--arm boots_for_her=mens" in said
    assert "--arm names creatives" not in said
    wrong = runner.invoke(app, ["simulate", str(playbook), "--days", "1", "--folder", str(tmp_path / "sim"), "--arm", "sandals=mens"])
    assert wrong.exit_code == 2 and "the playbook's creatives: boots_for_her, boots_for_him" in " ".join(wrong.output.split())


def test_simulate_says_when_an_agent_has_no_audience_in_the_simulated_world(tmp_path: Path) -> None:
    playbook = _example(tmp_path, ("""audience: 'lifecycle_stage = "new" and history >= 100'""", """audience: 'history < 0'"""))
    result = runner.invoke(app, ["simulate", str(playbook), "--days", "1", "--folder", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "welcome_email: no customer of the simulated world is in its audience 'history < 0', so this agent was not tried" in said
    assert "winback_email: no customer" not in said


def test_the_seed_draws_the_worlds_responses(tmp_path: Path) -> None:
    import numpy as np

    from legato.demo import prepare_world
    from legato.validation import load_playbook

    playbook = _example(tmp_path)
    _, world, _, _ = prepare_world(tmp_path / "sim", load_playbook(playbook), playbook, seed=11)
    assert world.rng.bit_generator.state == np.random.default_rng(11).bit_generator.state  # fitting draws nothing; the days do
