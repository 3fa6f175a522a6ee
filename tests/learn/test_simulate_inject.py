"""`legato simulate --inject`: a fault named wrongly is refused before anything runs, with the fix."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("given", ["unsubscribe_spike", "unsubscribe_spike:day=0,factor=4", "spam:day=3,factor=2",
                                   "complaint_spike:day=3", "unsubscribe_spike:day=3,factor=x", "unsubscribe_spike:day=3,factor=2,hour=4"])
def test_a_fault_not_written_kind_day_factor_is_refused_with_an_example(tmp_path: Path, given: str) -> None:
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    result = runner.invoke(app, ["simulate", str(playbook), "--days", "1", "--folder", str(tmp_path / "sim"), "--inject", given])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"--inject '{given}' is not KIND:day=N,factor=F" in said and "unsubscribe_spike:day=10,factor=4" in said
    assert not (tmp_path / "sim" / "legato.db").exists()  # refused before the world was built
