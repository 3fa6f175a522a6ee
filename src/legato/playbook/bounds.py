"""Bounds on a playbook document, checked before anything walks or builds it.

YAML aliases let a few lines stand for an enormous document: nine levels of ``&a [*b, *b,
... ]`` ("billion laughs") compose into a small graph of nodes but expand to 10^9 values,
and every consumer that walks the data (positions, expression checks, the models) expands
it. One `legato validate` ran 75 s and took 5.7 GB. Deep nesting ("[[[[...]]]]") makes the
recursive composer and walkers fail with a RecursionError.

:func:`check_document` measures the composed node graph without expanding it: the number of
values it would expand to (memoized per node, so it costs one pass over the distinct nodes)
and its depth, both iteratively. A real playbook has a few thousand values and nests a dozen
levels; the limits are far above that and far below what hurts.
"""

from __future__ import annotations

import yaml

from legato.playbook.positions import Mark

MAX_BYTES = 5_000_000  # a playbook is configuration; a few hundred kilobytes at most in practice
MAX_VALUES = 200_000  # values after expanding aliases
MAX_DEPTH = 60  # nesting of mappings and sequences


class DocumentTooLarge(ValueError):
    def __init__(self, message: str, mark: Mark, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.hint = hint


def check_document(root: yaml.Node) -> None:
    """Raise :class:`DocumentTooLarge` if ``root`` expands past the limits (it is not expanded)."""
    sizes: dict[int, int] = {}
    # Depth first without recursion: (node, depth, children done?).
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_VALUES:
                raise DocumentTooLarge(
                    f"the document expands to more than {MAX_VALUES:,} values (aliases that repeat aliases)",
                    Mark.of(node),
                    "a playbook needs no nested aliases; write the repeated part once, or use fewer '*' references",
                )
            continue
        if key in sizes:
            continue
        if depth > MAX_DEPTH:
            raise DocumentTooLarge(
                f"the document nests more than {MAX_DEPTH} levels deep",
                Mark.of(node),
                "flatten the structure; a playbook nests a dozen levels at most",
            )
        if key in on_path:  # a recursive alias; PyYAML's safe loader refuses these too
            raise DocumentTooLarge("an alias refers to itself", Mark.of(node), "remove the recursive '*' reference")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
