"""``legato check message``: verdicts, exit codes, JSON shape and input errors."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli.check import check_app

EXAMPLE = Path(str(files("legato.playbook").joinpath("example/playbook.yaml")))
GOOD_EMAIL = (
    "Subject: New boots\n\nHello,\n\nNew boots are in.\n\n"
    "Unsubscribe: {{ unsubscribe_url }}\nHillside Outfitters, 100 Example Street, Springfield, OR 97477, USA\n"
)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(check_app, ["message", *args])
    return result.exit_code, result.output


def as_json(*args: str) -> tuple[int, dict[str, object]]:
    code, output = run(*args, "--json")
    return code, json.loads(output)


def test_ok_sms_prints_exactly_verdict_and_findings() -> None:
    code, report = as_json("--channel", "sms", "--text", "Northwind: new bread is in. Reply STOP to opt out.")
    assert (code, report) == (0, {"verdict": "ok", "findings": []})


def test_blocking_findings_exit_1_with_spans_and_reasons() -> None:
    code, report = as_json("--channel", "sms", "--text", "Hurry, only 2 left!")
    assert code == 1 and report["verdict"] == "block"
    findings = report["findings"]
    assert isinstance(findings, list)
    assert set(findings[0]) == {"rule", "family", "severity", "span", "reason"}
    by_rule = {f["rule"]: f for f in findings}
    assert by_rule["compliance.fake_urgency"]["span"] == [0, 5]
    assert by_rule["compliance.false_scarcity"]["span"] == [7, 18]
    assert {"compliance.sms_brand_missing", "compliance.sms_stop_missing"} <= set(by_rule)  # first SMS by default


def test_not_first_sms_skips_the_opt_in_rules() -> None:
    code, report = as_json("--channel", "sms", "--text", "New bread is in.", "--not-first-sms")
    assert (code, report["verdict"]) == (0, "ok")


def test_email_from_a_file_with_the_playbook(tmp_path: Path) -> None:
    message = tmp_path / "mail.txt"
    message.write_text(GOOD_EMAIL, encoding="utf-8")
    assert as_json("--channel", "email", "--file", str(message), "--playbook", str(EXAMPLE)) == (
        0,
        {"verdict": "ok", "findings": []},
    )
    message.write_text(GOOD_EMAIL.replace("New boots are in.", "Cheap boots are in."), encoding="utf-8")
    code, report = as_json("--channel", "email", "--file", str(message), "--playbook", str(EXAMPLE))
    assert (code, report["verdict"]) == (0, "escalate")  # "cheap" is in the brand's avoid list
    [finding] = report["findings"]
    text = "Subject: New boots\n\n" + GOOD_EMAIL.split("\n\n", 1)[1].replace("New boots are in.", "Cheap boots are in.")
    assert text[finding["span"][0] : finding["span"][1]] == "Cheap"


def test_without_a_playbook_brand_voice_rules_do_not_apply() -> None:
    code, report = as_json("--channel", "email", "--text", GOOD_EMAIL.replace("New boots are in.", "Cheap boots 🥾!"))
    assert (code, report) == (0, {"verdict": "ok", "findings": []})


def test_offer_deadline_from_the_playbook(tmp_path: Path) -> None:
    playbook = tmp_path / "playbook.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "  - {id: free_shipping, kind: free_shipping, value: 8, cost: 3.5}",
        "  - {id: free_shipping, kind: free_shipping, value: 8, cost: 3.5}\n"
        '  - {id: boot_weekend, kind: amount_off, value: 25, cost: 25, deadline: "2025-04-13T23:59:00-07:00"}',
    )
    playbook.write_text(text, encoding="utf-8")
    args = ("--channel", "push", "--text", "Boot weekend ends tonight.", "--playbook", str(playbook))
    assert as_json(*args)[1]["verdict"] == "block"
    assert as_json(*args, "--offer", "boot_weekend") == (0, {"verdict": "ok", "findings": []})
    code, output = run(*args, "--offer", "nope")
    assert code == 2 and "offer 'nope' is not in the playbook" in output


def test_push_title_header() -> None:
    code, report = as_json("--channel", "push", "--text", "Title: " + "x" * 60 + "\n\nNew boots.")
    assert code == 0
    assert [f["rule"] for f in report["findings"]] == ["voice.push_title_length"]
    assert report["findings"][0]["span"] == [7, 67]


def test_rich_output_shows_the_table_the_text_and_the_verdict() -> None:
    code, output = run("--channel", "sms", "--text", "Hurry [bold]now[/bold]", "--not-first-sms")
    assert code == 1
    assert "compliance.fake_urgency" in output
    assert "Hurry [bold]now[/bold]" in output  # the text is shown literally, not as markup
    assert "verdict: block" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--channel", "email", "--text", "Hello there"), "must start with a 'Subject:' line"),
        (("--channel", "email", "--text", "Subject: Hi\nno blank line"), "must start with a 'Subject:' line"),
        (("--channel", "sms"), "exactly one of --text or --file"),
        (("--channel", "sms", "--text", "a", "--file", "b.txt"), "exactly one of --text or --file"),
        (("--channel", "sms", "--file", "/no/such/file.txt"), "no such file"),
        (("--channel", "fax", "--text", "hello"), "'fax' is not one of"),
        (("--channel", "sms", "--text", "hi", "--playbook", "/no/such/playbook.yaml"), "no such playbook file"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: tuple[str, ...], message: str) -> None:
    code, output = run(*args)
    assert code == 2
    assert message in " ".join(output.replace("│", " ").split())  # Rich may wrap usage errors in a box


def test_an_invalid_playbook_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "playbook.yaml"
    broken.write_text("version: 1\nbrand: {name: X}\n", encoding="utf-8")
    code, output = run("--channel", "sms", "--text", "hi", "--playbook", str(broken))
    assert code == 2
    assert "the playbook was not used" in output


def test_playbook_ai_disclosure_is_enforced(tmp_path: Path) -> None:
    text = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    path = tmp_path / "pb.yaml"
    path.write_text(text.replace('    unsubscribe_url: "https://hillside.example.com/unsubscribe"', '    unsubscribe_url: "https://hillside.example.com/unsubscribe"\n  ai_disclosure: true'))
    message = "Hillside Outfitters: new boots are in. Reply STOP to opt out."
    plain = CliRunner().invoke(check_app, ["message", "--channel", "sms", "--text", message, "--playbook", str(path), "--json"])
    assert "compliance.ai_disclosure_missing" in {f["rule"] for f in json.loads(plain.stdout)["findings"]}
    disclosed = CliRunner().invoke(check_app, ["message", "--channel", "sms", "--text", message + " Written with AI.", "--playbook", str(path), "--json"])
    assert "compliance.ai_disclosure_missing" not in {f["rule"] for f in json.loads(disclosed.stdout)["findings"]}
