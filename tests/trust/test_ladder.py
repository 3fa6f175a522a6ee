"""The trust ladder routes what the guardrails allowed: stage 0 waits for a person, 1 to 3 execute."""

from __future__ import annotations

import numpy as np
import pytest

from legato.trust.ladder import EXECUTE, REVIEW, Stage, route

SENDS = np.array([True, False, True, True, False])


def test_manual_sends_nothing_without_a_person() -> None:
    assert route(Stage.MANUAL, SENDS).tolist() == [REVIEW, None, REVIEW, REVIEW, None]


@pytest.mark.parametrize("stage", [Stage.ASSISTED, Stage.SUPERVISED, Stage.AUTONOMOUS])
def test_from_assisted_on_what_the_guardrails_allowed_executes(stage: Stage) -> None:
    assert route(stage, SENDS).tolist() == [EXECUTE, None, EXECUTE, EXECUTE, None]


def test_rows_that_are_not_sends_get_no_route_and_an_empty_batch_is_fine() -> None:
    assert route(3, np.zeros(4, dtype=bool)).tolist() == [None] * 4
    assert route(0, np.zeros(0, dtype=bool)).tolist() == []
    assert EXECUTE != REVIEW


@pytest.mark.parametrize("stage", [-1, 4])
def test_a_stage_off_the_ladder_is_refused(stage: int) -> None:
    with pytest.raises(ValueError):
        route(stage, SENDS)


def test_the_stages_are_numbered_as_the_playbook_writes_them() -> None:
    assert [int(s) for s in Stage] == [0, 1, 2, 3]
    assert [s.name for s in Stage] == ["MANUAL", "ASSISTED", "SUPERVISED", "AUTONOMOUS"]
