"""A playbook that attacks the process is refused quickly with its place: aliases, nesting, deep expressions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from legato.audience.expr import ExpressionError, parse
from legato.validation import PlaybookError, parse_playbook

from tests.world import PLAYBOOK

BOMB = "\n".join(
    [f'a: &a [{", ".join(["lol"] * 9)}]']
    + [f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]" for prev, name in zip("abcdefgh", "bcdefghi")]
)
# Runs `legato validate` as a child of a fresh interpreter, so that the children's rusage is
# this one command's alone.
MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-c", "from legato.cli.app import main; main()", "validate", sys.argv[1]], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": done.returncode, "out": done.stdout + done.stderr,
                  "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}))
"""


def test_a_billion_laughs_playbook_is_refused_at_once_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + "\n", encoding="utf-8")
    got = json.loads(subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True).stdout)
    assert got["code"] == 2, got["out"]
    assert "expands to more than 200,000 values" in got["out"] and "bomb.yaml:" in got["out"]
    assert "Traceback" not in got["out"]
    # Generous bounds (the machine may be busy); the unbounded loader took 75 s and 5.7 GB.
    assert got["cpu"] < 20, got
    assert got["rss_mb"] < 200, got


def test_deep_yaml_nesting_is_refused_with_a_message() -> None:
    for text in ["x: " + "[" * 5000 + "]" * 5000, "x: " + "{a: " * 100 + "1" + "}" * 100]:
        with pytest.raises(PlaybookError, match="nests more than 60 levels deep"):
            parse_playbook(text)


@pytest.mark.parametrize(
    ("source", "column"),
    [("(" * 200 + "tier = 1" + ")" * 200, 51), ("not " * 5000 + "tier = 1", 201), ("-" * 3000 + "1 = tier", 51), ("1" + " + 1" * 3000 + " = tier", 203)],
)
def test_a_deeply_nested_expression_is_an_error_at_its_column(source: str, column: int) -> None:
    with pytest.raises(ExpressionError, match="nests more than 50 levels deep") as raised:
        parse(source)
    assert raised.value.start + 1 == column


def test_a_deep_segment_in_a_playbook_is_a_problem_with_its_place() -> None:
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("""audience: 'tier in ("gold", "silver")'""", "audience: '" + "(" * 200 + 'tier = "gold"' + ")" * 200 + "'")
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(text, "pb.yaml")
    assert "agents[0].audience: the expression nests more than 50 levels deep" in str(raised.value)
    assert "pb.yaml:" in str(raised.value)


def test_ordinary_nesting_still_parses() -> None:
    parse("((tier = 1) and not (not (a > 2)))")
    parse(" + ".join(["a"] * 40) + " > 3")
