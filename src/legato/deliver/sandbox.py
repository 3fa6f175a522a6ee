"""Jinja2's sandbox with bounds: a template cannot exhaust the process.

The sandbox stops a template reaching Python's internals, not one that exhausts the process:
``{{ 'x' * 10**10 }}`` asks for 10 GB, ``{{ 9 ** 100000000 }}`` for hours of arithmetic. The
environment here bounds what a template can build: repetition, concatenation, powers,
``range``, printf-style and ``str.format`` widths, the padding filters, and the length of
what it renders (:data:`MAX_OUTPUT`). It also bounds the work of one render, which no single
value shows: nested loops multiply (``range`` is capped at 10,000, but two nested loops make
100,000,000 iterations that render nothing), and a macro that calls itself twice doubles at
each level. Every loop iteration (recursive loops too) and every call in a template is
counted against one budget per render, :data:`MAX_LOOP_ITERATIONS` and :data:`MAX_CALLS`,
and a render that runs longer than :data:`MAX_RENDER_SECONDS` stops at its next iteration or
call. Past a bound rendering fails with a ``SecurityError`` (a ``TemplateError``), so the
message fails alone with its reason, like any template error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_format, do_indent
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment

# A message is at most a long e-mail; a template that renders more is broken or hostile.
MAX_OUTPUT = 200_000  # characters
MAX_RANGE = 10_000  # items in range(): a loop over a few hundred products at most
MAX_POWER_BITS = 4_096  # size of the result of ``**`` on integers
# One render's work: a message loops over a few hundred products, maybe their variants.
MAX_LOOP_ITERATIONS = 100_000  # all loops of one render together (nested loops multiply)
MAX_CALLS = 100_000  # calls of macros, functions and methods in one render
MAX_RENDER_SECONDS = 2.0  # a render that takes longer is stopped at its next iteration or call
# printf and str.format widths of 1,000 and more, or given by an argument ("%*s", "{:{w}}")
_WIDTH = re.compile(r"%[-+ #0]*(\*|\d{4,})|\{[^{}]*:[^{}]*?(\d{4,}|\{)")


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"the template asks for {what}; a message cannot be that large")


def _too_long(what: str) -> SecurityError:
    return SecurityError(f"the template runs {what} in one message; a message cannot need that much work")


class _Budget:
    """What one render may still do."""

    __slots__ = ("iterations", "calls", "deadline")

    def __init__(self) -> None:
        self.iterations = 0
        self.calls = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def iteration(self) -> None:
        self.iterations += 1
        if not self.iterations & 63:  # the clock every 64 steps: a step is microseconds
            if self.iterations > MAX_LOOP_ITERATIONS:
                raise _too_long(f"more than {MAX_LOOP_ITERATIONS:,} loop iterations (nested loops multiply)")
            self._in_time()

    def call(self) -> None:
        self.calls += 1
        if not self.calls & 63:
            if self.calls > MAX_CALLS:
                raise _too_long(f"more than {MAX_CALLS:,} calls")
            self._in_time()

    def _in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _too_long(f"longer than {MAX_RENDER_SECONDS:g} s")


# The budget of the render under way (set by _BoundedTemplate.render; a template rendered some
# other way gets one per context).
_BUDGET: ContextVar[_Budget | None] = ContextVar("legato_template_budget", default=None)


def _budget_of(context: Any) -> _Budget:
    budget = _BUDGET.get()
    if budget is None:
        budget = getattr(context, "_legato_budget", None)
        if budget is None:
            budget = _Budget()
            context._legato_budget = budget
    return budget


class _BoundedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        parts: list[str] = []
        size = 0
        token = _BUDGET.set(_Budget())
        try:
            for part in self.generate(*args, **kwargs):
                size += len(part)
                if size > MAX_OUTPUT:
                    raise _too_big(f"more than {MAX_OUTPUT:,} characters of output")
                parts.append(part)
        except RecursionError:  # a macro or a recursive loop that never ends
            raise _too_long("macros or recursive loops nested too deep") from None
        finally:
            _BUDGET.reset(token)
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

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The template's tree, every ``for`` loop's iterable counted against the render's budget."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("counted_loop"), [nodes.ContextReference(), loop.iter], [], None, None, lineno=loop.iter.lineno
            )
        return tree

    def counted_loop(self, context: Any, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _budget_of(context)
        for item in iterable:
            budget.iteration()
            yield item

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _budget_of(context).call()
        if isinstance(obj, LoopContext) and args:  # a recursive loop's next level: counted too
            args = (self.counted_loop(context, args[0]), *args[1:])
        return super().call(context, obj, *args, **kwargs)

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
