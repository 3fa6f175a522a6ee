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
from pathlib import Path
from typing import Any

from legato.playbook import loader
from legato.playbook.loader import PlaybookError
from legato.playbook.models import Playbook
from legato.playbook.problems import Problem
from legato.validation.content import content_problems
from legato.validation.references import check_references, expression_problems

__all__ = ["CHECKS", "PlaybookError", "Problem", "content_problems", "load_playbook", "parse_playbook"]


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
