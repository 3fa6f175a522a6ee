"""Templates cannot exhaust the process: what they build is bounded, and the failure is the message's alone."""

from __future__ import annotations

import pytest

from legato.deliver.render import CreativeTemplate, RenderError
from legato.deliver import sandbox
from legato.deliver.render import render_template
from legato.playbook.models import Creative


def _render(body: str) -> str:
    creative = Creative.model_validate({"id": "c", "channel": "email", "subject": "s", "body": body})
    return CreativeTemplate(creative).render({}).body


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("{{ 'x' * 10**10 }}", "repetition"),
        ("{{ [0] * 10**9 }}", "repetition"),
        ("{% for i in range(10**9) %}{% endfor %}", "range"),
        ("{{ 7 ** 100000000 }}", "bits"),
        ("{{ '%1000000000s' % 'a' }}", "field width"),
        ("{{ '%1000000000s'|format('a') }}", "field width"),
        ("{{ '{:>1000000000}'.format('a') }}", "field width"),
        ("{{ 'a'|center(10**9) }}", "width"),
        ("{% for i in range(5000) %}{% for j in range(5000) %}xxxxxxxx{% endfor %}{% endfor %}", "characters of output"),
    ],
)
def test_what_a_template_builds_is_bounded(body: str, what: str) -> None:
    with pytest.raises(RenderError, match=what):
        _render(body)


def test_the_content_check_reports_it_as_a_template_finding() -> None:
    check = render_template("{{ 'x' * 10**10 }}", {})
    assert check.text is None and [f.rule for f in check.findings] == ["template.forbidden_access"]


def test_ordinary_templates_render_as_before() -> None:
    body = "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ '%5.1f'|format(3.14159) }} {{ '{:>4}'.format('x') }} {{ range(3)|list }} {{ 'x'|center(5) }}"
    assert _render(body) == "ababab 1024   3.1    x [0, 1, 2]   x  "


@pytest.mark.parametrize(
    ("body", "what"),
    [
        # range() is capped at 10,000, but nested loops multiply: 10^8 iterations that render nothing.
        ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "100,000 loop iterations"),
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", "loop iterations"),
        ("{% for i in range(10) recursive %}{% if loop.depth < 8 %}{{ loop(range(10)) }}{% endif %}{% endfor %}", "loop iterations"),
        # No loop at all: a macro that calls itself twice doubles at each level.
        ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", "100,000 calls"),
        ("{% for i in range(3) recursive %}{{ loop(range(3)) }}{% endfor %}", "nested too deep"),
    ],
)
def test_the_work_of_one_render_is_bounded(body: str, what: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The counts must stop these whatever the machine's speed: the time bound is set out of reach
    # here (a loaded machine could otherwise reach it first) and tested on its own below.
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 3600.0)
    with pytest.raises(RenderError, match=what):
        _render(body)


def test_a_render_past_its_time_is_stopped_at_its_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 0.0)
    with pytest.raises(RenderError, match="longer than 0 s"):
        _render("{% for i in range(1000) %}{% endfor %}")


def test_the_budget_is_per_render_and_ordinary_loops_are_untouched() -> None:
    body = "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}{% for x in [3, 1, 2] if x > 1 %}{{ loop.index }}:{{ x }}/{{ loop.length }} {% else %}none{% endfor %}"
    creative = Creative.model_validate({"id": "c", "channel": "email", "subject": "s", "body": body})
    template = CreativeTemplate(creative)
    for _ in range(3):  # 90,000 iterations each time: under the bound, render after render
        assert template.render({}).body == "1:3/2 2:2/2 "
    tree = "{% for n in [[1, [2, 3]], 4] recursive %}{% if n is iterable %}({{ loop(n) }}){% else %}{{ n }}{% endif %}{% endfor %}"
    assert _render(tree) == "(1(23))4"
