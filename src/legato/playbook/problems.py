"""One thing wrong in a playbook, where it is and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass

from legato.playbook.positions import Mark
from legato.playbook.positions import Path as FieldPath


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a playbook, where it is and how to fix it."""

    path: FieldPath
    message: str
    hint: str | None = None
    mark: Mark | None = None
    offset: int | None = None  # character inside the scalar at ``path``, for expressions

    def dotted(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "(top level)"


@dataclass(frozen=True)
class Placed:
    """A problem at its place in the file: one entry of what ``legato validate`` prints, and
    what the HTTP API answers for each problem of a playbook it was sent."""

    line: int  # 1-based
    column: int  # 1-based
    field: str  # the dotted path in the playbook ("agents[0].policy.name"), or what failed ("YAML syntax")
    message: str
    hint: str | None = None

    def render(self, file: str) -> str:
        """``FILE:LINE:COL: field: message`` and its hint on the next line."""
        line = f"{file}:{self.line}:{self.column}: {self.field}: {self.message}"
        return line + (f"\n  hint: {self.hint}" if self.hint else "")
