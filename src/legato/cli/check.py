"""``legato check message``: run the content checks on one message before it goes out.

An e-mail is given as a ``Subject:`` line, a blank line, then the body; a push
notification may start the same way with a ``Title:`` line. Exit codes: 1 when a finding
blocks the message, 0 otherwise, 2 for input that cannot be checked.
"""

from __future__ import annotations

from enum import Enum
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from legato.cli.output import console, emit_json, fail
from legato.errors import LegatoError
from legato.guard.findings import Finding, checked_text, verdict
from legato.playbook.models import Playbook
from legato.service import checks
from legato.service.checks import CHANNELS

check_app = typer.Typer(
    name="check",
    help="Check content against the brand voice, marketing law and personal-data rules.",
    no_args_is_help=True,
    add_completion=False,
)



@check_app.callback()
def _group() -> None:
    """Check content against the brand voice, marketing law and personal-data rules."""


STYLE = {"block": "bold white on red", "escalate": "black on yellow", "warn": "black on cyan"}


Channel = Enum("Channel", {name: name for name in CHANNELS}, type=str)  # type: ignore[misc]


class Purpose(str, Enum):
    marketing = "marketing"
    transactional = "transactional"


@check_app.command("message")
def message(
    channel: Annotated[Optional[Channel], typer.Option(help="The channel the message goes out on (a creative has its own).")] = None,
    text: Annotated[str | None, typer.Option("--text", help="The message itself.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A UTF-8 file holding the message (- for standard input); an e-mail starts 'Subject: ...', a blank line, then the body.")] = None,
    playbook: Annotated[
        Path | None, typer.Option(help="Apply this playbook's brand voice, legal identity and offers.")
    ] = None,
    offer: Annotated[str | None, typer.Option(help="The playbook offer the message carries (its deadline counts).")] = None,
    creative: Annotated[
        str | None, typer.Option(help="Check this creative of the playbook as the cycle does (rendered for a stand-in customer).")
    ] = None,
    purpose: Annotated[Purpose, typer.Option(help="Marketing, or transactional (an order update: no opt-out needed).")] = None,  # type: ignore[assignment]
    first_sms: Annotated[
        bool, typer.Option("--first-sms/--not-first-sms", help="The first SMS to this number (needs brand and STOP wording).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Check one message and show each finding with its place in the text.

    Examples (bash):
    `legato check message --channel sms --text "Hillside: new boots are in. Reply STOP to opt out."`;
    an e-mail, its subject line, a blank line, then the body, from a file or standard input:
    `printf 'Subject: New boots\\n\\nHello, ...' | legato check message --channel email --file -`
    """
    try:
        loaded = _load(playbook)
        if creative is not None:
            if text is not None or file is not None or channel is not None or purpose is not None:
                raise LegatoError(
                    "--creative takes the text, channel and purpose from the playbook",
                    hint="leave out --text, --file, --channel and --purpose, or check a text of your own without --creative",
                )
            if loaded is None:
                raise LegatoError("rendering a creative needs its playbook", hint="give --playbook")
            done = checks.check_creative(loaded, creative, offer=offer)
        else:
            if channel is None:
                raise LegatoError("say which channel the message goes out on", hint="--channel sms (or give --creative ID with --playbook)")
            done = checks.check_text(loaded, channel.value, _read(text, file), purpose=(purpose or Purpose.marketing).value, offer=offer, first_sms=first_sms)
    except LegatoError as error:
        fail(error)
    checked, findings = done.message, done.findings
    result = verdict(findings)
    if as_json:
        emit_json({"verdict": result, "findings": [_as_dict(f) for f in findings]})
    else:
        _show(checked_text(checked), len(checked.body), findings, result)
    raise typer.Exit(1 if result == "block" else 0)


def _read(text: str | None, file: Path | None) -> str:
    if (text is None) == (file is None):
        raise LegatoError("give the message with exactly one of --text or --file")
    if text is not None:
        return text
    assert file is not None
    if str(file) == "-":
        return sys.stdin.read()
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LegatoError(f"{file}: no such file", hint="check the path") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise LegatoError(f"{file}: cannot be read as UTF-8 text ({exc})") from None


def _load(playbook: Path | None) -> Playbook | None:
    if playbook is None:
        return None
    from legato.validation import load_playbook

    return load_playbook(playbook)


def _as_dict(finding: Finding) -> dict[str, object]:
    return {
        "rule": finding.rule,
        "family": finding.family,
        "severity": finding.severity,
        "span": [finding.span[0], finding.span[1]],
        "reason": finding.reason,
    }


def _show(text: str, body_length: int, findings: list[Finding], result: str) -> None:
    if findings:
        table = Table("severity", "rule", "span", "reason", title="findings", title_justify="left")
        for finding in findings:
            table.add_row(
                Text(finding.severity, style=STYLE[finding.severity]),
                Text(finding.rule),
                f"{finding.span[0]}-{finding.span[1]}",
                Text(finding.reason),
            )
        console.print(table)
    highlighted = Text(text)
    # A finding about a whole part (a missing opt-out, the reading grade) is listed above,
    # not painted over the text, which would hide the findings inside it.
    whole_body = (len(text) - body_length, len(text))
    # Milder severities first, so the most severe style wins where spans overlap.
    for finding in sorted(findings, key=lambda f: ("warn", "escalate", "block").index(f.severity)):
        if finding.span[1] > finding.span[0] and finding.span != whole_body:
            highlighted.stylize(STYLE[finding.severity], *finding.span)
    console.rule("checked text")
    console.print(highlighted)
    console.rule()
    colour = {"block": "red", "escalate": "yellow", "warn": "cyan", "ok": "green"}[result]
    console.print(f"verdict: [bold {colour}]{result}[/] ({len(findings)} finding{'s' if len(findings) != 1 else ''})")
