"""`legato validate` reports every problem of a playbook in one round, each as FILE:LINE:COL.

A marketer's playbook had a misspelled key, an unknown policy and an unknown creative: the
last two showed only after the first was fixed. It also had a template name that does not
exist, a lifecycle stage compared to a value that is not a stage and an SMS creative the
content check blocks on every send. All of them are reported at once here, at their place.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli.app import app
from legato.errors import LegatoError
from legato.store.db import connect
from legato.store.ingest import import_customers
from legato.validation import PlaybookError, parse_playbook, validate

EXAMPLE = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
runner = CliRunner()

SMS_CREATIVE = """  - id: sms_nudge
    channel: sms
    body: "New styles are in. Reply STOP to opt out."
agents:
"""


def place(text: str, needle: str, within: str | None = None) -> str:
    """``LINE:COL`` of ``within`` (else ``needle``) on the first line holding ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return f"{number}:{line.index(within or needle) + 1}"
    raise AssertionError(needle)


def broken(text: str = EXAMPLE) -> str:
    """The example with the mistakes the marketer made, every one of them."""
    text = text.replace("    holdout: 0.1\n    budget: {daily_sends: 300}", "    holdot: 0.1\n    budget: {daily_sends: 300}", 1)
    text = text.replace("policy: {name: lin_ts,", "policy: {name: lin_tss,", 1)
    text = text.replace("creatives: [mens_collection, womens_collection]\n      offers", "creatives: [mens_collection, womens_colection]\n      offers", 1)
    text = text.replace("{{ brand.sender_name }}, {{ brand.postal_address }}\n  - id: womens", "{{ brand.sendr_name }}, {{ brand.postal_address }}\n  - id: womens", 1)
    text = text.replace("""audience: 'lifecycle_stage = "new" and""", """audience: 'lifecycle_stage = "nwe" and""", 1)
    text = text.replace("channels:\n  email: {kind: file, path: outbox/email.jsonl}\n", "channels:\n  email: {kind: file, path: outbox/email.jsonl}\n  sms: {kind: file, path: outbox/sms.jsonl}\n", 1)
    return text.replace("agents:\n", SMS_CREATIVE, 1)


def test_schema_reference_template_stage_and_content_problems_come_in_one_round(tmp_path: Path) -> None:
    text = broken()
    path = tmp_path / "pb.yaml"
    path.write_text(text, encoding="utf-8")
    result = validate(path)
    assert not result.valid and result.playbook is None
    found = "\n".join(result.problems)
    expected = [
        (place(text, "holdot:"), "agents[1].holdot: unknown key 'holdot'", "did you mean 'holdout'?"),
        (place(text, "lin_tss", "lin_tss"), "agents[0].policy.name: unknown policy 'lin_tss'", "lin_ts"),
        (place(text, "womens_colection", "womens_colection"), "agents[0].actions.creatives[1]: no creative named 'womens_colection'", "did you mean 'womens_collection'?"),
        (place(text, "brand.sendr_name", "brand.sendr_name"), "creatives[0].body: template name 'brand.sendr_name' does not exist", "did you mean 'brand.sender_name'?"),
        (place(text, '"nwe"', '"nwe"'), "agents[1].audience: 'nwe' is not a lifecycle stage of this playbook", "did you mean 'new'?"),
        (place(text, "- id: sms_nudge", "id: sms_nudge"), "creatives[2]: content: block: compliance.sms_brand_missing", "--creative sms_nudge"),
    ]
    for where, message, hint in expected:
        line = next((p for p in result.problems if p.startswith(f"{path}:{where}: {message}")), None)
        assert line is not None, f"{where} {message} not in:\n{found}"
        assert hint in line
    # The undefined brand field is said once, where it is written, not again per variant.
    assert "sendr_name" not in found.replace("template name 'brand.sendr_name' does not exist", "")
    assert len(result.problems) == len(expected)


def test_the_command_prints_them_all_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "pb.yaml"
    path.write_text(broken(), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "6 problems; the playbook was not used" in result.output
    for part in ("holdot", "lin_tss", "womens_colection", "sendr_name", "nwe", "sms_brand_missing"):
        assert part in result.output
    as_json = runner.invoke(app, ["validate", str(path), "--json"])
    assert as_json.exit_code == 2 and len(json.loads(as_json.stdout)["problems"]) == 6


def test_a_left_out_item_does_not_move_the_places_of_the_ones_after_it() -> None:
    # agents[0] lacks its objective (the models reject the whole agent); agents[1]'s unknown
    # policy is still found, and named agents[1], not agents[0] of what was left.
    text = EXAMPLE.replace("    objective: win_back\n", "", 1).replace("policy: {name: beta_thompson}", "policy: {name: beta_thomson}", 1)
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, "pb.yaml")
    lines = caught.value.lines
    assert any(line.startswith("pb.yaml:") and "agents[0].objective: 'objective' is required here" in line for line in lines), lines
    assert any(f"pb.yaml:{place(text, 'beta_thomson', 'beta_thomson')}: agents[1].policy.name: unknown policy 'beta_thomson'" in line for line in lines), lines
    # A creative that failed the models is not also reported as missing where an agent uses it.
    text = EXAMPLE.replace("  - id: womens_collection\n    channel: email\n", "  - id: womens_collection\n    channel: emial\n", 1)
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, "pb.yaml")
    assert [line for line in caught.value.lines if "no creative named" in line] == []
    assert any("creatives[1].channel" in line for line in caught.value.lines)


def test_a_template_name_that_does_not_exist_stops_the_playbook_before_any_run() -> None:
    # Before, the playbook loaded and every decision of the creative was suppressed at run
    # time with exit code 0. The name is found even in a branch the sample rendering skips.
    text = EXAMPLE.replace("{% if offer %} Shipping is on us", "{% if offer and offer.valeu %} Shipping is on us", 1)
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, "pb.yaml")
    (only,) = caught.value.lines
    assert only.startswith(f"pb.yaml:{place(text, 'offer.valeu', 'offer.valeu')}: creatives[0].body: template name 'offer.valeu' does not exist")
    assert "did you mean 'offer.value'?" in only
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(EXAMPLE.replace("{{ unsubscribe_url }}", "{{ unsubscribe_link }}", 1), "pb.yaml")
    assert "template name 'unsubscribe_link' does not exist" in caught.value.lines[0]
    assert "did you mean 'unsubscribe_url'?" in caught.value.lines[0]


def test_a_lifecycle_stage_compared_to_a_value_that_is_not_a_stage() -> None:
    text = EXAMPLE.replace("""'lifecycle_stage in ("cooling", "lapsed")'""", """'lifecycle_stage in ("cooling", "lapsd")'""", 1)
    text = text.replace('big_spenders: "lifetime_spend >= 500"', 'big_spenders: "lifetime_spend >= 500 and lifecycle_stage != \'actve\'"', 1)
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, "pb.yaml")
    lines = caught.value.lines
    assert len(lines) == 2
    actve, lapsd = place(text, "actve", "'actve'"), place(text, "lapsd", '"lapsd"')
    assert lines[0].startswith(f"pb.yaml:{actve}: segments.big_spenders: 'actve' is not a lifecycle stage")
    assert "did you mean 'active'?" in lines[0]
    assert lines[1].startswith(f"pb.yaml:{lapsd}: agents[0].audience: 'lapsd' is not a lifecycle stage")


def test_an_sms_creative_blocked_on_every_send_is_reported_with_the_schema_errors(tmp_path: Path) -> None:
    text = broken().replace("policy: {name: lin_tss,", "policy: {name: lin_ts,", 1)
    path = tmp_path / "pb.yaml"
    path.write_text(text, encoding="utf-8")
    problems = "\n".join(validate(path).problems)
    assert "unknown key 'holdot'" in problems and "compliance.sms_brand_missing" in problems
    assert "'Hillside Outfitters'" in problems  # the fix: the brand name the text must carry


CUSTOMERS = "id,email,recency_months,history,newbie\nc1,a@example.com,3,250,0\nc2,b@example.com,14,80,0\n"


def test_with_a_database_an_empty_audience_is_noted(tmp_path: Path, database_url: str) -> None:
    # Neither customer is new, so the welcome agent's audience holds nobody on this data.
    source = tmp_path / "customers.csv"
    source.write_text(CUSTOMERS, encoding="utf-8")
    engine = connect(database_url)
    try:
        import_customers(engine, source)
    finally:
        engine.dispose()
    path = tmp_path / "pb.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path), "--database", database_url, "--at", "2024-03-04T09:00:00Z"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:") and "audience" in line]
    where = place(EXAMPLE, 'lifecycle_stage = "new"', "'lifecycle_stage")
    assert notes == [f"note: {path}:{where}: agents[1].audience: agent 'welcome_email' has an empty audience on the current data"]
    assert "none of the 2 customers in the database matches it" in result.output
    assert "lapsed 2" in result.output  # where the customers are instead
    assert "valid: 2 objectives" in result.output


def test_a_missing_file_is_one_line_with_its_fix(tmp_path: Path) -> None:
    with pytest.raises(LegatoError):
        validate(tmp_path / "nope.yaml")
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such playbook file" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # a template written as a YAML mapping key: composes, but cannot be built
        (("version: 1\n", "version: 1\n{{ unsubscribe_url }}: x\n"), "YAML syntax: while constructing a mapping, found unhashable key"),
        (("  protected_attributes: []", "  protected_attributes: 5"), "guardrails.protected_attributes"),
        (("  recency_months: number", "  recency_months: [number]"), "attributes.recency_months"),
    ],
)
def test_malformed_sections_are_problems_not_tracebacks(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    text = EXAMPLE.replace(edit[0], edit[1], 1)
    path = tmp_path / "pb.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and expected in result.output


def test_audiences_are_counted_beside_the_problems_and_a_missing_database_is_not_created(tmp_path: Path, database_url: str) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(CUSTOMERS, encoding="utf-8")
    engine = connect(database_url)
    try:
        import_customers(engine, source)
    finally:
        engine.dispose()
    # agents[0]'s audience does not compile (its problem says so); agents[1]'s is still counted.
    text = EXAMPLE.replace("""audience: 'lifecycle_stage in ("cooling", "lapsed")'""", "audience: 'wommens'", 1)
    path = tmp_path / "pb.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path), "--database", database_url, "--json"])
    assert result.exit_code == 2
    found = json.loads(result.stdout)
    assert any("agents[0].audience: unknown field or segment 'wommens'" in p for p in found["problems"])
    assert [n.split(": ", 1)[1].split("\n")[0] for n in found["notes"] if "audience" in n] == [
        "agents[1].audience: agent 'welcome_email' has an empty audience on the current data"
    ]
    missing = tmp_path / "typo.db"
    result = runner.invoke(app, ["validate", str(path), "--database", f"sqlite:///{missing}"])
    assert result.exit_code == 2 and "there is no database at" in result.output and not missing.exists()
