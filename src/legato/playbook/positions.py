"""Where each value of a YAML document stands, so errors can name ``FILE:LINE:COL``.

PyYAML's composer keeps the start mark of every node; walking the node tree once gives a
map from a path such as ``("agents", 0, "policy", "name")`` to the line and column of that
key and of its value. Duplicate keys, which ``yaml.safe_load`` would silently resolve to
the last value, are collected as problems here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based

    @classmethod
    def of(cls, node: yaml.Node) -> Mark:
        return cls(node.start_mark.line + 1, node.start_mark.column + 1)


@dataclass(frozen=True)
class ScalarText:
    """Where a scalar's text starts in the file, to point inside it (plain or quoted style)."""

    mark: Mark
    style: str | None  # None (plain), "'" or '"', "|" or ">"
    text: str = ""  # the scalar's value (for a literal block, to count its lines)
    indent: int | None = None  # a literal block's indentation: its text starts on the next line

    def offset(self, index: int) -> Mark | None:
        """The mark of character ``index`` of the scalar, when it stands on one line or is a
        literal block (``|``), whose lines are the file's lines."""
        if self.style in (None, "'", '"'):
            return Mark(self.mark.line, self.mark.column + index + (1 if self.style else 0))
        if self.style == "|" and self.indent is not None and 0 <= index <= len(self.text):
            before = self.text[:index]
            line_start = before.rfind("\n") + 1
            return Mark(self.mark.line + 1 + before.count("\n"), self.indent + index - line_start + 1)
        return None


@dataclass
class PositionMap:
    keys: dict[Path, Mark] = field(default_factory=dict)
    values: dict[Path, Mark] = field(default_factory=dict)
    scalars: dict[Path, ScalarText] = field(default_factory=dict)
    duplicates: list[tuple[Path, Mark, Mark]] = field(default_factory=list)

    def locate(self, path: Path, *, prefer_key: bool = False) -> Mark:
        """The closest known mark for ``path``: itself, else its nearest ancestor."""
        for end in range(len(path), -1, -1):
            head = path[:end]
            first, second = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            if head in first:
                return first[head]
            if head in second:
                return second[head]
        return Mark(1, 1)


def compose_positions(text: str) -> tuple[yaml.Node | None, PositionMap]:
    """Compose ``text`` (raises ``yaml.YAMLError``) and map every path to its marks."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    positions = PositionMap()
    if root is not None:
        _walk(root, (), positions)
    return root, positions


def _block_indent(node: yaml.ScalarNode) -> int | None:
    """The indentation of a literal block's first line with text (None if not a literal block)."""
    buffer = getattr(node.start_mark, "buffer", None)
    if node.style != "|" or not isinstance(buffer, str):
        return None
    newline = buffer.find("\n", node.start_mark.pointer)
    if newline < 0:
        return None
    for line in buffer[newline + 1 : node.end_mark.pointer].split("\n"):
        if line.strip():
            return len(line) - len(line.lstrip(" "))
    return None


def _walk(node: yaml.Node, path: Path, positions: PositionMap) -> None:
    positions.values[path] = Mark.of(node)
    if isinstance(node, yaml.ScalarNode):
        positions.scalars[path] = ScalarText(Mark.of(node), node.style, node.value, _block_indent(node))
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                positions.duplicates.append((child, seen[key], Mark.of(key_node)))
            seen[key] = Mark.of(key_node)
            positions.keys[child] = Mark.of(key_node)
            _walk(value_node, child, positions)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions)
