"""Quiet hours in local time, with the zone from the profile, the phone or the country."""

from __future__ import annotations

from datetime import time

import numpy as np

from legato.guard.contact import ContactFacts, check_contacts
from legato.guard.quiet_hours import candidate_zones
from legato.playbook.models import Guardrails, QuietHours

TCPA = QuietHours(channel="sms", start=time(21, 0), end=time(8, 0), on_block="delay")
FLORIDA = QuietHours(channel="sms", start=time(20, 0), end=time(8, 0), on_block="drop", region="US-FL")


def facts(zones: list[tuple[str, ...]], regions: list[str]) -> ContactFacts:
    n = len(zones)
    return ContactFacts(
        reachable={"sms": np.ones(n, bool)},
        consented={"sms": np.ones(n, bool)},
        revoked={"sms": np.zeros(n, bool)},
        cap_counts=[],
        cap_oldest=[],
        zones=zones,
        regions=np.array(regions),
    )


def at(text: str, n: int) -> np.ndarray:
    return np.full(n, np.datetime64(text, "us"))


def test_zone_sources_in_order() -> None:
    assert candidate_zones("Europe/Paris", "+12125550100", "US") == ("Europe/Paris",)
    assert candidate_zones(None, "+1 212 555 0100", "US") == ("America/New_York",)  # a Manhattan number
    assert "Pacific/Honolulu" in candidate_zones(None, None, "US")
    assert candidate_zones(None, "not a number", None) == ("UTC",)


def test_late_evening_text_is_delayed_to_eight_local() -> None:
    # 02:30 UTC is 21:30 in New York (EST) and 18:30 in Los Angeles.
    verdict = check_contacts(
        np.array(["sms", "sms"], dtype=object),
        at("2024-03-05T02:30", 2),
        facts([("America/New_York",), ("America/Los_Angeles",)], ["US", "US"]),
        Guardrails(quiet_hours=[TCPA]),
    )
    assert verdict.allowed.tolist() == [True, True]
    assert verdict.reasons.tolist() == ["delayed:quiet_hours:sms 21:00-08:00", None]
    assert verdict.send_at[0] == np.datetime64("2024-03-05T13:00", "us")  # 08:00 EST
    assert verdict.send_at[1] == np.datetime64("2024-03-05T02:30", "us")


def test_unknown_zone_uses_the_strictest_candidate() -> None:
    # 14:00 UTC is 09:00 in New York but 04:00 in Honolulu: quiet somewhere in the US.
    verdict = check_contacts(
        np.array(["sms"], dtype=object), at("2024-03-05T14:00", 1), facts([candidate_zones(None, None, "US")], ["US"]), Guardrails(quiet_hours=[TCPA])
    )
    assert verdict.reasons.tolist() == ["delayed:quiet_hours:sms 21:00-08:00"]
    assert verdict.send_at[0] == np.datetime64("2024-03-05T18:00", "us")  # 08:00 in Honolulu (UTC-10)


def test_florida_rule_only_for_florida() -> None:
    # 01:30 UTC is 20:30 in Miami (EST): quiet under Florida's 20:00 rule, not under the federal 21:00.
    verdict = check_contacts(
        np.array(["sms", "sms"], dtype=object),
        at("2024-03-05T01:30", 2),
        facts([("America/New_York",), ("America/New_York",)], ["US-FL", "US-NY"]),
        Guardrails(quiet_hours=[TCPA, FLORIDA]),
    )
    assert verdict.allowed.tolist() == [False, True]
    assert verdict.reasons.tolist() == ["quiet_hours:sms 20:00-08:00 in US-FL", None]


def test_sms_without_quiet_hours_gets_the_legal_floor() -> None:
    from importlib.resources import files

    from legato.guard.defaults import FLORIDA_CAP, TCPA, guardrails_in_force
    from legato.validation import parse_playbook

    text = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    with_sms = text.replace("  email: {kind: file, path: outbox/email.jsonl}", "  email: {kind: file, path: outbox/email.jsonl}\n  sms: {kind: file, path: outbox/sms.jsonl}")
    rules = guardrails_in_force(parse_playbook(with_sms))
    assert TCPA in rules.quiet_hours and FLORIDA_CAP in rules.frequency_caps
    own = with_sms.replace('    - {channel: email, start: "21:00", end: "08:00", on_block: delay}', '    - {channel: email, start: "21:00", end: "08:00", on_block: delay}\n    - {channel: sms, start: "20:00", end: "09:00"}')
    assert TCPA not in guardrails_in_force(parse_playbook(own)).quiet_hours  # the playbook's own SMS hours stand
    assert guardrails_in_force(parse_playbook(text)).quiet_hours == parse_playbook(text).guardrails.quiet_hours  # no SMS: nothing added


def test_region_codes_match_the_same_way_per_row_and_per_batch() -> None:
    from legato.guard.contact import _in_region, in_region, region_code

    codes = [region_code("US", "FL"), region_code("US", None), region_code(None, None), region_code("USX", None), region_code("CA", "ON")]
    assert codes == ["US-FL", "US", "", "USX", "CA-ON"]
    batch = facts([("UTC",)] * len(codes), codes)
    for rule in ("US", "US-FL", "CA"):
        assert _in_region(batch, rule, len(codes)).tolist() == [in_region(code, rule) for code in codes]
    assert [in_region(c, "US") for c in codes] == [True, True, False, False, False]
