"""The segment expression language: lexer, recursive-descent parser, AST and errors.

Marketers write conditions such as
``days_since_last_purchase > 60 and lifetime_spend >= 100 and country in ("US", "CA")``
in their playbook. The text is parsed into a small typed tree here and compiled to SQL by
:mod:`legato.audience.sql`; it is never pasted into SQL, so no input can inject SQL.

Grammar (lowest precedence first; keywords are case-insensitive, identifiers are not)::

    expression  := or_expr EOF
    or_expr     := and_expr ("or" and_expr)*
    and_expr    := not_expr ("and" not_expr)*
    not_expr    := "not" not_expr | comparison
    comparison  := additive [ ("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive
                            | ["not"] "in" "(" literal ("," literal)* ")"
                            | ["not"] "between" additive "and" additive
                            | "is" ["not"] "null" ]
    additive    := term (("+" | "-") term)*
    term        := unary (("*" | "/") unary)*
    unary       := "-" unary | primary
    primary     := NUMBER | STRING | "true" | "false" | "null"
                 | IDENT "(" [or_expr ("," or_expr)*] ")" | IDENT | "(" or_expr ")"

Because the bounds of ``between`` are parsed as ``additive``, the ``and`` inside
``x between 1 and 5 and y`` belongs to ``between``; the second ``and`` is the boolean one.
Comparisons do not chain (``1 < x < 5`` is an error that suggests ``and``).

Every node carries ``start``/``end`` character offsets into the source so that every
error, here or in the type checker, can underline exactly the offending text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

__all__ = [
    "Arithmetic",
    "Between",
    "BoolOp",
    "Call",
    "Comparison",
    "ExpressionError",
    "InList",
    "IsNull",
    "Literal",
    "Name",
    "Negate",
    "Node",
    "Not",
    "identifiers",
    "parse",
    "walk",
]


# --------------------------------------------------------------------------- errors


class ExpressionError(ValueError):
    """A mistake in an expression, with the exact span of source text to blame.

    ``start``/``end`` are character offsets into ``source`` (``end`` exclusive). When the
    error lies inside a referenced segment, ``source`` is that segment's text, the message
    says which segment, and ``segment_path`` lists the segments followed to reach it.
    """

    def __init__(
        self,
        message: str,
        source: str,
        start: int,
        end: int,
        hint: str | None = None,
        *,
        segment_path: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.start = max(0, min(start, len(source)))
        self.end = max(self.start, min(end, len(source)))
        self.hint = hint
        self.segment_path = segment_path

    @property
    def line(self) -> int:
        """1-based line of ``start`` (expressions written as YAML block scalars span lines)."""
        return self.source.count("\n", 0, self.start) + 1

    @property
    def column(self) -> int:
        """1-based column of ``start`` within its line."""
        return self.start - (self.source.rfind("\n", 0, self.start) + 1) + 1

    def __str__(self) -> str:
        if "\n" in self.source:
            return f"{self.message} (at line {self.line}, column {self.column})"
        return f"{self.message} (at column {self.column})"

    def render(self) -> str:
        """Message, the offending source line, a caret line under the span, then the hint."""
        line_start = self.source.rfind("\n", 0, self.start) + 1
        line_end = self.source.find("\n", self.start)
        if line_end == -1:
            line_end = len(self.source)
        text = self.source[line_start:line_end]
        # Reuse tabs from the source line so the carets line up however tabs are displayed.
        pad = "".join("\t" if ch == "\t" else " " for ch in text[: self.start - line_start])
        width = max(1, min(self.end, line_end) - self.start)
        lines = [self.message, f"  {text}", f"  {pad}{'^' * width}"]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def in_segment(self, name: str) -> ExpressionError:
        """The same error seen from an expression that references segment ``name``.

        Only the innermost segment is named in the message, because ``source`` and the
        offsets belong to it; outer segments are only recorded in ``segment_path``.
        """
        message = self.message if self.segment_path else f"in segment '{name}': {self.message}"
        return ExpressionError(
            message,
            self.source,
            self.start,
            self.end,
            self.hint,
            segment_path=(name, *self.segment_path),
        )


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of all AST nodes; ``start``/``end`` are offsets into the parsed source."""

    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class Literal(Node):
    """``42``, ``1.5``, ``"US"``, ``true``, ``false`` or ``null`` (value ``None``)."""

    value: int | float | str | bool | None


@dataclass(frozen=True, kw_only=True)
class Name(Node):
    """A bare identifier: a field, or a named segment; the resolver decides which."""

    name: str


@dataclass(frozen=True, kw_only=True)
class Negate(Node):
    """Unary minus."""

    operand: Node


@dataclass(frozen=True, kw_only=True)
class Not(Node):
    """Boolean ``not``."""

    operand: Node


@dataclass(frozen=True, kw_only=True)
class Arithmetic(Node):
    """``left op right`` with ``op`` one of ``+ - * /``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, kw_only=True)
class Comparison(Node):
    """``left op right``; ``op`` is normalised to one of ``= != < <= > >=``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, kw_only=True)
class BoolOp(Node):
    """``a and b and c`` or ``a or b``; chains are flattened into ``operands``."""

    op: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True, kw_only=True)
class InList(Node):
    """``operand [not] in (literal, ...)``; ``items`` is never empty."""

    operand: Node
    items: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True, kw_only=True)
class Between(Node):
    """``operand [not] between low and high`` (inclusive at both ends, as in SQL)."""

    operand: Node
    low: Node
    high: Node
    negated: bool


@dataclass(frozen=True, kw_only=True)
class IsNull(Node):
    """``operand is [not] null``."""

    operand: Node
    negated: bool


@dataclass(frozen=True, kw_only=True)
class Call(Node):
    """``name(arg, ...)``; ``name`` is lower-cased, ``name_end`` ends the name's span."""

    name: str
    args: tuple[Node, ...]
    name_end: int


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    yield node
    match node:
        case Negate(operand=child) | Not(operand=child) | IsNull(operand=child):
            yield from walk(child)
        case Arithmetic(left=left, right=right) | Comparison(left=left, right=right):
            yield from walk(left)
            yield from walk(right)
        case BoolOp(operands=children) | Call(args=children):
            for child in children:
                yield from walk(child)
        case InList(operand=operand, items=items):
            yield from walk(operand)
            yield from items
        case Between(operand=operand, low=low, high=high):
            yield from walk(operand)
            yield from walk(low)
            yield from walk(high)


def identifiers(node: Node) -> set[str]:
    """All bare identifiers the expression references (not function names).

    Referenced segments are *not* expanded: a caller that needs to vet fields used through
    segments (for example to refuse protected attributes) must look at those segments too.
    """
    return {n.name for n in walk(node) if isinstance(n, Name)}


# --------------------------------------------------------------------------- lexer

KEYWORDS = frozenset({"and", "or", "not", "in", "between", "is", "null", "true", "false"})
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\"}


@dataclass(frozen=True)
class Token:
    kind: str  # "number" | "string" | "ident" | "keyword" | "op" | "eof"
    text: str  # source text; lower-cased for keywords
    start: int
    end: int
    value: int | float | str | None = None  # for number and string tokens


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with an ``eof`` token at ``len(source)``."""
    tokens: list[Token] = []
    pos, size = 0, len(source)
    while pos < size:
        ch = source[pos]
        if ch.isspace():
            pos += 1
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            end = pos + 1
            while end < size and source[end].isascii() and (source[end].isalnum() or source[end] == "_"):
                end += 1
            word = source[pos:end]
            if word.lower() in KEYWORDS:
                tokens.append(Token("keyword", word.lower(), pos, end))
            else:
                tokens.append(Token("ident", word, pos, end))
            pos = end
        elif ch.isascii() and ch.isdigit():
            tokens.append(_number(source, pos))
            pos = tokens[-1].end
        elif ch in "\"'":
            tokens.append(_string(source, pos))
            pos = tokens[-1].end
        else:
            for op in _OPERATORS:
                if source.startswith(op, pos):
                    tokens.append(Token("op", op, pos, pos + len(op)))
                    pos += len(op)
                    break
            else:
                hint = "'!' only appears in '!='" if ch == "!" else None
                raise ExpressionError(f"unexpected character {ch!r}", source, pos, pos + 1, hint)
    tokens.append(Token("eof", "", size, size))
    return tokens


def _number(source: str, start: int) -> Token:
    end = start
    while end < len(source) and source[end].isascii() and source[end].isdigit():
        end += 1
    is_decimal = False
    if end < len(source) and source[end] == ".":
        frac = end + 1
        while frac < len(source) and source[frac].isascii() and source[frac].isdigit():
            frac += 1
        if frac == end + 1:
            raise ExpressionError(
                "expected digits after the decimal point", source, start, end + 1, "write e.g. 1.0"
            )
        end, is_decimal = frac, True
    if end < len(source) and (source[end].isalnum() or source[end] in "_."):
        bad = end
        while bad < len(source) and (source[bad].isalnum() or source[bad] in "_."):
            bad += 1
        raise ExpressionError(
            f"invalid number {source[start:bad]!r}",
            source,
            start,
            bad,
            "numbers are written like 42 or 1.5; names cannot start with a digit",
        )
    text = source[start:end]
    return Token("number", text, start, end, float(text) if is_decimal else int(text))


def _string(source: str, start: int) -> Token:
    quote = source[start]
    chars: list[str] = []
    pos = start + 1
    while pos < len(source):
        ch = source[pos]
        if ch == quote:
            return Token("string", source[start : pos + 1], start, pos + 1, "".join(chars))
        if ch == "\\":
            if pos + 1 >= len(source):
                break
            escaped = source[pos + 1]
            if escaped not in _ESCAPES:
                raise ExpressionError(
                    f"unknown escape '\\{escaped}' in string",
                    source,
                    pos,
                    pos + 2,
                    "only \\\", \\' and \\\\ are escapes; write other characters as they are",
                )
            chars.append(_ESCAPES[escaped])
            pos += 2
            continue
        chars.append(ch)
        pos += 1
    raise ExpressionError(
        "unterminated string",
        source,
        start,
        len(source),
        f"close the string with {quote}",
    )


# --------------------------------------------------------------------------- parser

_COMPARISON_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def parse(source: str) -> Node:
    """Parse one expression; raises :class:`ExpressionError` pointing at the first problem."""
    return _Parser(source).parse()


# How deeply an expression may nest: parentheses, 'not's, minus signs, function calls and
# each operator of an arithmetic chain count one level. Real segments nest a handful of
# levels; the bound keeps the parser and every compiler of the tree (which recurse) far from
# Python's recursion limit, so "200 nested parentheses" is an error that names its column,
# not a RecursionError traceback.
MAX_DEPTH = 50


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0
        self.depth = 0

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"the expression nests more than {MAX_DEPTH} levels deep",
                token,
                hint="split it into named segments and combine them, or remove redundant parentheses and 'not's",
            )

    # -- token helpers

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        if token.kind != "eof":
            self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.text in words

    def at_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.text in ops

    def error(self, message: str, token: Token | None = None, hint: str | None = None) -> ExpressionError:
        token = token or self.token
        return ExpressionError(message, self.source, token.start, token.end, hint)

    @staticmethod
    def describe(token: Token) -> str:
        return "the end of the expression" if token.kind == "eof" else repr(token.text)

    # -- grammar

    def parse(self) -> Node:
        if self.token.kind == "eof":
            raise self.error("the expression is empty", hint="write a condition, e.g. country = \"US\"")
        node = self.or_expr()
        if self.token.kind != "eof":
            raise self.trailing()
        return node

    def trailing(self) -> ExpressionError:
        token = self.token
        if token.kind == "op" and token.text in _COMPARISON_OPS:
            return self.error(
                "comparisons cannot be chained",
                hint="combine them with 'and', e.g. 'a > 1 and a < 5'",
            )
        if token.kind == "op" and token.text == ")":
            return self.error("unmatched ')'")
        return self.error(
            f"unexpected {self.describe(token)} after a complete expression",
            hint="did you forget 'and' or 'or'?",
        )

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.at_keyword("or"):
            self.advance()
            operands.append(self.and_expr())
        return self.bool_op("or", operands)

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        while self.at_keyword("and"):
            self.advance()
            operands.append(self.not_expr())
        return self.bool_op("and", operands)

    @staticmethod
    def bool_op(op: str, operands: list[Node]) -> Node:
        if len(operands) == 1:
            return operands[0]
        return BoolOp(op=op, operands=tuple(operands), start=operands[0].start, end=operands[-1].end)

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            keyword = self.advance()
            self.nest(keyword)
            operand = self.not_expr()
            self.depth -= 1
            return Not(operand=operand, start=keyword.start, end=operand.end)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        token = self.token
        if token.kind == "op" and token.text in _COMPARISON_OPS:
            self.advance()
            right = self.additive()
            return Comparison(op=_COMPARISON_OPS[token.text], left=left, right=right, start=left.start, end=right.end)
        negated = False
        if self.at_keyword("not"):
            if self.peek().kind != "keyword" or self.peek().text not in ("in", "between"):
                raise self.error(
                    f"expected 'in' or 'between' after 'not', found {self.describe(self.peek())}",
                    self.peek(),
                )
            self.advance()
            negated = True
        if self.at_keyword("in"):
            self.advance()
            return self.in_list(left, negated)
        if self.at_keyword("between"):
            self.advance()
            low = self.additive()
            if not self.at_keyword("and"):
                raise self.error(
                    f"expected 'and' in 'between ... and ...', found {self.describe(self.token)}",
                    hint="write e.g. 'age between 18 and 65'",
                )
            self.advance()
            high = self.additive()
            return Between(operand=left, low=low, high=high, negated=negated, start=left.start, end=high.end)
        if self.at_keyword("is"):
            self.advance()
            if self.at_keyword("not"):
                self.advance()
                negated = True
            if not self.at_keyword("null"):
                raise self.error(
                    f"expected 'null' after 'is{' not' if negated else ''}', found {self.describe(self.token)}",
                    hint="'is' only tests for null; use '=' to compare values",
                )
            end = self.advance().end
            return IsNull(operand=left, negated=negated, start=left.start, end=end)
        return left

    def in_list(self, operand: Node, negated: bool) -> Node:
        if not self.at_op("("):
            raise self.error(
                f"expected '(' after 'in', found {self.describe(self.token)}",
                hint='write e.g. country in ("US", "CA")',
            )
        opening = self.advance()
        if self.at_op(")"):
            closing = self.advance()
            raise ExpressionError(
                "the 'in' list is empty",
                self.source,
                opening.start,
                closing.end,
                "list at least one value, e.g. (\"US\")",
            )
        items: list[Literal] = []
        while True:
            if self.at_op(")") and items:
                raise self.error(
                    "expected a value after ',', found ')'", hint="remove the trailing comma"
                )
            item = self.unary()
            if not isinstance(item, Literal):
                raise ExpressionError(
                    "an 'in' list may only contain literal values",
                    self.source,
                    item.start,
                    item.end,
                    "use numbers, quoted strings, true or false",
                )
            items.append(item)
            if self.at_op(","):
                self.advance()
                continue
            if self.at_op(")"):
                closing = self.advance()
                return InList(
                    operand=operand, items=tuple(items), negated=negated, start=operand.start, end=closing.end
                )
            raise self.error(
                f"expected ',' or ')' in the 'in' list, found {self.describe(self.token)}",
                hint=f"the list opened at column {self._column(opening.start)}",
            )

    def additive(self) -> Node:
        node = self.term()
        entered = self.depth
        while self.at_op("+", "-"):
            self.nest(self.token)  # each operator nests the tree one level deeper
            op = self.advance().text
            right = self.term()
            node = Arithmetic(op=op, left=node, right=right, start=node.start, end=right.end)
        self.depth = entered
        return node

    def term(self) -> Node:
        node = self.unary()
        entered = self.depth
        while self.at_op("*", "/"):
            self.nest(self.token)
            op = self.advance().text
            right = self.unary()
            node = Arithmetic(op=op, left=node, right=right, start=node.start, end=right.end)
        self.depth = entered
        return node

    def unary(self) -> Node:
        if self.at_op("-"):
            minus = self.advance()
            self.nest(minus)
            operand = self.unary()
            self.depth -= 1
            # Fold "-5" into a literal so it can appear in 'in' lists and reads naturally.
            if isinstance(operand, Literal) and type(operand.value) in (int, float):
                return Literal(value=-operand.value, start=minus.start, end=operand.end)  # type: ignore[operator]
            return Negate(operand=operand, start=minus.start, end=operand.end)
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return Literal(value=token.value, start=token.start, end=token.end)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.advance()
            value = {"true": True, "false": False, "null": None}[token.text]
            return Literal(value=value, start=token.start, end=token.end)
        if token.kind == "ident":
            self.advance()
            if self.at_op("("):
                return self.call(token)
            return Name(name=token.text, start=token.start, end=token.end)
        if self.at_op("("):
            opening = self.advance()
            self.nest(opening)
            inner = self.or_expr()
            self.depth -= 1
            if not self.at_op(")"):
                raise self.error(
                    f"expected ')', found {self.describe(self.token)}",
                    hint=f"to close the '(' at column {self._column(opening.start)}",
                )
            closing = self.advance()
            # Widen the span to include the parentheses so errors underline what was written.
            return _with_span(inner, opening.start, closing.end)
        if token.kind == "keyword":
            raise self.error(f"expected a value, found keyword {token.text!r}")
        raise self.error(f"expected a value, found {self.describe(token)}")

    def call(self, name: Token) -> Node:
        opening = self.advance()
        self.nest(opening)
        args: list[Node] = []
        if not self.at_op(")"):
            while True:
                args.append(self.or_expr())
                if self.at_op(","):
                    self.advance()
                    if self.at_op(")"):
                        raise self.error("expected an argument after ',', found ')'", hint="remove the trailing comma")
                    continue
                break
        if not self.at_op(")"):
            raise self.error(
                f"expected ',' or ')' in the arguments of {name.text}(), found {self.describe(self.token)}",
                hint=f"to close the '(' at column {self._column(opening.start)}",
            )
        closing = self.advance()
        self.depth -= 1
        return Call(name=name.text.lower(), args=tuple(args), start=name.start, end=closing.end, name_end=name.end)

    def _column(self, offset: int) -> int:
        return offset - (self.source.rfind("\n", 0, offset) + 1) + 1


def _with_span(node: Node, start: int, end: int) -> Node:
    """A copy of a compound ``node`` whose span covers the surrounding parentheses.

    Names, literals and calls keep their own span: "unknown field" should underline the
    name, not the parentheses around it.
    """
    if isinstance(node, (Name, Literal, Call)):
        return node
    return replace(node, start=start, end=end)
