"""Parser tests: the tree shape for each construct, and errors that point at the exact text."""

from __future__ import annotations

import pytest

from legato.audience.expr import (
    Arithmetic,
    Between,
    BoolOp,
    Call,
    Comparison,
    ExpressionError,
    InList,
    IsNull,
    Literal,
    Name,
    Negate,
    Node,
    Not,
    identifiers,
    parse,
)


def shape(node: Node) -> object:
    """A compact, offset-free rendering of a tree, to compare structure readably."""
    match node:
        case Literal(value=value):
            return value
        case Name(name=name):
            return name
        case Negate(operand=operand):
            return ("neg", shape(operand))
        case Not(operand=operand):
            return ("not", shape(operand))
        case Arithmetic(op=op, left=left, right=right) | Comparison(op=op, left=left, right=right):
            return (op, shape(left), shape(right))
        case BoolOp(op=op, operands=operands):
            return (op, *[shape(o) for o in operands])
        case InList(operand=operand, items=items, negated=negated):
            return ("not in" if negated else "in", shape(operand), tuple(i.value for i in items))
        case Between(operand=operand, low=low, high=high, negated=negated):
            return ("not between" if negated else "between", shape(operand), shape(low), shape(high))
        case IsNull(operand=operand, negated=negated):
            return ("is not null" if negated else "is null", shape(operand))
        case Call(name=name, args=args):
            return (f"{name}()", *[shape(a) for a in args])
    raise AssertionError(node)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a or b and c", ("or", "a", ("and", "b", "c"))),
        ("a and b or c", ("or", ("and", "a", "b"), "c")),
        ("(a or b) and c", ("and", ("or", "a", "b"), "c")),
        ("a and b and c", ("and", "a", "b", "c")),
        ("not a and b", ("and", ("not", "a"), "b")),
        ("not a = 1", ("not", ("=", "a", 1))),
        ("not not a", ("not", ("not", "a"))),
        ("a + b * c > 1", (">", ("+", "a", ("*", "b", "c")), 1)),
        ("(a + b) * c >= 1", (">=", ("*", ("+", "a", "b"), "c"), 1)),
        ("a - b - c < 0", ("<", ("-", ("-", "a", "b"), "c"), 0)),
        ("a / 2 <= -1.5", ("<=", ("/", "a", 2), -1.5)),
        ("-a != 3", ("!=", ("neg", "a"), 3)),
        ("a == 1", ("=", "a", 1)),
        ("a <> 1", ("!=", "a", 1)),
        ("x between 1 and 5", ("between", "x", 1, 5)),
        ("x between 1 and 5 and y", ("and", ("between", "x", 1, 5), "y")),
        ("y and x between 1 + 1 and 5 * 2 or z", ("or", ("and", "y", ("between", "x", ("+", 1, 1), ("*", 5, 2))), "z")),
        ("x not between 1 and 5", ("not between", "x", 1, 5)),
        ('country in ("US", "CA")', ("in", "country", ("US", "CA"))),
        ("n not in (1, -2, 3.5)", ("not in", "n", (1, -2, 3.5))),
        ("x is null", ("is null", "x")),
        ("x is not null and y", ("and", ("is not null", "x"), "y")),
        ("lower(s) = 'a'", ("=", ("lower()", "s"), "a")),
        ("coalesce(a, b, 0) > 1", (">", ("coalesce()", "a", "b", 0), 1)),
        ("days_since(t) > 60", (">", ("days_since()", "t"), 60)),
        ("flag = true or flag = false", ("or", ("=", "flag", True), ("=", "flag", False))),
        ("x = null", ("=", "x", None)),
        ("_under_score9", "_under_score9"),
    ],
)
def test_structure(source: str, expected: object) -> None:
    assert shape(parse(source)) == expected


def test_keywords_are_case_insensitive_but_names_are_not() -> None:
    tree = parse("A AND Not b OR c IS NOT NULL And x BETWEEN 1 AND 2 and y NOT IN (TRUE, False, NULL)")
    assert shape(tree) == (
        "or",
        ("and", "A", ("not", "b")),
        ("and", ("is not null", "c"), ("between", "x", 1, 2), ("not in", "y", (True, False, None))),
    )
    assert identifiers(tree) == {"A", "b", "c", "x", "y"}
    assert shape(parse("LOWER(s) = 'x'")) == ("=", ("lower()", "s"), "x")


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"back\\slash"', "back\\slash"),
        (r'"\\"', "\\"),
        ('"single \' inside double"', "single ' inside double"),
        ("'double \" inside single'", 'double " inside single'),
        ('""', ""),
        ('"and or not"', "and or not"),
    ],
)
def test_string_escapes(source: str, value: str) -> None:
    node = parse(source)
    assert isinstance(node, Literal)
    assert node.value == value
    assert (node.start, node.end) == (0, len(source))


def test_numbers() -> None:
    assert parse("42") == Literal(value=42, start=0, end=2)
    assert parse("1.5") == Literal(value=1.5, start=0, end=3)
    assert parse("-7") == Literal(value=-7, start=0, end=2)
    assert type(parse("42").value) is int  # type: ignore[attr-defined]


def test_offsets() -> None:
    source = 'days_since(last) > 60 and country in ("US", "CA")'
    tree = parse(source)
    assert isinstance(tree, BoolOp)
    left, right = tree.operands
    assert isinstance(left, Comparison) and isinstance(left.left, Call)
    assert source[left.left.start : left.left.end] == "days_since(last)"
    assert source[left.left.start : left.left.name_end] == "days_since"
    assert source[left.start : left.end] == "days_since(last) > 60"
    assert isinstance(right, InList)
    assert source[right.start : right.end] == 'country in ("US", "CA")'
    assert [source[i.start : i.end] for i in right.items] == ['"US"', '"CA"']
    assert (tree.start, tree.end) == (0, len(source))


def test_parenthesised_compound_span_includes_parentheses() -> None:
    source = "not (a > 1)"
    tree = parse(source)
    assert isinstance(tree, Not)
    assert (tree.operand.start, tree.operand.end) == (4, 11)
    assert (tree.start, tree.end) == (0, 11)


def test_identifiers_ignores_function_names_and_literals() -> None:
    tree = parse('lower(country) = "us" and days_since(t) > n or seg and x in (1, 2) and y is null')
    assert identifiers(tree) == {"country", "t", "n", "seg", "x", "y"}


def test_nodes_are_frozen() -> None:
    node = parse("a")
    with pytest.raises(AttributeError):
        node.start = 3  # type: ignore[misc]


def error_of(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        parse(source)
    error = info.value
    assert error.source == source
    return error


@pytest.mark.parametrize(
    ("source", "start", "end", "message", "hint"),
    [
        ('country in ("US", )', 18, 19, "expected a value after ',', found ')'", "remove the trailing comma"),
        ('name = "abc', 7, 11, "unterminated string", 'close the string with "'),
        ("name = 'abc\\'", 7, 13, "unterminated string", "close the string with '"),
        ("a > 1 b", 6, 7, "unexpected 'b' after a complete expression", "did you forget 'and' or 'or'?"),
        ("a > 1 and b c", 12, 13, "unexpected 'c' after a complete expression", "did you forget 'and' or 'or'?"),
        ("country in ()", 11, 13, "the 'in' list is empty", None),
        ("country not in ( )", 15, 18, "the 'in' list is empty", None),
        ("x in (a, 1)", 6, 7, "an 'in' list may only contain literal values", None),
        ("x in (1 2)", 8, 9, "expected ',' or ')' in the 'in' list, found '2'", None),
        ("x in 1", 5, 6, "expected '(' after 'in', found '1'", None),
        ("1 < x < 5", 6, 7, "comparisons cannot be chained", None),
        ("(a > 1", 6, 6, "expected ')', found the end of the expression", "to close the '(' at column 1"),
        ("a > 1)", 5, 6, "unmatched ')'", None),
        ("a >", 3, 3, "expected a value, found the end of the expression", None),
        ("a > and b", 4, 7, "expected a value, found keyword 'and'", None),
        ("", 0, 0, "the expression is empty", None),
        ("   ", 3, 3, "the expression is empty", None),
        ("x between 1 5", 12, 13, "expected 'and' in 'between ... and ...', found '5'", None),
        ("x is 5", 5, 6, "expected 'null' after 'is', found '5'", None),
        ("x is not 5", 9, 10, "expected 'null' after 'is not', found '5'", None),
        ("x not 5", 6, 7, "expected 'in' or 'between' after 'not', found '5'", None),
        ("a @ b", 2, 3, "unexpected character '@'", None),
        ("a ! b", 2, 3, "unexpected character '!'", None),
        ("1e5 > 0", 0, 3, "invalid number '1e5'", None),
        ("x > 1.", 4, 6, "expected digits after the decimal point", None),
        ('"a\\n"', 2, 4, "unknown escape '\\n' in string", None),
        ("f(a, )", 5, 6, "expected an argument after ',', found ')'", "remove the trailing comma"),
        ("f(a b)", 4, 5, "expected ',' or ')' in the arguments of f(), found 'b'", None),
    ],
)
def test_errors_point_at_the_offending_text(source: str, start: int, end: int, message: str, hint: str | None) -> None:
    error = error_of(source)
    assert (error.message, error.start, error.end) == (message, start, end)
    if hint is not None:
        assert error.hint == hint


def test_render_trailing_comma() -> None:
    error = error_of('country in ("US", )')
    assert error.render() == (
        "expected a value after ',', found ')'\n"
        '  country in ("US", )\n'
        "                    ^\n"
        "hint: remove the trailing comma"
    )
    assert str(error) == "expected a value after ',', found ')' (at column 19)"


def test_render_unterminated_string_underlines_to_the_end() -> None:
    error = error_of('country = "US')
    assert error.render().splitlines() == [
        "unterminated string",
        '  country = "US',
        "            ^^^",
        'hint: close the string with "',
    ]
    assert str(error) == "unterminated string (at column 11)"


def test_render_trailing_garbage() -> None:
    error = error_of("a > 1 bee")
    assert error.render().splitlines()[1:3] == ["  a > 1 bee", "        ^^^"]


def test_render_at_end_of_input_shows_one_caret() -> None:
    error = error_of("a >")
    assert error.render().splitlines()[1:] == ["  a >", "     ^"]


def test_render_without_hint_has_three_lines() -> None:
    error = error_of("country in ()")
    error.hint = None
    assert error.render() == "the 'in' list is empty\n  country in ()\n             ^^"


def test_multiline_source_reports_line_and_column() -> None:
    source = "lifetime_spend > 100\nand country in\n  (\"US\", )"
    error = error_of(source)
    assert (error.line, error.column) == (3, 10)
    assert str(error) == "expected a value after ',', found ')' (at line 3, column 10)"
    assert error.render().splitlines()[1:3] == ['    ("US", )', "           ^"]


def test_tabs_are_kept_in_the_caret_line() -> None:
    error = error_of("a >\t1 b")
    assert error.render().splitlines()[1:3] == ["  a >\t1 b", "     \t  ^"]


def test_error_is_a_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)
    error = ExpressionError("boom", "abc", 1, 2)
    assert error.hint is None and error.segment_path == ()


def test_in_segment_prefixes_only_the_innermost_segment() -> None:
    error = ExpressionError("bad", "x > 'a'", 0, 7, "fix it")
    inner = error.in_segment("lapsed")
    outer = inner.in_segment("vip")
    assert inner.message == "in segment 'lapsed': bad"
    assert outer.message == "in segment 'lapsed': bad"
    assert outer.segment_path == ("vip", "lapsed")
    assert (outer.source, outer.start, outer.end, outer.hint) == ("x > 'a'", 0, 7, "fix it")
