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
