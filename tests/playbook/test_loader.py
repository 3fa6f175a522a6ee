"""The playbook loader: the shipped example is valid; every kind of mistake is named with its place."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from legato.errors import LegatoError
from legato.validation import PlaybookError, load_playbook, parse_playbook

EXAMPLE = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")


def problems(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, "pb.yaml")
    return caught.value.lines


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_example_playbook_is_valid() -> None:
    playbook = parse_playbook(EXAMPLE)
    assert [a.id for a in playbook.agents] == ["winback_email", "welcome_email"]
    assert playbook.objectives[0].kpis[0].metric.value == "visit_rate"  # primary KPI first


def test_misspelled_key_and_broken_expression_are_both_reported_with_lines() -> None:
    text = EXAMPLE.replace("    holdout: 0.1\n    budget: {daily_sends: 6000", "    holdot: 0.1\n    budget: {daily_sends: 6000", 1)
    text = text.replace('big_spenders: "lifetime_spend >= 500"', 'big_spenders: "lifetime_spend >= and 500"')
    found = problems(text)
    assert len(found) == 2
    typo_line = line_of(text, "holdot:")
    expr_line = line_of(text, "big_spenders:")
    assert found[0].startswith(f"pb.yaml:{expr_line}:")
    assert "segments.big_spenders" in found[0]
    assert found[1].startswith(f"pb.yaml:{typo_line}:5: agents[0].holdot: unknown key 'holdot'")
    assert "did you mean 'holdout'?" in found[1]


def test_expression_error_column_points_at_the_token() -> None:
    text = EXAMPLE.replace('mens_buyers: "mens and not womens"', 'mens_buyers: "mens and not wommens"')
    (only,) = problems(text)
    line = line_of(text, "mens_buyers:")
    column = text.splitlines()[line - 1].index("wommens") + 1
    assert only.startswith(f"pb.yaml:{line}:{column}: segments.mens_buyers: unknown field or segment 'wommens'")
    assert "did you mean 'womens'" in only


def test_malformed_yaml_names_the_line() -> None:
    (only,) = problems("brand:\n  name: [unclosed\nobjectives: []\n")
    assert only.startswith("pb.yaml:3:")
    assert "YAML syntax" in only


def test_duplicate_key_is_an_error() -> None:
    text = EXAMPLE.replace("  name: Hillside Outfitters\n", "  name: Hillside Outfitters\n  name: Other\n", 1)
    found = problems(text)
    assert any("duplicate key 'name'" in p for p in found)


def test_wrong_type_is_named() -> None:
    text = EXAMPLE.replace("    holdout: 0.1\n    budget: {daily_sends: 6000", "    holdout: lots\n    budget: {daily_sends: 6000", 1)
    (only,) = problems(text)
    assert f"pb.yaml:{line_of(text, 'holdout: lots')}:" in only
    assert "agents[0].holdout" in only


def test_dangling_references_are_named() -> None:
    text = EXAMPLE.replace("    objective: win_back\n", "    objective: win_bak\n", 1)
    text = text.replace("creatives: [mens_collection, womens_collection]\n      offers", "creatives: [mens_collection, sms_promo]\n      offers", 1)
    found = problems(text)
    assert any("agents[0].objective: no objective named 'win_bak'" in p and "did you mean 'win_back'?" in p for p in found)
    assert any("agents[0].actions.creatives[1]: no creative named 'sms_promo'" in p for p in found)


def test_creative_on_undeclared_channel() -> None:
    text = EXAMPLE.replace("  - id: mens_collection\n    channel: email", "  - id: mens_collection\n    channel: sms", 1)
    found = problems(text)
    assert any("creatives[0].channel: channel 'sms' is not declared under channels" in p for p in found)


def test_protected_attribute_in_segment_fails() -> None:
    text = EXAMPLE.replace("  protected_attributes: []", "  protected_attributes: [history_segment]")
    text = text.replace('mens_buyers: "mens and not womens"', 'mens_buyers: "mens and history_segment = \'1) $0 - $100\'"')
    (only,) = problems(text)
    assert "segments.mens_buyers: 'history_segment' is a protected attribute and cannot be used for targeting" in only
    line = line_of(text, "mens_buyers:")
    column = text.splitlines()[line - 1].index("history_segment") + 1
    assert only.startswith(f"pb.yaml:{line}:{column}:")


def test_unknown_policy_and_parameter() -> None:
    text = EXAMPLE.replace("    policy: {name: beta_thompson}", "    policy: {name: beta_thompson, params: {epsilon: 0.1}}")
    text = text.replace("    policy: {name: lin_ts, params: {alpha: 0.5}}", "    policy: {name: thompson}", 1)
    found = problems(text)
    assert any("agents[0].policy.name: unknown policy 'thompson'" in p for p in found)
    assert any("agents[1].policy.params.epsilon: unknown parameter" in p for p in found)


def test_template_syntax_error() -> None:
    text = EXAMPLE.replace("The spring men's collection has arrived at {{ brand.name }}.", "The spring men's collection has arrived at {{ brand.name }.", 1)
    (only,) = problems(text)
    assert "creatives[0]" in only and "template error" in only


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LegatoError, match="no such playbook file"):
        load_playbook(tmp_path / "nope.yaml")


def test_feature_expressions_are_checked() -> None:
    text = EXAMPLE.replace('"history / 1000"', '"histroy / 1000"').replace("""'purchase_channel = "Web"'""", "purchase_channel")
    found = problems(text)
    assert any("agents[0].features[4]: unknown field or segment 'histroy'" in p for p in found)
    assert any("agents[0].features[5]: feature 'purchase_channel' is a string" in p for p in found)


def test_forbidden_attribute_access_in_a_template_fails_validation() -> None:
    text = EXAMPLE.replace("The spring men's collection has arrived at {{ brand.name }}.", "The spring collection {{ customer.__class__ }}.", 1)
    (only,) = problems(text)
    assert "creatives[0]" in only and "sandbox forbids" in only


def test_action_features_need_one_row_per_action_in_the_action_space_order() -> None:
    """Adding a creative to a shared linear policy needs its feature row: a missing row is a
    playbook problem with the order of the actions, not a traceback in the next cycle."""
    rows = "[[0, 0], [1, 0], [1, 0], [0, 1], [0, 1]]"
    good = EXAMPLE.replace("    policy: {name: lin_ts, params: {alpha: 0.5}}", f"    policy: {{name: lin_ts, params: {{alpha: 0.5, action_features: {rows}}}}}")
    assert parse_playbook(good).agents[0].policy.params["action_features"][4] == [0, 1]
    added = good.replace("      creatives: [mens_collection, womens_collection]\n      offers:", "      creatives: [mens_collection, womens_collection, spring_sale]\n      offers:", 1)
    added = added.replace("\nagents:", '  - {id: spring_sale, channel: email, subject: "Sale", body: "Sale. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}\n\nagents:', 1)
    (only,) = problems(added)
    assert "agents[0].policy.params.action_features: action_features has 5 rows but the action space has 7 actions" in only
    assert "nothing, mens_collection/free_shipping/09:00-11:00, " in only and "spring_sale/free_shipping/18:00-20:00" in only


def test_a_channel_is_told_apart_by_its_kind_and_its_mistakes_are_named_as_that_kinds() -> None:
    old = "  email: {kind: file, path: outbox/email.jsonl}\n"
    assert old in EXAMPLE
    text = EXAMPLE.replace(old, "  email: {kind: file, paht: outbox/email.jsonl}\n  sms: {kind: smtpp}\n", 1)
    found = problems(text)
    email, sms = line_of(text, "paht:"), line_of(text, "smtpp")
    assert any(f"pb.yaml:{email}:" in line and "channels.email.paht: unknown key 'paht'" in line and "did you mean 'path'?" in line for line in found)
    assert any(f"pb.yaml:{email}:" in line and "channels.email.path: 'path' is required here" in line for line in found)
    assert any(f"pb.yaml:{sms}:" in line and "channels.sms.kind: unknown kind 'smtpp'" in line and "'console'" in line for line in found)


def test_a_channel_written_before_kinds_were_required_is_a_file() -> None:
    playbook = parse_playbook(EXAMPLE.replace("{kind: file, path: outbox/email.jsonl}", "{path: outbox/email.jsonl}", 1))
    channel = next(iter(playbook.channels.values()))
    assert channel.kind == "file" and channel.path == "outbox/email.jsonl" and channel.in_doubt == "resend"
