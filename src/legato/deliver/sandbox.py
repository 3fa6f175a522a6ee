"""Jinja2's sandbox with bounds: a template cannot exhaust the process.

The sandbox stops a template reaching Python's internals, not one that exhausts the process:
``{{ 'x' * 10**10 }}`` asks for 10 GB, ``{{ 9 ** 100000000 }}`` for hours of arithmetic. The
environment here bounds what a template can build: repetition, concatenation, powers,
``range``, printf-style and ``str.format`` widths, the padding filters, and the length of
what it renders (:data:`MAX_OUTPUT`); past a bound rendering fails with a
``SecurityError`` (a ``TemplateError``), so the message fails alone with its reason, like
any template error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_format, do_indent
from jinja2.sandbox import SandboxedEnvironment

# A message is at most a long e-mail; a template that renders more is broken or hostile.
MAX_OUTPUT = 200_000  # characters
MAX_RANGE = 10_000  # items in range(): a loop over a few hundred products at most
MAX_POWER_BITS = 4_096  # size of the result of ``**`` on integers
# printf and str.format widths of 1,000 and more, or given by an argument ("%*s", "{:{w}}")
_WIDTH = re.compile(r"%[-+ #0]*(\*|\d{4,})|\{[^{}]*:[^{}]*?(\d{4,}|\{)")


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"the template asks for {what}; a message cannot be that large")


class _BoundedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        parts: list[str] = []
        size = 0
        for part in self.generate(*args, **kwargs):
            size += len(part)
            if size > MAX_OUTPUT:
                raise _too_big(f"more than {MAX_OUTPUT:,} characters of output")
            parts.append(part)
        return "".join(parts)


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise _too_big(f"a range of {len(numbers):,} items (at most {MAX_RANGE:,})")
    return numbers


def _bounded_pad(filter_: Callable[..., str], position: int) -> Callable[..., str]:
    def bounded(value: Any, *args: Any, **kwargs: Any) -> str:
        width = args[position - 1] if len(args) >= position else kwargs.get("width", 0)
        if isinstance(width, int) and width > MAX_OUTPUT:
            raise _too_big(f"a width of {width:,}")
        return filter_(value, *args, **kwargs)

    return bounded


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with bounds on how much a template may build."""

    template_class = _BoundedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.filters["center"] = _bounded_pad(do_center, 1)
        self.filters["indent"] = _bounded_pad(do_indent, 1)
        self.filters["format"] = _bounded_format

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and len(sequence) * count > MAX_OUTPUT:
                    raise _too_big(f"a repetition of {len(sequence) * count:,} items")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if right * left.bit_length() > MAX_POWER_BITS:
                raise _too_big(f"{left} ** {right}, a number of about {right * left.bit_length():,} bits")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_OUTPUT:
                raise _too_big(f"a value of {len(left) + len(right):,} items")
        elif operator == "%" and isinstance(left, str) and _WIDTH.search(left):
            raise _too_big("a field width of 1,000 or more")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDTH.search(str(getattr(value, "__self__", ""))):

            def refuse(*args: Any, **kwargs: Any) -> str:
                raise _too_big("a field width of 1,000 or more")

            return refuse
        return wrapped


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
    if _WIDTH.search(str(value)):
        raise _too_big("a field width of 1,000 or more")
    return do_format(value, *args, **kwargs)
