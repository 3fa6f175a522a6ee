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
    result = runner.invoke(app, ["simulate", str(playbook), "--days", "4", "--folder", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
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
