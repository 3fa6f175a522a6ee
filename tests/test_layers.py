"""Import layers: the playbook package configures the others without importing them, and the
content checks, rendering and dispatch import each other in one direction only.

Every import statement counts, including those inside functions: an import deferred to call
time is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import legato

SRC = Path(legato.__file__).resolve().parent
CONFIGURED = ("legato.audience", "legato.decide", "legato.deliver", "legato.guard", "legato.trust", "legato.learn", "legato.store", "legato.monitor", "legato.cycle", "legato.validation")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_playbook_package_imports_none_of_the_packages_it_configures() -> None:
    offending = {
        f"{path.relative_to(SRC)}: {name}"
        for path in (SRC / "playbook").rglob("*.py")
        for name in imports_of(path)
        if name.startswith(CONFIGURED)
    }
    assert offending == set()


def test_rendering_does_not_import_the_dispatcher_or_the_checks_that_use_it() -> None:
    assert {m for m in imports_of(SRC / "deliver" / "render.py") if m.startswith(("legato.deliver.dispatch", "legato.guard.content", "legato.guard.message"))} == set()


def test_the_content_checks_import_nothing_from_delivery() -> None:
    for name in ("content", "findings", "voice", "compliance", "personal_data", "patterns"):
        assert {m for m in imports_of(SRC / "guard" / f"{name}.py") if m.startswith("legato.deliver")} == set(), name


def test_the_one_check_of_a_message_does_not_import_the_dispatcher() -> None:
    assert "legato.deliver.dispatch" not in imports_of(SRC / "guard" / "message.py")
