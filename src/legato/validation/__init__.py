"""Load a playbook with every check: its own (in :mod:`legato.playbook`) and what the
packages it configures say about it (expressions, features, policies, templates).

This is how every face loads a playbook. The playbook package knows nothing of audience,
decide, deliver or trust; this package hands their checks to its loader. The content of
each creative (the one check of a message) is reported by ``legato validate`` through
:func:`content_problems`; a creative the content guardrails block does not stop the
playbook from loading, because the cycle blocks that variant on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from legato.playbook import loader
from legato.playbook.loader import PlaybookError, place_problems, read_text
from legato.playbook.models import Playbook
from legato.playbook.problems import Placed, Problem
from legato.validation.content import content_problems
from legato.validation.references import check_references, expression_problems

__all__ = ["CHECKS", "Placed", "PlaybookError", "Problem", "Validation", "content_problems", "load_playbook", "parse_playbook", "validate", "validate_text"]


class _Checks:
    def raw(self, data: Mapping[str, Any]) -> list[Problem]:
        return expression_problems(data)

    def model(self, playbook: Playbook) -> list[Problem]:
        return check_references(playbook)


CHECKS = _Checks()


def load_playbook(path: str | Path) -> Playbook:
    """Read, validate and cross-check a playbook; raise :class:`PlaybookError` listing all problems."""
    return loader.load_playbook(path, checks=CHECKS)


def parse_playbook(text: str, file: str = "<playbook>") -> Playbook:
    """:func:`load_playbook` for YAML text already read."""
    return loader.parse_playbook(text, file, checks=CHECKS)


@dataclass
class Validation:
    """Everything ``legato validate`` says about a playbook file, in one round.

    ``problems`` make the playbook unusable (each ``FILE:LINE:COL: field: message``, with a
    hint line); ``notes`` are findings a marketer may act on (content that escalates or
    warns, audiences empty on the data). ``playbook`` is set when there are no problems.
    """

    file: str
    placed: list[Placed] = field(default_factory=list)  # the problems, each at its line and column
    placed_notes: list[Placed] = field(default_factory=list)
    playbook: Playbook | None = None

    @property
    def problems(self) -> list[str]:
        return [entry.render(self.file) for entry in self.placed]

    @property
    def notes(self) -> list[str]:
        return [entry.render(self.file) for entry in self.placed_notes]

    @property
    def valid(self) -> bool:
        return not self.placed


def validate(path: str | Path, *, engine: Any = None, at: datetime | None = None) -> Validation:
    """Every problem of a playbook at once: YAML, the models, references between sections,
    what the configured packages say, and the content of each creative through the one
    check of a message. Where the models reject a part, the rest is still checked.

    With ``engine``, each agent's audience is also counted on the data (at ``at``, default
    now) and an empty one is a note. A missing or unreadable file raises :class:`LegatoError`.
    """
    return validate_text(read_text(path), str(path), engine=engine, at=at)


def validate_text(text: str, file: str = "<playbook>", *, engine: Any = None, at: datetime | None = None) -> Validation:
    """:func:`validate` for YAML text already read (a playbook sent over HTTP, say)."""
    from legato.playbook.loader import parse_playbook as parse

    result = Validation(file)
    try:
        playbook = parse(text, file, checks=CHECKS)
        problems: list[Problem] = []
        checked, place = playbook, (lambda found: found)
    except PlaybookError as error:
        if error.partial is None or not error.problems:
            result.placed = error.placed
            return result
        problems = list(error.problems)
        checked, place = error.partial.playbook, error.partial.place
        playbook = None
    problems += place(content_problems(checked))
    notes = place(content_problems(checked, severities=("escalate", "warn")))
    if engine is not None:
        from legato.validation.audiences import empty_audiences

        notes += place(empty_audiences(engine, checked, at))
    result.placed = place_problems(text, problems)
    result.placed_notes = place_problems(text, notes)
    result.playbook = playbook if not problems else None
    return result
