"""The rules that used to live in the command line, asked of the service layer directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.errors import Conflict, Invalid
from legato.validation import parse_playbook
from legato.service import cycles, imports, replies
from legato.store.schema import cycles as cycles_table
from legato.store.status import CycleStatus

AT = datetime(2024, 3, 10, 8, tzinfo=UTC)
EXAMPLE = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")


def test_no_cycle_earlier_than_the_last_one(engine: Engine) -> None:
    cycles.refuse_going_back(engine, AT)  # an empty store: any time will do
    with engine.begin() as c:
        c.execute(sa.insert(cycles_table).values(at=AT, started_at=AT, status=CycleStatus.FINISHED))
    cycles.refuse_going_back(engine, AT)  # the same instant again is allowed
    with pytest.raises(Conflict, match="the last cycle ran at 2024-03-10 08:00 UTC, after 2024-03-05 08:00 UTC"):
        cycles.run(engine, parse_playbook(EXAMPLE), FixedClock(AT - timedelta(days=5)), {})


def test_a_reply_comes_in_on_a_channel_the_playbook_has() -> None:
    playbook = parse_playbook(EXAMPLE)
    channels = [c.value for c in playbook.channels]
    assert replies.channel_for(playbook, None) == ("sms" if "sms" in channels else channels[0])
    assert replies.channel_for(playbook, channels[-1]) == channels[-1]
    with pytest.raises(Invalid, match="the playbook has no channel 'fax'"):
        replies.channel_for(playbook, "fax")


def test_attribute_types_come_from_the_playbook_and_can_be_overridden() -> None:
    playbook = parse_playbook(EXAMPLE)
    declared = {name: kind.value for name, kind in playbook.attributes.items()}
    assert imports.attribute_types(playbook, {}) == declared
    assert imports.attribute_types(playbook, {"tier": "string"})["tier"] == "string"
    with pytest.raises(Invalid, match="tier=decimal: the type must be one of"):
        imports.attribute_types(None, {"tier": "decimal"})
    with pytest.raises(Invalid, match="'xlsx' is not one of"):
        imports.check_format("xlsx")
