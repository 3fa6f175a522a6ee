"""Load a playbook file and report every problem in it at once, each with its place.

Problems come from four layers, collected rather than stopping at the first: YAML syntax
(and duplicate keys), the Pydantic models (types, unknown keys, limits), the playbook's own
references (:mod:`legato.playbook.links`) and the checks of the packages it configures,
which the caller hands in (``checks``; :mod:`legato.validation` holds them, so this package
imports none of the packages it configures). Each is printed as
``FILE:LINE:COL: path.to.field: message`` with a hint where one helps.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ValidationError

from legato.errors import LegatoError
from legato.playbook.links import check_links
from legato.playbook.bounds import MAX_BYTES, MAX_DEPTH, DocumentTooLarge, check_document
from legato.playbook.models import Playbook
from legato.playbook.positions import PositionMap, compose_positions
from legato.playbook.positions import Path as FieldPath
from legato.playbook.problems import Placed, Problem

__all__ = ["PartialPlaybook", "PlaybookChecks", "PlaybookError", "Placed", "Problem", "load_playbook", "parse_playbook", "place_problems", "read_text", "render_problems"]


class PlaybookChecks(Protocol):
    """What the packages a playbook configures check in it (see :mod:`legato.validation`)."""

    def raw(self, data: Mapping[str, Any]) -> list[Problem]:
        """Problems found in the raw YAML data, so they show even when the models reject it."""
        ...

    def model(self, playbook: Playbook) -> list[Problem]:
        """Problems in a playbook that passed the models."""
        ...


class PlaybookError(LegatoError):
    """A playbook that cannot be used; ``problems`` lists every reason with its place."""

    def __init__(
        self, file: str, lines: list[str] | list[Placed], *, problems: list[Problem] | None = None, partial: PartialPlaybook | None = None
    ) -> None:
        self.file = file
        # Each problem at its place; given as lines already rendered (a face's own), they have no place.
        self.placed = [entry for entry in lines if isinstance(entry, Placed)]
        lines = [entry.render(file) if isinstance(entry, Placed) else entry for entry in lines]
        self.lines = lines
        self.problems = problems or []  # the problems behind ``lines`` (none for a YAML syntax error)
        # What of the playbook passed the models (the sections or items that failed left
        # out), so a face can run more checks on it, e.g. the content of its creatives.
        self.partial = partial
        count = len(lines)
        super().__init__(
            "\n".join(lines) + f"\n{file}: {count} problem{'s' if count != 1 else ''}; the playbook was not used"
        )


def load_playbook(path: str | Path, *, checks: PlaybookChecks) -> Playbook:
    """Read, validate and cross-check a playbook; raise :class:`PlaybookError` listing all problems."""
    return parse_playbook(read_text(path), str(path), checks=checks)


def read_text(path: str | Path) -> str:
    """A playbook file's text, or a :class:`LegatoError` naming the file and the fix."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LegatoError(
            f"{path}: no such playbook file", hint="create one with `legato init DIR` or check the path"
        ) from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise LegatoError(f"{path}: cannot be read as a UTF-8 YAML file ({exc})") from None


def parse_playbook(text: str, file: str = "<playbook>", *, checks: PlaybookChecks) -> Playbook:
    if len(text) > MAX_BYTES:
        raise PlaybookError(file, [Placed(1, 1, "(file)", f"the file has {len(text):,} characters, more than a playbook needs ({MAX_BYTES:,})",
                                          "check that this is the playbook and not a data file")])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            check_document(root)
        _, positions = compose_positions(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(file, [_yaml_problem(file, exc)]) from None
    except DocumentTooLarge as exc:
        raise PlaybookError(file, [Placed(exc.mark.line, exc.mark.column, "(document)", exc.message, exc.hint)]) from None
    except RecursionError:  # nesting so deep the composer itself gives up before it is measured
        raise PlaybookError(file, [Placed(1, 1, "(document)", f"the document nests more than {MAX_DEPTH} levels deep", "flatten the structure")]) from None
    problems: list[Problem] = [
        Problem(path, f"duplicate key '{path[-1]}' (first at line {first.line})", mark=second)
        for path, first, second in positions.duplicates
    ]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # composes but cannot be built, e.g. a mapping used as a key
        raise PlaybookError(file, [_yaml_problem(file, exc)]) from None
    if not isinstance(data, dict):
        problems.append(Problem((), "a playbook is a YAML mapping with brand, objectives, agents, ..."))
        raise PlaybookError(file, _place(problems, positions))
    problems.extend(checks.raw(data))
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, data))
        # The rest of the file is still checked: the parts that passed the models are
        # cross-checked too, so a misspelled key does not hide a policy or creative that
        # does not exist (every problem in one round).
        partial = _partial_playbook(data, exc)
        if partial is not None:
            problems.extend(partial.place(check_links(partial.playbook)))
            problems.extend(partial.place(checks.model(partial.playbook)))
        problems = _unique(problems)
        raise PlaybookError(file, _place(problems, positions), problems=problems, partial=partial) from None
    problems.extend(check_links(playbook))
    problems.extend(checks.model(playbook))
    if problems:
        partial = PartialPlaybook(playbook, {}, set())
        raise PlaybookError(file, _place(problems, positions), problems=problems, partial=partial)
    playbook._source = (text, playbook.model_dump_json())
    return playbook


@dataclass
class PartialPlaybook:
    """The playbook without what failed the models, and how to put its problems back in
    place: a list item that was left out shifts the ones after it."""

    playbook: Playbook
    removed: dict[FieldPath, list[int]]  # list path -> original indices left out (ascending)
    removed_ids: set[str]  # ids and stage names of what was left out

    def place(self, found: list[Problem]) -> list[Problem]:
        """Problems found in :attr:`playbook`, at their place in the file."""
        placed = []
        for problem in found:
            if any(f"named '{name}'" in problem.message for name in self.removed_ids):
                continue  # it refers to something left out, which has its own problem
            placed.append(replace(problem, path=_original_path(problem.path, self.removed)))
        return placed


_MAX_PRUNING = 50  # rounds of leaving out what failed before giving up on a partial check


def _partial_playbook(data: dict[str, Any], error: ValidationError) -> PartialPlaybook | None:
    """The playbook the models accept once every value, item or section that failed is left
    out: first the value itself (an optional one takes its default), and when the model
    needs it, the list item or section that holds it. ``None`` when nothing usable is left."""
    work = copy.deepcopy(data)
    removed: dict[FieldPath, list[int]] = {}
    removed_ids: set[str] = set()
    current = error
    for _ in range(_MAX_PRUNING):
        paths = {
            (_data_path(item["loc"], work), item["type"] == "missing")
            for item in current.errors()
        }
        # Deepest and last first, so leaving one item out does not move another one's place.
        ordered = sorted(paths, key=lambda p: [(0, str(x)) if isinstance(x, str) else (1, x) for x in p[0]], reverse=True)
        if not all([_leave_out(work, path, missing, removed, removed_ids) for path, missing in ordered]):
            return None
        try:
            playbook = Playbook.model_validate(work)
        except ValidationError as again:
            current = again
            continue
        return PartialPlaybook(playbook, {k: sorted(v) for k, v in removed.items()}, removed_ids)
    return None


def _leave_out(
    work: dict[str, Any], path: FieldPath, missing: bool, removed: dict[FieldPath, list[int]], removed_ids: set[str]
) -> bool:
    """Leave out the part of ``work`` at ``path``, or for a missing value the list item
    (else the section) that holds it. False when there is nothing to leave out."""
    nodes: list[Any] = [work]
    steps: list[str | int] = []
    for part in path:
        node = nodes[-1]
        if isinstance(node, dict) and part in node:
            nodes.append(node[part])
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            nodes.append(node[part])
        else:
            break
        steps.append(part)
    if not steps:
        return False
    end = len(steps)
    if missing or end < len(path):
        # the model needs what is not there: leave out the nearest list item holding it
        items = [i for i, step in enumerate(steps) if isinstance(step, int)]
        if items:
            end = items[-1] + 1
        elif len(steps) > 1:
            end = 1  # a required part of a section with no list: the whole section
        else:
            return False  # a required section: nothing sensible is left to check
    parent, key = nodes[end - 1], steps[end - 1]
    if isinstance(parent, list) and isinstance(key, int):
        original = _original_path(tuple(steps[:end]), removed)
        removed.setdefault(original[:-1], []).append(int(original[-1]))
        item = parent.pop(key)
        if isinstance(item, dict):
            removed_ids.update(item[k] for k in ("id", "stage") if isinstance(item.get(k), str))
        return True
    if isinstance(parent, dict) and key in parent:
        del parent[key]
        return True
    return False


def _original_path(path: FieldPath, removed: Mapping[FieldPath, list[int]]) -> FieldPath:
    """Where a part of the pruned data stood in the file, given the list items left out."""
    parts = list(path)
    for depth, part in enumerate(parts):
        if not isinstance(part, int):
            continue
        index = part
        for original in sorted(removed.get(tuple(parts[:depth]), [])):
            if original <= index:  # ascending: each one left out at or before it shifts it on
                index += 1
        parts[depth] = index
    return tuple(parts)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[FieldPath, str]] = set()
    kept = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            kept.append(problem)
    return kept


def playbook_text(playbook: Playbook) -> str:
    """The text of exactly this playbook: the file it was parsed from if it is unchanged since,
    else its fields written out as YAML (a playbook built in code, or a changed copy).

    Either text parses back to an equal playbook; it is what the store records as the version
    a cycle ran (:mod:`legato.store.playbook_versions`).
    """
    source = playbook._source
    if source is not None and source[1] == playbook.model_dump_json():
        return source[0]
    data = playbook.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def playbook_from_text(text: str, file: str) -> Playbook:
    """A playbook the store recorded, read back without the cross-section checks: it passed
    them when it ran, and a message already decided must stay readable."""
    try:
        data = yaml.safe_load(text)
        playbook = Playbook.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise LegatoError(
            f"{file}: the stored playbook can no longer be read ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            hint="this Legato reads playbooks differently from the one that stored it; reject the item or send it with the Legato that decided it",
        ) from None
    playbook._source = (text, playbook.model_dump_json())
    return playbook


def _yaml_problem(file: str, exc: yaml.YAMLError) -> Placed:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Placed(line, column, "YAML syntax", detail, "check indentation and quoting; a ':' inside a value needs quotes")


def _pydantic_problems(error: ValidationError, data: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors():
        path = _data_path(item["loc"], data)
        kind = item["type"]
        if kind == "extra_forbidden":
            name = str(path[-1])
            allowed = _allowed_keys(path[:-1], data)
            close = get_close_matches(name, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else (
                f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else None
            )
            problems.append(Problem(path, f"unknown key '{name}'", hint, mark=None))
            continue
        message = item["msg"].removeprefix("Value error, ")
        if kind == "union_tag_invalid":  # a 'kind' no member of the union has
            ctx = item.get("ctx", {})
            problems.append(Problem((*path, ctx.get("discriminator", "'kind'").strip("'")), f"unknown kind {ctx.get('tag', '')!r}",
                                    f"use one of {ctx.get('expected_tags', '')}"))
            continue
        if kind == "missing":
            message = f"'{path[-1]}' is required here"
        problems.append(Problem(path, message, _hint_for(kind, item)))
    return problems


def _data_path(loc: Sequence[Any], data: Any) -> FieldPath:
    """An error location as a path in the data: without the union members' names Pydantic adds
    (``literal['any']``, ``str``), but keeping a key of the data that looks like one (a key
    written ``str:`` or ``a[b]`` is the playbook's own, and is what the problem is about)."""
    path: list[str | int] = []
    here: Any = data
    for part in loc:
        if isinstance(here, dict) and part in here:
            path.append(part)
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            path.append(part)
            here = here[part]
        elif _is_union_tag(part) or (isinstance(here, dict) and here.get("kind") == part):
            continue  # a union member's name, or the tag of a union told apart by its 'kind'
        else:
            path.append(part)  # not in the data (a missing key): the rest cannot be walked
            here = None
    return tuple(path)


def _is_union_tag(part: Any) -> bool:
    # Pydantic adds the union member's type name (e.g. 'literal['any']') to error locations.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float"})


def _hint_for(kind: str, item: Any) -> str | None:
    if kind == "enum" and "ctx" in item:
        return f"use one of {item['ctx'].get('expected')}"
    if kind.startswith("string_pattern"):
        return "ids are lower_snake_case: a letter, then letters, digits or _"
    if kind in {"int_parsing", "float_parsing", "int_from_float"}:
        return "write a plain number without quotes or units"
    return None


def _allowed_keys(parent: Sequence[str | int], data: dict[str, Any]) -> list[str]:
    """The field names the model at ``parent`` accepts, for 'did you mean' hints: list items
    and a dict's own keys (``channels.email``) are stepped over, and of a union told apart by
    ``kind`` the member the data names is taken."""
    annotation: Any = Playbook
    here: Any = data
    for part in parent:
        here = here.get(part) if isinstance(here, dict) else here[part] if isinstance(here, list) and isinstance(part, int) and part < len(here) else None
        if isinstance(part, int) or _is_dict(annotation):
            annotation = _value_type(annotation)
            continue
        model = _model_in(annotation, here)
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return []
        annotation = field.annotation
    model = _model_in(annotation, here)
    return list(model.model_fields) if model is not None else []


def _is_dict(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is dict


def _value_type(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ()) or ()
    return args[-1] if args else None


def _model_in(annotation: Any, data: Any = None) -> type[BaseModel] | None:
    """The model an annotation holds; of several (a union), the one whose ``kind`` is the data's."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        model = _model_in(arg, data)
        if model is not None:
            found.append(model)
    if len(found) > 1 and isinstance(data, dict) and "kind" in data:
        for model in found:
            kind = model.model_fields.get("kind")
            if kind is not None and kind.default == data["kind"]:
                return model
    return found[0] if found else None


def render_problems(text: str, file: str, problems: list[Problem]) -> list[str]:
    """``FILE:LINE:COL: field: message`` lines for problems found in an already loaded playbook."""
    return [entry.render(file) for entry in place_problems(text, problems)]


def place_problems(text: str, problems: list[Problem]) -> list[Placed]:
    """Problems found in an already loaded playbook, each at its line and column, in file order."""
    _, positions = compose_positions(text)
    return _place(problems, positions)


def _place(problems: list[Problem], positions: PositionMap) -> list[Placed]:
    placed: list[Placed] = []
    for problem in problems:
        mark = problem.mark
        if mark is None and problem.offset is not None and problem.path in positions.scalars:
            mark = positions.scalars[problem.path].offset(problem.offset)
        if mark is None:
            about_key = problem.message.startswith(("unknown key", "duplicate key"))
            mark = positions.locate(problem.path, prefer_key=about_key)
        placed.append(Placed(mark.line, mark.column, problem.dotted(), problem.message, problem.hint))
    placed.sort(key=lambda item: (item.line, item.column))
    return placed
